"""``calib report`` at scale: 100k episodes (~1M turns) in groups of 8, every built-in signal.

Figures, all measured in this run (docs/architecture.md section 10):

1. ``report_mb_100k``: size of the HTML file. Goal: under 10 MB *with its content*: the report
   aggregates (plots, table), caps the scatter by sampling whole groups and embeds a bounded sample
   of episodes, so a small file alone proves nothing (an empty report is small). ``met`` therefore
   also requires the full browser sample (``ReportConfig.max_episodes``, or every episode of a
   smaller store) and a row for every signal; the details say what the caps are.
2. ``report_seconds_100k``: wall time of ``write_report`` given the ``analysis.json`` of the same
   store (what ``calib analyze --html`` adds after the analysis). Goal: under 60 s.
3. ``size_ratio_vs_naive``: projected size of a naive report that embeds every episode in full
   (messages, tool calls, per-turn signal values, as the browser does for its sample), over the
   calib report's size. The naive page is rendered on a sample of episodes and scaled by the episode
   count (its size is per episode). It says how much the sampling buys; the naive page at 100k
   episodes would not open in a browser.

Building the store (synthetic records + ingest), computing the signals and the analysis are setup,
timed and printed but not part of the figures.

Usage: python bench/report.py [--episodes 100000] [--group-size 8] [--quick] [--keep DIR]
"""

from __future__ import annotations

import argparse
import shutil
import sys
import tempfile
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))
sys.path.insert(0, str(Path(__file__).resolve().parent))

from _common import add_store_args, build_store, figure_line


def _naive_bytes(store, n_sample: int) -> tuple[float, float, int]:
    """(bytes per episode, seconds per episode, episodes) of embedding full episodes, on a sample."""
    from calib.report import data as D
    from calib.report.safe import json_for_script

    con = D.scoped_connection(store, None)
    try:
        ids = [r for (r,) in con.execute("SELECT episode_id FROM ep ORDER BY hash(episode_id) LIMIT ?",
                                          [n_sample]).fetchall()]
        names = [s for (s,) in con.execute("SELECT DISTINCT signal FROM signals").fetchall()]
        t0 = time.perf_counter()
        views = D.episode_views(con, ids, names, max_message_chars=10**9)  # nothing cut
        text = json_for_script(views)
        secs = time.perf_counter() - t0
    finally:
        con.close()
    n = max(len(views), 1)
    return len(text.encode()) / n, secs / n, len(views)


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--naive-sample", type=int, default=2000, help="episodes the naive page is rendered on")
    add_store_args(ap)
    args = ap.parse_args()

    from calib.analysis.propose import propose_spec, write_outputs
    from calib.analysis.run import AnalysisConfig, analyze_store
    from calib.signals import BUILTIN_SIGNALS
    from calib.signals.compute import compute_signals

    n_eps = 2_000 if args.quick else args.episodes
    if args.quick:
        args.naive_sample = min(args.naive_sample, 300)
    n_groups = max(1, n_eps // args.group_size)
    names = list(BUILTIN_SIGNALS)
    work = args.keep or Path(tempfile.mkdtemp(prefix="calib-bench-report-"))
    try:
        # ---- setup (not part of the figures): store, signals, analysis.json
        store, _, ingest_s = build_store(work, args)
        t0 = time.perf_counter()
        compute_signals(store, names)
        cfg = AnalysisConfig(seed=0)
        result = analyze_store(store, names, config=cfg)
        spec = propose_spec(result, cfg, store=str(store.path))
        paths = write_outputs(result, spec, work / "analysis")
        analysis_s = time.perf_counter() - t0
        n_turns = store.count("turns")

        # ---- figures 1 and 2: the report of the whole store
        from calib.report import write_report

        out = work / "report" / "index.html"
        t0 = time.perf_counter()
        res = write_report(store, out, analysis=paths["analysis.json"], spec=paths["reward_spec.yaml"])
        report_s = time.perf_counter() - t0
        mb = res.bytes / 1e6

        # ---- figure 3: naive page (every episode in full), measured on a sample and scaled
        per_ep_bytes, per_ep_s, n_sample = _naive_bytes(store, args.naive_sample)
        naive_bytes = per_ep_bytes * n_eps
        naive_s = per_ep_s * n_eps
        ratio = naive_bytes / res.bytes

        print(f"store: {n_eps:,} episodes, {n_turns:,} turns, {n_groups:,} groups of {args.group_size} "
              f"(ingest {ingest_s:.1f} s, signals + analysis {analysis_s:.1f} s: setup, not in the figures)")
        print(f"{'':<44}{'calib report':>14}{'naive (scaled)':>16}")
        print(f"{'size (MB)':<44}{mb:>14.2f}{naive_bytes / 1e6:>16.1f}")
        print(f"{'seconds':<44}{report_s:>14.2f}{naive_s:>16.1f}")
        print(f"{'episodes embedded':<44}{res.episodes_embedded:>14,}{n_eps:>16,}")
        print("calib stages (s): " + ", ".join(f"{k} {v:.2f}" for k, v in res.timings.items()))
        print(f"naive page measured on {n_sample:,} episodes ({per_ep_bytes / 1e3:.1f} kB each), scaled x"
              f"{n_eps / max(n_sample, 1):.0f}; size ratio {ratio:,.0f}x")
        from calib.report.config import ReportConfig

        cap = ReportConfig().max_episodes
        html = out.read_text(encoding="utf-8")
        missing = [s for s in names if s not in html]
        content_ok = res.episodes_embedded >= min(cap, n_eps) and not missing
        details = {"episodes": n_eps, "turns": int(n_turns), "groups": n_groups,
                   "episodes_embedded": res.episodes_embedded, "episodes_required": min(cap, n_eps),
                   "signals_missing": missing, "content_ok": content_ok, "timings": res.timings,
                   "ingest_s": round(ingest_s, 1), "analysis_s": round(analysis_s, 1),
                   "note": "store, signals and analysis are setup, not timed; the size is bounded by the "
                           "ReportConfig caps, so met also requires the content"}
        print(figure_line("report", "report_mb_100k", round(mb, 3), "< 10", quick=args.quick, details=details,
                          also=content_ok))
        print(figure_line("report", "report_seconds_100k", round(report_s, 2), "< 60", quick=args.quick,
                          details={"bytes": res.bytes, **details}))
        print(figure_line("report", "size_ratio_vs_naive", round(ratio, 1), ">= 10", quick=args.quick,
                          details={"naive_bytes_scaled": round(naive_bytes), "naive_s_scaled": round(naive_s, 1),
                                   "naive_sample_episodes": n_sample, "report_bytes": res.bytes,
                                   "note": "naive page rendered on a sample, scaled linearly by episode count"}))
    finally:
        if args.keep is None:
            shutil.rmtree(work, ignore_errors=True)


if __name__ == "__main__":
    main()
