"""The ``calib`` command line: wiring only (parse options, call one function, print).

Each command group lives in its own module with a ``register(app)`` function, so that commands stay
small and heavy imports (torch, transformers, trl) happen inside the command that needs them:
``calib --help`` and ``calib analyze`` start fast.
"""

from __future__ import annotations

import os
import sys

import typer
from rich.console import Console
from rich.text import Text
from typer.core import TyperGroup

from calib.errors import CalibError

err_console = Console(stderr=True)


class CalibGroup(TyperGroup):
    """Root group: turns known errors into one red line and an exit code (no traceback)."""

    def invoke(self, ctx):
        try:
            return super().invoke(ctx)
        except CalibError as e:
            if os.environ.get("CALIB_DEBUG"):
                raise
            # One red line and the error's exit code; typer.Exit is the public way to leave with a
            # code (typer vendors its own click, so click's exception classes do not apply).
            err_console.print(Text("Error: ", style="bold red") + Text(str(e)), highlight=False, soft_wrap=True)
            raise typer.Exit(e.exit_code) from None


app = typer.Typer(
    cls=CalibGroup,
    name="calib",
    help="Iterative Reward Calibration for multi-turn RL of tool-calling agents.",
    no_args_is_help=True,
    pretty_exceptions_enable=False,
    add_completion=False,
    rich_markup_mode="rich",
)

# Command modules, in pipeline order. Each exposes ``register(app)``.
_COMMAND_MODULES = (
    "calib.cli.ingest_cmd",
    "calib.cli.store_cmd",
    "calib.cli.rollout_cmd",
    "calib.cli.replay_cmd",
    "calib.cli.eval_cmd",
    "calib.cli.analyze_cmd",
    "calib.cli.report_cmd",
    "calib.cli.spec_cmd",
    "calib.cli.train_cmd",
    "calib.cli.loop_cmd",
    "calib.cli.experiment_cmd",
)


def _register_all() -> None:
    import importlib

    for name in _COMMAND_MODULES:
        importlib.import_module(name).register(app)


_register_all()


def main() -> None:
    """Console-script entry point."""
    sys.exit(app(prog_name="calib"))
