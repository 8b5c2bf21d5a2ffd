"""Compaction (issue 23, item 8): ``calib store compact`` and automatic compaction keep every row once,
keep one ingest_log row per ingest, are safe for readers and writers running at the same time, and
survive a kill at any step. Also: the duplicate-id check of an ingest reads what the ingest holds.
"""

from __future__ import annotations

import json
import os
import shutil
import subprocess
import sys
import time
from itertools import islice
from pathlib import Path

import pyarrow.parquet as pq
import pytest
from helpers.procs import finish, spawn, start
from typer.testing import CliRunner

import calib.store.compact as compact_mod
import calib.store.files as files_mod
import calib.store.writer as writer_mod
from calib.cli import app
from calib.ingest import ingest_file
from calib.sample_episodes import synthetic_records
from calib.store import Store
from calib.store.compact import compact
from calib.store.ops import info

HELPERS = Path(__file__).resolve().parent / "helpers"
TIMEOUT = 240


def _write(path: Path, n: int, seed: int, run: str | None = None) -> Path:
    """``n`` synthetic episodes; their ids hold the run (default ``r<seed>``), so seeds do not clash."""
    recs = synthetic_records(-(-n // 2), 2, seed=seed, run_id=run or f"r{seed}")
    with open(path, "w", encoding="utf-8") as f:
        f.writelines(json.dumps(ep) + "\n" for ep in islice(recs, n))
    return path


def _snapshot(st: Store) -> dict:
    """Everything a reader sees, in a comparable form."""
    con = st.connect()
    try:
        eps = con.execute("SELECT * EXCLUDE (ingest_id) FROM episodes ORDER BY episode_id").fetchall()
        turns = con.execute("SELECT * FROM turns ORDER BY episode_id, turn_idx").fetchall()
        sigs = con.execute("SELECT * FROM signals ORDER BY signal, episode_id, turn_idx").fetchall()
        log = con.execute("SELECT * FROM ingest_log ORDER BY ingest_id").fetchall()
        by_ingest = con.execute("SELECT ingest_id, count(*) FROM episodes GROUP BY 1 ORDER BY 1").fetchall()
    finally:
        con.close()
    d = info(st)
    d.pop("signal_versions")
    d.pop("store")
    return {"episodes": eps, "turns": turns, "signals": sigs, "ingest_log": log, "by_ingest": by_ingest, "info": d}


def _signals(st: Store, name: str, parts: int) -> None:
    """``parts`` writes of one signal, a slice of the episodes each (as analyze runs after ingests)."""
    turns = st.query("SELECT episode_id, turn_idx FROM turns ORDER BY episode_id, turn_idx")
    ids = sorted(set(turns.episode_id))
    for k in range(parts):
        mine = ids[k::parts]
        st.write_signals(turns[turns.episode_id.isin(mine)].assign(value=float(k)), signal=name, version="1")


def _live(st: Store) -> list[str]:
    return st._live_part_names()


# ----------------------------------------------------------------------------- what compaction keeps


def test_compact_keeps_every_row_and_one_ingest_log_row_per_ingest(tmp_path: Path):
    st = Store(tmp_path / "store")
    srcs = [_write(tmp_path / f"f{i}.jsonl", 3 + i, seed=i) for i in range(5)]
    with open(srcs[1], "a", encoding="utf-8") as f:
        f.write("{not json\n")  # a quarantined record: the ingest_log keeps its count
    for s in srcs:
        r = ingest_file(st, s)
        assert r.episodes > 0 and r.quarantined == (s == srcs[1])
    _signals(st, "sig_a", 3)
    _signals(st, "sig_b", 2)
    before = _snapshot(st)
    assert len(_live(st)) == 5 and len(st._signal_parts()) == 5

    res = CliRunner().invoke(app, ["store", "compact", "--store", str(st.path), "--json"])
    assert res.exit_code == 0, res.output
    r = json.loads(res.output)
    assert (r["parts_before"], r["parts_after"], r["signal_files_before"], r["signal_files_after"]) == (5, 1, 5, 2)
    assert _snapshot(st) == before
    assert len(_live(st)) == 1 and len(st._signal_parts()) == 2
    assert len(list((st.path / "parts").iterdir())) == 6  # the replaced parts wait for the grace period

    # re-ingesting adds nothing; a new ingest adds to it; a second compaction merges the merged part again
    assert all(ingest_file(st, s).episodes == 0 for s in srcs)
    ingest_file(st, _write(tmp_path / "g.jsonl", 4, seed=50))
    compact(st)
    assert len(_live(st)) == 1 and st.count() == len(before["episodes"]) + 4
    assert st.count("ingest_log") == 6
    # after the grace period a writer deletes what was replaced; readers see the same
    now = _snapshot(st)
    assert st.drop_replaced(grace_s=0) == 7 + 5  # 5 + 1 merged + 1 parts; 3 + 2 signal files
    assert sorted(p.name for p in (st.path / "parts").iterdir()) == _live(st)
    assert _snapshot(st) == now
    assert list((st.path / "_staging").iterdir()) == [] and list((st.path / "_trash").iterdir()) == []


def test_automatic_compaction_bounds_the_part_count(tmp_path: Path, monkeypatch):
    monkeypatch.setattr(compact_mod, "COMPACT_AFTER_PARTS", 4)
    st = Store(tmp_path / "store")
    srcs = [_write(tmp_path / f"f{i}.jsonl", 1, seed=i) for i in range(14)]
    for i, s in enumerate(srcs):
        assert ingest_file(st, s).episodes == 1
        assert len(_live(st)) <= 5, i
        st.write_signals(st.query("SELECT episode_id, turn_idx FROM turns").assign(value=1.0), signal="s",
                         version="1")
        assert len(st._signal_parts()) <= 5, i
    assert st.count() == 14 and st.count("ingest_log") == 14
    assert st.count("signals") == st.count("turns")
    assert int(st.query("SELECT count(DISTINCT episode_id) AS d FROM episodes").d[0]) == 14


def test_a_failed_automatic_compaction_leaves_the_ingest_committed(tmp_path: Path, monkeypatch):
    def broken(store):
        raise OSError(28, "No space left on device")

    monkeypatch.setattr(compact_mod, "maybe_compact", broken)
    st = Store(tmp_path / "store")
    with pytest.warns(UserWarning, match="automatic compaction .* failed .* the ingest is committed"):
        r = ingest_file(st, _write(tmp_path / "a.jsonl", 3, seed=1))
    assert r.episodes == 3 and st.count() == 3


def test_automatic_compaction_is_size_tiered():
    """A part more than twice the size of the smaller ones together waits; the rest merge (oldest first)."""
    small = [("a", 40), ("b", 1), ("c", 9), ("d", 1), ("e", 1)]
    assert compact_mod._tiered(small) == [("b", 1), ("d", 1), ("e", 1)]  # 40 > 2 x 12, then 9 > 2 x 3
    assert compact_mod._tiered(small + [("f", 3)]) == [("b", 1), ("c", 9), ("d", 1), ("e", 1), ("f", 3)]
    assert compact_mod._tiered([("a", 20), ("b", 5), ("c", 5)]) == [("a", 20), ("b", 5), ("c", 5)]
    assert compact_mod._tiered([("a", 100), ("b", 1)]) == [("a", 100), ("b", 1)]  # two parts: merged anyway


def test_a_reader_that_listed_the_old_parts_reads_them_until_the_grace_period_ends(tmp_path: Path):
    st = Store(tmp_path / "store")
    for i in range(3):
        ingest_file(st, _write(tmp_path / f"f{i}.jsonl", 4, seed=i))
    con = st.connect()  # lists the three parts now, reads them later
    compact(st)
    assert st.drop_replaced() == 0  # within the grace period: nothing deleted
    assert con.execute("SELECT count(*), count(DISTINCT episode_id) FROM episodes").fetchone() == (12, 12)
    con.close()
    assert st.count() == 12


def test_big_parts_are_left_alone(tmp_path: Path, monkeypatch):
    monkeypatch.setattr(compact_mod, "SMALL_PART_EPISODES", 5)
    st = Store(tmp_path / "store")
    big = ingest_file(st, _write(tmp_path / "big.jsonl", 6, seed=1)).ingest_id
    for i in range(3):
        ingest_file(st, _write(tmp_path / f"f{i}.jsonl", 2, seed=10 + i))
    r = compact(st)
    assert big in _live(st) and len(_live(st)) == 2  # the big part, and one merge of the three small ones
    assert r.episodes_merged == 6 and st.count() == 12


# ----------------------------------------------------------------------------- the duplicate check


@pytest.mark.parametrize("compacted", [False, True])
def test_the_duplicate_check_reads_the_row_groups_of_the_new_ids_not_the_store(tmp_path: Path, monkeypatch,
                                                                              compacted: bool):
    """A store of about 3,000 episodes, in two ingests' files or one compacted part, episodes files sorted
    by id in row groups of 100 rows here: a one-record ingest reads at most one row group per episodes
    file (the old check read every id of the store at the start of every ingest)."""
    monkeypatch.setattr(compact_mod, "ID_ROW_GROUP", 100)
    monkeypatch.setattr(writer_mod, "ID_ROW_GROUP", 100)
    st = Store(tmp_path / "store")
    no_id = lambda recs: ({k: v for k, v in r.items() if k != "episode_id"} for r in recs)  # ids: content hashes
    for i in range(2):
        st.add_episodes(no_id(synthetic_records(750, 2, seed=i, run_id=f"r{i}")), source=f"s{i}")
    if compacted:
        compact(st)
    files = len(st._parts("episodes"))
    assert st.count() > 2900 and files == (1 if compacted else 2)  # (a few synthetic episodes repeat: one copy each)

    read = []
    parts = str(st.path / "parts")
    real_read_table, real_groups = pq.read_table, pq.ParquetFile.read_row_groups

    def read_table(source, *a, **kw):
        t = real_read_table(source, *a, **kw)
        if str(source).startswith(parts):
            read.append(t.num_rows)
        return t

    def read_row_groups(self, *a, **kw):
        t = real_groups(self, *a, **kw)
        read.append(t.num_rows)
        return t

    monkeypatch.setattr(pq, "read_table", read_table)
    monkeypatch.setattr(pq.ParquetFile, "read_row_groups", read_row_groups)
    new = list(no_id(synthetic_records(1, 1, seed=99, run_id="new")))
    assert st.add_episodes(new, source="new").episodes == 1
    assert sum(read) <= files * 100, read  # the chunk check; the commit check reuses what it read
    read.clear()
    again = st.add_episodes(new, source="new")
    assert again.episodes == 0 and again.skipped_duplicates == 1
    assert 0 < sum(read) <= files * 100 + 1, read  # and the new one-row part


# ----------------------------------------------------------------------------- concurrency and kills


def test_readers_and_writers_during_automatic_compaction(tmp_path: Path):
    """Three writers ingest 24 files with automatic compaction after 3 parts, while two readers count in
    a tight loop: every look sees whole ingests only, each episode once, and counts that only grow."""
    per_file, n_writers, files_each = 5, 3, 8
    store = tmp_path / "store"
    Store(store)
    go, stop = tmp_path / "go", tmp_path / "stop"
    files = [[str(_write(tmp_path / f"w{w}-{i}.jsonl", per_file, seed=100 * w + i))
              for i in range(files_each)] for w in range(n_writers)]
    env = {"CALIB_COMPACT_AFTER": "3"}
    readers = [spawn("compact_worker.py", "read", str(store), str(stop), str(tmp_path / f"r{r}.jsonl"), env=env)
               for r in range(2)]
    writers = [spawn("store_worker.py", "ingest", str(store), str(go), *fs, env=env) for fs in files]
    start(go, writers, TIMEOUT)
    try:
        finish(writers, TIMEOUT)
    finally:
        stop.touch()
        finish(readers, TIMEOUT)
    st = Store(store, create=False)
    total = per_file * n_writers * files_each
    assert st.count() == total and st.count("ingest_log") == n_writers * files_each
    assert any(p.startswith("merged-") for p in _live(st)) and len(_live(st)) < n_writers * files_each
    looks = []
    for r in range(2):
        seen = [json.loads(line) for line in (tmp_path / f"r{r}.jsonl").read_text().splitlines()]
        assert all(s["episodes"] == s["distinct"] for s in seen), "a reader saw an episode twice"
        counts = [s["episodes"] for s in seen]
        assert all(c % per_file == 0 for c in counts), "a reader saw part of an ingest"
        assert counts == sorted(counts)
        looks += seen
    assert len(looks) > 10, "the readers did not run while the writers did"


@pytest.fixture(scope="module")
def template(tmp_path_factory) -> tuple[Path, dict]:
    """A store with a merged part whose two replaced parts still exist, a newer ingest and a signal of
    two files: a compaction of it deletes, merges and writes at every kind of step."""
    d = tmp_path_factory.mktemp("tpl")
    st = Store(d / "store")
    for i in range(2):
        ingest_file(st, _write(d / f"a{i}.jsonl", 2, seed=i))
    compact(st)
    ingest_file(st, _write(d / "b.jsonl", 2, seed=10))
    _signals(st, "sig_a", 2)
    old = time.time() - 2 * files_mod.REPLACED_GRACE_S
    merged = next(p for p in (st.path / "parts").iterdir() if p.name.startswith("merged-"))
    os.utime(merged / "replaces.json", (old, old))  # replaced long ago
    return st.path, _snapshot(st)


def test_a_kill_at_any_step_of_compaction_loses_and_duplicates_nothing(tmp_path: Path, template, monkeypatch):
    src, expected = template
    steps = None
    n = 0
    while steps is None:
        n += 1
        assert n < 200, "compaction never ran to the end"
        store = tmp_path / f"s{n}"
        shutil.copytree(src, store)
        proc = subprocess.run([sys.executable, str(HELPERS / "compact_worker.py"), "kill-at", str(store), str(n)],
                              capture_output=True, text=True, timeout=TIMEOUT, check=False)
        if proc.returncode == 0:
            steps = json.loads(proc.stdout)["steps"]
            assert steps == n - 1
        else:
            assert proc.returncode == -9, proc.stderr[-2000:]
        st = Store(store, create=False)
        assert _snapshot(st) == expected, f"after a kill at step {n}"
        # the next writer cleans up, and the store still reads the same
        monkeypatch.setattr(files_mod, "REPLACED_GRACE_S", 0.0)
        compact(st)
        assert _snapshot(st) == expected, f"after a kill at step {n} and a compaction"
        assert len(_live(st)) == 1 and len(st._signal_parts()) == 1
        assert list((store / "_staging").iterdir()) == [] and list((store / "_trash").iterdir()) == []
        assert sorted(p.name for p in (store / "parts").iterdir()) == _live(st)
        assert not [p for p in (store / "signals").rglob(".*") if p.name != ".lock"]
        monkeypatch.undo()
        shutil.rmtree(store)
    assert steps >= 15  # the kills covered the deletions, the merge, its commit and the signal merge
