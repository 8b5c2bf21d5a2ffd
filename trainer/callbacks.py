"""Console output of ``calib train``: a rich progress bar and one line per logged step."""

from __future__ import annotations

import math
from typing import Any

from transformers import TrainerCallback

# (log key, column label, format) of the per-step line, in order.
STEP_COLUMNS: tuple[tuple[str, str, str], ...] = (
    ("loss", "loss", "{:+.4f}"),
    ("calib/success_rate", "success", "{:.2f}"),
    ("calib/informative_share", "informative", "{:.2f}"),
    ("calib/mean_turns", "turns", "{:.1f}"),
    ("calib/turn_reward_mean", "r_turn", "{:+.3f}"),
    ("calib/turn_reward_std", "r_std", "{:.3f}"),
    ("calib/advantage_std", "A_std", "{:.3f}"),
    ("calib/advantage_abs_max", "|A|max", "{:.3f}"),
    ("calib/misaligned_mass", "misaligned", "{:.3f}"),
    ("calib/dropped_episodes", "dropped", "{:.0f}"),
)


# The same for ``calib sft`` (TRL SFTTrainer's log keys).
SFT_COLUMNS: tuple[tuple[str, str, str], ...] = (
    ("loss", "loss", "{:.4f}"),
    ("mean_token_accuracy", "token_acc", "{:.3f}"),
    ("num_tokens", "tokens", "{:.0f}"),
    ("learning_rate", "lr", "{:.2e}"),
    ("epoch", "epoch", "{:.2f}"),
)


def format_step(step: int, logs: dict[str, Any], columns: tuple[tuple[str, str, str], ...] = STEP_COLUMNS) -> str:
    """``step 3  loss -0.0123  success 0.25 ...``; absent or undefined values print as ``-``."""
    parts = [f"step {step}"]
    for key, label, fmt in columns:
        v = logs.get(key)
        text = fmt.format(v) if isinstance(v, (int, float)) and math.isfinite(v) else "-"
        parts.append(f"{label} {text}")
    return "  ".join(parts)


class RichProgressCallback(TrainerCallback):
    """Progress bar over optimiser steps (starting where a resumed run starts) plus a log line per step."""

    def __init__(self, console: Any = None, *, show_bar: bool = True,
                 columns: tuple[tuple[str, str, str], ...] = STEP_COLUMNS, label: str = "train"):
        from rich.console import Console

        self.columns = columns
        self.label = label
        self.console = console or Console(stderr=True)
        self.show_bar = show_bar
        self.progress = None
        self.task = None
        self.lines: list[str] = []

    def on_train_begin(self, args, state, control, **kwargs):
        if not state.is_world_process_zero or not self.show_bar:
            return
        from rich.progress import BarColumn, MofNCompleteColumn, Progress, TextColumn, TimeRemainingColumn

        self.progress = Progress(
            TextColumn(self.label),
            BarColumn(),
            MofNCompleteColumn(),
            TimeRemainingColumn(),
            console=self.console,
            transient=True,
        )
        self.task = self.progress.add_task("train", total=state.max_steps, completed=state.global_step)
        self.progress.start()

    def on_step_end(self, args, state, control, **kwargs):
        if self.progress is not None:
            self.progress.update(self.task, completed=state.global_step)

    def on_log(self, args, state, control, logs=None, **kwargs):
        if not state.is_world_process_zero or not logs or "loss" not in logs:
            return
        line = format_step(state.global_step, logs, self.columns)
        self.lines.append(line)
        self.console.print(line, highlight=False, soft_wrap=True)

    def on_train_end(self, args, state, control, **kwargs):
        if self.progress is not None:
            self.progress.stop()
            self.progress = None
