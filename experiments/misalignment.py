"""The misalignment experiment: every arm, every seed, and the summary over seeds.

Per seed: draw the testbed's tasks; roll out the initial policy once (``calib_episodes`` per task)
and let the analysis propose the calibrated spec from that batch (one spec per advantage mode, since
sign agreement depends on the mode); then train every arm from the same initial policy with the same
budget. The calibration batch is extra rollouts of the initial policy, with no gradient step; it is
counted in ``calibration_episodes`` so that the budget difference is visible.

Summary per arm over seeds: mean and 95% t-interval of the final success, of its paired difference
to ``grpo`` (same seed, same tasks), and of the mean success over the learning curve (how fast it
learns), plus behaviour at the end (turns, timeouts, wrong writes, lookups).
"""

from __future__ import annotations

import dataclasses
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any

import numpy as np
from scipy import stats

from calib.analysis.online import RecalibrationConfig
from calib.envs.testbed import SyntheticConfig, make_tasks, rollout
from calib.spec import RewardSpec
from experiments.arms import ARMS, Arm
from experiments.calibrate import calibrated_spec
from experiments.train import TrainConfig, train_arm
from trainer.tabular import prior_logits, softmax_table

SETTINGS = ("default", "bounded", "sparse")
# The bounded-farming setting (the seed paper's conditions, where dense bonuses cost it at most
# -14 pp): the customer hangs up after 3 turns in a row without progress (one lookup before each
# write still fits), and a KL penalty to the initial policy with GRPO's classic beta 0.04
# (DeepSeekMath; TRL's default before 0.19).
BOUNDED_PATIENCE = 3
BOUNDED_KL = 0.04
# The sparse setting (issue 24): every task needs 3 writes, each with 3 argument variants, within 8
# turns: the initial policy succeeds about 2% of the time, so most GRPO groups carry no outcome signal.
SPARSE = {"min_stages": 3, "max_stages": 3, "n_variants": 3, "max_turns": 8}


def online_recalibration() -> RecalibrationConfig:
    """The online arms' schedule: every 10 steps on the last 10 steps' groups, half old, half new
    (what the prototype measured best among 5/10/25), the recalibration's default rule (joint)."""
    return RecalibrationConfig(every=10, window=10, blend=0.5, min_groups=3, n_boot=200)


@dataclass(frozen=True)
class ExperimentConfig:
    """Everything that defines a run of the experiment (written next to its results)."""

    seeds: int = field(default=10, metadata={"help": "Independent seeds (testbed tasks + sampling)."})
    first_seed: int = field(default=0, metadata={"help": "Seeds are first_seed .. first_seed + seeds - 1."})
    calib_episodes: int = field(default=16, metadata={"help": "Calibration rollouts per task (one group per task)."})
    arms: tuple[str, ...] = field(default=tuple(a.name for a in ARMS), metadata={"help": "Arms to run, in order."})
    setting: str = field(default="default", metadata={"help": "default (farming unbounded until max_turns) | "
                         "bounded (the customer hangs up without progress; KL penalty): see bounded_setting."})
    env: SyntheticConfig = field(default_factory=SyntheticConfig)
    train: TrainConfig = field(default_factory=TrainConfig)
    recalibration: RecalibrationConfig = field(default_factory=online_recalibration,
                                               metadata={"help": "Schedule and rule of the online arms."})

    def __post_init__(self) -> None:
        if self.seeds < 1:
            raise ValueError(f"seeds={self.seeds}: expected >= 1")
        if self.calib_episodes < 2:
            raise ValueError(f"calib_episodes={self.calib_episodes}: expected >= 2 (a group needs two episodes)")
        if not self.arms:
            raise ValueError("arms: expected at least one arm")
        if self.setting not in SETTINGS:
            raise ValueError(f"setting={self.setting!r}: expected one of {', '.join(SETTINGS)}")

    def to_dict(self) -> dict[str, Any]:
        return dataclasses.asdict(self)


def quick_config(seeds: int = 3) -> ExperimentConfig:
    """A small budget for tests and a first look: fewer tasks, steps and evaluation episodes."""
    return ExperimentConfig(
        seeds=seeds,
        calib_episodes=8,
        env=SyntheticConfig(n_tasks=12),
        train=TrainConfig(steps=30, tasks_per_step=6, eval_every=10, eval_episodes=8),
    )


def bounded_setting(cfg: ExperimentConfig) -> ExperimentConfig:
    """``cfg`` in the bounded-farming setting: customer patience and the KL penalty switched on."""
    return dataclasses.replace(
        cfg,
        setting="bounded",
        env=dataclasses.replace(cfg.env, patience=BOUNDED_PATIENCE),
        train=dataclasses.replace(cfg.train, kl_coef=BOUNDED_KL),
    )


def sparse_setting(cfg: ExperimentConfig) -> ExperimentConfig:
    """``cfg`` in the sparse setting (:data:`SPARSE`: initial success about 2%)."""
    return dataclasses.replace(cfg, setting="sparse", env=dataclasses.replace(cfg.env, **SPARSE))


def run_seed(cfg: ExperimentConfig, seed: int, arms: tuple[Arm, ...], on_arm: Callable[[str], None] | None = None):
    """One seed: the calibrated specs, then every arm. Returns (per-arm results, specs by mode)."""
    tasks = make_tasks(cfg.env, seed)
    first = rollout(
        tasks,
        softmax_table(prior_logits(tasks)),
        np.repeat(np.arange(cfg.env.n_tasks), cfg.calib_episodes),
        np.random.default_rng([seed, 4]),
    )
    specs: dict[str, RewardSpec] = {}
    results: dict[str, dict[str, Any]] = {}
    for arm in arms:
        spec = arm.fixed_spec()
        if spec is None:
            if arm.mode not in specs:
                specs[arm.mode] = calibrated_spec(first, mode=arm.mode, seed=seed, name=f"synthetic-seed{seed}-{arm.mode}")
            spec = specs[arm.mode]
        res = train_arm(tasks, spec, cfg.train, seed=seed, recalibration=cfg.recalibration if arm.online else None)
        res["weights"] = res.pop("spec").turn_weights()  # at the end (online arms move them)
        results[arm.name] = res
        if on_arm is not None:
            on_arm(arm.name)
    return results, specs, {"success": float(first.success.mean()), "episodes": first.n_episodes}


def mean_ci(x: np.ndarray, *, level: float = 0.95) -> tuple[float, float, float]:
    """Mean and t-interval over seeds; the interval is NaN with a single seed."""
    x = np.asarray(x, dtype=np.float64)
    m = float(x.mean())
    if x.size < 2:
        return m, float("nan"), float("nan")
    half = float(stats.t.ppf(0.5 + level / 2.0, x.size - 1) * x.std(ddof=1) / np.sqrt(x.size))
    return m, m - half, m + half


def summarize(per_seed: list[dict[str, dict[str, Any]]], arm_names: list[str]) -> list[dict[str, Any]]:
    """One row per arm: final success, paired difference to grpo, curve mean, end behaviour."""
    rows = []
    base = "grpo" if "grpo" in arm_names else None
    for name in arm_names:
        final = np.array([s[name]["final"]["success"] for s in per_seed])  # (seeds,)
        area = np.array([np.mean([p["success"] for p in s[name]["curve"]]) for s in per_seed])  # (seeds,)
        row: dict[str, Any] = {"arm": name, "seeds": len(per_seed)}
        row["final_success"] = mean_ci(final)
        row["curve_mean_success"] = mean_ci(area)
        if base is not None and name != base:
            row["delta_vs_grpo"] = mean_ci(final - np.array([s[base]["final"]["success"] for s in per_seed]))
        for key in ("turns", "timeout", "hung_up", "wrong_write", "lookups"):
            row[key] = float(np.mean([s[name]["final"].get(key, 0.0) for s in per_seed]))
        weights = [s[name]["weights"] for s in per_seed]
        row["mean_weights"] = {k: float(np.mean([w.get(k, 0.0) for w in weights])) for k in weights[0]}
        rows.append(row)
    return rows


def curves(per_seed: list[dict[str, dict[str, Any]]], arm_names: list[str]) -> dict[str, dict[str, list[float]]]:
    """Learning curves per arm: steps, mean success over seeds and its 95% t-interval."""
    out = {}
    for name in arm_names:
        steps = [p["step"] for p in per_seed[0][name]["curve"]]
        y = np.array([[p["success"] for p in s[name]["curve"]] for s in per_seed])  # (seeds, points)
        stats_ = [mean_ci(y[:, j]) for j in range(y.shape[1])]
        out[name] = {
            "step": steps,
            "mean": [s[0] for s in stats_],
            "lo": [s[1] for s in stats_],
            "hi": [s[2] for s in stats_],
        }
    return out


def run_experiment(
    cfg: ExperimentConfig, *, on_arm: Callable[[int, str], None] | None = None
) -> dict[str, Any]:
    """Run every seed and arm; returns config, per-seed results, calibrated specs, summary and curves."""
    import torch

    from experiments.arms import get_arms

    arms = get_arms(list(cfg.arms))
    names = [a.name for a in arms]
    threads = torch.get_num_threads()
    torch.set_num_threads(1)  # tiny tensors: threads only add overhead (and the box is shared)
    try:
        per_seed, specs, first = [], {}, []
        for seed in range(cfg.first_seed, cfg.first_seed + cfg.seeds):
            cb = (lambda arm, seed=seed: on_arm(seed, arm)) if on_arm is not None else None
            res, sp, info = run_seed(cfg, seed, arms, cb)
            per_seed.append(res)
            specs[seed] = sp
            first.append(info)
    finally:
        torch.set_num_threads(threads)
    return {
        "config": cfg.to_dict(),
        "arms": names,
        "initial_success": mean_ci(np.array([f["success"] for f in first])),
        "calibration_episodes": first[0]["episodes"],
        "per_seed": per_seed,
        "specs": specs,
        "summary": summarize(per_seed, names),
        "curves": curves(per_seed, names),
        "trajectories": trajectories(per_seed, [a.name for a in arms if a.online]),
    }


def trajectories(per_seed: list[dict[str, dict[str, Any]]], arm_names: list[str]) -> dict[str, dict[str, Any]]:
    """Online arms: the mean weight of each signal over seeds at each recalibration step."""
    out = {}
    for name in arm_names:
        steps = [p["step"] for p in per_seed[0][name]["trajectory"]]
        signals = list(per_seed[0][name]["trajectory"][0]["weights"])
        out[name] = {"step": steps, "weights": {
            sig: [float(np.mean([s[name]["trajectory"][j]["weights"].get(sig, 0.0) for s in per_seed]))
                  for j in range(len(steps))] for sig in signals}}
    return out
