"""Option definitions shared by several commands (one place, so help texts never drift)."""

from __future__ import annotations

import math
import os
from pathlib import Path
from typing import Annotated

import typer

from calib.errors import CalibError, UsageError

DEFAULT_STORE = "./calib-store"


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

StoreLabelOpt = Annotated[
    str | None,
    typer.Option("--store-label", help="How the outputs name the store (default: its absolute path); a stable "
                                       "name keeps a temporary path out of files that are committed."),
]

JsonOpt = Annotated[bool, typer.Option("--json", help="Print one JSON object instead of a table.")]


def check_finite(flag: str, value: float) -> None:
    """Refuse (exit 2, one line) a float option that is NaN or infinite: every comparison with NaN is
    false, so ``--success-threshold nan`` would silently make every episode a failure."""
    if not math.isfinite(value):
        raise UsageError(f"{flag} {value}: expected a finite number")


def parse_size_option(flag: str, value: str) -> int:
    """A byte count such as ``64MiB``, ``500KB`` or ``1000000`` (``calib.jsonlimits.parse_size``), or a
    one-line refusal (exit 2)."""
    from calib.jsonlimits import parse_size

    try:
        return parse_size(value)
    except ValueError:
        raise UsageError(f"{flag} {value!r}: expected a positive size such as 64MiB, 500KB or 1000000") from None


def split_csv(value: str | None) -> list[str] | None:
    """``"a, b"`` -> ``["a", "b"]``; ``None`` or empty -> ``None`` (meaning: all)."""
    if not value:
        return None
    items = [v.strip() for v in value.split(",") if v.strip()]
    return items or None


def check_input_file(path: Path, what: str, *, text: bool = True) -> None:
    """Refuse (exit 2, one line) an input that is missing, a folder, empty, or (``text``) not UTF-8."""
    if not path.exists():
        raise UsageError(f"{what} {path}: no such file")
    if path.is_dir():
        raise UsageError(f"{what} {path}: is a folder, not a file")
    if path.stat().st_size == 0:
        raise UsageError(f"{what} {path}: the file is empty")
    if text:
        with open(path, "rb") as f:
            head = f.read(1 << 16)
        try:
            head.decode("utf-8")
        except UnicodeDecodeError as e:
            if e.start < len(head) - 4:  # not just a multi-byte character cut by the 64 kB window
                raise UsageError(f"{what} {path}: not UTF-8 text (byte {e.start})") from None


def check_output(path: Path, *, folder: bool, flag: str = "--out") -> None:
    """Refuse (exit 1, one line) an output that cannot be written, before any work: a file where a
    folder is needed (or the reverse), or a path under a file or under an unwritable folder."""
    if path.exists():
        if folder and not path.is_dir():
            raise CalibError(f"{flag} {path}: a file of that name exists; a folder is needed")
        if not folder and path.is_dir():
            raise CalibError(f"{flag} {path}: is a folder; give a file name")
    for parent in path.parents:
        if parent.exists():
            if not parent.is_dir():
                raise CalibError(f"{flag} {path}: {parent} is a file, so nothing can be written under it")
            if not os.access(parent, os.W_OK):
                raise CalibError(f"{flag} {path}: {parent} is not writable")
            break


def check_store(path: Path) -> None:
    """Open (or create) the store at ``path`` now, so that a directory that is not a store is refused
    before a long job starts rather than when it first writes."""
    from calib.store import Store

    Store(path)


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
    """Fail fast, in one line, on a domain name the registry does not know (calib.envs.registry), and
    when a ``tau2:`` domain is asked for without the tau2 package."""
    from calib.envs.registry import parse_domain

    if parse_domain(domain)[0].name == "tau2":
        from calib.envs.tau2.loader import import_tau2

        import_tau2()
