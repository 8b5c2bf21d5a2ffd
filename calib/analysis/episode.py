"""Episode-level signals (reward components an imported dump carries, ``turn_idx`` NULL).

They are measured like the episode aggregate of a per-turn signal (docs/architecture.md section 4): ``auc`` with its
bootstrap interval, ``group_auc`` (pairs inside a group) with its interval, and the point-biserial
``pb_corr`` against success. Sign agreement is a per-turn notion, so the verdict comes from the
group-AUC interval alone: ``keep`` above 0.5, ``flip`` below, ``zero`` when it covers 0.5.

A component that *is* the outcome (its value equals the episode's outcome on every episode where it
has one, e.g. the only component of a task's reward basis, or is the outcome up to its weight, as a
verifiers reward ``{score, weight}`` that is the only term of the weighted sum) would look perfect; it gets the verdict
``outcome`` and ``reproduces_outcome: true`` instead, because rewarding it adds nothing to the
outcome reward. ``outcome_agreement`` (share of episodes where value == outcome) shows how close
the others come. The spec does not weight episode-level signals in this round: they are reported.
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

import numpy as np

from calib.analysis import metrics as M
from calib.store.selection import Selection, SelectionLike

EPISODE_VERDICTS = ("keep", "flip", "zero", "outcome")


def load_episode_signals(con, names: Sequence[str], runs: SelectionLike = None) -> dict[str, Any]:
    """Arrays for the named episode-level signals over ``status='ok'`` episodes (of ``runs``).

    Returns ``{"group": [E], "success": [E], "outcome": [E], "values": {name: [E] with NaN}}``.
    """
    sel = Selection.of(runs)
    where = sel.where_sql()
    params: list[Any] = sel.params()
    ep = con.execute(
        f"SELECT episode_id, group_id, success, outcome FROM episodes WHERE status = 'ok' {where} ORDER BY episode_id",
        params,
    ).fetchnumpy()
    ids = np.asarray(ep["episode_id"], dtype=object)
    index = {e: i for i, e in enumerate(ids)}
    values: dict[str, np.ndarray] = {}
    if names:
        rows = con.execute(
            "SELECT signal, episode_id, value FROM signals WHERE turn_idx IS NULL AND list_contains(?, signal)",
            [list(names)],
        ).fetchnumpy()
        sig = np.asarray(rows["signal"], dtype=object)
        eid = np.asarray(rows["episode_id"], dtype=object)
        raw = rows["value"]
        val = np.where(np.ma.getmaskarray(raw), np.nan, np.ma.getdata(raw)).astype(np.float64)
        pos = np.array([index.get(e, -1) for e in eid], dtype=np.int64)
        for name in names:
            v = np.full(ids.size, np.nan)
            m = (sig == name) & (pos >= 0)
            v[pos[m]] = val[m]
            values[name] = v
    return {"episode_id": ids, "group": np.asarray(ep["group_id"], dtype=object),
            "success": np.asarray(ep["success"], dtype=bool), "outcome": np.asarray(ep["outcome"], dtype=np.float64),
            "values": values}


def analyze_episode_signals(
    data: dict[str, Any], *, n_boot: int = 1000, alpha: float = 0.05, seed: int = 0, null: float = 0.5
) -> list[dict[str, Any]]:
    """One row per episode-level signal: metrics, verdict and the reproduces-outcome flag."""
    y = data["success"]
    outcome = data["outcome"]
    names = list(data["values"])
    if not names or y.size == 0:
        return []
    _, g = np.unique(data["group"].astype(str), return_inverse=True)
    g = g.reshape(-1)
    scores = np.stack([data["values"][n] for n in names], axis=1)  # (E, S), NaN where absent
    gres = M.group_auc(scores, y, g)
    gboot = M.group_auc_bootstrap(gres.u, gres.pairs, n_boot=n_boot, seed=seed)  # (B, S)
    rows = []
    for j, name in enumerate(names):
        s = scores[:, j]
        ok = np.isfinite(s)
        g_ci = M.percentile_ci(gboot[:, j], alpha=alpha)
        same = np.isclose(s[ok], outcome[ok])
        reproduces = bool(ok.sum() >= 2 and (same.all() or _affine_copy(s[ok], outcome[ok])))
        verdict = "outcome" if reproduces else M.verdict(g_ci, float("nan"), null=null)
        r, p = M.pb_corr(s[ok], y[ok])
        rows.append({
            "signal": name,
            "level": "episode",
            "verdict": verdict,
            "reproduces_outcome": reproduces,
            "outcome_agreement": float(same.mean()) if ok.any() else float("nan"),
            "group_auc": float(gres.value[j]),
            "group_auc_ci": list(g_ci),
            "informative_groups": int(gres.informative_groups[j]),
            "n_groups": gres.n_groups,
            "auc": M.auc(s[ok], y[ok]),
            "auc_ci": list(M.auc_ci(s[ok], y[ok], n_boot=n_boot, alpha=alpha, seed=seed)),
            "pb_corr": r,
            "pb_p": p,
            "mean_value": float(s[ok].mean()) if ok.any() else float("nan"),
            "n_episodes": int(ok.sum()),
            "coverage": float(ok.mean()),
            "reason": _reason(verdict, g_ci, null),
        })
    order = {v: i for i, v in enumerate(EPISODE_VERDICTS)}
    rows.sort(key=lambda r: (order[r["verdict"]], r["signal"]))
    return rows


def _affine_copy(s: np.ndarray, outcome: np.ndarray) -> bool:
    """The outcome is ``a * s + b`` with ``a > 0`` on every episode: a component that, scaled by its weight
    (verifiers ``{score, weight}``), is the whole reward. One episode (or a constant) proves nothing."""
    if s.size < 2 or np.ptp(s) == 0 or np.ptp(outcome) == 0:
        return False
    a, b = np.polyfit(s, outcome, 1)
    return bool(a > 0 and np.allclose(a * s + b, outcome, rtol=1e-6, atol=1e-9))


def _reason(verdict: str, ci: Sequence[float], null: float) -> str:
    lo, hi = ci
    if verdict == "outcome":
        return ("equals the outcome (up to its weight) on every episode where it has a value: it is the outcome, "
                "not extra evidence")
    if not (np.isfinite(lo) and np.isfinite(hi)):
        return "no informative groups with values: nothing to measure"
    txt = f"group_auc CI [{lo:.2f}, {hi:.2f}]"
    if verdict == "keep":
        return f"{txt} above {null:g}"
    if verdict == "flip":
        return f"{txt} below {null:g}"
    return f"{txt} covers {null:g}"


def analyze_imported(store, imported, *, runs: SelectionLike = None, config=None) -> dict[str, list[dict[str, Any]]]:
    """Per-turn imported signals through the per-turn analysis, episode-level ones through this module."""
    from calib.analysis.run import AnalysisConfig, analyze_store

    cfg = config or AnalysisConfig()
    out: dict[str, list[dict[str, Any]]] = {}
    if imported.turn:
        rows = analyze_store(store, imported.turn, runs=runs, config=cfg).signals
        out["turn"] = [{**r, "level": "turn"} for r in rows]
    if imported.episode:
        con = store.connect()
        try:
            data = load_episode_signals(con, imported.episode, runs)
        finally:
            con.close()
        out["episode"] = analyze_episode_signals(data, n_boot=cfg.n_boot, alpha=cfg.alpha, seed=cfg.seed,
                                                 null=cfg.null_auc)
    return out
