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

SplitOpt = Annotated[
    str,
    typer.Option("--split", help="train | test | all: the domain's task split (tau2 domains: tau2's split_tasks.json; "
                 "a domain without a split has every task in all)."),
]
JudgeBaseUrlOpt = Annotated[
    str | None,
    typer.Option("--judge-base-url", help="OpenAI-compatible endpoint (up to /v1) of the LLM judge that scores tau2's "
                 "NL assertions; without it, tasks whose reward needs one are refused."),
]
JudgeModelOpt = Annotated[str | None, typer.Option("--judge-model", help="Model name of the NL-assertion judge.")]


def judge_config(base_url: str | None, model: str | None):
    """A :class:`calib.envs.tau2.JudgeConfig` from the judge options (both or neither), or None."""
    from calib.errors import UsageError

    if not base_url and not model:
        return None
    if not (base_url and model):
        raise UsageError("--judge-base-url and --judge-model go together: give both, or neither")
    from calib.envs.tau2.domain import JudgeConfig

    return JudgeConfig(base_url=base_url, model=model, api_key=os.environ.get("OPENAI_API_KEY"))


def check_domain(domain: str) -> None:
    """Fail fast, in one line, when a ``tau2:`` domain is asked for without the tau2 package."""
    if domain.startswith("tau2:"):
        from calib.envs.tau2.loader import import_tau2

        import_tau2()
