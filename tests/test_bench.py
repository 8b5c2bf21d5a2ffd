"""Every bench script runs at its --quick size and ends with well-formed figure lines (docs/architecture.md section 10).

No timing is asserted here (timings belong to `make bench`); this keeps the scripts from rotting.
"""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

import pytest

BENCH = Path(__file__).resolve().parents[1] / "bench"
SCRIPTS = sorted(p for p in BENCH.glob("*.py") if p.name != "run_all.py" and not p.name.startswith("_"))


@pytest.mark.parametrize("script", SCRIPTS, ids=lambda p: p.stem)
def test_bench_quick(script: Path):
    proc = subprocess.run([sys.executable, str(script), "--quick"], check=False, capture_output=True, text=True, timeout=600)
    assert proc.returncode == 0, proc.stderr[-3000:]
    figures = [json.loads(line) for line in proc.stdout.splitlines() if line.startswith("{") and '"bench"' in line]
    assert figures, f"{script.name} printed no figure line"
    for f in figures:
        assert {"bench", "figure", "value", "goal", "met"} <= set(f), f
        assert script.stem.startswith(f["bench"]), (f["bench"], script.stem)
        assert isinstance(f["value"], (int, float)) and isinstance(f["met"], bool)
        # a quick run says so, and its met is still computed from value and goal (never hard-coded)
        assert f.get("quick") is True, f
        assert not f["met"] or _meets(f["value"], f["goal"]), f
        if f["met"] is False:
            assert not _meets(f["value"], f["goal"]) or f["details"].get("content_ok") is False, f
    if script.stem == "analyze":
        speed = next(f for f in figures if f["figure"] == "speedup_vs_pandas")["details"]
        assert speed["warm"] is True and speed["scale"] == 1.0  # baseline timed warm, on every group


def _meets(value: float, goal: str) -> bool:
    """Independent reading of a goal string ("< 30", ">= 20") for the check above."""
    op, bound = goal.split()
    return {"<": value < float(bound), "<=": value <= float(bound), ">": value > float(bound),
            ">=": value >= float(bound)}[op]


def test_figure_line_computes_met_and_marks_quick():
    sys.path.insert(0, str(BENCH))
    from _common import figure_line, met

    assert met(29.9, "< 30") and not met(30, "< 30") and met(20, ">= 20") and not met(19.9, ">= 20")
    line = json.loads(figure_line("x", "y", 0.4, ">= 0.5", quick=True, details={}))
    assert line["met"] is False and line["quick"] is True
    assert json.loads(figure_line("x", "y", 3, "< 10", quick=False, details={}, also=False))["met"] is False
    with pytest.raises(ValueError):
        met(1, "report")  # a goal must be checkable


def test_run_all_tabulates(tmp_path: Path):
    """run_all.py on a folder with one fake bench (the real ones already ran above): it collects the
    figure lines into the table and fails when a script fails."""
    import shutil

    shutil.copy(BENCH / "run_all.py", tmp_path / "run_all.py")
    (tmp_path / "fake.py").write_text(
        "import json\nprint('human table')\n"
        "print(json.dumps({'bench': 'fake', 'figure': 'speedup', 'value': 3.5, 'goal': '>= 2', 'met': True}))\n"
    )
    proc = subprocess.run([sys.executable, str(tmp_path / "run_all.py"), "--quick"], check=False, capture_output=True, text=True,
                          timeout=120)
    assert proc.returncode == 0, proc.stdout + proc.stderr
    last = proc.stdout.strip().splitlines()[-1].split()
    assert last[:3] == ["fake", "speedup", "3.5"] and last[-1] == "yes"
    (tmp_path / "broken.py").write_text("raise SystemExit(3)\n")
    proc = subprocess.run([sys.executable, str(tmp_path / "run_all.py")], check=False, capture_output=True, text=True, timeout=120)
    assert proc.returncode == 1 and "broken.py: FAILED" in proc.stdout
