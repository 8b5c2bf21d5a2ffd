"""Turn advantage against outcome advantage, per turn: the misalignment picture.

For each turn of the sampled groups, x is the outcome advantage GN(R)_i of its episode and y a turn
advantage from ``calib.advantages.turn_advantages`` (the trainer's own function, so the picture is
what training would do):

- the *proposed spec* panel: the full advantage A_{i,t} that the trainer would use with the spec's
  weights, outcome included;
- one panel per signal: the advantage that signal alone would add (outcome set to 0), as
  ``sign_agreement`` in the analysis measures it.

A point in the off quadrants (y > 0 while x < 0, or y < 0 while x > 0) pushes the policy against
the outcome. Pure numpy: arrays in, arrays out.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np

from calib.advantages import DEFAULT_GAMMA, group_normalize, turn_advantages
from calib.analysis.metrics import alignment_from_advantages


@dataclass
class ScatterPanel:
    """Points of one panel, already capped; ``agreement`` is over *all* points of the sample."""

    title: str
    x: np.ndarray
    y: np.ndarray
    agreement: float
    n_turns: int


def _cap(x: np.ndarray, y: np.ndarray, max_points: int, rng: np.random.Generator) -> tuple[np.ndarray, np.ndarray]:
    if x.size <= max_points:
        return x, y
    idx = np.sort(rng.choice(x.size, size=max_points, replace=False))
    return x[idx], y[idx]


def scatter_panels(
    sample,  # calib.report.data.GroupSample
    weights: dict[str, float],
    *,
    mode: str,
    gamma: float = DEFAULT_GAMMA,
    lam: float | None = None,
    turn_norm: str = "index",
    max_points: int = 2000,
    seed: int = 0,
) -> list[ScatterPanel]:
    """The spec panel, then one panel per signal in ``sample.values`` (empty sample -> [])."""
    if sample.n_episodes == 0:
        return []
    lengths = sample.lengths
    split_at = np.cumsum(lengths)[:-1]
    _, g = np.unique(sample.group.astype(str), return_inverse=True)
    g = g.reshape(-1)
    x = np.repeat(group_normalize(sample.outcome, g), lengths)  # (N,) GN(R)_i on each turn
    rng = np.random.default_rng(seed)
    panels = []

    combined = np.zeros(int(lengths.sum()))  # (N,) sum_s w_s r_s
    for name, w in weights.items():
        if w and name in sample.values:
            combined += w * sample.values[name]
    adv = turn_advantages(
        sample.outcome, np.split(combined, split_at), g, mode=mode, gamma=gamma, lam=lam, turn_norm=turn_norm
    )
    y = np.concatenate(adv)
    px, py = _cap(x, y, max_points, rng)
    panels.append(ScatterPanel("proposed spec: full advantage", px, py, alignment_from_advantages(y, x).agreement, int(x.size)))

    zeros = np.zeros_like(sample.outcome)
    for name, v in sample.values.items():
        adv = turn_advantages(zeros, np.split(v, split_at), g, mode=mode, gamma=gamma, lam=lam, turn_norm=turn_norm)
        y = np.concatenate(adv)
        px, py = _cap(x, y, max_points, rng)
        panels.append(ScatterPanel(f"{name} alone", px, py, alignment_from_advantages(y, x).agreement, int(x.size)))
    return panels
