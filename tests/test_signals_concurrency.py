"""Two ``calib analyze`` at once store each signal value once (issue 23, item 6), with real processes.

The workers (tests/helpers/signals_worker.py) all decide what to compute from the same store and only
then write, so every one of them tries to write every value: what used to double the signals table.
"""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path

from helpers.procs import finish, start

from calib.sample_episodes import synthetic_records
from calib.signals.compute import compute_signals
from calib.store import Store
from calib.store.ops import info

WORKER = Path(__file__).resolve().parent / "helpers" / "signals_worker.py"
TIMEOUT = 300




def test_parallel_analyze_writes_each_signal_value_once(tmp_path: Path):
    store = Store(tmp_path / "store")
    store.add_episodes(list(synthetic_records(6, 4, seed=3)), source="x")
    go, k = tmp_path / "go", 3
    procs = [subprocess.Popen([sys.executable, str(WORKER), "analyze", str(store.path), str(go), str(k),
                               str(tmp_path / f"out{i}")], stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
             for i in range(k)]
    start(go, procs, TIMEOUT)
    finish(procs, TIMEOUT)
    assert len(list(tmp_path.glob("go.writing.*"))) == k  # every worker reached a write: they did race

    st = Store(store.path, create=False)
    dup = st.query("SELECT episode_id, turn_idx, signal, count(*) AS n FROM signals GROUP BY ALL HAVING n > 1")
    assert dup.empty, dup.head()
    turns = st.count("turns")
    counts = info(st)["signals"]
    assert counts and all(n == turns for n in counts.values()), (turns, counts)
    assert st.count("signals") == turns * len(counts)
    # and a further analyze finds everything there
    again = compute_signals(st, list(counts))
    assert again.written == {} and sorted(again.cached) == sorted(counts)


def test_write_signals_keeps_the_values_already_in_the_version(tmp_path: Path):
    """One process, two writes of overlapping episodes under one version: the second adds only the
    episodes that have no values yet, and says how many rows it wrote."""
    st = Store(tmp_path / "store")
    st.add_episodes(list(synthetic_records(2, 2, seed=1)), source="x")
    turns = st.query("SELECT episode_id, turn_idx FROM turns ORDER BY ALL")
    ids = sorted(set(turns.episode_id))
    first = turns[turns.episode_id.isin(ids[:2])]
    assert st.write_signals(first.assign(value=1.0), signal="s", version="1") == len(first)
    assert st.write_signals(turns.assign(value=2.0), signal="s", version="1") == len(turns) - len(first)
    got = st.query("SELECT episode_id, turn_idx, value FROM signals ORDER BY ALL")
    assert len(got) == len(turns)
    assert set(got[got.episode_id.isin(ids[:2])].value) == {1.0}  # kept, not overwritten
    # a new version starts afresh
    assert st.write_signals(turns.assign(value=3.0), signal="s", version="2") == len(turns)
    assert set(st.query("SELECT value FROM signals").value) == {3.0}
