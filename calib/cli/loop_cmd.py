"""CLI: ``calib loop --config loop.yaml``."""

from __future__ import annotations

from pathlib import Path
from typing import Annotated

import typer

from calib.cli.options import check_domain


def loop(
    config: Annotated[Path, typer.Option("--config", "-c", help="Loop config (YAML); see docs/loop.md.")],
    review: Annotated[bool, typer.Option("--review", help="Stop after each proposed spec so you can edit it.")] = False,
    iterations: Annotated[int | None, typer.Option("--iterations", help="Override the config's iterations.")] = None,
    workdir: Annotated[Path | None, typer.Option("--workdir", help="Override the config's workdir.")] = None,
) -> None:
    """Run (or resume) calibration iterations: rollout -> ingest -> analyze -> spec -> train -> eval.

    Finished stages are recorded in <workdir>/loop_state.json: re-running the same command after a
    kill resumes at the interrupted stage. With --review the loop stops (exit code 3) after writing
    each proposed spec to <workdir>/it<i>/spec.yaml; edit it and run the command again.
    """
    from rich.console import Console
    from rich.table import Table

    from trainer.loop import run_loop
    from trainer.loop_config import load_loop_config

    console = Console()
    overrides = {"iterations": iterations, "workdir": str(workdir.resolve()) if workdir else None}
    if review:
        overrides["review"] = True
    from calib.cli.options import check_input_file

    if config.exists():  # a missing one is load_loop_config's "no such loop config"
        check_input_file(config, "--config")
    cfg = load_loop_config(config, overrides)
    check_domain(cfg.domain)  # one line, before any work, when a tau2 domain lacks its package
    check_domain(cfg.eval_domain)
    from rich.text import Text

    result = run_loop(cfg, log=lambda m: console.print(Text(m, style="bold cyan"), highlight=False))
    h = result.history
    t = Table(title=f"calibration history ({result.store})", title_justify="left")
    for c in ("iteration", "spec", "weights", "rollout success", "eval success", "eval pass^k", "trained",
              "mismatches", "corr(r, R)"):
        t.add_column(c)
    import json
    import math

    for row in h.to_dict("records"):
        w = {k: v for k, v in json.loads(row["weights"]).items() if v}
        fmt = lambda x: "-" if x is None or (isinstance(x, float) and math.isnan(x)) else f"{x:.1%}"
        t.add_row(str(row["iteration"]), row["spec_name"], ", ".join(f"{k} {v:+.2f}" for k, v in w.items()) or "-",
                  fmt(row["rollout_success"]), fmt(row["eval_success"]), _pass_k(row.get("pass_hat_k")),
                  "yes" if row["trained"] else "no",
                  _opt(row.get("mismatches"), "d"), _opt(row.get("corr_turn_reward_outcome"), "+.2f"))
    console.print(t)
    if result.stopped_at is not None:
        console.print(f"stopped after iteration {result.stopped_at}: stop_when met")
    console.print(f"workdir: {result.workdir}")


def _opt(x, spec: str) -> str:
    """A history cell that older rows (before the convergence columns) may lack."""
    import math

    if x is None or (isinstance(x, float) and math.isnan(x)):
        return "-"
    return format(int(x) if spec == "d" else float(x), spec)


def _pass_k(raw: str | None) -> str:
    """``pass^1 0.85, pass^4 0.70`` from the history's JSON (first and last k: the seed paper's pair)."""
    import json

    ks = json.loads(raw) if raw else {}
    if not ks:
        return "-"
    keys = sorted(ks, key=int)
    return ", ".join(f"pass^{k} {ks[k]:.2f}" for k in dict.fromkeys([keys[0], keys[-1]]))


def register(app: typer.Typer) -> None:
    app.command("loop")(loop)
