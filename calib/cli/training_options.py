"""The options ``calib train`` and ``calib sft`` share, declared once so that they read the same.

The SFT warm start renders episodes exactly as the RL run will when given the same
``--tool-detail``/``--visible-tools``, so the two commands must not drift apart on them.
Defaults stay at each command (they differ, e.g. ``--save-steps``).
"""

from __future__ import annotations

from typing import Annotated

import typer

LoraROpt = Annotated[int, typer.Option("--lora-r", help="LoRA rank (all linear layers).")]
ResumeOpt = Annotated[
    bool, typer.Option("--resume", help="Continue from the last complete checkpoint in --output-dir.")
]
ToolDetailOpt = Annotated[
    str, typer.Option("--tool-detail", help="Tool schemas shown: full, compact (no descriptions) or minimal.")
]
VisibleToolsOpt = Annotated[
    str | None,
    typer.Option("--visible-tools", help="Comma-separated tools shown to the model (default: all)."),
]
ThreadsOpt = Annotated[
    int | None, typer.Option("--threads", help="torch CPU threads (1 is fastest on a busy machine).")
]
