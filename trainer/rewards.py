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


def episode_turn_rewards(
    episode: dict[str, Any], weights: dict[str, float], catalogue: ToolCatalogue
) -> np.ndarray:
    """Weighted per-turn reward of one episode: float array [T_i] (T_i = its assistant turns)."""
    ep = _canonical(episode)
    turns = segment_turns(ep, catalogue)
    total = np.zeros(len(turns))  # (T_i,)
    active = {s: w for s, w in weights.items() if w != 0.0}
    builtin = [s for s in active if s in BUILTIN_SIGNALS]
    if builtin and turns:
        values = episode_signals(ep, catalogue, builtin, turns=turns)
        for s in builtin:
            total += active[s] * np.array([0.0 if v is None else float(v) for v in values[s]])
    for s in (s for s in active if s not in BUILTIN_SIGNALS):
        sig = resolve_signal(s)
        for t, turn in enumerate(turns):
            v = call_signal(sig, ep, turn)
            if v is not None:
                total[t] += active[s] * v
    if not np.isfinite(total).all():
        raise ValueError(f"episode {ep['episode_id']}: a signal returned a non-finite value")
    return total


def batch_rewards(
    episodes: Sequence[dict[str, Any]], spec: Any, catalogue: ToolCatalogue
) -> tuple[np.ndarray, list[np.ndarray]]:
    """(outcome rewards [E], per-turn rewards: E arrays) for a batch, under ``spec``."""
    weights = spec.turn_weights()
    outcome = np.array([spec.outcome.weight * float(e.get("outcome") or 0.0) for e in episodes])  # (E,)
    turn_rewards = [episode_turn_rewards(e, weights, catalogue) for e in episodes]
    return outcome, turn_rewards
