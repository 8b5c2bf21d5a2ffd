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


def user_error_message(e: BaseException) -> str | None:
    """The one-line message of an error the user's input can cause, or None for a bug.

    Besides :class:`CalibError`: OS errors on the paths the user gave (missing, a directory where a
    file is expected, not writable, a file in the way, disk full), DuckDB errors on user SQL or
    files, bad text encodings, and YAML/JSON syntax errors in files the user named. Anything else is
    a bug and keeps its traceback.
    """
    if isinstance(e, CalibError):
        msg = str(e)
    elif isinstance(e, OSError):
        what = e.strerror or type(e).__name__
        where = " -> ".join(str(f) for f in (e.filename, e.filename2) if f is not None)
        msg = f"{what}: {where}" if where else f"{what}: {e}"
    elif isinstance(e, UnicodeDecodeError):
        msg = f"not UTF-8 text ({e.reason} at byte {e.start})"
    elif "duckdb" in sys.modules and isinstance(e, sys.modules["duckdb"].Error):
        msg = f"DuckDB: {e}"
    elif "yaml" in sys.modules and isinstance(e, sys.modules["yaml"].YAMLError):
        msg = f"invalid YAML: {e}"
    elif isinstance(e, ValueError) and type(e).__name__ == "JSONDecodeError":
        msg = f"invalid JSON: {e}"
    else:
        return None
    return " ".join(msg.split())  # one line, whatever the library put in the message


class CalibGroup(TyperGroup):
    """Root group: turns user errors into one red line and an exit code (no traceback)."""

    def invoke(self, ctx):
        try:
            return super().invoke(ctx)
        except Exception as e:
            msg = user_error_message(e)
            if msg is None or os.environ.get("CALIB_DEBUG"):
                raise
            # One red line and the error's exit code; typer.Exit is the public way to leave with a
            # code (typer vendors its own click, so click's exception classes do not apply).
            err_console.print(Text("Error: ", style="bold red") + Text(msg), highlight=False, soft_wrap=True)
            raise typer.Exit(getattr(e, "exit_code", 1)) from None


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
    "calib.cli.sft_cmd",
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
