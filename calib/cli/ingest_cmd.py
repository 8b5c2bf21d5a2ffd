"""CLI: ``calib ingest PATH... --store DIR``."""

from __future__ import annotations

from pathlib import Path
from typing import Annotated

import typer

from calib.cli.options import StoreOpt, check_finite, parse_size_option


def ingest(
    paths: Annotated[list[Path], typer.Argument(help="Files or folders to ingest (JSONL, tau-bench results JSON, tau2 results "
                     "JSON or directory, a verifiers output folder, ART trajectory logs: Parquet, JSONL, YAML or a folder, "
                     "verl rollout dumps: a {step}.jsonl file or the rollout_data_dir).")],
    store: StoreOpt = Path("./calib-store"),
    fmt: Annotated[
        str, typer.Option("--format", help="auto | native | taubench | tau2 | chat | verifiers | art | verl (auto sniffs "
                          "each file and recognises the folders).")
    ] = "auto",
    run_id: Annotated[str | None, typer.Option("--run-id", help="Run id for every record (default: the record's, else the file name).")] = None,
    strict: Annotated[bool, typer.Option("--strict", help="Stop at the first bad record; nothing from that file is ingested.")] = False,
    success_threshold: Annotated[float, typer.Option("--success-threshold", help="verifiers, ART and verl rewards need "
                                 "not be 0/1: an episode is a success when reward >= this.")] = 1.0,
    domain: Annotated[str | None, typer.Option("--domain", help="Tool catalogue for is_write and tool checks: airline "
                      "(the default), taubench:PATH, tau2:DOMAIN (tau2 results default to their own domain).")] = None,
    max_record_bytes: Annotated[str, typer.Option("--max-record-bytes", help="Longest record read: a longer line or "
                                "array element is quarantined without being held whole; a tau2 results file or an ART "
                                "YAML file, read whole, may not be longer. Bytes, or with KB/MB/GB (powers of 1000) "
                                "or KiB/MiB/GiB (powers of 1024).")] = "64MiB",
) -> None:
    """Ingest rollout dumps into the store: bad records go to the quarantine, the rest is ingested.

    Exit code 0 when anything was ingested (or everything was already there), 1 when nothing was or
    when a file ended early (cut while it was read: what came before the cut is ingested, the partial
    record quarantined), 2 on usage errors. Every argument and path is checked before the store is
    opened or created. Each file is one atomic ingest; re-ingesting a file adds nothing. A new store
    is created only where nothing exists (or in an empty directory); any other directory is refused.

    Limits, on every format: a record nested deeper than 256 levels of arrays and objects, or longer
    than --max-record-bytes, is quarantined with its file and line, and the records around it are
    ingested. A path that is neither a regular file nor a folder (/dev/zero, a pipe) is refused.
    """
    from rich.console import Console
    from rich.progress import BarColumn, Progress, SpinnerColumn, TextColumn, TimeElapsedColumn
    from rich.table import Table
    from rich.text import Text

    from calib.envs.registry import domain_catalogue
    from calib.ingest import check_ingest_args, ingest_file
    from calib.store import Store

    console = Console()
    check_finite("--success-threshold", success_threshold)
    limit = parse_size_option("--max-record-bytes", max_record_bytes)
    check_ingest_args(paths, fmt=fmt, success_threshold=success_threshold, max_record_bytes=limit)
    catalogue = domain_catalogue(domain) if domain else None
    st = Store(store)  # refuses an existing directory that is not a store; created only now
    if st.created:
        console.print(f"created a new store at {st.path}", highlight=False)
    results = []
    with Progress(SpinnerColumn(), TextColumn("[bold]{task.description}"), BarColumn(),
                  TextColumn("{task.completed:,} records"), TimeElapsedColumn(), console=console,
                  transient=True) as progress:
        for p in paths:
            task = progress.add_task(f"ingest {p.name}", total=None)
            results.append(ingest_file(st, p, fmt=fmt, run_id=run_id, strict=strict, catalogue=catalogue,
                                       success_threshold=success_threshold, max_record_bytes=limit,
                                       on_progress=lambda n, t=task: progress.update(t, completed=n)))
    table = Table(title=f"Ingested into {st.path}")
    for col in ("file", "format", "episodes", "turns", "groups", "success rate", "duplicates", "quarantined"):
        table.add_column(col, justify="left" if col in ("file", "format") else "right")
    for r in results:
        s = r.summary()
        rate = "-" if s["success_rate"] is None else f"{s['success_rate']:.1%}"
        table.add_row(Path(r.source).name, r.format, f"{r.episodes:,}", f"{r.turns:,}", f"{r.n_groups:,}",
                      rate, f"{r.skipped_duplicates:,}", f"{r.quarantined:,}")
    console.print(table)
    for r in results:
        if r.success_threshold is not None:
            console.print(f"{Path(r.source).name}: success = reward >= {r.success_threshold:g} (--success-threshold)",
                          highlight=False)
    for r in results:
        for reason in r.reasons[:5]:
            console.print(Text("quarantined ", style="yellow") + Text(reason), highlight=False)
        if r.quarantined > 5:
            console.print(f"[yellow]... {r.quarantined - 5} more in {r.quarantine_file}[/]")
        elif r.quarantine_file:
            console.print(f"quarantine: {r.quarantine_file}")
    from calib.errors import CalibError

    if not any(r.episodes or r.skipped_duplicates for r in results):
        quarantined = sum(r.quarantined for r in results)
        raise CalibError(f"nothing was ingested: {quarantined} record(s) quarantined"
                         + (f" (see {results[-1].quarantine_file})" if results and results[-1].quarantine_file else ""))
    cut = [r for r in results if r.ended_early]
    if cut:
        raise CalibError(f"{cut[0].ended_early}: the file ended early (it was cut while it was read); the "
                         f"{cut[0].episodes:,} episode(s) before the cut were ingested and the partial record is in "
                         f"{cut[0].quarantine_file}" + (f" ({len(cut) - 1} more such file(s))" if len(cut) > 1 else ""))


def register(app: typer.Typer) -> None:
    app.command("ingest")(ingest)
