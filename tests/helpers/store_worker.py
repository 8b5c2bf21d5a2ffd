"""Worker processes for tests/test_store_concurrency.py (real processes, real files).

    store_worker.py ingest STORE GO FILE...     wait for the GO file, then ingest each FILE in turn;
                                                prints one JSON summary per file
    store_worker.py read STORE STOP OUT         open the store in a tight loop until STOP exists,
                                                record (episodes, parts) of each look into OUT (JSONL)
    store_worker.py crash-before-rename STORE FILE   die by SIGKILL just before the commit rename
    store_worker.py crash-after-rename STORE FILE    die by SIGKILL just after the commit rename

The crash modes patch ``os.rename`` in this process only; product code has no test switch.
"""

from __future__ import annotations

import json
import os
import signal
import sys
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[2]))


def _wait_for(path: Path, timeout: float = 60.0) -> None:
    deadline = time.monotonic() + timeout
    while not path.exists():
        if time.monotonic() > deadline:
            raise SystemExit(f"{path} never appeared")
        time.sleep(0.001)


def ingest(store: str, go: str, files: list[str]) -> None:
    from calib.ingest import ingest_file
    from calib.store import Store

    Path(f"{go}.ready.{os.getpid()}").touch()  # imported and ready: the test starts everybody at once
    _wait_for(Path(go))
    for f in files:
        r = ingest_file(Store(store), Path(f))
        print(json.dumps({"file": f, "episodes": r.episodes, "turns": r.turns,
                          "skipped": r.skipped_duplicates, "quarantined": r.quarantined}), flush=True)


def read(store: str, stop: str, out: str) -> None:
    import pyarrow.parquet as pq

    from calib.store import Store

    with open(out, "w", encoding="utf-8") as f:
        while not Path(stop).exists():
            if not Path(store, "parts").is_dir():
                continue
            st = Store(store, create=False)
            n = st.count()
            parts = sorted(p for p in (st.path / "parts").iterdir() if p.is_dir())
            # every visible part is whole: its manifest's count matches its Parquet files
            for p in parts:
                if not (p / "manifest.json").exists():
                    f.write(json.dumps({"half_part": p.name, "missing": "manifest.json"}) + "\n")
                    continue
                m = json.loads((p / "manifest.json").read_text())
                rows = sum(pq.read_metadata(x).num_rows for x in p.glob("episodes-*.parquet"))
                if rows != m["episodes"]:
                    f.write(json.dumps({"half_part": p.name, "rows": rows, "manifest": m["episodes"]}) + "\n")
            f.write(json.dumps({"episodes": n, "parts": len(parts)}) + "\n")
            f.flush()


def crash(store: str, file: str, after: bool) -> None:
    from calib.ingest import ingest_file
    from calib.store import Store
    from calib.store import writer as writer_mod

    real_rename = os.rename

    def rename(src, dst, *a, **kw):
        if Path(dst).parent.name == "parts":
            if not after:
                os.kill(os.getpid(), signal.SIGKILL)
            real_rename(src, dst, *a, **kw)
            os.kill(os.getpid(), signal.SIGKILL)
        return real_rename(src, dst, *a, **kw)

    writer_mod.os.rename = rename  # this process only
    ingest_file(Store(store), Path(file))


def main() -> None:
    mode, args = sys.argv[1], sys.argv[2:]
    if mode == "ingest":
        ingest(args[0], args[1], args[2:])
    elif mode == "read":
        read(*args)
    elif mode in ("crash-before-rename", "crash-after-rename"):
        crash(args[0], args[1], after=mode == "crash-after-rename")
    else:
        raise SystemExit(f"unknown mode {mode}")


if __name__ == "__main__":
    main()
