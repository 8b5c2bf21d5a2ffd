"""Store scaling: 1,000 one-record ingests in a row into one store (issue 23, item 8).

Each ingest commits one part; without compaction a store of many small ingests reads one file per
ingest, and ingests and ``store info`` slow down as it grows (2.6 s -> 9.1 s per one-record ingest at
741 parts, before compaction existed). Everything runs through the Python API in one process
(``calib.ingest.ingest_file`` on a one-line JSONL file, ``calib.store.ops.info``), so the figures
measure the store, not process start-up. The records are the benches' episodes (``bench_records``:
about 10 turns each).

Figures:
- ``ingest_last_over_first``: mean seconds of the last ``--window`` (100) ingests over the mean of the
  first ``--window``; automatic compaction (``calib.store.compact``) runs inside some of them, in both
  windows. Goal <= 1.3.
- ``info_vs_fresh``: ``store info`` on that store over ``store info`` on a store with the same
  episodes ingested in one go (least of ``--repeat`` alternating runs each). Goal <= 1.5.

Usage: python bench/store_scale.py [--ingests 1000] [--window 100] [--repeat 5] [--quick]
"""

from __future__ import annotations

import argparse
import json
import shutil
import statistics
import sys
import tempfile
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))
sys.path.insert(0, str(Path(__file__).resolve().parent))

from _common import bench_records, figure_line


def _write_files(work: Path, n: int) -> list[Path]:
    """One JSONL file per record (what one ``calib ingest`` of a one-record dump reads)."""
    files = []
    for i, ep in enumerate(bench_records(n + 8)):  # whole groups of 8: enough for n
        if i == n:
            break
        f = work / "in" / f"{i:05d}.jsonl"
        f.parent.mkdir(exist_ok=True)
        f.write_text(json.dumps(ep) + "\n", encoding="utf-8")
        files.append(f)
    return files


def _ingest_one_by_one(store, files: list[Path]) -> list[float]:
    from calib.ingest import ingest_file

    seconds = []
    for f in files:
        t0 = time.perf_counter()
        r = ingest_file(store, f)
        seconds.append(time.perf_counter() - t0)
        assert r.episodes == 1 and r.quarantined == 0, r.summary()
    return seconds


def _info_seconds(stores: list, repeat: int) -> list[float]:
    """Least wall time of ``calib.store.ops.info`` per store, the stores timed alternately."""
    from calib.store.ops import info

    best = [float("inf")] * len(stores)
    for _ in range(repeat):
        for k, st in enumerate(stores):
            t0 = time.perf_counter()
            info(st)
            best[k] = min(best[k], time.perf_counter() - t0)
    return best


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--ingests", type=int, default=1000)
    ap.add_argument("--window", type=int, default=100, help="ingests averaged at the start and at the end")
    ap.add_argument("--repeat", type=int, default=5, help="store info runs per store (the least counts)")
    ap.add_argument("--quick", action="store_true", help="150 ingests, windows of 30 (for tests)")
    args = ap.parse_args()
    n, window = (150, 30) if args.quick else (args.ingests, args.window)
    if n < 2 * window:
        ap.error("--ingests must be at least twice --window")

    from calib.ingest import ingest_file
    from calib.store import Store
    from calib.store.compact import COMPACT_AFTER_PARTS
    from calib.store.ops import info

    work = Path(tempfile.mkdtemp(prefix="calib-bench-store-scale-"))
    t_start = time.perf_counter()
    try:
        files = _write_files(work, n)
        many = Store(work / "many")
        seconds = _ingest_one_by_one(many, files)
        one_go = work / "all.jsonl"
        with open(one_go, "w", encoding="utf-8") as out:
            out.writelines(f.read_text(encoding="utf-8") for f in files)
        fresh = Store(work / "fresh")
        ingest_file(fresh, one_go)
        a, b = info(many), info(fresh)
        same = all(a[k] == b[k] for k in ("episodes", "turns", "groups", "tasks", "runs", "errors", "success_rate"))
        assert same and a["episodes"] == n and a["ingests"] == n, (a, b)
        info_many, info_fresh = _info_seconds([many, fresh], args.repeat)
        first, last = statistics.mean(seconds[:window]), statistics.mean(seconds[-window:])
        ratio, info_ratio = last / first, info_many / info_fresh
        parts = len(many._live_part_names())
        total = time.perf_counter() - t_start
        print(f"{n:,} one-record ingests into one store (automatic compaction past {COMPACT_AFTER_PARTS} small parts):")
        print(f"  first {window}: mean {first * 1000:.0f} ms; last {window}: mean {last * 1000:.0f} ms; "
              f"median {statistics.median(seconds) * 1000:.0f} ms, max {max(seconds) * 1000:.0f} ms")
        print(f"  live parts at the end: {parts} (of {n} ingests); ingest_log rows: {a['ingests']:,}")
        print(f"  store info: {info_many * 1000:.0f} ms on it, {info_fresh * 1000:.0f} ms on the same episodes "
              f"ingested in one go")
        print(f"  wall time of the bench: {total:.0f} s")
        details = {"ingests": n, "window": window, "first_mean_s": round(first, 4), "last_mean_s": round(last, 4),
                   "median_s": round(statistics.median(seconds), 4), "max_s": round(max(seconds), 3),
                   "live_parts": parts, "compact_after_parts": COMPACT_AFTER_PARTS, "wall_s": round(total, 1)}
        print(figure_line("store_scale", "ingest_last_over_first", round(ratio, 3), "<= 1.3", quick=args.quick,
                          details=details))
        print(figure_line("store_scale", "info_vs_fresh", round(info_ratio, 3), "<= 1.5", quick=args.quick,
                          details={"info_s": round(info_many, 4), "fresh_info_s": round(info_fresh, 4),
                                   "same_counts": same}, also=same))
    finally:
        shutil.rmtree(work, ignore_errors=True)


if __name__ == "__main__":
    main()
