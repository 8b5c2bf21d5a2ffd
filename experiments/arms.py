"""The arms of the misalignment experiment (the seed paper's table, on the testbed).

==========================  =============  ==========================================================
arm                         advantage      per-turn rewards
==========================  =============  ==========================================================
``grpo``                    grpo           none: outcome only
``naive_mt_grpo``           mt_grpo        +0.3 for every activity signal (``NAIVE_SIGNALS``)
``naive_gtpo_hybrid``       gtpo_hybrid    the same
``calibrated_mt_grpo``      mt_grpo        the weights ``calib analyze`` proposes from a first batch
``calibrated_gtpo_hybrid``  gtpo_hybrid    the same, with sign agreement measured under gtpo_hybrid
``valid_bonus_mt_grpo``     mt_grpo        +0.3 for ``valid_call`` only (the seed paper's bonus alone)
``valid_bonus_gtpo_hybrid`` gtpo_hybrid    the same
``paper_v5_naive``          mt_grpo        the preset ``paper-v5-naive`` (the seed paper's v5 tiers)
``paper_v6_calibrated``     gtpo_hybrid    the preset ``paper-v6-calibrated`` (its v6 tiers, gamma 0.9,
                                           lambda 0.3)
``online_mt_grpo``          mt_grpo        the calibrated spec, then recalibrated every N steps on the
                                           last W steps' groups (``calib train --recalibrate-every``)
``online_gtpo_hybrid``      gtpo_hybrid    the same
``online_zero_gtpo_hybrid`` gtpo_hybrid    every signal at weight 0, no calibration batch (grpo's
                                           episode budget), then recalibrated the same way
``gold_only_mt_grpo``       mt_grpo        +0.3 for ``gold_match`` alone: the best hand-picked spec
                                           known, the reference the online arms are measured against
``gold_only_gtpo_hybrid``   gtpo_hybrid    the same
==========================  =============  ==========================================================

The naive reward is what a designer writes without measuring: +0.3 for each thing the agent does
(a valid call, a lookup, a write, a write that matches the task). ``tool_error`` is left out because
nobody would reward errors on purpose. Because that reward also pays for wrong writes, the two
``valid_bonus`` arms separate the seed paper's own claim (a +0.3 bonus per valid call, given alike in
successes and failures, hurts) from the plainer "rewarding wrong writes hurts". Advantage parameters are the docs/architecture.md section 6 defaults
(mt_grpo lambda 1.0; gtpo_hybrid gamma 0.9, lambda 0.3; index normalisation).
"""

from __future__ import annotations

from dataclasses import dataclass

from calib.spec import AdvantageSpec, RewardSpec, TurnReward, is_preset, load_spec

NAIVE_WEIGHT = 0.3  # the seed paper's "+0.3 per valid call"
NAIVE_SIGNALS = ("gold_match", "read_only", "state_change", "valid_call")


@dataclass(frozen=True)
class Arm:
    """One arm: a name, an advantage mode, and where its turn rewards come from."""

    name: str
    mode: str
    rewards: str  # "none" | "naive" | "valid_bonus" | "gold_only" | "calibrated" | "online" | "online_zero" | "preset:NAME"

    @property
    def online(self) -> bool:
        """Whether the arm recalibrates its weights during training."""
        return self.rewards in ("online", "online_zero")

    @property
    def needs_calibration(self) -> bool:
        """Whether the arm starts from the spec the analysis proposes from the calibration batch."""
        return self.rewards in ("calibrated", "online")

    def fixed_spec(self) -> RewardSpec | None:
        """The arm's starting spec when it needs no data; None for arms that start from the calibration."""
        from calib.envs.testbed import SIGNALS

        if self.needs_calibration:
            return None
        if is_preset(self.rewards):
            return load_spec(self.rewards)
        if self.rewards == "online_zero":
            turn = [TurnReward(signal=s, weight=0.0) for s in SIGNALS]
            return RewardSpec(name=self.name, advantage=AdvantageSpec(mode=self.mode), turn_rewards=turn)
        signals = {"none": (), "naive": NAIVE_SIGNALS, "valid_bonus": ("valid_call",),
                   "gold_only": ("gold_match",)}[self.rewards]
        turn = [TurnReward(signal=s, weight=NAIVE_WEIGHT) for s in signals]
        return RewardSpec(name=self.name, advantage=AdvantageSpec(mode=self.mode), turn_rewards=turn)


ARMS = (
    Arm("grpo", "grpo", "none"),
    Arm("naive_mt_grpo", "mt_grpo", "naive"),
    Arm("naive_gtpo_hybrid", "gtpo_hybrid", "naive"),
    Arm("calibrated_mt_grpo", "mt_grpo", "calibrated"),
    Arm("calibrated_gtpo_hybrid", "gtpo_hybrid", "calibrated"),
    Arm("valid_bonus_mt_grpo", "mt_grpo", "valid_bonus"),
    Arm("valid_bonus_gtpo_hybrid", "gtpo_hybrid", "valid_bonus"),
    Arm("paper_v5_naive", "mt_grpo", "preset:paper-v5-naive"),
    Arm("paper_v6_calibrated", "gtpo_hybrid", "preset:paper-v6-calibrated"),
    Arm("online_mt_grpo", "mt_grpo", "online"),
    Arm("online_gtpo_hybrid", "gtpo_hybrid", "online"),
    Arm("online_zero_gtpo_hybrid", "gtpo_hybrid", "online_zero"),
    Arm("gold_only_mt_grpo", "mt_grpo", "gold_only"),
    Arm("gold_only_gtpo_hybrid", "gtpo_hybrid", "gold_only"),
)
ARM_NAMES = tuple(a.name for a in ARMS)


def get_arms(names: list[str] | None = None) -> tuple[Arm, ...]:
    """The arms with these names (all when None), in table order; ValueError names an unknown one."""
    if not names:
        return ARMS
    unknown = [n for n in names if n not in ARM_NAMES]
    if unknown:
        raise ValueError(f"unknown arm(s) {', '.join(unknown)}; expected some of {', '.join(ARM_NAMES)}")
    return tuple(a for a in ARMS if a.name in names)
