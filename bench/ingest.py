"""Ingest throughput: 100k synthetic episodes (~1M turns) into a fresh store.

Baseline, measured in the same run on the same file: a straightforward loader that ``json.loads``
each line, builds one row per episode and one per turn with plain Python, and writes them with
pandas ``to_parquet``, with no validation, no quarantine and no atomic commit. calib does strictly
more work (validation, canonical JSON, content hashing, idempotency, atomic commit); its native
JSONL ingest runs through the columnar fast path (``calib/ingest/fast.py``: DuckDB parses, checks,
canonicalises and segments, hashlib hashes; the per-record path takes only the lines the fast path
does not). Goals (issue 15): at least 1.0x the baseline's speed with peak memory under 2 GiB; and
under 60 s for 100k.

``--per-record`` also times calib's per-record path (``CALIB_INGEST_FAST=0``) on the same file, to
show what the fast path buys. Peak RSS is measured in a child process per loader
(``resource.getrusage(RUSAGE_SELF)`` there), so the numbers do not include the generator.

The figure is the ratio of wall times; the CPU times of both (``time.process_time`` in each child)
are printed too: on a machine with other load they show the code's speed with less noise.

``--sql-profile`` also prints the CPU time of each SQL statement of the fast path on one chunk.

Usage: python bench/ingest.py [--episodes 100000] [--per-record] [--sql-profile] [--quick]
"""

from __future__ import annotations

import argparse
import json
import multiprocessing as mp
import resource
import shutil
import sys
import tempfile
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))
sys.path.insert(0, str(Path(__file__).resolve().parent))

from _common import bench_records, figure_line


def _generate(path: Path, n: int) -> int:
    """The analyze bench's episodes (``bench_records``), written as native JSONL."""
    turns = 0
    with open(path, "w", encoding="utf-8") as f:
        for ep in bench_records(n):
            turns += sum(1 for m in ep["messages"] if m["role"] == "assistant")
            f.write(json.dumps(ep) + "\n")
    return turns


def _run_calib(src: str, store: str, fast: bool, q: mp.Queue) -> None:
    import os

    os.environ["CALIB_INGEST_FAST"] = "1" if fast else "0"
    from calib.ingest import ingest_file
    from calib.store import Store

    t0, c0 = time.perf_counter(), time.process_time()
    r = ingest_file(Store(store), Path(src))
    dt = time.perf_counter() - t0
    q.put({"seconds": dt, "cpu_seconds": time.process_time() - c0, "episodes": r.episodes, "turns": r.turns,
           "quarantined": r.quarantined,
           "peak_rss_mb": resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024})


def _run_baseline(src: str, out: str, q: mp.Queue) -> None:
    import pandas as pd

    t0, c0 = time.perf_counter(), time.process_time()
    eps, turns = [], []
    with open(src, encoding="utf-8") as f:
        for line in f:
            rec = json.loads(line)
            eid = f"{rec['task_id']}-{len(eps)}"
            eps.append({"episode_id": eid, "run_id": rec["run_id"], "task_id": rec["task_id"],
                        "outcome": rec["outcome"], "messages": json.dumps(rec["messages"])})
            t = 0
            for m in rec["messages"]:
                if m["role"] == "assistant":
                    call = (m.get("tool_calls") or [None])[0]
                    turns.append({"episode_id": eid, "turn_idx": t,
                                  "tool_name": call["function"]["name"] if call else None,
                                  "tool_args": call["function"]["arguments"] if call else None,
                                  "text": m.get("content")})
                    t += 1
    Path(out).mkdir(parents=True, exist_ok=True)
    pd.DataFrame(eps).to_parquet(Path(out) / "episodes.parquet")
    pd.DataFrame(turns).to_parquet(Path(out) / "turns.parquet")
    dt = time.perf_counter() - t0
    q.put({"seconds": dt, "cpu_seconds": time.process_time() - c0, "episodes": len(eps), "turns": len(turns),
           "peak_rss_mb": resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024})


def _sql_profile(src: Path) -> None:
    """CPU seconds per SQL statement of the fast path on the file's first chunk (least of 3 runs)."""
    from calib.ingest.fast import FastNative, iter_line_chunks
    from calib.store.writer import CHUNK_EPISODES
    from calib.tools import airline_catalogue

    lines, texts, _ = next(iter_line_chunks(src, CHUNK_EPISODES))
    fast = FastNative(airline_catalogue(), cli_run=None, default_run="bench")
    try:
        steps = fast.profile(lines, texts)
    finally:
        fast.close()
    total = sum(t for _, t in steps)
    print(f"fast-path SQL on one chunk of {len(lines):,} lines: {total:.3f} s CPU")
    print("  " + "  ".join(f"{name} {t:.3f}" for name, t in steps))


def _in_child(fn, *args) -> dict:
    ctx = mp.get_context("spawn")
    q = ctx.Queue()
    p = ctx.Process(target=fn, args=(*args, q))
    p.start()
    res = q.get()
    p.join()
    return res


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--episodes", type=int, default=100_000)
    ap.add_argument("--per-record", action="store_true", help="also time calib's per-record path")
    ap.add_argument("--quick", action="store_true", help="2,000 episodes (for tests)")
    ap.add_argument("--sql-profile", action="store_true", help="also time each SQL statement of the fast path")
    args = ap.parse_args()
    n = 2_000 if args.quick else args.episodes
    work = Path(tempfile.mkdtemp(prefix="calib-bench-ingest-"))
    try:
        src = work / "episodes.jsonl"
        t0 = time.perf_counter()
        n_turns = _generate(src, n)
        gen_s = time.perf_counter() - t0
        size_mb = src.stat().st_size / 2**20
        base = _in_child(_run_baseline, str(src), str(work / "baseline"))
        cal = _in_child(_run_calib, str(src), str(work / "store"), True)
        assert cal["episodes"] == n and cal["quarantined"] == 0, cal
        per = (_in_child(_run_calib, str(src), str(work / "store-per-record"), False)
               if args.per_record or args.quick else None)
        eps_s = n / cal["seconds"]
        ratio = base["seconds"] / cal["seconds"]
        print(f"input: {n:,} episodes, {n_turns:,} turns, {size_mb:,.0f} MB JSONL (generated in {gen_s:.1f} s)")
        print(f"{'loader':<34}{'seconds':>10}{'CPU s':>8}{'episodes/s':>14}{'peak RSS MB':>14}")
        print(f"{'json + pandas (baseline)':<34}{base['seconds']:>10.1f}{base['cpu_seconds']:>8.1f}"
              f"{n / base['seconds']:>14,.0f}{base['peak_rss_mb']:>14,.0f}")
        print(f"{'calib ingest':<34}{cal['seconds']:>10.1f}{cal['cpu_seconds']:>8.1f}{eps_s:>14,.0f}"
              f"{cal['peak_rss_mb']:>14,.0f}")
        if per is not None:
            print(f"{'calib ingest, per-record path':<34}{per['seconds']:>10.1f}{per['cpu_seconds']:>8.1f}"
                  f"{n / per['seconds']:>14,.0f}{per['peak_rss_mb']:>14,.0f}")
        cpu_ratio = base["cpu_seconds"] / cal["cpu_seconds"]
        print(f"calib / baseline speed ratio: {ratio:.2f}x (calib also validates, hashes, dedups, commits atomically);"
              f" in CPU time {cpu_ratio:.2f}x (less sensitive to other load on the machine)")
        if args.sql_profile:
            _sql_profile(src)
        details = {"episodes": n, "turns": n_turns, "input_mb": round(size_mb, 1),
                   "calib_seconds": round(cal["seconds"], 2), "baseline_seconds": round(base["seconds"], 2),
                   "calib_cpu_seconds": round(cal["cpu_seconds"], 2),
                   "baseline_cpu_seconds": round(base["cpu_seconds"], 2), "cpu_ratio": round(cpu_ratio, 2),
                   "episodes_per_s": round(eps_s), "peak_rss_mb": round(cal["peak_rss_mb"]),
                   "baseline_peak_rss_mb": round(base["peak_rss_mb"])}
        if per is not None:
            details["per_record_seconds"] = round(per["seconds"], 2)
            details["fast_vs_per_record"] = round(per["seconds"] / cal["seconds"], 2)
        print(figure_line("ingest", "seconds_100k", round(cal["seconds"], 2), "< 60", quick=args.quick,
                          details=details))
        print(figure_line("ingest", "peak_rss_gib", round(cal["peak_rss_mb"] / 1024, 3), "< 2", quick=args.quick,
                          details={}))
        print(figure_line("ingest", "speed_vs_json_pandas", round(ratio, 2), ">= 1.0", quick=args.quick,
                          details={"note": "baseline / calib seconds; calib also validates, hashes, dedups",
                                   "peak_rss_gib": round(cal["peak_rss_mb"] / 1024, 3)},
                          also=cal["peak_rss_mb"] < 2048))
    finally:
        shutil.rmtree(work, ignore_errors=True)


if __name__ == "__main__":
    main()
