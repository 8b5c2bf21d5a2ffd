"""``calib analyze`` at scale: 100k episodes (~1M turns) in groups of 8, every built-in signal.

Two figures, both measured in this run (DESIGN section 10):

1. ``seconds_100k``: wall time of the analysis itself: computing the twelve built-in signals from the
   store's turns (DuckDB + the per-distinct-call Python normal form) and every metric of every
   signal (auc with 1000-replicate bootstrap CIs, pb_corr, group_auc with group-bootstrap CIs, sign
   agreement under mt_grpo and gtpo_hybrid, dead share, AUC by position), plus the seed paper's tier
   alignment and advantage diagnostics of the proposed spec under three modes. Building the store
   (synthetic records + ingest) is setup and is reported separately. Goal: under 30 s.
2. ``speedup_vs_pandas``: within-group AUC of the built-in signals' episode aggregates, one vectorised
   rank computation (``calib.analysis.metrics.group_auc``) against a straightforward per-group
   pandas ``groupby.apply`` + sklearn ``roc_auc_score``. The baseline would take minutes at full
   size, so it is timed on a sample of groups and scaled linearly by the number of groups (its cost
   is per group); the two are checked to agree on that sample to 1e-9. Goal: at least 20x.

Usage: python bench/analyze.py [--episodes 100000] [--group-size 8] [--quick] [--keep DIR]
"""

from __future__ import annotations

import argparse
import json
import shutil
import sys
import tempfile
import time
from pathlib import Path

import numpy as np

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))
sys.path.insert(0, str(Path(__file__).resolve().parent))

from _common import add_store_args, build_store


def _baseline_group_auc(df, names: list[str]):
    """Per group: sklearn AUC of each signal and the group's number of (success, failure) pairs."""
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
    ap.add_argument("--baseline-groups", type=int, default=300, help="groups the pandas baseline is timed on")
    ap.add_argument("--n-boot", type=int, default=1000)
    add_store_args(ap)
    args = ap.parse_args()

    import pandas as pd

    from calib.analysis import metrics as M
    from calib.analysis.run import AnalysisConfig, analyze_store, load_arrays
    from calib.signals import BUILTIN_SIGNALS
    from calib.signals.compute import compute_signals

    if args.quick:
        args.baseline_groups = min(args.baseline_groups, 40)
    names = list(BUILTIN_SIGNALS)
    work = args.keep or Path(tempfile.mkdtemp(prefix="calib-bench-analyze-"))
    try:
        # ---- setup: a store of synthetic airline-like episodes (not timed as part of the figure)
        store, n_eps, setup_s = build_store(work, args)
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
        vec_times = []
        for _ in range(3):
            t0 = time.perf_counter()
            M.group_auc(scores, data.success, g)
            vec_times.append(time.perf_counter() - t0)
        vec_s = min(vec_times)
        df = pd.DataFrame(scores, columns=names)
        df["group"] = g
        df["success"] = data.success
        n_g = int(g.max()) + 1
        sample_groups = np.random.default_rng(0).choice(n_g, size=min(args.baseline_groups, n_g), replace=False)
        sample = df[df["group"].isin(sample_groups)]
        t0 = time.perf_counter()
        base = _baseline_group_auc(sample, names)
        base_sample_s = time.perf_counter() - t0
        base_s = base_sample_s * n_g / len(sample_groups)  # per-group cost, scaled to every group
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
        print(f"{'group_auc, vectorised (best of 3)':<52}{vec_s:>10.3f}")
        print(f"{'group_auc, pandas groupby.apply + sklearn (scaled)':<52}{base_s:>10.1f}")
        print(f"   baseline timed on {len(sample_groups):,} of {n_g:,} groups ({base_sample_s:.2f} s) and scaled "
              f"x{n_g / len(sample_groups):.1f}; max |difference| on the sample {max_diff:.1e}")
        print(f"speedup: {speedup:,.0f}x")
        verdicts = {r["signal"]: r["verdict"] for r in res.signals}
        print("verdicts: " + ", ".join(f"{k}={v}" for k, v in verdicts.items()))
        quick = " (quick size: goals apply to 100k)" if args.quick else ""
        details = {"episodes": len(data.lengths), "turns": int(n_turns), "groups": n_g,
                   "signals_s": round(signals_s, 2), "metrics_s": round(metrics_s, 2), "setup_s": round(setup_s, 1),
                   "n_boot": args.n_boot, "note": "store building is setup, not timed" + quick}
        print(json.dumps({"bench": "analyze", "figure": "seconds_100k", "value": round(total_s, 2), "goal": "< 30",
                          "met": bool(total_s < 30), "details": details}))
        print(json.dumps({"bench": "analyze", "figure": "speedup_vs_pandas", "value": round(speedup, 1),
                          "goal": ">= 20", "met": bool(speedup >= 20),
                          "details": {"vectorised_s": round(vec_s, 4), "baseline_s_scaled": round(base_s, 1),
                                      "baseline_sample_groups": len(sample_groups),
                                      "baseline_sample_s": round(base_sample_s, 2), "groups": n_g,
                                      "max_abs_diff": max_diff, "note": "baseline timed on a sample of groups, "
                                      "scaled linearly by group count" + quick}}))
    finally:
        if args.keep is None:
            shutil.rmtree(work, ignore_errors=True)


if __name__ == "__main__":
    main()
