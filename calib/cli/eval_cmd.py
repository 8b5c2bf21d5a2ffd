"""CLI: `calib eval`: success rate and pass^k of one run, by task and overall."""

from __future__ import annotations

import math
from pathlib import Path
from typing import Annotated

import typer

from calib.cli.options import DEFAULT_STORE, JsonOpt, StoreOpt

RunOpt = Annotated[
    str | None,
    typer.Option("--run", help="Run id to evaluate (default: the store's only run; required when there are several)."),
]
IterationOpt = Annotated[
    int | None,
    typer.Option("--iteration", help="Only this loop iteration (default: all iterations of the run, each task-iteration a group)."),
]


def eval_command(
    store: StoreOpt = Path(DEFAULT_STORE),
    run: RunOpt = None,
    iteration: IterationOpt = None,
    json_out: JsonOpt = False,
) -> None:
    """Success rate and pass^k for k = 1..G (tau-bench's definition), by task and overall.

    Episodes with status `error` (infrastructure failures) are excluded and counted separately.
    Works on rollouts and on ingested tau-bench results (the trials of a task form its group).
    """
    from calib.errors import UsageError
    from calib.jsonutil import dumps
    from calib.rollout.evaluate import evaluate_run, store_runs
    from calib.store import Store

    st = Store(store, create=False)
    if run is None:
        runs = store_runs(st)
        if len(runs) != 1:
            raise UsageError(f"--run is required: the store has runs {', '.join(runs)}")
        run = runs[0]
    result = evaluate_run(st, run, iteration)
    if json_out:
        typer.echo(dumps(result.to_dict()))
        return
    _print_table(result)


def _fmt(v: object) -> str:
    if v is None or (isinstance(v, float) and math.isnan(v)):
        return "-"
    return f"{v:.3f}" if isinstance(v, float) else str(v)


def _print_table(result) -> None:  # result: EvalResult, imported lazily
    from rich.console import Console
    from rich.table import Table

    ks = list(result.pass_hat_k)
    shown = ks if len(ks) <= 8 else ks[:4] + ks[-4:]
    multi_iter = len(result.iterations) > 1
    t = Table(title=f"run {result.run_id}: success and pass^k", title_justify="left")
    if multi_iter:
        t.add_column("iter", justify="right")
    t.add_column("task")
    for name in ("n", "ok", "err", "success"):
        t.add_column(name, justify="right")
    for k in shown:
        t.add_column(f"pass^{k}", justify="right")
    for row in result.per_task.to_dict("records"):
        cells = [str(row["iteration"])] if multi_iter else []
        cells += [str(row["task_id"]), str(row["n"]), str(row["successes"]), str(row["errors"]),
                  _fmt(row["success_rate"])]
        cells += [_fmt(row.get(f"pass^{k}")) for k in shown]
        t.add_row(*cells)
    overall = [""] if multi_iter else []
    overall += ["[bold]overall[/]", str(result.episodes - result.errors),
                str(int(result.per_task["successes"].sum())), str(result.errors), _fmt(result.success_rate)]
    overall += [f"[bold]{_fmt(result.pass_hat_k[k])}[/]" for k in shown]
    t.add_section()
    t.add_row(*overall)
    console = Console()
    console.print(t)
    if result.errors:
        console.print(f"{result.errors} episode(s) with status error excluded from the rates.")


def register(app: typer.Typer) -> None:
    """Add `calib eval` to the root app."""
    app.command("eval")(eval_command)
