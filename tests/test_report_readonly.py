"""``calib report`` on a store it must not write, and never importing code a store folder names
(issue 14, item 4). Root ignores file modes, so "read-only" is what ``Store.is_writable`` says; the
test makes it say False and checks that not one file of the store changes."""

from __future__ import annotations

import json
from pathlib import Path

import pandas as pd
import pytest
from typer.testing import CliRunner

from calib.cli import app
from calib.sample_episodes import synthetic_records
from calib.store import Store


def _snapshot(root: Path) -> dict[str, int]:
    return {str(p.relative_to(root)): p.stat().st_mtime_ns for p in root.rglob("*")}


@pytest.fixture
def store(tmp_path: Path) -> Store:
    st = Store(tmp_path / "store")
    st.add_episodes(list(synthetic_records(3, 8, seed=3)), source="x")
    return st


def test_report_on_a_read_only_store_writes_nothing_there(store: Store, tmp_path: Path, monkeypatch):
    monkeypatch.setattr(Store, "is_writable", lambda self: False)
    before = _snapshot(store.path)
    res = CliRunner().invoke(app, ["report", "--store", str(store.path), "--out", str(tmp_path / "r" / "index.html"),
                                   "--max-episodes", "4"])
    assert res.exit_code == 0, res.output
    assert (tmp_path / "r" / "index.html").stat().st_size > 0
    assert _snapshot(store.path) == before
    assert res.output.count("read-only") == 1, res.output  # said once
    html = (tmp_path / "r" / "index.html").read_text()
    assert "gold_match" in html  # the signals were computed (in a scratch copy) all the same


def test_report_never_imports_code_named_by_a_store_folder(store: Store, tmp_path: Path, monkeypatch):
    marker = tmp_path / "imported"
    (tmp_path / "mods").mkdir()
    (tmp_path / "mods" / "calib_probe_mod.py").write_text(
        f"open({str(marker)!r}, 'w').write('pwned')\n\ndef fn(episode, turn):\n    return 1.0\n"
    )
    monkeypatch.syspath_prepend(str(tmp_path / "mods"))
    turns = store.query("SELECT episode_id, turn_idx FROM turns")
    store.write_signals(turns.assign(value=0.5), signal="calib_probe_mod:fn", version="1")
    res = CliRunner().invoke(app, ["report", "--store", str(store.path), "--out", str(tmp_path / "r.html"),
                                   "--max-episodes", "4", "--json"])
    assert res.exit_code == 0, res.output
    assert not marker.exists(), "calib report imported a module named by a folder inside the store"
    assert json.loads(res.output.strip().splitlines()[-1])["bytes"] > 0
    assert isinstance(pd.read_parquet(next((store.path / "signals").rglob("*.parquet"))), pd.DataFrame)
