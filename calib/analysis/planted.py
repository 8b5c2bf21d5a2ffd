"""Seeded synthetic rollouts with planted signals, for the analysis's tests.

(Episode *records* for the store, ``synthetic_records``, live in :mod:`calib.sample_episodes`, the one
episode generator of the tests and the benches; this module makes signal arrays directly.)

- :func:`planted_signals` makes arrays directly (no messages): groups of episodes of tasks with a
  difficulty, success drawn from the difficulty, and per-turn signals whose relation to success is
  known by construction. Each planted signal stands for a case the analysis must get right:

  ==============  ===============================================  ================
  signal          how it fires (per turn)                          expected verdict
  ==============  ===============================================  ================
  ``aligned``     more often in successes (like ``gold_match``)    keep
  ``frequent``    often, in every episode, whatever the outcome    zero
                  (like ``read_only`` lookups)
  ``anti``        more often in failures (like non-gold writes)    flip
  ``difficulty``  more often on easy tasks, independent of success zero (high pooled
                  inside a task                                    auc, group_auc ~0.5)
  ``valid_bonus`` on most turns of every episode, equally in       zero; sign agreement
                  successes and failures (the seed paper's +0.3    well below 1
                  valid-call bonus)
  ==============  ===============================================  ================

  Failures run a little longer (agents that fail tend to flail), which is what turns an
  uninformative per-turn bonus into a misaligned advantage once returns are summed.
"""

from __future__ import annotations

from dataclasses import dataclass, field

import numpy as np
import pandas as pd

PLANTED = {"aligned": "keep", "frequent": "zero", "anti": "flip", "difficulty": "zero", "valid_bonus": "zero"}


@dataclass
class SyntheticRollouts:
    """Episode arrays [E] plus flat per-turn signal arrays [N] (turns sorted by episode, then turn)."""

    episode_id: np.ndarray
    group_id: np.ndarray
    task_id: np.ndarray
    success: np.ndarray
    outcome: np.ndarray
    lengths: np.ndarray
    difficulty: np.ndarray  # per episode (its task's difficulty)
    signals: dict[str, np.ndarray] = field(default_factory=dict)

    def episodes_frame(self) -> pd.DataFrame:
        """One row per episode, with the columns the analysis reads from the store's ``episodes``."""
        return pd.DataFrame(
            {
                "episode_id": self.episode_id,
                "run_id": "synthetic",
                "group_id": self.group_id,
                "task_id": self.task_id,
                "success": self.success,
                "outcome": self.outcome,
                "n_turns": self.lengths,
            }
        )

    def signals_frame(self) -> pd.DataFrame:
        """Long format (episode_id, turn_idx, signal, value), as the store's ``signals`` view."""
        ep = np.repeat(np.arange(self.lengths.size), self.lengths)
        turn = np.arange(ep.size) - (np.cumsum(self.lengths) - self.lengths)[ep]
        frames = [
            pd.DataFrame({"episode_id": self.episode_id[ep], "turn_idx": turn, "signal": name, "value": v})
            for name, v in self.signals.items()
        ]
        return pd.concat(frames, ignore_index=True)


def planted_signals(
    n_groups: int = 200,
    group_size: int = 8,
    *,
    seed: int = 0,
    mean_turns: float = 9.0,
    failure_extra_turns: float = 3.0,
    effect: float = 0.25,
) -> SyntheticRollouts:
    """Groups of ``group_size`` episodes of ``n_groups`` tasks with the planted signals above.

    ``effect`` is the difference in per-turn firing rate between successes and failures for the
    ``aligned`` and ``anti`` signals. Deterministic for a given seed.
    """
    rng = np.random.default_rng(seed)
    n = n_groups * group_size
    task = np.repeat(np.arange(n_groups), group_size)  # (E,)
    d_task = rng.random(n_groups)  # task difficulty in [0, 1)
    d = d_task[task]  # (E,)
    success = rng.random(n) < 0.1 + 0.8 * (1.0 - d)  # easy tasks succeed more often
    base = max(mean_turns - failure_extra_turns / 2.0 - 1.0, 0.5)
    lengths = 1 + rng.poisson(base + failure_extra_turns * ~success)  # (E,) failures run longer
    ep = np.repeat(np.arange(n), lengths)  # (N,)
    s_t = success[ep]
    d_t = d[ep]

    def fire(p: np.ndarray | float) -> np.ndarray:
        return (rng.random(ep.size) < p).astype(np.float64)

    signals = {
        "aligned": fire(0.15 + effect * s_t),
        "frequent": fire(0.6),
        "anti": fire(0.1 + effect * ~s_t),
        "difficulty": fire(0.1 + 0.6 * (1.0 - d_t)),
        "valid_bonus": fire(0.85),
    }
    return SyntheticRollouts(
        episode_id=np.array([f"ep{i:07d}" for i in range(n)]),
        group_id=np.array([f"synthetic/0/task{t}" for t in task]),
        task_id=np.array([f"task{t}" for t in task]),
        success=success,
        outcome=success.astype(np.float64),
        lengths=lengths.astype(np.int64),
        difficulty=d,
        signals=signals,
    )


# ----------------------------------------------------------------------------- native records
