"""The seed paper's diagnostics of a reward design, and its calibration rule (IRC), on analysed rollouts.

Pure numpy on the analysis' flat arrays (turn t of episode i at ``offsets[i] + t``). Every advantage
comes from ``calib.advantages.turn_advantages``, the function the trainer uses, so a diagnostic
never disagrees with what training would do.

Notation. A reward spec gives per-turn rewards r_{i,t} = sum_s w_s * signal_s(i, t) (missing values
count 0, as in the trainer) and outcome R_i (times the spec's outcome weight).

- ``A_total``  the mode's advantage with the outcome: what the trainer multiplies log-probs by.
- ``A_I``      the same formula with every outcome set to 0: the part the turn rewards alone produce
               (the paper's intrinsic advantage; ``A_total - A_I`` is its outcome part ``A_O``).
- ``tier_alignment`` (the paper's Table 1 and Table 4), per signal, over the turns where it fires:
  mean ``A_I``, mean ``A_total``, and ``aligned`` = sign(mean A_total) == sign(weight) (None for a
  weight of 0 or a signal that never fires); plus the share of successful and of failed episodes in
  which it occurs, and the gap. A tier is *misaligned* when the advantage at the turns it rewards
  points the other way from its weight: the trainer then pushes those turns against the designer's
  intent (e.g. a rewarded lookup in a failing episode: A_I > 0 but A_total < 0).
- ``advantage_diagnostics`` (the paper's Table 2): per advantage mode, with the same turn rewards,
  the number of misaligned signals, the correlation of turn advantages with the outcome, the share
  of dead turns (advantage exactly 0: no gradient) and the share of |advantage| on gold and
  soft-match turns.
- ``irc_weights``: the paper's rule, rho = point-biserial correlation of "the signal occurs in the
  episode" with the outcome; weight = alpha * rho where |rho| > delta, else 0.
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass
from typing import Any

import numpy as np

from calib.advantages import DEFAULT_GAMMA, default_lambda, turn_advantages
from calib.analysis.metrics import pb_corr, split_turns, turn_positions

# Diagnostic modes (the paper's three arms): key -> (turn_advantages mode, lambda or None = default).
# "gtpo" is gtpo_hybrid with lambda 0: the pure discounted return, normalised per turn.
DIAGNOSTIC_MODES: dict[str, tuple[str, float | None]] = {
    "mt_grpo": ("mt_grpo", None),
    "gtpo": ("gtpo_hybrid", 0.0),
    "gtpo_hybrid": ("gtpo_hybrid", None),
}
GOLD_SOFT_SIGNALS = ("gold_match", "soft_match", "soft_match_score")


@dataclass(frozen=True)
class AdvantageSettings:
    """The arguments of ``turn_advantages`` besides the data (a spec's ``advantage`` section)."""

    mode: str = "gtpo_hybrid"
    gamma: float = DEFAULT_GAMMA
    lam: float | None = None
    turn_norm: str = "index"

    def to_dict(self) -> dict[str, Any]:
        lam = default_lambda(self.mode) if self.lam is None else self.lam
        return {"mode": self.mode, "gamma": self.gamma, "lambda": lam, "turn_norm": self.turn_norm}


def diagnostic_settings(key: str, spec: AdvantageSettings) -> AdvantageSettings:
    """Settings of diagnostic mode ``key``: the spec's gamma and turn_norm; the spec's lambda when
    the spec trains with that very mode, else the mode's default (0 for ``gtpo``)."""
    mode, lam = DIAGNOSTIC_MODES[key]
    if lam is None and spec.mode == mode and not (mode == "gtpo_hybrid" and spec.lam == 0.0):
        lam = spec.lam
    return AdvantageSettings(mode=mode, gamma=spec.gamma, lam=lam, turn_norm=spec.turn_norm)


def spec_turn_rewards(values: Mapping[str, np.ndarray], weights: Mapping[str, float], n_turns: int) -> np.ndarray:
    """Flat [N] turn rewards ``sum_s w_s * signal_s`` (NaN counts 0); KeyError names a missing signal."""
    r = np.zeros(n_turns)  # (N,)
    for name, w in weights.items():
        if w == 0.0:
            continue
        if name not in values:
            raise KeyError(name)
        r += w * np.nan_to_num(np.asarray(values[name], dtype=np.float64), nan=0.0)
    return r


def mode_advantages(
    rewards: np.ndarray | list[np.ndarray],
    lengths: np.ndarray,
    outcome: np.ndarray,
    group: np.ndarray,
    settings: AdvantageSettings,
) -> tuple[np.ndarray, np.ndarray]:
    """(A_total [N], A_I [N]) from ``turn_advantages``: with the outcome, and with every outcome 0.

    ``rewards`` is flat [N], or already split per episode (to split once for several modes)."""
    parts = rewards if isinstance(rewards, list) else split_turns(rewards, lengths)
    kw = {"mode": settings.mode, "gamma": settings.gamma, "lam": settings.lam, "turn_norm": settings.turn_norm}
    if not parts:
        return np.zeros(0), np.zeros(0)
    a_total = np.concatenate(turn_advantages(np.asarray(outcome, dtype=np.float64), parts, group, **kw))
    a_int = np.concatenate(turn_advantages(np.zeros(len(parts)), parts, group, **kw))
    return a_total, a_int


def occurrence(values: np.ndarray, lengths: np.ndarray) -> np.ndarray:
    """[E] 1.0 if the signal fires (finite, non-zero) on some turn of the episode, else 0.0; NaN for
    an episode where the signal has no value at all (cannot be measured there)."""
    v = np.asarray(values, dtype=np.float64)
    lengths = np.asarray(lengths, dtype=np.int64)
    ep, _ = turn_positions(lengths)
    ok = np.isfinite(v)
    n_ok = np.bincount(ep, weights=ok, minlength=lengths.size)
    fires = np.bincount(ep, weights=ok & (np.nan_to_num(v) != 0.0), minlength=lengths.size)
    return np.where(n_ok > 0, (fires > 0).astype(np.float64), np.nan)


def _mean(x: np.ndarray) -> float:
    return float(x.mean()) if x.size else float("nan")


def _aligned(weight: float, mean_total: float) -> bool | None:
    if weight == 0.0 or not np.isfinite(mean_total):
        return None
    return bool(np.sign(mean_total) == np.sign(weight))


@dataclass(frozen=True)
class SignalFacts:
    """What tier alignment needs of a signal that does not depend on the advantage mode."""

    fires: np.ndarray  # (N,) bool: finite and non-zero
    share_success: float
    share_failure: float


def signal_facts(values: Mapping[str, np.ndarray], lengths: np.ndarray, success: np.ndarray) -> dict[str, SignalFacts]:
    """Per signal: where it fires, and the share of successful / failed episodes in which it occurs."""
    y = np.asarray(success, dtype=bool)
    out = {}
    for name, v in values.items():
        v = np.asarray(v, dtype=np.float64)
        occ = occurrence(v, lengths)  # (E,)
        ok = np.isfinite(occ)
        out[name] = SignalFacts(fires=np.isfinite(v) & (np.nan_to_num(v) != 0.0),
                                share_success=_mean(occ[y & ok]), share_failure=_mean(occ[~y & ok]))
    return out


def tier_alignment(
    values: Mapping[str, np.ndarray],
    lengths: np.ndarray,
    success: np.ndarray,
    weights: Mapping[str, float],
    a_total: np.ndarray,
    a_int: np.ndarray,
    facts: Mapping[str, SignalFacts] | None = None,
) -> dict[str, dict[str, Any]]:
    """Per signal: mean A_I and A_total over its firing turns, ``aligned``, and its occurrence in
    successful and failed episodes (``share_success``, ``share_failure``, ``gap``). ``facts``
    (from :func:`signal_facts`) saves recomputing the mode-free part for several modes."""
    facts = facts if facts is not None else signal_facts(values, lengths, success)
    out: dict[str, dict[str, Any]] = {}
    for name in values:
        f = facts[name]
        fires, share_s, share_f = f.fires, f.share_success, f.share_failure
        w = float(weights.get(name, 0.0))
        mean_total = _mean(a_total[fires])
        out[name] = {
            "weight": w,
            "turns": int(fires.sum()),
            "mean_A_I": _mean(a_int[fires]),
            "mean_A_total": mean_total,
            "aligned": _aligned(w, mean_total),
            "share_success": share_s,
            "share_failure": share_f,
            "gap": share_s - share_f,
        }
    return out


def diagnostics(
    values: Mapping[str, np.ndarray],
    lengths: np.ndarray,
    outcome: np.ndarray,
    success: np.ndarray,
    a_total: np.ndarray,
    tiers: Mapping[str, Mapping[str, Any]],
) -> dict[str, Any]:
    """One mode's row of the paper's Table 2, from its A_total and its tier alignment."""
    lengths = np.asarray(lengths, dtype=np.int64)
    ep, _ = turn_positions(lengths)
    r_turn = np.asarray(outcome, dtype=np.float64)[ep]  # (N,) outcome of each turn's episode
    gold_soft = [np.nan_to_num(np.asarray(values[s], dtype=np.float64)) != 0.0 for s in GOLD_SOFT_SIGNALS if s in values]
    mass = np.abs(a_total)
    if gold_soft and mass.sum() > 0:
        share = float(mass[np.logical_or.reduce(gold_soft)].sum() / mass.sum())
    else:
        share = float("nan")  # no gold/soft signal analysed, or no advantage at all
    return {
        "mismatches": int(sum(1 for t in tiers.values() if t["aligned"] is False)),
        "mismatched_signals": sorted(n for n, t in tiers.items() if t["aligned"] is False),
        "corr_adv_outcome": pb_corr(a_total, r_turn)[0] if a_total.size else float("nan"),
        "dead_turn_share": _mean((a_total == 0.0).astype(np.float64)),
        "gold_soft_share": share,
    }


def irc_weights(
    values: Mapping[str, np.ndarray], lengths: np.ndarray, outcome: np.ndarray, *, alpha: float, delta: float
) -> dict[str, tuple[float, float]]:
    """The paper's IRC rule per signal: ``(rho, weight)``, rho = point-biserial r of occurrence
    with the outcome (episodes where the signal has a value), weight = alpha * rho if |rho| > delta
    else 0 (also 0 when rho is undefined: no variance in occurrence or outcome)."""
    R = np.asarray(outcome, dtype=np.float64)
    out = {}
    for name, v in values.items():
        occ = occurrence(v, lengths)
        ok = np.isfinite(occ)
        rho = pb_corr(occ[ok], R[ok])[0]
        w = alpha * rho if np.isfinite(rho) and abs(rho) > delta else 0.0
        out[name] = (float(rho), float(w))
    return out


def episode_mean(rewards: np.ndarray, lengths: np.ndarray) -> np.ndarray:
    """[E] mean turn reward per episode (0 for an episode without turns)."""
    lengths = np.asarray(lengths, dtype=np.int64)
    ep, _ = turn_positions(lengths)
    tot = np.bincount(ep, weights=rewards, minlength=lengths.size)
    return tot / np.maximum(lengths, 1)
