"""The analysis at the I/O edge: read episodes and signals through DuckDB into arrays, run the
metrics of ``calib.analysis.metrics`` on every signal, and return one table (plus the JSON document
that ``analysis.json`` holds and the report renders).

Only ``status = 'ok'`` episodes take part (an infrastructure failure says nothing about a signal).
Turn values are laid out flat in (episode, turn) order; a turn without a stored value is NaN, which
the episode aggregates skip and the advantage-based metrics treat as 0, as the trainer does.
"""

from __future__ import annotations

import datetime as _dt
import math
from collections.abc import Callable, Sequence
from dataclasses import asdict, dataclass, field
from typing import Any

import duckdb
import numpy as np
import pandas as pd

from calib.advantages import DEFAULT_GAMMA, check_gamma, signal_mode_names
from calib.analysis import metrics as M
from calib.analysis import paper as P
from calib.errors import CalibError, UsageError
from calib.jsonutil import plain
from calib.sqlutil import lock, locked_connection
from calib.store.selection import Selection, SelectionLike

VERDICT_ORDER = {"keep": 0, "flip": 1, "zero": 2}
AGGREGATES = ("mean", "sum", "any", "max")
RULES = ("auc", "irc", "joint")
ANALYSIS_SCHEMA_VERSION = 1


@dataclass
class AnalysisConfig:
    """Every threshold and knob of the analysis, with its default and why (one place: the docs link here)."""

    # Parameters that control the discriminative metrics
    aggregate: str = field(default="mean", metadata={"help": "Episode aggregate of a signal's turn values for auc, "
                           "pb_corr and group_auc: mean (default; insensitive to episode length), sum, any, max."})
    n_boot: int = field(default=1000, metadata={"help": "Bootstrap replicates for the CIs (episodes for auc, "
                        "groups for group_auc). 1000 gives percentiles stable to ~0.005."})
    alpha: float = field(default=0.05, metadata={"help": "CI level is 1 - alpha (0.05: 95% intervals)."})
    seed: int = field(default=0, metadata={"help": "Seed of the bootstrap draws: same seed, same intervals."})
    max_positions: int = field(default=10, metadata={"help": "auc_by_position covers turns 0..max_positions-1."})

    # Parameters that control sign agreement (docs/architecture.md section 6 formulas, via calib.advantages)
    mode: str = field(default="gtpo_hybrid", metadata={"help": "Advantage mode of the proposed spec; its sign "
                      "agreement decides whether a discriminative signal is aligned. mt_grpo | gtpo_hybrid."})
    gamma: float = field(default=DEFAULT_GAMMA, metadata={"help": "gtpo_hybrid discount (the seed paper's 0.9)."})
    lam: float | None = field(default=None, metadata={"help": "Advantage lambda; None = the mode's default."})
    turn_norm: str = field(default="index", metadata={"help": "index | pooled: the set each turn is normalised over."})

    # Parameters that control verdicts and proposed weights (docs/architecture.md section 4)
    null_auc: float = field(default=0.5, metadata={"help": "keep needs the group_auc CI above this, flip below."})
    min_agreement: float = field(default=0.5, metadata={"help": "keep needs sign agreement >= this in `mode` "
                                 "(flip: 1 - agreement >= this); else the verdict is zero."})
    weight_scale: float = field(default=1.0, metadata={"help": "Proposed weight = weight_scale * (2*group_auc - 1)."})
    weight_cap: float = field(default=0.3, metadata={"help": "|proposed weight| <= weight_cap (the outcome has 1)."})
    value_quantile: float = field(default=0.95, metadata={"help": "Weights of signals beyond [0, 1] are divided by "
                                  "this quantile of |value| so a typical turn stays within the cap."})

    # Parameters that control the calibration rule (docs/signals.md, "Two calibration rules")
    rule: str = field(default="auc", metadata={"help": "auc (calib's: group-AUC CI + sign agreement, weight from "
                      "2*group_auc-1) | irc (the seed paper's: weight = irc_alpha * rho where |rho| > irc_delta, "
                      "rho = point-biserial r of occurrence with the outcome, then the sign check)."})
    irc_alpha: float = field(default=0.5, metadata={"help": "irc: weight per unit of correlation. 0.5 keeps a "
                             "perfectly correlated signal at half the outcome's weight of 1."})
    irc_delta: float = field(default=0.1, metadata={"help": "irc: |rho| at or below this gives weight 0. 0.1 is "
                             "Cohen's 'small' correlation, and 2/sqrt(n) (the 95% noise band) at n = 400 episodes."})

    def __post_init__(self) -> None:
        if self.aggregate not in AGGREGATES:
            raise UsageError(f"aggregate={self.aggregate!r}: expected one of {', '.join(AGGREGATES)}")
        if self.mode not in signal_mode_names():
            raise UsageError(f"mode={self.mode!r}: expected one of {', '.join(signal_mode_names())}")
        if self.turn_norm not in ("index", "pooled"):
            raise UsageError(f"turn_norm={self.turn_norm!r}: expected index or pooled")
        try:
            check_gamma(self.gamma)
        except ValueError as e:
            raise UsageError(str(e)) from None
        if self.lam is not None and not math.isfinite(self.lam):
            raise UsageError(f"lam={self.lam}: expected a finite number or None")
        if self.n_boot < 1:
            raise UsageError(f"n_boot={self.n_boot}: expected at least 1 bootstrap replicate")
        if not 0.0 < self.alpha < 1.0:
            raise UsageError(f"alpha={self.alpha}: expected a level in (0, 1), e.g. 0.05 for 95% intervals")
        if not (math.isfinite(self.weight_cap) and self.weight_cap >= 0):
            raise UsageError(f"weight_cap={self.weight_cap}: expected a finite number >= 0")
        if not 0.0 <= self.min_agreement <= 1.0:
            raise UsageError(f"min_agreement={self.min_agreement}: expected a share in [0, 1]")
        if self.max_positions < 0:
            raise UsageError(f"max_positions={self.max_positions}: expected >= 0")
        if self.rule not in RULES:
            raise UsageError(f"rule={self.rule!r}: expected one of {', '.join(RULES)}")
        if not (math.isfinite(self.irc_alpha) and self.irc_alpha >= 0):
            raise UsageError(f"irc_alpha={self.irc_alpha}: expected a finite number >= 0")
        if not (math.isfinite(self.irc_delta) and 0 <= self.irc_delta < 1):
            raise UsageError(f"irc_delta={self.irc_delta}: expected a correlation threshold in [0, 1)")


@dataclass
class EpisodeData:
    """Arrays the metrics need: episodes [E] and flat per-turn values [N] per signal."""

    episode_id: np.ndarray
    group: np.ndarray
    success: np.ndarray
    outcome: np.ndarray
    lengths: np.ndarray
    values: dict[str, np.ndarray]
    runs: list[str] = field(default_factory=list)
    excluded_error_episodes: int = 0


@dataclass
class AnalysisResult:
    table: pd.DataFrame  # one row per signal, sorted by verdict, flat columns (analysis.parquet)
    signals: list[dict[str, Any]]  # the same, nested (analysis.json)
    summary: dict[str, Any]
    parameters: dict[str, Any]
    # The seed paper's diagnostics of the evaluated spec (calib.analysis.paper): base spec, else proposed.
    tier_alignment: dict[str, dict[str, Any]] = field(default_factory=dict)
    advantage_diagnostics: dict[str, dict[str, Any]] = field(default_factory=dict)
    convergence: dict[str, Any] = field(default_factory=dict)
    # Signals an imported dump carried (calib.signals.imported): {"turn": rows, "episode": rows}. Reported
    # in their own section and kept out of the proposed spec (the trainer cannot compute them online).
    imported: dict[str, list[dict[str, Any]]] = field(default_factory=dict)

    def to_json(self) -> dict[str, Any]:
        doc = {
            "schema_version": ANALYSIS_SCHEMA_VERSION,
            "summary": self.summary,
            "parameters": self.parameters,
            "signals": self.signals,
            "tier_alignment": self.tier_alignment,
            "advantage_diagnostics": self.advantage_diagnostics,
            "convergence": self.convergence,
        }
        if self.imported:
            doc["imported_signals"] = self.imported
        return plain(doc)


# ----------------------------------------------------------------------------- reading


_EPISODES_SQL = """
CREATE OR REPLACE TEMP TABLE _ep AS
SELECT episode_id, run_id, group_id, success, outcome, n_turns,
       sum(n_turns) OVER (ORDER BY episode_id ROWS UNBOUNDED PRECEDING) - n_turns AS off
FROM episodes WHERE status = 'ok' {runs}
"""


def load_arrays(con: duckdb.DuckDBPyConnection, signals: Sequence[str], runs: SelectionLike = None) -> EpisodeData:
    """Read ``status='ok'`` episodes (of ``runs``) and the named signals into flat arrays, in SQL.

    ``con`` has views ``episodes`` (episode_id, run_id, group_id, success, outcome, n_turns, status)
    and ``signals`` (episode_id, turn_idx, signal, value), as a store connection does.
    """
    sel = Selection.of(runs)
    where = sel.where_sql()
    con.execute(_EPISODES_SQL.format(runs=where), sel.params())
    ep = con.execute("SELECT episode_id, run_id, group_id, success, outcome, n_turns FROM _ep ORDER BY off").fetchnumpy()
    n_err = con.execute(f"SELECT count(*) FROM episodes WHERE status <> 'ok' {where}", sel.params()).fetchone()[0]
    lengths = np.asarray(ep["n_turns"], dtype=np.int64)
    n = int(lengths.sum())
    # One pass over the signals table: (signal code, flat position, value) for every wanted signal.
    con.execute("CREATE OR REPLACE TEMP TABLE _names AS SELECT unnest(?::VARCHAR[]) AS signal, "
                "unnest(range(?::BIGINT)) AS code", [list(signals), len(signals)])
    rows = con.execute(
        "SELECT n.code, e.off + s.turn_idx AS pos, s.value FROM signals s JOIN _names n USING (signal) "
        "JOIN _ep e USING (episode_id) WHERE s.turn_idx >= 0 AND s.turn_idx < e.n_turns"
    ).fetchnumpy()
    code = np.asarray(rows["code"], dtype=np.int64)
    pos = np.asarray(rows["pos"], dtype=np.int64)
    raw = rows["value"]
    val = np.where(np.ma.getmaskarray(raw), np.nan, np.ma.getdata(raw)).astype(np.float64)  # NULL -> NaN
    values: dict[str, np.ndarray] = {}
    for j, name in enumerate(signals):
        v = np.full(n, np.nan)
        m = code == j
        v[pos[m]] = val[m]
        values[name] = v
    return EpisodeData(
        episode_id=np.asarray(ep["episode_id"], dtype=object),
        group=np.asarray(ep["group_id"], dtype=object),
        success=np.asarray(ep["success"], dtype=bool),
        outcome=np.asarray(ep["outcome"], dtype=np.float64),
        lengths=lengths,
        values=values,
        runs=sorted({str(r) for r in ep["run_id"]}),
        excluded_error_episodes=int(n_err),
    )


def arrays_from_frames(episodes: pd.DataFrame, signals: pd.DataFrame, names: Sequence[str] | None = None) -> EpisodeData:
    """The same arrays from in-memory frames (``episodes``: episode_id, group_id, success, outcome,
    n_turns, optional run_id and status; ``signals``: long format), through the same SQL."""
    ep = episodes.copy()
    ep["run_id"] = ep.get("run_id", "frames")
    ep["status"] = ep.get("status", "ok")
    names = list(names) if names is not None else list(dict.fromkeys(signals["signal"]))
    con = locked_connection()
    try:
        con.register("episodes", ep)
        con.register("signals", signals)
        lock(con)
        return load_arrays(con, names)
    finally:
        con.close()


# ----------------------------------------------------------------------------- computing


def analyze_arrays(
    data: EpisodeData,
    config: AnalysisConfig | None = None,
    *,
    on_signal: Callable[[str], None] | None = None,
    base: Any = None,
) -> AnalysisResult:
    """Every metric of every signal in ``data.values``; the verdicts and proposed weights; and the
    seed paper's diagnostics (tier alignment, advantage diagnostics) of ``base`` (a RewardSpec: the
    rewards the rollouts were trained with) or, without one, of the proposed weights."""
    cfg = config or AnalysisConfig()
    names = list(data.values)
    E = data.lengths.size
    if E == 0:
        raise CalibError("no episodes with status 'ok' to analyse: check --runs, or ingest rollouts first")
    if not names:
        raise UsageError("no signals to analyse")
    y = data.success
    _, g = np.unique(data.group.astype(str), return_inverse=True)
    g = g.reshape(-1)

    # Episode aggregates of every signal [E, S] and the within-group AUC of all of them in one pass.
    scores = np.stack([M.aggregate(data.values[n], data.lengths, cfg.aggregate) for n in names], axis=1)
    gres = M.group_auc(scores, y, g)
    gboot = M.group_auc_bootstrap(gres.u, gres.pairs, n_boot=cfg.n_boot, seed=cfg.seed)  # (B, S)

    rows = []
    for j, name in enumerate(names):
        if on_signal is not None:
            on_signal(name)
        rows.append(_signal_row(name, data, scores[:, j], gres, j, gboot[:, j], g, cfg))
    if cfg.rule == "irc":
        _apply_irc(rows, data, g, cfg)
    elif cfg.rule == "joint":
        _apply_joint(rows, data, g, cfg)
    paper = _paper_diagnostics(data, g, rows, cfg, base)
    rows.sort(key=lambda r: (VERDICT_ORDER[r["verdict"]], -abs(_nz(r["group_auc"]) - cfg.null_auc), r["signal"]))
    summary = _summary(data, g)
    return AnalysisResult(table=_flat_table(rows), signals=rows, summary=summary, parameters=asdict(cfg), **paper)


def _signal_row(name: str, data: EpisodeData, s: np.ndarray, gres: Any, j: int, gboot: np.ndarray,
                g: np.ndarray, cfg: AnalysisConfig) -> dict[str, Any]:
    """One signal's metrics, verdict, proposed weight and reason. ``s``: its episode aggregate [E];
    ``gres``/``j``: the group-AUC result of every signal and this signal's column in it; ``gboot``:
    its group-bootstrap replicates [B]; ``g``: dense group index [E]."""
    v = data.values[name]
    y = data.success
    ok = np.isfinite(s)
    auc = M.auc(s[ok], y[ok])
    auc_ci = M.auc_ci(s[ok], y[ok], n_boot=cfg.n_boot, alpha=cfg.alpha, seed=cfg.seed)
    r, p = M.pb_corr(s[ok], y[ok])
    g_ci = M.percentile_ci(gboot, alpha=cfg.alpha)
    align = {
        mode: M.sign_agreement(
            v, data.lengths, data.outcome, g, mode=mode, gamma=cfg.gamma, lam=cfg.lam, turn_norm=cfg.turn_norm
        )
        for mode in signal_mode_names()
    }
    agree = align[cfg.mode].agreement
    verdict = M.verdict(g_ci, agree, null=cfg.null_auc, min_agreement=cfg.min_agreement)
    finite = np.abs(v[np.isfinite(v)])
    value_scale = float(np.quantile(finite, cfg.value_quantile)) if finite.size else 1.0
    weight = M.proposed_weight(
        float(gres.value[j]), verdict, scale=cfg.weight_scale, cap=cfg.weight_cap, value_scale=value_scale
    )
    return {
        "signal": name,
        "verdict": verdict,
        "proposed_weight": weight,
        "group_auc": float(gres.value[j]),
        "group_auc_ci": list(g_ci),
        "informative_groups": int(gres.informative_groups[j]),
        "n_groups": gres.n_groups,
        "auc": auc,
        "auc_ci": list(auc_ci),
        "pb_corr": r,
        "pb_p": p,
        "sign_agreement": {m: a.agreement for m, a in align.items()},
        "misaligned_mass": {m: a.misaligned_mass for m, a in align.items()},
        "dead_share": M.dead_share(v, data.lengths, y, g),
        "auc_by_position": M.auc_by_position(v, data.lengths, y, max_positions=cfg.max_positions),
        "aggregate": cfg.aggregate,
        "mean_value": float(np.nanmean(v)) if np.isfinite(v).any() else float("nan"),
        "fire_rate": float((v[np.isfinite(v)] != 0).mean()) if np.isfinite(v).any() else float("nan"),
        "value_scale": value_scale,
        "n_episodes": int(ok.sum()),
        "n_turns": int(np.isfinite(v).sum()),
        "reason": _reason(verdict, g_ci, agree, cfg),
    }


def _summary(data: EpisodeData, g: np.ndarray) -> dict[str, Any]:
    """The analysis's ``summary``: what was analysed (runs, episodes, turns, groups) and when."""
    y = data.success
    n_pos = np.bincount(g, weights=y)
    n_all = np.bincount(g)
    return {
        "runs": data.runs,
        "episodes": int(data.lengths.size),
        "turns": int(data.lengths.sum()),
        "groups": int(n_all.size),
        "informative_groups": int(((n_pos > 0) & (n_pos < n_all)).sum()),
        "success_rate": float(y.mean()),
        "excluded_error_episodes": data.excluded_error_episodes,
        "created": _dt.datetime.now(_dt.timezone.utc).isoformat(timespec="seconds"),
    }


def _settings(cfg: AnalysisConfig) -> P.AdvantageSettings:
    return P.AdvantageSettings(mode=cfg.mode, gamma=cfg.gamma, lam=cfg.lam, turn_norm=cfg.turn_norm)


def _apply_irc(rows: list[dict[str, Any]], data: EpisodeData, g: np.ndarray, cfg: AnalysisConfig) -> None:
    """Replace verdicts and weights with the seed paper's rule: alpha * rho where |rho| > delta, then
    the sign check: a weight whose tier would be misaligned under ``cfg.mode`` (mean A_total at its
    turns of the other sign) is set to 0. Weights of signals beyond [0, 1] are scaled like calib's."""
    irc = P.irc_weights(data.values, data.lengths, data.outcome, alpha=cfg.irc_alpha, delta=cfg.irc_delta)
    weights = {r["signal"]: irc[r["signal"]][1] / max(_nz_scale(r["value_scale"]), 1.0) for r in rows}
    rewards = P.spec_turn_rewards(data.values, weights, int(data.lengths.sum()))
    a_total, a_int = P.mode_advantages(rewards, data.lengths, data.outcome, g, _settings(cfg))
    tiers = P.tier_alignment(data.values, data.lengths, data.success, weights, a_total, a_int)
    for r in rows:
        name = r["signal"]
        rho, w = irc[name][0], weights[name]
        ok = tiers[name]["aligned"] is not False
        final = w if ok else 0.0
        r["irc"] = {"rho": rho, "weight_before_sign_check": w, "sign_check": tiers[name]["aligned"]}
        r["proposed_weight"] = final
        r["verdict"] = "keep" if final > 0 else ("flip" if final < 0 else "zero")
        if not np.isfinite(rho):
            r["reason"] = "irc: rho undefined (occurrence or outcome has no variance): weight 0"
        elif abs(rho) <= cfg.irc_delta:
            r["reason"] = f"irc: |rho| {abs(rho):.2f} <= delta {cfg.irc_delta:g}: weight 0"
        elif not ok:
            r["reason"] = (f"irc: rho {rho:+.2f}, but the sign check fails: mean A_total at its turns is "
                           f"{tiers[name]['mean_A_total']:+.2f} under {cfg.mode}: weight 0")
        else:
            r["reason"] = f"irc: rho {rho:+.2f} (|rho| > {cfg.irc_delta:g}), weight {cfg.irc_alpha:g} x rho"


def _apply_joint(rows: list[dict[str, Any]], data: EpisodeData, g: np.ndarray, cfg: AnalysisConfig) -> None:
    """Replace verdicts and weights with the joint rule (``calib.analysis.joint``): one within-group
    logistic model of success on the signals' episode totals, grown by forward selection, so that a
    signal that repeats another's information or is weak gets (near) zero; then the sign check of the
    ``auc`` rule. The marginal
    verdict and weight stay in ``marginal``; a dropped signal that separates success on its own names
    the kept signal it repeats in ``redundant_with``."""
    from calib.analysis.joint import fit_joint

    by_name = {r["signal"]: r for r in rows}
    fit = fit_joint(data.values, data.lengths, data.success, g, cap=cfg.weight_cap,
                    value_scale={n: r["value_scale"] for n, r in by_name.items()}, seed=cfg.seed)
    for j, name in enumerate(fit.names):
        r = by_name[name]
        r["marginal"] = {"verdict": r["verdict"], "proposed_weight": r["proposed_weight"]}
        w = float(fit.weight[j])
        agree = r["sign_agreement"][cfg.mode]
        aligned = (w > 0 and _nz(agree) >= cfg.min_agreement) or (w < 0 and 1 - _nz(agree) >= cfg.min_agreement)
        r["joint"] = {"beta": float(fit.beta[j]), "weight_before_sign_check": w,
                      "entered": fit.order.index(name) + 1 if name in fit.order else None}
        r["redundant_with"] = None
        if w != 0 and aligned:
            r["proposed_weight"] = round(w, 6)
            r["verdict"] = "keep" if w > 0 else "flip"
            r["reason"] = (f"joint: coefficient {fit.beta[j]:+.2f} (standardised, within group), "
                           f"{abs(fit.beta[j]) / max(np.abs(fit.beta).max(), 1e-12):.0%} of the strongest")
            continue
        r["proposed_weight"] = 0.0
        r["verdict"] = "zero"
        if w != 0:
            r["reason"] = f"joint: kept by the model, but its sign agreement under {cfg.mode} is {_nz(agree):.0%}"
        elif r["marginal"]["verdict"] in ("keep", "flip") and fit.closest_kept[j] is not None:
            r["redundant_with"] = fit.closest_kept[j]
            r["reason"] = (f"joint: redundant with {fit.closest_kept[j]} (separates success alone, adds nothing "
                           "to the kept signals)")
        else:
            r["reason"] = "joint: weak: adds nothing to the kept signals (coefficient 0)"


def _nz_scale(x: float) -> float:
    return float(x) if np.isfinite(x) and x > 0 else 1.0


def _paper_diagnostics(
    data: EpisodeData, g: np.ndarray, rows: list[dict[str, Any]], cfg: AnalysisConfig, base: Any
) -> dict[str, Any]:
    """tier_alignment, advantage_diagnostics and convergence of the evaluated spec (see analyze_arrays)."""
    if base is not None:
        adv = base.advantage
        spec = P.AdvantageSettings(mode=adv.mode, gamma=adv.gamma, lam=adv.lam, turn_norm=adv.turn_norm)
        weights = base.turn_weights()
        outcome = base.outcome.weight * data.outcome
        source = {"source": "base", "name": base.name}
    else:
        spec = _settings(cfg)
        weights = {r["signal"]: float(r["proposed_weight"]) for r in rows}
        outcome = data.outcome
        source = {"source": "proposed", "name": None}
    try:
        rewards = P.spec_turn_rewards(data.values, weights, int(data.lengths.sum()))
    except KeyError as e:
        raise CalibError(f"reward spec {source['name']!r} weights signal {e.args[0]!r}, which was not analysed: "
                         "add it to --signals") from None
    cache: dict[P.AdvantageSettings, tuple[np.ndarray, np.ndarray]] = {}
    parts = M.split_turns(rewards, data.lengths)  # once for every mode
    facts = P.signal_facts(data.values, data.lengths, data.success)

    def advantages(s: P.AdvantageSettings) -> tuple[np.ndarray, np.ndarray]:
        if s not in cache:
            cache[s] = P.mode_advantages(parts, data.lengths, outcome, g, s)
        return cache[s]

    tiers = P.tier_alignment(data.values, data.lengths, data.success, weights, *advantages(spec), facts=facts)
    diag = {}
    for key in P.DIAGNOSTIC_MODES:
        s = P.diagnostic_settings(key, spec)
        a_total, a_int = advantages(s)
        t = P.tier_alignment(data.values, data.lengths, data.success, weights, a_total, a_int, facts=facts)
        diag[key] = {**s.to_dict(), **P.diagnostics(data.values, data.lengths, outcome, data.success, a_total, t)}
    mismatched = sorted(n for n, t in tiers.items() if t["aligned"] is False)
    convergence = {
        **source,
        **spec.to_dict(),
        "mismatches": len(mismatched),
        "mismatched_signals": mismatched,
        "corr_turn_reward_outcome": M.pb_corr(P.episode_mean(rewards, data.lengths), outcome)[0],
    }
    return {"tier_alignment": tiers, "advantage_diagnostics": diag, "convergence": convergence}


def _reason(verdict: str, ci: tuple[float, float], agree: float, cfg: AnalysisConfig) -> str:
    """One line that says why, for the table and the report."""
    lo, hi = ci
    if not (np.isfinite(lo) and np.isfinite(hi)):
        return "no informative groups with values: nothing to measure"
    ci_txt = f"group_auc CI [{lo:.2f}, {hi:.2f}]"
    if verdict == "keep":
        return f"{ci_txt} above {cfg.null_auc:g}, aligned with the outcome"
    if verdict == "flip":
        return f"{ci_txt} below {cfg.null_auc:g}: rewards failures, so it gets a negative weight"
    if lo > cfg.null_auc:
        return f"{ci_txt} above {cfg.null_auc:g} but its {cfg.mode} advantage agrees with the outcome on only {agree:.0%}"
    if hi < cfg.null_auc:
        return f"{ci_txt} below {cfg.null_auc:g} but flipping it would not align its {cfg.mode} advantage"
    return f"{ci_txt} covers {cfg.null_auc:g}: no evidence it separates success from failure within a group"


def _nz(x: float) -> float:
    return x if np.isfinite(x) else 0.5


def _flat_table(rows: list[dict[str, Any]]) -> pd.DataFrame:
    """Nested rows -> flat columns for Parquet (CIs as _lo/_hi, per-mode values as _<mode>)."""
    flat = []
    for r in rows:
        f = {k: v for k, v in r.items() if not isinstance(v, (dict, list))}
        f["auc_ci_lo"], f["auc_ci_hi"] = r["auc_ci"]
        f["group_auc_ci_lo"], f["group_auc_ci_hi"] = r["group_auc_ci"]
        for m in signal_mode_names():
            f[f"sign_agreement_{m}"] = r["sign_agreement"][m]
            f[f"misaligned_mass_{m}"] = r["misaligned_mass"][m]
        f["auc_by_position"] = [float(x) for x in r["auc_by_position"]]
        flat.append(f)
    return pd.DataFrame(flat)


def analyze_store(
    store,
    signals: Sequence[str],
    *,
    runs: SelectionLike = None,
    config: AnalysisConfig | None = None,
    on_signal: Callable[[str], None] | None = None,
    base: Any = None,
) -> AnalysisResult:
    """Read the store (signals must already be computed: ``calib.signals.compute``) and analyse the
    episodes of ``runs`` (run ids, a :class:`calib.store.selection.Selection`, or None: all)."""
    sel = Selection.of(runs)
    con = store.connect()
    try:
        if sel.runs:
            known = {r for (r,) in con.execute("SELECT DISTINCT run_id FROM episodes").fetchall()}
            missing = [r for r in sel.runs if r not in known]
            if missing:
                raise UsageError(
                    f"--runs: no run {', '.join(map(repr, missing))} in the store "
                    f"(runs: {', '.join(sorted(known)) or 'none'})"
                )
        data = load_arrays(con, signals, sel)
    finally:
        con.close()
    result = analyze_arrays(data, config, on_signal=on_signal, base=base)
    result.summary["store"] = str(store.path)
    return result
