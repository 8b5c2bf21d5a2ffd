"""The store's concurrency guarantees (docs/store.md), checked with real parallel processes.

- readers while writing: a reader opening the store in a tight loop never deletes, hides or halves
  a live ingest; every part it sees is whole and the episode count only grows;
- parallel writers: overlapping ingests of the same file commit each episode once;
- crash during commit: killed before the rename, nothing is visible and the next ingest cleans up;
  killed after it, the part is whole and re-ingesting adds nothing.

Each test is bounded in time (subprocess timeouts).
"""

from __future__ import annotations

import json
import os
import socket
import subprocess
import sys
import time
from itertools import islice
from pathlib import Path

import pytest
from helpers.procs import finish, spawn, start

from calib.errors import StoreError
from calib.sample_episodes import synthetic_records
from calib.store import Store

WORKER = Path(__file__).resolve().parent / "helpers" / "store_worker.py"
TIMEOUT = 240


def _write(path: Path, n: int, seed: int) -> Path:
    with open(path, "w", encoding="utf-8") as f:
        f.writelines(json.dumps(ep) + "\n" for ep in islice(synthetic_records(-(-n // 4), 4, seed=seed,
                                                                                run_id=f"run{seed}"), n))
    return path


def _spawn(*args: str) -> subprocess.Popen:
    return spawn("store_worker.py", *args)


def test_readers_never_lose_or_halve_a_live_ingest(tmp_path: Path):
    per_file, n_writers, files_each = 20, 3, 6
    store = tmp_path / "store"
    Store(store)  # an empty store, so that the readers start looking at once
    go, stop = tmp_path / "go", tmp_path / "stop"
    files = [[str(_write(tmp_path / f"w{w}-{i}.jsonl", per_file, seed=100 * w + i)) for i in range(files_each)]
             for w in range(n_writers)]
    readers = [_spawn("read", str(store), str(stop), str(tmp_path / f"reader{r}.jsonl")) for r in range(2)]
    writers = [_spawn("ingest", str(store), str(go), *fs) for fs in files]
    start(go, writers, TIMEOUT)
    try:
        outs = finish(writers, TIMEOUT)
    finally:
        stop.touch()
        finish(readers, TIMEOUT)
    summaries = [json.loads(line) for out in outs for line in out.splitlines()]
    assert len(summaries) == n_writers * files_each
    assert all(s["episodes"] == per_file for s in summaries), summaries
    st = Store(store, create=False)
    assert st.count() == per_file * n_writers * files_each
    assert st.count("ingest_log") == n_writers * files_each  # one row per ingest (parts may have been compacted)
    looks = 0
    for r in range(2):
        seen = [json.loads(line) for line in (tmp_path / f"reader{r}.jsonl").read_text().splitlines()]
        assert not [s for s in seen if "half_part" in s], "a reader saw a half-written part"
        counts = [s["episodes"] for s in seen]
        assert all(c % per_file == 0 for c in counts)  # whole ingests only
        assert counts == sorted(counts)  # nothing ever disappears
        looks += len(seen)
    assert looks > 10, "the readers did not run while the writers did"


def test_parallel_ingests_of_one_file_commit_each_episode_once(tmp_path: Path):
    n, k = 400, 4
    src = _write(tmp_path / "same.jsonl", n, seed=7)
    store, go = tmp_path / "store", tmp_path / "go"
    Store(store)
    writers = [_spawn("ingest", str(store), str(go), str(src)) for _ in range(k)]
    start(go, writers, TIMEOUT)
    summaries = [json.loads(out) for out in finish(writers, TIMEOUT)]
    st = Store(store, create=False)
    assert st.count() == n
    assert int(st.query("SELECT count(DISTINCT episode_id) AS d FROM episodes").d[0]) == n
    assert st.count("turns") == sum(s["turns"] for s in summaries)
    assert sum(s["episodes"] for s in summaries) == n
    assert sum(s["skipped"] for s in summaries) == (k - 1) * n
    assert all(s["quarantined"] == 0 for s in summaries)


@pytest.mark.parametrize("when", ["before", "after"])
def test_crash_during_commit(tmp_path: Path, when: str):
    n = 30
    src = _write(tmp_path / "a.jsonl", n, seed=11)
    store = tmp_path / "store"
    proc = subprocess.run([sys.executable, str(WORKER), f"crash-{when}-rename", str(store), str(src)],
                          capture_output=True, text=True, timeout=TIMEOUT, check=False)
    assert proc.returncode == -9, proc.stderr[-2000:]
    st = Store(store, create=False)
    assert st.count() == (0 if when == "before" else n)
    leftovers = list((store / "_staging").iterdir())
    assert leftovers  # the dead ingest left its lock (and, before the rename, its folder)
    proc = subprocess.run([sys.executable, "-m", "calib", "ingest", str(src), "--store", str(store)],
                          capture_output=True, text=True, timeout=TIMEOUT, check=False)
    assert proc.returncode == 0, proc.stderr[-2000:]
    assert st.count() == n and st.count("turns") > 0
    assert list((store / "_staging").iterdir()) == []  # the next writer removed the dead ingest's leftovers


def test_read_only_opens_delete_nothing_and_foreign_ingests_wait_for_the_timeout(tmp_path: Path):
    store = tmp_path / "store"
    Store(store)
    staging = store / "_staging"
    # a live-looking ingest of another machine, and one of ours whose process is gone
    (staging / "foreign").mkdir()
    (staging / "foreign.lock").write_text(json.dumps({"host": "elsewhere.example", "pid": 1}))
    (staging / "dead").mkdir()
    (staging / "dead.lock").write_text(json.dumps({"host": socket.gethostname(), "pid": 2**22 + 7}))
    Store(store, create=False).count()
    assert {p.name for p in staging.iterdir()} == {"foreign", "foreign.lock", "dead", "dead.lock"}
    Store(store).add_episodes(list(synthetic_records(1, 2, seed=1, run_id="x")), source="x")  # a writer cleans up
    assert {p.name for p in staging.iterdir()} == {"foreign", "foreign.lock"}  # another host's: not yet
    old = time.time() - 7 * 24 * 3600
    for p in ("foreign", "foreign.lock"):
        os.utime(staging / p, (old, old))
    Store(store).add_episodes(list(synthetic_records(1, 2, seed=2, run_id="y")), source="y")
    assert list(staging.iterdir()) == []


def test_only_an_empty_or_missing_directory_becomes_a_store(tmp_path: Path):
    (tmp_path / "docs").mkdir()
    (tmp_path / "docs" / "thesis.tex").write_text("precious")
    with pytest.raises(StoreError, match="not a calib store"):
        Store(tmp_path / "docs")
    assert [p.name for p in (tmp_path / "docs").iterdir()] == ["thesis.tex"]
    assert Store(tmp_path / "new").created
    (tmp_path / "empty").mkdir()
    assert Store(tmp_path / "empty").created
    assert not Store(tmp_path / "new").created


@pytest.mark.parametrize("name", ["../parts", "a/b", "..", ".", "", "x\\y", "/abs"])
def test_side_table_and_signal_names_are_checked(tmp_path: Path, name: str):
    import pandas as pd

    st = Store(tmp_path / "store")
    st.add_episodes(list(synthetic_records(1, 2, seed=1)), source="x")
    before = sorted(str(p) for p in st.path.rglob("*") if "signals" not in p.parts)
    if name:  # a signal name is data (issue 23): any name is stored under a hashed folder inside signals/
        st.write_signals(pd.DataFrame({"episode_id": ["e"], "turn_idx": [0], "value": [1.0]}), signal=name,
                         version="v1")
        assert st.signal_versions() == {name: "v1"}
        assert st.query("SELECT DISTINCT signal FROM signals")["signal"].tolist() == [name]
        st.drop_signal(name)
        assert st.signal_versions() == {}
    else:
        with pytest.raises(StoreError, match="invalid"):
            st.drop_signal(name)
    assert sorted(str(p) for p in st.path.rglob("*") if "signals" not in p.parts) == before
    with pytest.raises(StoreError, match="invalid"):
        st.write_table(name, pd.DataFrame({"a": [1]}))
    with pytest.raises(StoreError, match="invalid"):
        st.read_table(name)
    assert st.count() == 2  # nothing outside signals/ or tables/ was touched


def test_ingest_refuses_a_directory_that_is_not_a_store_and_says_when_it_creates_one(tmp_path: Path):
    from typer.testing import CliRunner

    from calib.cli import app

    src = _write(tmp_path / "a.jsonl", 3, seed=1)
    docs = tmp_path / "docs"
    docs.mkdir()
    (docs / "notes.txt").write_text("precious")
    res = CliRunner().invoke(app, ["ingest", str(src), "--store", str(docs)])
    assert res.exit_code == 1 and "not a calib store" in res.output and "Traceback" not in res.output
    assert [p.name for p in docs.iterdir()] == ["notes.txt"]
    res = CliRunner().invoke(app, ["ingest", str(src), "--store", str(tmp_path / "new")])
    assert res.exit_code == 0 and "created a new store" in res.output
    res = CliRunner().invoke(app, ["ingest", str(src), "--store", str(tmp_path / "new")])
    assert res.exit_code == 0 and "created a new store" not in res.output


def test_overlapping_writers_same_id_different_content_is_quarantined_at_commit(tmp_path: Path):
    """Two open ingests (one process is enough to overlap them): the second to commit re-checks ids
    under the commit lock, skips the identical episode and quarantines the one whose id now holds
    different content."""
    st = Store(tmp_path / "store")
    a, b = list(synthetic_records(1, 2, seed=1, run_id="r"))
    w1, w2 = st.begin_ingest(source="one"), st.begin_ingest(source="two")
    changed = {**b, "outcome": 1.0 - float(b["outcome"]), "episode_id": "same-id"}
    for w, recs in ((w1, [a, {**b, "episode_id": "same-id"}]), (w2, [a, changed])):
        for i, r in enumerate(recs):
            assert w.add(r, line=i + 1)
    r1, r2 = w1.commit(), w2.commit()
    assert (r1.episodes, r1.skipped_duplicates, r1.quarantined) == (2, 0, 0)
    assert (r2.episodes, r2.skipped_duplicates, r2.quarantined) == (0, 1, 1)
    assert st.count() == 2 and st.count("turns") == r1.turns
    q = [json.loads(line) for line in Path(r2.quarantine_file).read_text().splitlines()]
    assert q[0]["line"] == 2 and "concurrent ingest" in q[0]["reason"]
    assert list((st.path / "_staging").iterdir()) == []
