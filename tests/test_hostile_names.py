"""A dump's names are data, never code (issue 23, item 1): hostile signal and metric names in native,
verifiers and ART records go through ingest -> analyze -> report -> export -> re-ingest intact, and
nothing is written or read outside the store and the output folders.

Before the fix, a name with a ``'`` was spliced into a JSON path inside SQL text: an innocent
``it's_correct`` broke ``calib analyze`` with a parser error, and a crafted one wrote a file.
"""

from __future__ import annotations

import json
import os
from pathlib import Path

import pyarrow.parquet as pq
import pytest
import yaml
from typer.testing import CliRunner

from calib.cli import app
from calib.sample_episodes import synthetic_records
from calib.store import Store

DATA = Path(__file__).resolve().parent / "data"
SECRET = "TOPSECRET-4b1d"


def hostile_names(bait: Path) -> list[str]:
    """At least 20 names: quotes of both kinds, ``;``, ``--``, ``/*``, newline, NUL, 10 kB, emoji,
    right-to-left marks, ``$``, ``%``, ``{}``, and payloads aimed at ``bait``."""
    b = bait.as_posix()
    return [
        "it's_correct",
        'say "hi"',
        "semi;colon",
        "dash -- comment",
        "/* block */ comment",
        "new\nline",
        "nul\0byte",
        "x" * 10_000,
        "emoji 🤖✈️",
        "rtl \u202eevil\u202c mark",
        "dollar $1 $name",
        "percent %s %d %%",
        "braces {} {0} {name}",
        "back\\slash \\' \\\"",
        "../../escape/../..",
        "<script>alert(1)</script>",
        "[bold red]rich markup[/]",
        f"x') AS arr FROM episodes); COPY (SELECT 42) TO '{b}/pwned.csv'; --",
        f"x\"') ; COPY (SELECT 42) TO '{b}/pwned2.csv' ; --",
        f"x' || (SELECT content FROM read_text('{b}/secret.txt')) || '",
        f"'; ATTACH '{b}/evil.duckdb' AS evil; --",
        "tab\tand\rreturn",
        "~tilde-start",
        ".dot-start",
    ]


def _native(names: list[str]) -> list[dict]:
    """Synthetic airline episodes; each name a per-turn signal (even index) or an episode-level one (odd),
    with values that follow success so the analysis has something to measure."""
    out = []
    for rec in synthetic_records(6, 6, seed=3, run_id="native-run"):
        n = len([m for m in rec["messages"] if m["role"] == "assistant"])
        sig = {}
        for i, name in enumerate(names):
            v = float(rec["success"]) if i % 3 else float(not rec["success"])
            sig[name] = [v] * n if i % 2 == 0 else v
        rec["info"] = {**rec.get("info", {}), "signals": sig}
        out.append(rec)
    return out


def _verifiers(src: Path, dst: Path, names: list[str]) -> Path:
    dst.mkdir()
    (dst / "metadata.json").write_text((src / "metadata.json").read_text())
    lines = []
    for line in (src / "results.jsonl").read_text().splitlines():
        r = json.loads(line)
        good = float(r.get("reward") or 0)
        r["metrics"] = {name: good if i % 2 else 1 - good for i, name in enumerate(names)}
        lines.append(json.dumps(r))
    (dst / "results.jsonl").write_text("\n".join(lines) + "\n")
    return dst


def _art(src: Path, dst: Path, names: list[str]) -> Path:
    lines = []
    for line in src.read_text().splitlines():
        g = json.loads(line)
        for t in g["trajectories"]:
            good = float(t.get("reward") or 0)
            t["metrics"] = {name: good if i % 2 else 1 - good for i, name in enumerate(names)}
        lines.append(json.dumps(g))
    dst.write_text("\n".join(lines) + "\n")
    return dst


def _listing(root: Path, skip: tuple[Path, ...]) -> set[str]:
    return {str(p) for p in root.rglob("*") if not any(p == s or s in p.parents for s in skip)}


def _invoke(args: list[str]):
    res = CliRunner().invoke(app, args, catch_exceptions=False)
    assert res.exit_code == 0, res.output
    return res


def _analysis_names(out: Path) -> set[str]:
    doc = json.loads((out / "analysis.json").read_text())
    names = {r["signal"] for r in doc["signals"]}
    names |= {r["signal"] for level in ("turn", "episode") for r in doc["imported_signals"].get(level, [])}
    return names


@pytest.fixture
def world(tmp_path: Path, monkeypatch):
    bait = tmp_path / "bait"
    bait.mkdir()
    (bait / "secret.txt").write_text(SECRET)
    work = tmp_path / "work"
    work.mkdir()
    monkeypatch.chdir(work)  # a relative path that a payload names would land here
    return tmp_path, bait, work


@pytest.mark.slow
def test_hostile_names_survive_the_pipeline_and_touch_no_file(world):
    tmp, bait, work = world
    names = hostile_names(bait)
    assert len(names) >= 20
    dumps = tmp / "dumps"
    dumps.mkdir()
    native = dumps / "native.jsonl"
    native.write_text("".join(json.dumps(r, ensure_ascii=False) + "\n" for r in _native(names)))
    vf = _verifiers(DATA / "verifiers" / "results", dumps / "vf", names)
    art = _art(DATA / "art" / "legacy" / "0001.jsonl", dumps / "art.jsonl", names)
    store, out, out2, store2 = tmp / "store", tmp / "out", tmp / "out2", tmp / "store2"
    allowed = (store, out, out2, store2)
    before = _listing(tmp, allowed)

    for src, fmt in ((native, "native"), (vf, "verifiers"), (art, "art")):
        res = _invoke(["ingest", str(src), "--store", str(store), "--format", fmt])
        assert "quarantined" not in res.output or " 0 quarantined" in res.output or "quarantined: 0" in res.output
    st = Store(store, create=False)
    n_art = sum(len(json.loads(x)["trajectories"]) for x in art.read_text().splitlines())
    assert st.count() == 36 + 9 + n_art  # every record in, none quarantined

    _invoke(["analyze", "--store", str(store), "--out", str(out / "analysis"), "--n-boot", "50"])
    expected = set(names) | {f"verifiers:{n}" for n in names} | {f"art:{n}" for n in names}
    assert expected <= _analysis_names(out / "analysis")
    assert expected <= set(st.signal_versions())
    stored = set(st.query("SELECT DISTINCT signal FROM signals")["signal"])
    assert expected <= stored
    n_rows = st.count("signals")
    _invoke(["store", "compact", "--store", str(store)])  # signal folders of any name merge in place
    assert st.count("signals") == n_rows and expected <= set(st.signal_versions())
    assert pq.read_table(out / "analysis" / "analysis.parquet").num_rows > 0
    yaml.safe_load((out / "analysis" / "reward_spec.yaml").read_text())  # the spec still loads

    _invoke(["report", "--store", str(store), "--out", str(out / "report.html"), "--max-episodes", "10"])
    page = (out / "report.html").read_text()
    assert "<script>alert(1)</script>" not in page  # hostile text is inert
    assert SECRET not in page

    _invoke(["store", "export", "--store", str(store), "--format", "jsonl", "--out", str(out / "all.jsonl")])
    _invoke(["store", "export", "--store", str(store), "--format", "parquet", "--out", str(out / "parquet")])
    _invoke(["ingest", str(out / "all.jsonl"), "--store", str(store2)])
    st2 = Store(store2, create=False)
    assert st2.count() == st.count()
    _invoke(["analyze", "--store", str(store2), "--out", str(out2), "--n-boot", "50"])
    assert expected <= _analysis_names(out2)

    # nothing outside the store and the output folders, and no secret in any output
    assert _listing(tmp, allowed) == before
    assert not list(work.iterdir())
    assert not (bait / "pwned.csv").exists() and not (bait / "pwned2.csv").exists()
    for root in allowed:
        for p in root.rglob("*"):
            if p.is_file() and p.stat().st_size < 50_000_000:
                assert SECRET.encode() not in p.read_bytes(), p


def test_an_innocent_quote_in_a_verifiers_metric_name_is_analysed(tmp_path: Path):
    """The one-line version of the bug report: ``verifiers:it's_correct`` broke ``calib analyze``."""
    vf = _verifiers(DATA / "verifiers" / "results", tmp_path / "vf", ["it's_correct"])
    _invoke(["ingest", str(vf), "--store", str(tmp_path / "s")])
    _invoke(["analyze", "--store", str(tmp_path / "s"), "--out", str(tmp_path / "o"), "--n-boot", "20"])
    assert "verifiers:it's_correct" in _analysis_names(tmp_path / "o")
    assert os.listdir(tmp_path) == ["vf", "s", "o"] or set(os.listdir(tmp_path)) == {"vf", "s", "o"}
