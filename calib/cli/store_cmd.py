"""CLI: ``calib store info|query|export``."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Annotated

import typer

from calib.cli.options import JsonOpt, StoreOpt

store_app = typer.Typer(help="Look into a rollout store: summary, read-only SQL, export.", no_args_is_help=True)


def _open(store: Path):
    from calib.store import Store

    return Store(store, create=False)


@store_app.command("info")
def info_cmd(store: StoreOpt = Path("./calib-store"), as_json: JsonOpt = False) -> None:
    """Episodes, turns, groups, runs, success rate, signals and quarantine of a store."""
    from rich.console import Console
    from rich.table import Table

    from calib.cli.display import term_text
    from calib.jsonutil import dumps
    from calib.store.ops import info

    d = info(_open(store))
    if as_json:
        typer.echo(dumps(d, indent=2))
        return
    console = Console()
    rate = "-" if d["success_rate"] is None else f"{d['success_rate']:.1%}"
    console.print(f"[bold]{d['store']}[/]: {d['episodes']:,} episodes, {d['turns']:,} turns, {d['groups']:,} groups, "
                  f"{d['tasks']:,} tasks, {d['runs']} runs; success {rate}; {d['errors']} error episodes; "
                  f"{d['ingests']} ingests; {d['quarantined']} quarantined records", highlight=False)
    t = Table(title="runs")
    for c in ("run_id", "episodes", "groups", "turns", "success", "errors"):
        t.add_column(c, justify="left" if c == "run_id" else "right")
    for r in d["per_run"]:
        sr = "-" if r["success_rate"] is None else f"{r['success_rate']:.1%}"
        t.add_row(term_text(r["run_id"], 80), f"{r['episodes']:,}", f"{r['groups']:,}", f"{int(r['turns'] or 0):,}", sr,
                  str(r["errors"]))
    console.print(t)
    if d["signals"]:
        s = Table(title="signals")
        s.add_column("signal")
        s.add_column("version")
        s.add_column("turns", justify="right")
        for name, n in d["signals"].items():
            s.add_row(term_text(name, 80), term_text(d["signal_versions"].get(name, "?"), 80), f"{n:,}")
        console.print(s)


@store_app.command("query")
def query_cmd(
    sql: Annotated[str, typer.Argument(help="Read-only SQL over the tables episodes, turns, signals, ingest_log.")],
    store: StoreOpt = Path("./calib-store"),
    as_json: JsonOpt = False,
    limit: Annotated[int, typer.Option("--limit", help="Rows to print in the table view (0 or more).")] = 50,
) -> None:
    """Run read-only SQL over the store (SELECT, SUMMARIZE, DESCRIBE, SHOW, PIVOT, or EXPLAIN of one);
    prints a table, or JSON records with --json. Nothing else runs, and no file is reachable."""
    import pandas as pd
    from rich.console import Console
    from rich.table import Table

    from calib.cli.display import term_text
    from calib.errors import UsageError
    from calib.jsonutil import dumps, frame_records
    from calib.store.ops import query

    if limit < 0:
        raise UsageError(f"--limit {limit}: expected a number of rows >= 0")
    df = query(_open(store), sql)
    if as_json:
        typer.echo(dumps(frame_records(df)))
        return
    t = Table(caption=f"{len(df):,} rows" + (f" (first {limit} shown)" if len(df) > limit else ""))
    for c in df.columns:
        t.add_column(str(c), overflow="fold")
    for row in df.head(limit).itertuples(index=False):
        # a cell is data: shown as text (no rich markup), control characters escaped
        t.add_row(*["" if v is None or v is pd.NA else term_text(v, 100_000) for v in row])
    Console().print(t)


@store_app.command("export")
def export_cmd(
    out: Annotated[Path, typer.Option("--out", help="Output file (jsonl) or folder (parquet).")],
    store: StoreOpt = Path("./calib-store"),
    fmt: Annotated[str, typer.Option("--format", help="parquet | jsonl")] = "jsonl",
    runs: Annotated[str | None, typer.Option("--runs", help="Comma-separated run ids (default: all).")] = None,
) -> None:
    """Export episodes as canonical JSONL (re-ingestable) or the tables as Parquet files."""
    from calib.cli.options import split_csv
    from calib.store.ops import export

    d = export(_open(store), fmt, out, runs=split_csv(runs) or None)
    typer.echo(json.dumps(d))


@store_app.command("compact")
def compact_cmd(store: StoreOpt = Path("./calib-store"), as_json: JsonOpt = False) -> None:
    """Merge the small parts that ingests left (and each signal's files) into few large ones.

    Safe while other commands read or write the store; ingests also compact automatically once more
    than 16 small parts pile up ($CALIB_COMPACT_AFTER). Replaced files are deleted by a later writer,
    an hour after the merge ($CALIB_COMPACT_GRACE_S), so that running readers can finish.
    """
    from calib.store.compact import compact

    r = compact(_open(store))
    if as_json:
        typer.echo(json.dumps(r.summary()))
        return
    typer.echo(f"parts: {r.parts_before:,} -> {r.parts_after:,} ({r.episodes_merged:,} episodes merged); signal "
               f"files: {r.signal_files_before:,} -> {r.signal_files_after:,}; {r.removed:,} replaced parts or files "
               "deleted")


def register(app: typer.Typer) -> None:
    app.add_typer(store_app, name="store")
