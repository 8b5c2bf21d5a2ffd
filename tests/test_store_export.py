"""``calib store export``: runs selected as data, unknown runs refused with the list (issue 23, item 10)."""

from __future__ import annotations

import json
from pathlib import Path

import pyarrow.parquet as pq
from typer.testing import CliRunner

from calib.cli import app
from calib.sample_episodes import synthetic_records
from calib.store import Store


def _store(tmp_path: Path) -> Store:
    st = Store(tmp_path / "s")
    st.add_episodes(list(synthetic_records(2, 3, seed=1, run_id="a")), source="a")
    st.add_episodes(list(synthetic_records(2, 3, seed=2, run_id="it's b")), source="b")
    return st


def test_unknown_run_is_refused_with_the_runs_there_are(tmp_path: Path):
    st = _store(tmp_path)
    out = tmp_path / "x.jsonl"
    res = CliRunner().invoke(app, ["store", "export", "--store", str(st.path), "--runs", "nosuch", "--out", str(out)])
    assert res.exit_code == 2, res.output
    assert "nosuch" in res.output and "'a'" in res.output and "it's b" in res.output
    assert not out.exists()


def test_runs_select_rows_in_both_formats(tmp_path: Path):
    st = _store(tmp_path)
    r = CliRunner().invoke(app, ["store", "export", "--store", str(st.path), "--runs", "it's b",
                                 "--out", str(tmp_path / "b.jsonl")])
    assert r.exit_code == 0, r.output
    recs = [json.loads(x) for x in (tmp_path / "b.jsonl").read_text().splitlines()]
    assert len(recs) == 6 and {x["run_id"] for x in recs} == {"it's b"}
    r = CliRunner().invoke(app, ["store", "export", "--store", str(st.path), "--format", "parquet", "--runs", "a",
                                 "--out", str(tmp_path / "pq")])
    assert r.exit_code == 0, r.output
    eps = pq.read_table(tmp_path / "pq" / "episodes.parquet")
    turns = pq.read_table(tmp_path / "pq" / "turns.parquet")
    assert set(eps.column("run_id").to_pylist()) == {"a"} and eps.num_rows == 6
    assert set(turns.column("episode_id").to_pylist()) <= set(eps.column("episode_id").to_pylist())
    assert json.loads(r.output)["turns"] == turns.num_rows > 0
    r = CliRunner().invoke(app, ["store", "export", "--store", str(st.path), "--format", "parquet",
                                 "--out", str(tmp_path / "all")])
    assert pq.read_table(tmp_path / "all" / "episodes.parquet").num_rows == 12
