"""Option definitions shared by several commands (one place, so help texts never drift)."""

from __future__ import annotations

import os
from pathlib import Path
from typing import Annotated

import typer

DEFAULT_STORE = "./calib-store"


def default_store() -> Path:
    """``$CALIB_STORE`` if set, else ``./calib-store``."""
    return Path(os.environ.get("CALIB_STORE") or DEFAULT_STORE)


StoreOpt = Annotated[
    Path,
    typer.Option(
        "--store",
        envvar="CALIB_STORE",
        help="Store directory (Parquet parts + DuckDB catalog). Defaults to $CALIB_STORE, else ./calib-store.",
        show_default=DEFAULT_STORE,
    ),
]

RunsOpt = Annotated[
    str | None,
    typer.Option("--runs", help="Comma-separated run ids to restrict to (default: every run in the store)."),
]

JsonOpt = Annotated[bool, typer.Option("--json", help="Print one JSON object instead of a table.")]


def split_csv(value: str | None) -> list[str] | None:
    """``"a, b"`` -> ``["a", "b"]``; ``None`` or empty -> ``None`` (meaning: all)."""
    if not value:
        return None
    items = [v.strip() for v in value.split(",") if v.strip()]
    return items or None
