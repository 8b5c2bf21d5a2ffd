"""How a training command ends: one JSON line with ``--json``, else one sentence.

``calib train`` and ``calib sft`` print the same kind of ending (the step reached, where a resumed
run started from, where the result is); writing it once keeps the two alike.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

import typer

from calib.jsonutil import dumps


def resumed_from(path: Path | None) -> str | None:
    """The ``resumed_from`` value of the JSON summary: the checkpoint's path, or null."""
    return str(path) if path else None


def resumed_note(path: Path | None) -> str:
    """`` (resumed from checkpoint-N)`` for the sentence, or nothing for a fresh run."""
    return f" (resumed from {path.name})" if path else ""


def finish(console: Any, summary: dict[str, Any], sentence: str, *, json_out: bool) -> None:
    """Print ``summary`` as one JSON line (``--json``) or ``sentence`` (rich markup) on ``console``."""
    if json_out:
        typer.echo(dumps(summary))
    else:
        console.print(sentence, highlight=False, soft_wrap=True)
