"""Rollouts: play policy x user x environment episodes concurrently, write them to the store, score them.

``run_rollouts`` (sync) and ``arun_rollouts`` (inside an event loop) play episodes; ``evaluate_run``
computes success rate and pass^k from a store.
"""

from calib.rollout.evaluate import EvalResult, evaluate_counts, evaluate_run, pass_hat_k
from calib.rollout.runner import (
    RolloutConfig,
    arun_rollouts,
    episode_seed,
    play_episode,
    run_rollouts,
    select_tasks,
    strip_private,
    write_episodes,
)

__all__ = [
    "EvalResult",
    "RolloutConfig",
    "arun_rollouts",
    "episode_seed",
    "evaluate_counts",
    "evaluate_run",
    "pass_hat_k",
    "play_episode",
    "run_rollouts",
    "select_tasks",
    "strip_private",
    "write_episodes",
]
