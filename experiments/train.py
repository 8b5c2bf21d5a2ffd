"""Train the tabular policy on the testbed with per-turn advantages from ``calib/advantages.py``.

One step (the multi-turn GRPO recipe at toy scale):

1. sample ``tasks_per_step`` tasks and play each ``group_size`` times with the current policy
   (a group per task, as GRPO normalises over);
2. per-turn rewards from the arm's reward spec (``outcome.weight * R`` and ``sum_s w_s * signal_s``);
3. ``turn_advantages(outcome, turn_rewards, group, mode=...)``: the same function the TRL trainer uses;
4. policy gradient ``loss = -sum_{i,t} A_{i,t} log pi(a_{i,t} | s_{i,t}) / N_turns`` (each turn is
   one "token"; averaging over every turn of the batch is the token-level mean of DAPO and TRL's
   default loss), one Adam step. The policy samples its own rollouts, so the ratio of PPO's clipped
   objective is 1 and plain REINFORCE is the same gradient. With ``kl_coef`` > 0 the loss adds
   ``kl_coef * mean_t KL(pi(.|s_t) || pi_ref(.|s_t))`` over the batch's turns, pi_ref = the initial
   policy (the prior): GRPO's KL penalty to the reference model (its ``beta``), computed exactly
   over the actions instead of estimated from the sampled one.

Success is measured on separate evaluation rollouts (every task ``eval_episodes`` times, sampled
from the policy, with their own seeded stream), so the learning curve is not the training batch.
"""

from __future__ import annotations

from collections import deque
from dataclasses import dataclass, field
from typing import Any

import numpy as np
import torch

from calib.analysis.online import RecalibrationConfig, recalibrate_arrays
from calib.analysis.run import EpisodeData
from calib.envs.testbed import SyntheticBatch, SyntheticTasks, rollout
from calib.spec import RewardSpec
from trainer.tabular import TabularPolicy, policy_step


@dataclass(frozen=True)
class TrainConfig:
    """Budget and optimiser of one training run (one arm, one seed)."""

    steps: int = field(default=150, metadata={"help": "Policy-gradient steps."})
    tasks_per_step: int = field(default=8, metadata={"help": "Groups per step (distinct tasks)."})
    group_size: int = field(default=8, metadata={"help": "Episodes per group (GRPO's G)."})
    lr: float = field(default=0.1, metadata={"help": "Adam learning rate on the policy logits."})
    eval_every: int = field(default=10, metadata={"help": "Steps between evaluations (the learning curve)."})
    eval_episodes: int = field(default=32, metadata={"help": "Evaluation episodes per task."})
    kl_coef: float = field(default=0.0, metadata={"help": "Weight of the KL penalty to the initial policy (GRPO's "
                           "beta); 0 = none, as TRL's GRPOTrainer default."})

    def __post_init__(self) -> None:
        for name in ("steps", "tasks_per_step", "eval_every", "eval_episodes"):
            if getattr(self, name) < 1:
                raise ValueError(f"{name}={getattr(self, name)}: expected >= 1")
        if self.group_size < 2:
            raise ValueError(f"group_size={self.group_size}: expected >= 2 (GRPO compares episodes of a group)")
        if not self.lr > 0:
            raise ValueError(f"lr={self.lr}: expected > 0")
        if not self.kl_coef >= 0:
            raise ValueError(f"kl_coef={self.kl_coef}: expected >= 0")


def evaluate(tasks: SyntheticTasks, probs: np.ndarray, episodes: int, rng: np.random.Generator) -> dict[str, float]:
    """Success rate and behaviour of ``probs`` over every task ``episodes`` times."""
    b = rollout(tasks, probs, np.repeat(np.arange(tasks.config.n_tasks), episodes), rng)
    wrong = b.signals["state_change"].sum(axis=1) > 0
    return {
        "success": float(b.success.mean()),
        "turns": float(b.lengths.mean()),
        "timeout": float(b.timeout.mean()),
        "hung_up": float(b.hung_up.mean()),
        "wrong_write": float(wrong.mean()),
        "lookups": float(b.signals["read_only"].sum(axis=1).mean()),
    }


def window_data(window: list[tuple[int, SyntheticBatch]]) -> EpisodeData:
    """The analysis' arrays for the batches of several steps: a group is one task *in one step* (the
    policy that played it), as the trainer's group ids ``run/iteration/stepN/task`` are."""
    from calib.envs.testbed import SIGNALS

    parts = list(window)
    ids, groups = [], []
    for step, b in parts:
        ids.append(np.array([f"s{step}/e{i:05d}" for i in range(b.n_episodes)], dtype=object))
        groups.append(np.array([f"s{step}/task{g}" for g in b.group], dtype=object))
    return EpisodeData(
        episode_id=np.concatenate(ids),
        group=np.concatenate(groups),
        success=np.concatenate([b.success for _, b in parts]),
        outcome=np.concatenate([b.outcome for _, b in parts]),
        lengths=np.concatenate([b.lengths for _, b in parts]),
        values={s: np.concatenate([b.flat(s) for _, b in parts]) for s in SIGNALS},
        runs=["testbed"],
    )


def train_arm(
    tasks: SyntheticTasks, spec: RewardSpec, cfg: TrainConfig, *, seed: int,
    recalibration: RecalibrationConfig | None = None,
) -> dict[str, Any]:
    """Train a fresh policy with ``spec``; returns the learning curve and the final evaluation.

    Every arm of a seed starts from the same policy and draws its training tasks and evaluation
    episodes from streams seeded by ``seed`` alone (common random numbers: arms differ by their
    rewards, not by luck in which tasks came up). With ``recalibration``, the spec is recalibrated
    every ``recalibration.every`` steps on the batches of the last ``window`` steps, through
    :func:`calib.analysis.online.recalibrate_arrays` (the analysis and the rule of ``calib train
    --recalibrate-every``); ``weights`` then holds the trajectory of the weights.
    """
    policy = TabularPolicy(tasks)
    opt = torch.optim.Adam(policy.parameters(), lr=cfg.lr)
    rng_train = np.random.default_rng([seed, 1])
    rng_tasks = np.random.default_rng([seed, 2])
    n_tasks = tasks.config.n_tasks
    per_step = min(cfg.tasks_per_step, n_tasks)
    curve: list[dict[str, float]] = []

    def record(step: int) -> None:
        ev = evaluate(tasks, policy.probs(), cfg.eval_episodes, np.random.default_rng([seed, 3, step]))
        curve.append({"step": step, **ev})

    record(0)
    window: deque[tuple[int, SyntheticBatch]] = deque(maxlen=recalibration.window if recalibration else 1)
    trajectory = [{"step": 0, "weights": spec.turn_weights()}]
    for step in range(1, cfg.steps + 1):
        chosen = rng_tasks.choice(n_tasks, size=per_step, replace=False)  # (tasks_per_step,)
        batch = rollout(tasks, policy.probs(), np.repeat(chosen, cfg.group_size), rng_train)
        policy_step(policy, opt, batch, spec, cfg.kl_coef)
        if recalibration is not None:
            window.append((step, batch))
            if recalibration.due(step):
                spec = recalibrate_arrays(window_data(list(window)), spec, step=step, config=recalibration).spec
                trajectory.append({"step": step, "weights": spec.turn_weights()})
        if step % cfg.eval_every == 0 or step == cfg.steps:
            record(step)
    return {"curve": curve, "final": curve[-1], "spec": spec, "trajectory": trajectory}
