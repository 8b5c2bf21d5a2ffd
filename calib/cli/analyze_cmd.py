"""CLI: ``calib analyze``: signals -> discriminative analysis -> calibrated reward spec."""

from __future__ import annotations

import math
from pathlib import Path
from typing import Annotated

import typer

from calib.cli.display import plain_text
from calib.cli.options import JsonOpt, RunsOpt, StoreLabelOpt, StoreOpt, split_csv
from calib.errors import UsageError

SignalsOpt = Annotated[
    str | None,
    typer.Option("--signals", help="Comma-separated signals to analyse (default: every built-in and entry-point signal)."),
]
CustomOpt = Annotated[
    list[str] | None,
    typer.Option("--signal", help="A custom signal module:function (episode, turn) -> float | None; repeatable."),
]


def analyze(
    store: StoreOpt = Path("./calib-store"),
    runs: RunsOpt = None,
    signals: SignalsOpt = None,
    custom: CustomOpt = None,
    out: Annotated[Path, typer.Option("--out", help="Directory for analysis.parquet, analysis.json, reward_spec.yaml.")]
    = Path("calib-analysis"),
    base_spec: Annotated[Path | None, typer.Option("--base-spec", help="Start from this spec (a path or preset:NAME): "
                         "only its turn rewards change; tier alignment and advantage diagnostics describe it.")]
    = None,
    rule: Annotated[str, typer.Option("--rule", help="Calibration rule: auc (calib's group-AUC rule, one signal "
                    "at a time) | joint (all signals in one within-group model: a signal that repeats another or "
                    "is weak gets 0) | irc (the seed paper's: alpha x point-biserial rho where |rho| > delta, then "
                    "the sign check). See docs/signals.md.")] = "auc",
    alpha: Annotated[float, typer.Option("--alpha", help="irc: weight per unit of correlation (see docs/signals.md).")]
    = 0.5,
    delta: Annotated[float, typer.Option("--delta", help="irc: |rho| at or below this gives weight 0.")] = 0.1,
    mode: Annotated[str | None, typer.Option("--mode", help="gtpo_hybrid | mt_grpo: advantage mode whose sign agreement "
                    "decides alignment (default: the base spec's, else gtpo_hybrid).")] = None,
    seed: Annotated[int, typer.Option("--seed", help="Seed of the bootstrap intervals.")] = 0,
    n_boot: Annotated[int, typer.Option("--n-boot", help="Bootstrap replicates per interval.")] = 1000,
    aggregate: Annotated[str, typer.Option("--aggregate", help="Episode aggregate: mean | sum | any | max.")] = "mean",
    weight_cap: Annotated[float, typer.Option("--weight-cap", help="Largest |proposed weight|.")] = 0.3,
    name: Annotated[str | None, typer.Option("--name", help="Name of the proposed spec.")] = None,
    domain: Annotated[str, typer.Option("--domain", help="Tool catalogue for the tool signals.")] = "airline",
    html: Annotated[bool, typer.Option("--html", help="Also write the HTML report (calib.report).")] = False,
    store_label: StoreLabelOpt = None,
    as_json: JsonOpt = False,
) -> None:
    """Compute per-turn signals, measure which ones separate success from failure within GRPO groups
    and whether their advantage points with the outcome, and propose a calibrated reward spec.

    Writes analysis.parquet, analysis.json and reward_spec.yaml to --out and prints a table sorted by
    verdict (keep, flip, zero). Signals already computed for the current signal version are reused.
    """
    import json

    from rich.console import Console
    from rich.progress import BarColumn, Progress, SpinnerColumn, TextColumn, TimeElapsedColumn

    from calib.analysis.pipeline import analyze_and_propose
    from calib.analysis.propose import write_outputs
    from calib.jsonutil import dumps
    from calib.store import Store

    console = Console(stderr=as_json)
    from calib.advantages import signal_mode_names

    if mode is not None and mode not in signal_mode_names():
        raise UsageError(f"--mode {mode!r}: expected one of {', '.join(signal_mode_names())}")
    if n_boot < 1:
        raise UsageError(f"--n-boot {n_boot}: expected at least 1")
    if not (math.isfinite(weight_cap) and weight_cap >= 0):
        raise UsageError(f"--weight-cap {weight_cap}: expected a finite number >= 0")
    if rule not in ("auc", "joint", "irc"):
        raise UsageError(f"--rule {rule!r}: expected auc, joint or irc")
    if not (math.isfinite(alpha) and alpha >= 0):
        raise UsageError(f"--alpha {alpha}: expected a finite number >= 0")
    if not (math.isfinite(delta) and 0 <= delta < 1):
        raise UsageError(f"--delta {delta}: expected a correlation threshold in [0, 1)")
    from calib.cli.options import check_output

    check_output(Path(out), folder=True)
    report_writer = _report_writer() if html else None

    st = Store(store, create=False)
    run_list = split_csv(runs)
    custom_names = [n for c in custom or [] for n in split_csv(c) or []]
    with Progress(SpinnerColumn(), TextColumn("[bold]{task.description}"), BarColumn(),
                  TextColumn("{task.completed}/{task.total}"), TimeElapsedColumn(), console=console,
                  transient=True) as progress:
        out_ = analyze_and_propose(
            st, runs=run_list, signals=split_csv(signals) or ([] if signals else None), custom=custom_names,
            base_spec=base_spec, mode=mode, name=name, domain=domain, store_label=store_label, progress=progress,
            settings={"aggregate": aggregate, "n_boot": n_boot, "seed": seed, "weight_cap": weight_cap,
                      "rule": rule, "irc_alpha": alpha, "irc_delta": delta},
        )
    result, spec, cfg, computed = out_.result, out_.spec, out_.config, out_.computed
    paths = write_outputs(result, spec, out)
    report_path = None
    if report_writer is not None:
        report_path = report_writer(st, Path(out) / "report.html", runs=run_list, analysis=paths["analysis.json"],
                                    spec=paths["reward_spec.yaml"], mode=cfg.mode, store_label=store_label).path

    if as_json:
        doc = json.loads(paths["analysis.json"].read_text())
        doc["files"] = {k: str(v) for k, v in paths.items()}
        if report_path is not None:
            doc["files"]["report.html"] = str(report_path)
        typer.echo(dumps(doc))
        return
    _print_table(console, result, cfg, computed)
    conv = result.convergence
    which = f"base spec {conv['name']}" if conv["source"] == "base" else "the proposed spec"
    console.print(f"tier alignment of {which} under {conv['mode']}: {conv['mismatches']} mismatched signal(s)"
                  + (f" ({', '.join(plain_text(x, 60) for x in conv['mismatched_signals'])})"
                     if conv["mismatched_signals"] else "")
                  + f"; corr(mean turn reward, outcome) {_fmt(conv['corr_turn_reward_outcome'], '+.2f')}",
                  markup=False, highlight=False)
    for p in paths.values():
        console.print(f"wrote [bold]{p}[/]")
    if report_path is not None:
        console.print(f"wrote [bold]{report_path}[/]")


def _report_writer():
    """``calib.report.write_report(store, out_path, *, runs, analysis, spec, mode)`` if installed."""
    try:
        from calib.report import write_report
    except ImportError:
        raise UsageError("--html needs calib.report, which is not available in this installation; "
                         "run without --html (analysis.json holds every number)") from None
    return write_report


def _fmt(x, spec: str = ".3f") -> str:
    return "-" if x is None or (isinstance(x, float) and not math.isfinite(x)) else format(x, spec)


def _print_table(console, result, cfg, computed) -> None:
    from rich.markup import escape
    from rich.table import Table
    from rich.text import Text

    from calib.cli.display import term_text

    s = result.summary
    title = (f"{s['episodes']:,} episodes, {s['groups']:,} groups ({s['informative_groups']:,} informative), "
             f"success {s['success_rate']:.1%}, runs {plain_text(', '.join(s['runs']))}")
    table = Table(title=Text(title), title_justify="left", box=None, pad_edge=False, padding=(0, 1),
                  caption=f"gAUC: within-group AUC, CI: its 95% bootstrap interval (groups resampled); AUC: "
                          f"pooled; agree/misal: sign agreement and misaligned mass under {cfg.mode}; dead: "
                          "share of turns without within-group variance. Every number is in analysis.json.",
                  caption_justify="left")
    table.add_column("signal", no_wrap=True)
    table.add_column("verdict", no_wrap=True)
    for col in ("weight", "gAUC", "CI", "AUC", "agree", "misal", "dead"):
        table.add_column(col, justify="right", no_wrap=True)
    style = {"keep": "green", "flip": "magenta", "zero": "dim"}
    for r in result.signals:
        g_lo, g_hi = r["group_auc_ci"]
        table.add_row(
            term_text(r["signal"], 60),
            f"[{style[r['verdict']]}]{r['verdict']}[/]"
            + (f" [dim](= {escape(plain_text(r['redundant_with'], 30))})[/]" if r.get("redundant_with") else ""),
            f"{r['proposed_weight']:+.3f}",
            _fmt(r["group_auc"], ".2f"),
            f"{_fmt(g_lo, '.2f')}-{_fmt(g_hi, '.2f')}",
            _fmt(r["auc"], ".2f"),
            _fmt(r["sign_agreement"][cfg.mode], ".0%"),
            _fmt(r["misaligned_mass"][cfg.mode], ".2f"),
            _fmt(r["dead_share"], ".0%"),
        )
    console.print(table)
    _print_imported(console, result)
    if computed.written:
        console.print(f"computed {len(computed.written)} signal(s), reused {len(computed.cached)} from the store")


def _print_imported(console, result) -> None:
    """The signals an imported dump carried (tau2 reward components), in their own table."""
    from rich.table import Table

    from calib.cli.display import term_text

    rows = result.imported.get("turn", []) + result.imported.get("episode", [])
    if not rows:
        return
    table = Table(title="Imported signals (reported, not weighted in the spec)", title_justify="left", box=None,
                  pad_edge=False, padding=(0, 1),
                  caption="level: turn or episode (turn_idx NULL); verdict from the group-AUC interval (episode level: "
                          "alone); 'outcome': equals the outcome wherever it has a value.", caption_justify="left")
    for col in ("signal", "level", "verdict"):
        table.add_column(col, no_wrap=True)
    for col in ("gAUC", "CI", "AUC", "pb r", "episodes"):
        table.add_column(col, justify="right", no_wrap=True)
    for r in rows:
        g_lo, g_hi = r["group_auc_ci"]
        table.add_row(term_text(r["signal"], 60), r.get("level", "turn"), r["verdict"], _fmt(r["group_auc"], ".2f"),
                      f"{_fmt(g_lo, '.2f')}-{_fmt(g_hi, '.2f')}", _fmt(r["auc"], ".2f"), _fmt(r["pb_corr"], ".2f"),
                      str(r["n_episodes"]))
    console.print(table)


def register(app: typer.Typer) -> None:
    app.command("analyze")(analyze)
