"""CLI: ``calib spec ...``: the shipped reward-spec presets."""

from __future__ import annotations

import typer

from calib.cli.options import JsonOpt

spec_app = typer.Typer(help="Reward specs: the presets that ship with calib (usable as preset:NAME).",
                       no_args_is_help=True)


@spec_app.command("list")
def list_command(as_json: JsonOpt = False) -> None:
    """List the shipped presets. Each loads wherever a reward spec path is accepted, as preset:NAME
    (calib analyze --base-spec, calib report --spec, calib train --spec, base_spec in a loop config)."""
    from rich.console import Console
    from rich.table import Table

    from calib.jsonutil import dumps
    from calib.spec import list_presets

    presets = list_presets()
    if as_json:
        typer.echo(dumps(presets))
        return
    table = Table(box=None, pad_edge=False, padding=(0, 1))
    for col in ("spec", "advantage", "turn rewards"):
        table.add_column(col)
    for p in presets:
        adv = p["mode"] + (f" gamma {p['gamma']:g} lambda {p['lambda']:g}" if p["mode"] == "gtpo_hybrid" else "")
        table.add_row(p["ref"], adv, ", ".join(f"{k} {v:+g}" for k, v in p["turn_rewards"].items()))
    Console().print(table)


def register(app: typer.Typer) -> None:
    app.add_typer(spec_app, name="spec")
