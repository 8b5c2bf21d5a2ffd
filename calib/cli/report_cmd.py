"""CLI: ``calib report``: write the self-contained HTML calibration report of a store."""

from __future__ import annotations

from pathlib import Path
from typing import Annotated

import typer

from calib.cli.options import JsonOpt, RunsOpt, StoreLabelOpt, StoreOpt, split_csv
from calib.jsonutil import dumps


def report(
    store: StoreOpt = Path("./calib-store"),
    runs: RunsOpt = None,
    out: Annotated[
        Path, typer.Option("--out", "-o", help="HTML file to write, e.g. reports/NAME/index.html.")
    ] = Path("reports/latest/index.html"),
    analysis: Annotated[
        Path | None,
        typer.Option("--analysis", help="analysis.json from calib analyze; default: analyse the store now "
                                        "(signals already in the store, else the built-ins)."),
    ] = None,
    spec: Annotated[
        Path | None,
        typer.Option("--spec", help="Reward spec YAML (or preset:NAME) to show and to draw advantages with; "
                                    "default: the analysis's proposed spec."),
    ] = None,
    mode: Annotated[
        str | None,
        typer.Option("--mode", help="Advantage mode of the misalignment picture: grpo | mt_grpo | gtpo_hybrid "
                                    "(default: the spec's, else gtpo_hybrid)."),
    ] = None,
    max_episodes: Annotated[
        int, typer.Option("--max-episodes", help="Episodes embedded in the browser at most (0: no browser).")
    ] = 120,
    per_task: Annotated[int, typer.Option("--per-task", help="Successes and failures sampled per task (each).")] = 2,
    title: Annotated[str | None, typer.Option("--title", help="Page title (default: from the runs).")] = None,
    screenshot: Annotated[
        Path | None,
        typer.Option("--screenshot", help="Also write a PNG of the page with headless Chromium (needs chromium)."),
    ] = None,
    store_label: StoreLabelOpt = None,
    as_json: JsonOpt = False,
) -> None:
    """Write one self-contained HTML file: summary, signal table, plots, proposed spec, episode browser.

    It opens offline in any browser and loads nothing from the network.
    """
    from rich.console import Console

    from calib.advantages import mode_names
    from calib.errors import CalibError, UsageError
    from calib.report import ReportConfig, write_report

    if mode is not None and mode not in mode_names():
        raise UsageError(f"--mode {mode!r}: expected one of {', '.join(mode_names())}")
    try:
        cfg = ReportConfig(mode=mode, max_episodes=max_episodes, per_task=per_task)
    except ValueError as e:
        raise UsageError(f"--max-episodes/--per-task: {e}") from None
    from calib.cli.options import check_output

    check_output(out, folder=False)
    console = Console(stderr=as_json)
    with console.status("building the report", spinner="dots"):
        result = write_report(
            store, out, runs=split_csv(runs), analysis=analysis, spec=spec, mode=mode, config=cfg, title=title,
            store_label=store_label,
        )
    shot = None
    if screenshot is not None:
        from calib.report.browser import BrowserError, Chromium

        try:
            with Chromium() as browser:
                page = browser.open(result.path)
                shot = page.screenshot(screenshot)
        except BrowserError as e:
            raise CalibError(f"--screenshot: {e}") from None
    if as_json:
        typer.echo(dumps({"path": str(result.path), "bytes": result.bytes,
                               "episodes_embedded": result.episodes_embedded, "timings": result.timings,
                               "screenshot": str(shot) if shot else None}))
        return
    total = sum(result.timings.values())
    console.print(
        f"[green]wrote[/green] {result.path} ({result.bytes / 1e6:.2f} MB, {result.episodes_embedded} episodes "
        f"in the browser, {total:.1f} s)"
    )
    if shot:
        console.print(f"[green]wrote[/green] {shot}")


def register(app: typer.Typer) -> None:
    """Add ``calib report`` to the root app."""
    app.command("report")(report)
