"""CLI: `calib experiment misalignment`: the seed paper's experiment on the synthetic testbed."""

from __future__ import annotations

import dataclasses
import shlex
import time
from pathlib import Path
from typing import Annotated

import typer

from calib.cli.options import JsonOpt, split_csv

experiment_app = typer.Typer(
    help="Experiments: misalignment (synthetic testbed, no language model, seconds) and real-lm (SmolLM2 on "
    "airline-mini: SFT, then three RL arms; about 90 minutes on 2 CPU cores).",
    no_args_is_help=True,
)

DEFAULT_OUT = "reports/experiment"


@experiment_app.command("misalignment")
def misalignment_command(
    seeds: Annotated[int, typer.Option("--seeds", min=1, help="Independent seeds (new tasks and sampling).")] = 10,
    steps: Annotated[
        int | None, typer.Option("--steps", min=1, help="Policy-gradient steps per arm (default 150; 30 with --quick).")
    ] = None,
    out: Annotated[Path, typer.Option("--out", help="Directory for results.json, table.md, figures, specs.")] = Path(
        DEFAULT_OUT
    ),
    quick: Annotated[
        bool, typer.Option("--quick", help="Small budget (fewer tasks, steps and evaluation episodes) for a first look.")
    ] = False,
    arms: Annotated[
        str | None, typer.Option("--arms", help="Comma-separated arms to run (default: all; grpo is the baseline).")
    ] = None,
    first_seed: Annotated[int, typer.Option("--first-seed", help="Seeds run from this value upwards.")] = 0,
    setting: Annotated[str, typer.Option("--setting", help="default (farming bounded by the turn limit only) | "
                       "bounded (the customer hangs up after 3 turns without progress; KL penalty 0.04 to the "
                       "initial policy): the seed paper's conditions | sparse (every task 3 writes of 3 variants "
                       "in 8 turns: initial success about 2%). Each has its own results section.")]
    = "default",
    results_md: Annotated[
        Path | None,
        typer.Option(
            "--results-md",
            help="Markdown file whose section for this setting is replaced (other sections are kept; figures are "
            "copied next to it). Default: none; the repository's docs/results.md is rewritten by "
            "scripts/update_results.sh, not by an installed command.",
        ),
    ] = None,
    no_results_md: Annotated[bool, typer.Option("--no-results-md", hidden=True,
                                                help="Accepted for old scripts: writing no results file is the default.")] = False,
    recalibration_rule: Annotated[str, typer.Option("--recalibration-rule", help="Calibration rule of the online "
                                  "arms' recalibrations: joint | auc | irc.")] = "joint",
    json_out: JsonOpt = False,
) -> None:
    """Train a small softmax policy on the testbed under outcome-only GRPO, naive dense rewards
    (+0.3 per signal), the calibrated spec (mt_grpo and gtpo_hybrid) and the seed paper's presets, over
    several seeds; print the table of final success (mean and 95% CI), plot the learning curves and
    write the results section.
    """
    from rich.console import Console
    from rich.progress import BarColumn, MofNCompleteColumn, Progress, TextColumn, TimeElapsedColumn

    from calib.cli.options import check_output
    from calib.errors import UsageError
    from experiments.arms import get_arms
    from experiments.misalignment import (
        SETTINGS,
        ExperimentConfig,
        bounded_setting,
        quick_config,
        run_experiment,
        sparse_setting,
    )
    from experiments.report import (
        results_section,
        rich_table,
        section_heading,
        update_results_md,
        write_outputs,
    )

    check_output(out, folder=True)  # before minutes of training, not after
    console = Console(stderr=json_out)
    if setting not in SETTINGS:
        raise UsageError(f"--setting {setting!r}: expected one of {', '.join(SETTINGS)}")
    base = quick_config(seeds) if quick else ExperimentConfig(seeds=seeds)
    if setting == "bounded":
        base = bounded_setting(base)
    elif setting == "sparse":
        base = sparse_setting(base)
    try:
        arm_list = tuple(a.name for a in get_arms(split_csv(arms)))
        train = dataclasses.replace(base.train, steps=steps) if steps is not None else base.train
        recal = dataclasses.replace(base.recalibration, rule=recalibration_rule)
        cfg = dataclasses.replace(base, arms=arm_list, train=train, first_seed=first_seed, recalibration=recal)
    except ValueError as e:
        raise UsageError(str(e)) from None

    t0 = time.perf_counter()
    with Progress(
        TextColumn("[bold]experiment"), BarColumn(), MofNCompleteColumn(), TextColumn("{task.description}"),
        TimeElapsedColumn(), console=console, transient=True,
    ) as bar:
        job = bar.add_task("", total=cfg.seeds * len(arm_list))
        result = run_experiment(cfg, on_arm=lambda seed, arm: bar.update(job, advance=1, description=f"seed {seed} {arm}"))
    seconds = time.perf_counter() - t0

    paths = write_outputs(result, out)
    target = None if no_results_md else results_md
    if target is not None:
        command = _command_line(seeds=seeds, steps=steps, quick=quick, arms=arms, first_seed=first_seed, out=out,
                                setting=setting)
        figure = f"figures/{paths['png'].name}"
        update_results_md(target, results_section(result, figure=figure, command=command, seconds=seconds),
                          [paths["png"], paths["svg"]], heading=section_heading(setting))
    if json_out:
        from calib.jsonutil import dumps

        typer.echo(dumps({"summary": result["summary"], "outputs": {k: str(v) for k, v in paths.items()},
                          "results_md": str(target) if target else None, "seconds": seconds}))
        return
    console.print(rich_table(result))
    console.print(f"Outputs in {out} (results.json, table.md, {paths['png'].name}, specs/)"
                  + (f"; results section written to {target}" if target else ""))


@experiment_app.command("real-lm")
def real_lm_command(
    quick: Annotated[
        bool, typer.Option("--quick", help="Small budget (a few minutes): fewer demonstrations, steps, turns, trials.")
    ] = False,
    seeds: Annotated[int | None, typer.Option("--seeds", min=1, help="RL seeds per arm (default 1): with 2 or more the intervals are over seeds, else over episodes.")]
    = None,
    out: Annotated[Path, typer.Option("--out", help="Work directory: store, models, state.json (resumable), "
                                      "results.json, table.md, curves.")] = Path("reports/real-lm"),
    steps: Annotated[int | None, typer.Option("--steps", min=1, help="RL steps per arm (default 2).")]
    = None,
    model: Annotated[str, typer.Option("--model", help="Base model: tiny (SmolLM2-135M), a local checkpoint or a "
                                       "hub id.")] = "tiny",
    threads: Annotated[int | None, typer.Option("--threads", min=1, help="torch CPU threads.")] = None,
    warm_start: Annotated[
        str | None,
        typer.Option("--warm-start", help="Start RL from this checkpoint or LoRA adapter instead of running the "
                     "demonstrations and SFT (default: none; with --quick, data/warmstart if the repository has one). `none` forces "
                     "the SFT stage."),
    ] = None,
    json_out: JsonOpt = False,
) -> None:
    """Does calibration help a real model? oracle demonstrations (train split) -> `calib sft` -> rollouts
    of the SFT model -> `calib analyze` -> RL arms from the SFT model (outcome-only grpo,
    preset:paper-v5-naive under gtpo_hybrid, the proposed spec under gtpo_hybrid) -> held-out
    evaluation on the test split. Prints one JSON line per arm and a summary line; a killed run
    continues where it stopped when started again with the same --out.
    """
    from rich.console import Console

    from calib.errors import UsageError
    from experiments.real_lm import RealLMConfig, quick_config, run_real_lm
    from experiments.real_lm_report import markdown_table, write_report

    console = Console(stderr=True)
    try:
        base = quick_config() if quick else RealLMConfig()
        changes: dict = {"model": model, "threads": threads}
        if warm_start is not None:
            changes["warm_start"] = None if warm_start.lower() == "none" else warm_start
        if seeds is not None:
            changes["seeds"] = seeds
        if steps is not None:
            changes["rl_steps"] = steps
        cfg = dataclasses.replace(base, **changes)
    except ValueError as e:
        raise UsageError(str(e)) from None
    from calib.jsonutil import dumps

    result = run_real_lm(cfg, out, log=lambda m: console.print(f"[dim]real-lm[/] {m}", highlight=False),
                         emit=lambda d: typer.echo(dumps(d)))
    paths = write_report(result, out)
    if not json_out:
        console.print(markdown_table(result), highlight=False)
        console.print(f"Outputs in {out}: {', '.join(p.name for p in paths.values())}", highlight=False)


def _command_line(
    *, seeds: int, steps: int | None, quick: bool, arms: str | None, first_seed: int, out: Path, setting: str = "default"
) -> str:
    """The command that reproduces this run (from the parsed options, not from sys.argv)."""
    parts = ["calib", "experiment", "misalignment", "--seeds", str(seeds)]
    if steps is not None:
        parts += ["--steps", str(steps)]
    if quick:
        parts.append("--quick")
    if arms:
        parts += ["--arms", arms]
    if first_seed:
        parts += ["--first-seed", str(first_seed)]
    if setting != "default":
        parts += ["--setting", setting]
    parts += ["--out", str(out)]
    return shlex.join(parts)


def register(app: typer.Typer) -> None:
    """Add `calib experiment ...` to the root app."""
    app.add_typer(experiment_app, name="experiment")
