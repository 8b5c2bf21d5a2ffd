"""``loop.yaml``: the configuration of ``calib loop`` (validated on load, errors name the field)."""

from __future__ import annotations

import math
from pathlib import Path
from typing import Any, Literal

import yaml
from pydantic import BaseModel, ConfigDict, Field, ValidationError, field_validator

from calib.errors import UsageError

FAMILIES = ("synthetic", "oracle", "hf")


class _Model(BaseModel):
    model_config = ConfigDict(extra="forbid")


class RolloutSection(_Model):
    tasks: str | list[str] = Field("all", description="'all', or a list of task ids.")
    samples: int = Field(4, ge=2, description="Episodes per task (the GRPO group size; >= 2 to be informative).")
    max_turns: int = Field(12, ge=1, description="Assistant turns per episode at most.")
    concurrency: int = Field(4, ge=1, description="Episodes in flight at once.")
    mistake_rate: float = Field(0.3, ge=0.0, le=1.0, description="oracle family: rate of each mistake kind.")
    split: Literal["train", "test", "all"] = Field("all", description="The domain's task split to roll out on "
                                                   "(tau2 domains: tau2's split; see docs/environments.md).")


class EvalSection(_Model):
    """Where and how the trained policy is evaluated; it may differ from the training domain (the seed
    paper trains on tau-bench airline and evaluates on tau2-bench airline, 4 trials, greedy)."""

    domain: str | None = Field(None, description="Evaluation domain (default: the training domain).")
    split: Literal["train", "test", "all"] | None = Field(None, description="Task split of the evaluation domain "
                                                          "(default: rollout.split on the training domain, else all).")
    tasks: str | list[str] | None = Field(None, description="'all', or a list of task ids within the split (default: "
                                          "rollout.tasks on the training domain, else all).")
    trials: int | None = Field(None, ge=1, description="Episodes per task (default: eval_samples); pass^1..pass^trials "
                               "are reported.")
    temperature: float | None = Field(None, ge=0.0, description="hf family: sampling temperature of the evaluated "
                                      "policy (0 = greedy; default: the rollout temperature).")
    user: str | None = Field(None, description="User simulator of the evaluation (default: the loop's user).")
    max_turns: int | None = Field(None, ge=1, description="Assistant turns per episode (default: rollout.max_turns).")


class AnalysisSection(_Model):
    mode: str = Field("gtpo_hybrid", description="Advantage mode for sign agreement: one whose turn rewards reach "
                      "the advantage (calib.advantages.signal_mode_names(): mt_grpo, gtpo_hybrid, plug-ins).")

    @field_validator("mode")
    @classmethod
    def _sign_mode(cls, v: str) -> str:
        from calib.advantages import signal_mode_names

        if v not in signal_mode_names():
            raise ValueError(f"expected one of {', '.join(signal_mode_names())}")
        return v
    signals: list[str] | None = Field(None, description="Signals to analyse (default: every built-in).")
    weight_cap: float = Field(0.3, gt=0.0, description="|proposed weight| <= cap.")
    bootstrap: int = Field(500, ge=50, description="Bootstrap resamples for the CIs.")


class TrainSection(_Model):
    model: str = Field("tiny", description="hf family: model path, or 'tiny' for the SmolLM2-135M test model.")
    max_steps: int = Field(2, ge=1, description="Optimizer steps per iteration.")
    lora_r: int = Field(8, ge=1, description="LoRA rank (hf family).")
    learning_rate: float = Field(1e-4, gt=0.0, description="Learning rate.")
    batch_tasks: int = Field(2, ge=1, description="hf family: tasks per step (times samples = batch).")
    max_new_tokens: int = Field(48, ge=8, description="hf family: tokens per assistant turn.")
    system_prompt: str | None = Field(None, description="hf family: show the model this system prompt instead "
                                      "of the domain's policy (a CPU budget knob; rollouts and training agree).")
    tool_detail: Literal["full", "compact", "minimal"] = Field("full", description="hf family: tool schemas shown.")
    visible_tools: list[str] | None = Field(None, description="hf family: tools shown to the model (default: all).")
    threads: int | None = Field(None, ge=1, description="hf family: torch CPU threads.")
    recalibrate_every: int = Field(0, ge=0, description="hf family: online recalibration inside the iteration's "
                                   "training, every N steps (0: never); see docs/training.md.")
    recalibration_window: int = Field(10, ge=1, description="hf family: steps of episodes each recalibration reads.")
    recalibration_blend: float = Field(0.5, gt=0.0, le=1.0, description="hf family: share of the new weight taken.")
    recalibration_rule: Literal["auc", "joint", "irc"] = Field("joint", description="hf family: rule of each "
                                                               "recalibration.")

    @field_validator("learning_rate")
    @classmethod
    def _finite(cls, v: float) -> float:
        if not math.isfinite(v):
            raise ValueError("must be finite")
        return v


class StopWhen(_Model):
    """Stop the loop after an iteration whose rollouts show the trained spec converged (the seed
    paper's criterion): no misaligned signal and turn rewards that track the outcome."""

    max_mismatches: int = Field(0, ge=0, description="Stop only if at most this many signals are misaligned "
                                "(tier alignment of the spec the rollouts were trained with).")
    min_corr: float = Field(0.3, ge=-1.0, le=1.0, description="... and the correlation between an episode's mean "
                            "turn reward and its outcome exceeds this.")


class LoopConfig(_Model):
    """One calibration loop: rollout -> ingest -> analyze -> spec -> train -> eval, ``iterations`` times."""

    name: str = Field("calib-loop", description="Run id prefix: iteration i writes run '<name>-it<i>'.")
    workdir: str = Field("runs/loop", description="Folder for the store, specs, checkpoints and state.")
    family: Literal["synthetic", "oracle", "hf"] = Field(
        "synthetic",
        description="Policy family: 'synthetic' (testbed + softmax policy, trains in seconds), 'oracle' (noisy "
        "oracle on a domain; its train stage only records the spec: an oracle does not learn), 'hf' (a "
        "transformers model trained with TRL).",
    )
    domain: str = Field("airline-mini", description="Domain for the oracle and hf families.")
    user: str = Field("scripted", description="User simulator for the oracle and hf families.")
    iterations: int = Field(2, ge=1, description="How many calibration iterations to run.")
    seed: int = Field(0, description="Seed of everything random in the loop.")
    base_spec: str | None = Field(None, description="Spec to start from (default: outcome-only gtpo_hybrid).")
    review: bool = Field(False, description="Stop after each proposed spec so a person can edit it.")
    rollout: RolloutSection = Field(default_factory=RolloutSection)
    analysis: AnalysisSection = Field(default_factory=AnalysisSection)
    train: TrainSection = Field(default_factory=TrainSection)
    eval_samples: int = Field(4, ge=1, description="Episodes per task for the evaluation after training.")
    stop_when: StopWhen | None = Field(None, description="Stop before `iterations` when converged (mismatches "
                                       "and correlation, see StopWhen); null = always run every iteration.")
    eval: EvalSection = Field(default_factory=EvalSection, description="The evaluation after training.")

    @property
    def eval_domain(self) -> str:
        return self.eval.domain or self.domain

    @property
    def eval_trials(self) -> int:
        return self.eval.trials or self.eval_samples

    @property
    def eval_split(self) -> str:
        if self.eval.split is not None:
            return self.eval.split
        return self.rollout.split if self.eval_domain == self.domain else "all"

    @property
    def eval_tasks(self) -> str | list[str]:
        if self.eval.tasks is not None:
            return self.eval.tasks
        return self.rollout.tasks if self.eval_domain == self.domain else "all"

    def path(self, *parts: str) -> Path:
        return Path(self.workdir).joinpath(*parts)

    def run_id(self, iteration: int, stage: str = "") -> str:
        return f"{self.name}-it{iteration}" + (f"-{stage}" if stage else "")


def load_loop_config(path: str | Path, overrides: dict[str, Any] | None = None) -> LoopConfig:
    p = Path(path)
    if not p.exists():
        raise UsageError(f"no such loop config: {p}")
    try:
        raw = yaml.safe_load(p.read_text()) or {}
    except yaml.YAMLError as e:
        raise UsageError(f"{p}: not valid YAML: {e}") from None
    if not isinstance(raw, dict):
        raise UsageError(f"{p}: a loop config is a mapping of fields")
    raw.update({k: v for k, v in (overrides or {}).items() if v is not None})
    try:
        cfg = LoopConfig.model_validate(raw)
    except ValidationError as e:
        errs = "; ".join(f"{'.'.join(str(x) for x in err['loc'])}: {err['msg']}" for err in e.errors())
        raise UsageError(f"{p}: {errs}") from None
    if not Path(cfg.workdir).is_absolute():
        cfg.workdir = str((p.parent / cfg.workdir).resolve())
    return cfg
