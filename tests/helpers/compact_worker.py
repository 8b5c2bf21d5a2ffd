"""Worker processes for tests/test_store_compact.py (real processes, real files).

    compact_worker.py kill-at STORE N     run ``calib.store.compact.compact`` and die by SIGKILL just
                                          before its N-th file-system step; exit 0 if it has fewer steps
    compact_worker.py read STORE STOP OUT open the store in a tight loop until STOP exists; record each
                                          look (episodes, distinct ids, ingest_log rows) into OUT (JSONL)

A *step* is a top-level call of ``os.rename``, ``os.replace``, ``os.unlink``, ``os.mkdir``,
``shutil.rmtree`` or ``pyarrow.parquet.write_table`` (calls made inside another step are part of it).
The kill mode patches them in this process only; product code has no test switch.
"""

from __future__ import annotations

import json
import os
import shutil
import signal
import sys
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[2]))


def kill_at(store: str, n: int) -> None:
    import pyarrow.parquet as pq

    from calib.store import Store
    from calib.store.compact import compact

    count, depth = [0], [0]

    def step(fn):
        def wrapped(*a, **kw):
            if depth[0] == 0:
                count[0] += 1
                if count[0] == n:
                    os.kill(os.getpid(), signal.SIGKILL)
            depth[0] += 1
            try:
                return fn(*a, **kw)
            finally:
                depth[0] -= 1
        return wrapped

    for mod, name in ((os, "rename"), (os, "replace"), (os, "unlink"), (os, "mkdir"), (shutil, "rmtree"),
                      (pq, "write_table")):
        setattr(mod, name, step(getattr(mod, name)))
    compact(Store(store, create=False))
    print(json.dumps({"steps": count[0]}))


def read(store: str, stop: str, out: str) -> None:
    from calib.store import Store

    with open(out, "w", encoding="utf-8") as f:
        while not Path(stop).exists():
            con = Store(store, create=False).connect()
            try:
                n, distinct = con.execute("SELECT count(*), count(DISTINCT episode_id) FROM episodes").fetchone()
                turns = con.execute("SELECT count(*) FROM turns").fetchone()[0]
                ingests = con.execute("SELECT count(*) FROM ingest_log").fetchone()[0]
            finally:
                con.close()
            f.write(json.dumps({"episodes": n, "distinct": distinct, "turns": turns, "ingests": ingests}) + "\n")
            f.flush()


def main() -> None:
    mode, args = sys.argv[1], sys.argv[2:]
    if mode == "kill-at":
        kill_at(args[0], int(args[1]))
    elif mode == "read":
        read(*args)
    else:
        raise SystemExit(f"unknown mode {mode}")


if __name__ == "__main__":
    main()
