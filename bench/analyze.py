"""``calib analyze`` at scale: 100k episodes (~1M turns) in groups of 8, every built-in signal.

Two figures, both measured in this run (docs/architecture.md section 10):

1. ``seconds_100k``: wall time of the analysis itself: computing the twelve built-in signals from the
   store's turns (DuckDB + the per-distinct-call Python normal form) and every metric of every
   signal (auc with 1000-replicate bootstrap CIs, pb_corr, group_auc with group-bootstrap CIs, sign
   agreement under mt_grpo and gtpo_hybrid, dead share, AUC by position), plus the seed paper's tier
   alignment and advantage diagnostics of the proposed spec under three modes. Building the store
   (synthetic records + ingest) is setup and is reported separately. Goal: under 30 s.
2. ``speedup_vs_pandas``: within-group AUC of the built-in signals' episode aggregates, one vectorised
   rank computation (``calib.analysis.metrics.group_auc``) against a straightforward per-group
   pandas ``groupby.apply`` + sklearn ``roc_auc_score``. Both sides are timed warm (imports and a
   first call happen before the clock starts) with the same number of repetitions (best of
   ``--reps``, default 1), and by default the baseline runs on every group, so nothing is scaled
   (about ten minutes at 100k on two cores); the two are checked to agree to 1e-9. ``--baseline-groups N`` times the baseline on N sampled groups and
   scales by the group count instead (faster, marked in the details). Goal: at least 20x.

Usage: python bench/analyze.py [--episodes 100000] [--group-size 8] [--reps 1] [--baseline-groups N]
       [--quick] [--keep DIR]
"""

from __future__ import annotations

import argparse
import shutil
import sys
import tempfile
import time
from pathlib import Path

import numpy as np

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))
sys.path.insert(0, str(Path(__file__).resolve().parent))

from _common import add_store_args, build_store, figure_line


def _baseline_group_auc(df, names: list[str]):
    """Per group: sklearn AUC of each signal and the group's number of (success, failure) pairs.
    (``main`` imports sklearn before any clock starts, so these imports cost nothing timed.)"""
    import pandas as pd
    from sklearn.metrics import roc_auc_score

    def per_group(g: pd.DataFrame) -> pd.Series:
        y = g["success"].to_numpy()
        n1 = int(y.sum())
        n0 = len(y) - n1
        out = {"pairs": float(n1 * n0)}
        for s in names:
            col = g[s].to_numpy()
            ok = ~np.isnan(col)
            yy = y[ok]
            m1, m0 = int(yy.sum()), int((~yy).sum())
            out[f"{s}__pairs"] = float(m1 * m0)
            out[s] = roc_auc_score(yy, col[ok]) if m1 and m0 else np.nan
        return pd.Series(out)

    per = df.groupby("group", sort=False).apply(per_group)
    res = {}
    for s in names:
        w = per[f"{s}__pairs"]
        ok = w > 0
        res[s] = float((per.loc[ok, s] * w[ok]).sum() / w[ok].sum()) if ok.any() else float("nan")
    return res


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--baseline-groups", type=int, default=0,
                    help="time the pandas baseline on this many sampled groups and scale (default 0: all groups)")
    ap.add_argument("--reps", type=int, default=1, help="timed warm repetitions of each side (the best is kept)")
    ap.add_argument("--n-boot", type=int, default=1000)
    add_store_args(ap)
    args = ap.parse_args()

    import pandas as pd

    from calib.analysis import metrics as M
    from calib.analysis.run import AnalysisConfig, analyze_store, load_arrays
    from calib.signals import BUILTIN_SIGNALS
    from calib.signals.compute import compute_signals

    names = list(BUILTIN_SIGNALS)
    work = args.keep or Path(tempfile.mkdtemp(prefix="calib-bench-analyze-"))
    try:
        # ---- setup: a store of synthetic airline-like episodes (not timed as part of the figure)
        store, _, setup_s = build_store(work, args)
        for name in names:  # a fresh measurement: drop cached signal values
            store.drop_signal(name)
        n_turns = store.count("turns")

        # ---- figure 1: signals + metrics, all built-ins
        t0 = time.perf_counter()
        comp = compute_signals(store, names)
        signals_s = time.perf_counter() - t0
        t0 = time.perf_counter()
        res = analyze_store(store, names, config=AnalysisConfig(n_boot=args.n_boot, seed=0))
        metrics_s = time.perf_counter() - t0
        total_s = signals_s + metrics_s
        assert sum(comp.written.values()) == n_turns * len(names), comp.written

        # ---- figure 2: within-group AUC, vectorised vs pandas + sklearn
        con = store.connect()
        data = load_arrays(con, names)
        con.close()
        scores = np.stack([M.aggregate(data.values[s], data.lengths, "mean") for s in names], axis=1)  # (E, S)
        _, g = np.unique(data.group.astype(str), return_inverse=True)
        import sklearn.metrics  # noqa: F401 - imported before any clock starts

        df = pd.DataFrame(scores, columns=names)
        df["group"] = g
        df["success"] = data.success
        n_g = int(g.max()) + 1
        if args.baseline_groups and args.baseline_groups < n_g:
            sample_groups = np.random.default_rng(0).choice(n_g, size=args.baseline_groups, replace=False)
            sample = df[df["group"].isin(sample_groups)]
        else:
            sample_groups = np.arange(n_g)
            sample = df
        # warm-up, untimed: first calls (lazy imports, allocator, caches) on both sides
        M.group_auc(scores, data.success, g)
        _baseline_group_auc(df[df["group"] < min(n_g, 20)], names)
        vec_times, base_times = [], []
        for _ in range(args.reps):
            t0 = time.perf_counter()
            M.group_auc(scores, data.success, g)
            vec_times.append(time.perf_counter() - t0)
            t0 = time.perf_counter()
            base = _baseline_group_auc(sample, names)
            base_times.append(time.perf_counter() - t0)
        vec_s = min(vec_times)
        base_sample_s = min(base_times)
        scale = n_g / len(sample_groups)
        base_s = base_sample_s * scale  # per-group cost; scale is 1 when every group was timed
        check = M.group_auc(sample[names].to_numpy(), sample["success"].to_numpy(), sample["group"].to_numpy())
        max_diff = max(abs(check.value[j] - base[s]) for j, s in enumerate(names) if np.isfinite(base[s]))
        assert max_diff < 1e-9, f"vectorised and baseline group_auc differ by {max_diff}"
        speedup = base_s / vec_s

        # ---- report
        print(f"store: {len(data.lengths):,} episodes, {n_turns:,} turns, {n_g:,} groups of {args.group_size} "
              f"(built in {setup_s:.1f} s, not part of the figures)")
        print(f"{'step':<52}{'seconds':>10}")
        print(f"{'compute the built-in signals (DuckDB)':<52}{signals_s:>10.2f}")
        print(f"{'all metrics, every built-in, ' + str(args.n_boot) + '-replicate CIs':<52}{metrics_s:>10.2f}")
        print(f"{'analysis total':<52}{total_s:>10.2f}")
        print(f"{'group_auc, vectorised (best of ' + str(args.reps) + ', warm)':<52}{vec_s:>10.3f}")
        label = f"group_auc, pandas + sklearn (best of {args.reps}, warm{', scaled' if scale > 1 else ''})"
        print(f"{label:<52}{base_s:>10.1f}")
        if scale > 1:
            print(f"   baseline timed on {len(sample_groups):,} of {n_g:,} groups ({base_sample_s:.2f} s) and scaled "
                  f"x{scale:.1f}")
        print(f"   max |vectorised - baseline| {max_diff:.1e}")
        print(f"speedup: {speedup:,.0f}x")
        verdicts = {r["signal"]: r["verdict"] for r in res.signals}
        print("verdicts: " + ", ".join(f"{k}={v}" for k, v in verdicts.items()))
        details = {"episodes": len(data.lengths), "turns": int(n_turns), "groups": n_g,
                   "signals_s": round(signals_s, 2), "metrics_s": round(metrics_s, 2), "setup_s": round(setup_s, 1),
                   "n_boot": args.n_boot, "note": "store building is setup, not timed"}
        print(figure_line("analyze", "seconds_100k", round(total_s, 2), "< 30", quick=args.quick, details=details))
        print(figure_line("analyze", "speedup_vs_pandas", round(speedup, 1), ">= 20", quick=args.quick,
                          details={"vectorised_s": round(vec_s, 4), "baseline_s": round(base_s, 2),
                                   "baseline_groups_timed": len(sample_groups), "groups": n_g,
                                   "baseline_timed_s": round(base_sample_s, 2), "scale": round(scale, 2),
                                   "reps": args.reps, "warm": True, "max_abs_diff": max_diff}))
    finally:
        if args.keep is None:
            shutil.rmtree(work, ignore_errors=True)


if __name__ == "__main__":
    main()
