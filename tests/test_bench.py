"""Every bench script runs at its --quick size and ends with well-formed figure lines (DESIGN section 10).

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
    proc = subprocess.run([sys.executable, str(script), "--quick"], capture_output=True, text=True, timeout=600)
    assert proc.returncode == 0, proc.stderr[-3000:]
    figures = [json.loads(line) for line in proc.stdout.splitlines() if line.startswith("{") and '"bench"' in line]
    assert figures, f"{script.name} printed no figure line"
    for f in figures:
        assert {"bench", "figure", "value", "goal", "met"} <= set(f), f
        assert f["bench"] == script.stem
        assert isinstance(f["value"], (int, float)) and isinstance(f["met"], bool)


def test_run_all_tabulates(tmp_path: Path):
    proc = subprocess.run([sys.executable, str(BENCH / "run_all.py"), "--quick"], capture_output=True, text=True,
                          timeout=900)
    assert proc.returncode == 0, proc.stdout[-3000:] + proc.stderr[-2000:]
    table = proc.stdout.split("figure")[-1]
    for script in SCRIPTS:
        assert script.stem in table
