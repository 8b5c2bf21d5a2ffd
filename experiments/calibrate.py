"""The calibrated reward spec of the experiment: what ``calib analyze`` proposes from a batch of
rollouts of the initial policy.

The testbed's arrays go straight into :func:`calib.analysis.run.analyze_arrays` (the function behind
``calib analyze``: within-group AUC with its group bootstrap, sign agreement under the arm's
advantage mode, verdict, proposed weight) and :func:`calib.analysis.propose.propose_spec`, so the
experiment tests exactly the decision rule that users get, with no formula of its own.
"""

from __future__ import annotations

import numpy as np

from calib.analysis.propose import propose_spec
from calib.analysis.run import AnalysisConfig, AnalysisResult, EpisodeData, analyze_arrays
from calib.envs.testbed import SIGNALS, SyntheticBatch
from calib.spec import RewardSpec


def episode_data(batch: SyntheticBatch, *, run_id: str = "synthetic-calibration") -> EpisodeData:
    """The analysis' input arrays for a testbed batch (flat turn values, episode by episode)."""
    return EpisodeData(
        episode_id=np.array([f"e{i:06d}" for i in range(batch.n_episodes)], dtype=object),
        group=np.array([f"task{g}" for g in batch.group], dtype=object),
        success=batch.success.copy(),
        outcome=batch.outcome,
        lengths=batch.lengths.copy(),
        values={s: batch.flat(s) for s in SIGNALS},
        runs=[run_id],
    )


def analyze_batch(batch: SyntheticBatch, *, mode: str = "gtpo_hybrid", seed: int = 0) -> tuple[AnalysisResult, AnalysisConfig]:
    """Run the analysis on ``batch`` with the defaults of ``calib analyze`` (bootstrap seeded)."""
    cfg = AnalysisConfig(mode=mode, seed=seed)
    return analyze_arrays(episode_data(batch), cfg), cfg


def calibrated_spec(
    batch: SyntheticBatch, *, mode: str = "gtpo_hybrid", seed: int = 0, name: str = "synthetic-calibrated"
) -> RewardSpec:
    """The spec ``calib analyze --mode MODE`` would propose from ``batch``: every candidate signal with its weight."""
    result, cfg = analyze_batch(batch, mode=mode, seed=seed)
    return propose_spec(result, cfg, name=name)
