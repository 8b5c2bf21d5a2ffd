"""Per-turn rewards of freshly played episodes, from the signals a reward spec names.

``r_{i,t} = sum_s w_s * signal_s(i, t)`` over the spec's ``turn_rewards`` with a non-zero weight;
a signal that cannot be measured on a turn (``None``) counts 0, as ``calib analyze`` fills it, so
the trainer and the analysis see the same numbers. The outcome is ``weight * outcome``.

Built-in signals come from ``calib.signals.episode_signals`` (the readable per-episode
definition, which a test checks against the store's SQL version); custom ``(episode, turn)``
callables are called per turn through ``calib.signals.compute.call_signal``, the function the
analysis uses, so both accept the same values (a finite number or None) and report a failing signal
with its episode and turn. Episodes are native records as the rollout runner returns them.
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

import numpy as np

from calib.records import normalize_episode, segment_turns
from calib.signals import BUILTIN_SIGNALS, episode_signals, resolve_signal
from calib.signals.compute import call_signal
from calib.tools import ToolCatalogue


def _canonical(episode: dict[str, Any]) -> dict[str, Any]:
    return normalize_episode({k: v for k, v in episode.items() if not k.startswith("_")})


def episode_signal_values(
    episode: dict[str, Any], signals: Sequence[str], catalogue: ToolCatalogue
) -> dict[str, np.ndarray]:
    """Each signal's value on each assistant turn of one episode: ``{signal: float array [T_i]}``, NaN
    where the signal cannot be measured on a turn (None). What ``calib analyze`` stores for the
    episode, computed from the record alone (the verl reward side compares the two)."""
    ep = _canonical(episode)
    turns = segment_turns(ep, catalogue)
    out: dict[str, np.ndarray] = {}
    builtin = [s for s in signals if s in BUILTIN_SIGNALS]
    if builtin:
        values = episode_signals(ep, catalogue, builtin, turns=turns) if turns else {s: [] for s in builtin}
        for s in builtin:
            out[s] = np.array([np.nan if v is None else float(v) for v in values[s]], dtype=np.float64)
    for s in (s for s in signals if s not in BUILTIN_SIGNALS):
        sig = resolve_signal(s)
        vals = [call_signal(sig, ep, turn) for turn in turns]
        out[s] = np.array([np.nan if v is None else float(v) for v in vals], dtype=np.float64)
    return {s: out[s] for s in signals}


def episode_turn_rewards(
    episode: dict[str, Any], weights: dict[str, float], catalogue: ToolCatalogue
) -> np.ndarray:
    """Weighted per-turn reward of one episode: float array [T_i] (T_i = its assistant turns)."""
    active = {s: w for s, w in weights.items() if w != 0.0}
    if not active:
        return np.zeros(len(segment_turns(_canonical(episode), catalogue)))
    values = episode_signal_values(episode, list(active), catalogue)
    total = sum(w * np.where(np.isnan(values[s]), 0.0, values[s]) for s, w in active.items())
    if not np.isfinite(total).all():
        raise ValueError(f"episode {_canonical(episode)['episode_id']}: a signal returned a non-finite value")
    return np.asarray(total, dtype=np.float64)


def batch_rewards(
    episodes: Sequence[dict[str, Any]], spec: Any, catalogue: ToolCatalogue
) -> tuple[np.ndarray, list[np.ndarray]]:
    """(outcome rewards [E], per-turn rewards: E arrays) for a batch, under ``spec``."""
    weights = spec.turn_weights()
    outcome = np.array([spec.outcome.weight * float(e.get("outcome") or 0.0) for e in episodes])  # (E,)
    turn_rewards = [episode_turn_rewards(e, weights, catalogue) for e in episodes]
    return outcome, turn_rewards
