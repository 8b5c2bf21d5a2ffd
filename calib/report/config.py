"""Report options: one dataclass, one place for every help text and default (TRL config style)."""

from __future__ import annotations

from dataclasses import dataclass, field

from calib.advantages import mode_names


@dataclass
class ReportConfig:
    """What the report samples and how much of it, so a 100k-episode store stays under 10 MB."""

    # Parameters that control the advantage picture
    mode: str | None = field(
        default=None,
        metadata={"help": "Advantage mode of the misalignment scatter: grpo | mt_grpo | gtpo_hybrid. "
                          "None = the spec's mode, else gtpo_hybrid."},
    )
    scatter_groups: int = field(
        default=300,
        metadata={"help": "Groups sampled for the advantage scatter. Advantages are computed within a "
                          "group, so whole groups are sampled: the sampled points are exact."},
    )
    scatter_points: int = field(
        default=2000, metadata={"help": "Points drawn per scatter panel at most (sampled, seeded)."}
    )
    # Parameters that control the episode browser
    max_episodes: int = field(
        default=120,
        metadata={"help": "Episodes embedded in the browser at most. Raise it for small stores; each "
                          "episode costs a few kB."},
    )
    per_task: int = field(
        default=2, metadata={"help": "Successes and failures taken per task (each) before the cap applies."}
    )
    max_message_chars: int = field(
        default=4000,
        metadata={"help": "Longer message texts and tool observations are cut, with a note saying how much."},
    )
    # Parameters that control the plots
    hist_bins: int = field(default=20, metadata={"help": "Bins of the success/failure distribution plots."})
    max_positions: int = field(default=10, metadata={"help": "Turn positions shown in AUC by position."})
    pass_k: int = field(default=8, metadata={"help": "Largest k reported for pass^k."})
    seed: int = field(default=0, metadata={"help": "Seed of every sample the report draws."})

    def __post_init__(self) -> None:
        if self.mode is not None and self.mode not in mode_names():
            raise ValueError(f"mode={self.mode!r}: expected one of {', '.join(mode_names())}")
        for name in ("scatter_groups", "scatter_points", "per_task", "hist_bins", "max_positions", "pass_k"):
            if getattr(self, name) < 1:
                raise ValueError(f"{name}={getattr(self, name)}: must be at least 1")
        if self.max_episodes < 0:
            raise ValueError(f"max_episodes={self.max_episodes}: must be 0 (no browser) or more")
        if self.max_message_chars < 100:
            raise ValueError(f"max_message_chars={self.max_message_chars}: must be at least 100")
