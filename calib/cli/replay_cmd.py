"""CLI: ``calib replay FILE --domain taubench:PATH``: re-score recorded episodes in our environment."""

from __future__ import annotations

from pathlib import Path
from typing import Annotated, Any

import typer

from calib.cli.options import (
    JsonOpt,
    JudgeBaseUrlOpt,
    JudgeModelOpt,
    SplitOpt,
    check_input_file,
    judge_config,
)
from calib.jsonutil import dumps

DomainOpt = Annotated[
    str,
    typer.Option("--domain", help="Environment to replay in: taubench:PATH (a tau-bench data dir), airline-mini, or "
                 "tau2:DOMAIN (a tau2 results file or directory, replayed in tau2's environment; needs calib[tau2])."),
]
ReplayStoreOpt = Annotated[
    Path | None,
    typer.Option("--store", help="Also write the re-scored episodes (our reward as outcome) to this store."),
]
RunIdOpt = Annotated[
    str | None,
    typer.Option("--run-id", help="Run id of the episodes written with --store (default: replay-<file name>)."),
]


def replay(
    file: Annotated[Path, typer.Argument(help="tau-bench results JSON ([{task_id, trial, reward, traj, info}]), native "
                    "JSONL, or (with --domain tau2:DOMAIN) a tau2 results file or directory.")],
    domain: DomainOpt = "airline-mini",
    store: ReplayStoreOpt = None,
    run_id: RunIdOpt = None,
    split: SplitOpt = "all",
    judge_base_url: JudgeBaseUrlOpt = None,
    judge_model: JudgeModelOpt = None,
    json_out: JsonOpt = False,
) -> None:
    """Replay each episode's tool calls through the environment and compare our reward with the recorded one.

    Prints, per episode and overall, the recorded reward, ours, and the agreement rate. With --json,
    prints one object: {episodes, agree, agreement, disagreements: [...]}. Exit code 0 whatever the
    agreement (it is a measurement); 2 for a bad file or domain.
    """
    from calib.envs import load_domain
    from calib.envs.registry import parse_domain
    from calib.envs.replay import read_records, rescore, summary
    from calib.envs.splits import split_task_ids
    from calib.errors import UsageError

    dom = load_domain(domain, judge=judge_config(judge_base_url, judge_model))  # a missing tau2 says so first
    check_input_file(file, "FILE")
    keep = None if split == "all" else set(split_task_ids(dom, split))
    is_tau2 = parse_domain(domain)[0].name == "tau2"
    if is_tau2:
        from calib.envs.tau2.replay import replay_results

        rows, records = replay_results(dom, file, task_ids=keep)
    else:
        try:
            records = read_records(file)
        except UnicodeDecodeError as e:
            raise UsageError(f"FILE {file}: not UTF-8 text (byte {e.start})") from None
        if not records:
            raise UsageError(f"FILE {file}: no episodes in it")
        if keep is not None:
            records = [r for r in records if str(r.get("task_id")) in keep
                       or dom.task(str(r.get("task_id"))).task_id in keep]
        rows = rescore(dom, records)
    result = summary(rows)
    written = None
    if store is not None:
        write = _write_tau2 if is_tau2 else _write
        written = write(store, dom, records, rows, run_id or f"replay-{file.stem}", str(file), domain)
        result["store"] = {"path": str(store), "episodes": written.episodes, "duplicates": written.skipped_duplicates,
                           "quarantined": written.quarantined}
    if json_out:
        typer.echo(dumps(result))
        return
    _print(rows, result, file)


def _write(store: Path, dom: Any, records: list[dict[str, Any]], rows: list[Any], run_id: str, source: str,
           spec: str) -> Any:
    """Re-scored episodes as native records (outcome = our reward, the recorded one kept in info)."""
    from calib.ingest.taubench import taubench_to_native
    from calib.store import Store

    natives = []
    for rec, row in zip(records, rows):
        if row.error is not None:
            continue
        native = taubench_to_native(rec, run_id=run_id) if "traj" in rec else dict(rec, run_id=run_id)
        info = dict(native.get("info") or {})
        info.update({
            "recorded_reward": row.recorded,
            "progress": row.progress,
            "replay": {"domain": spec, "db_match": row.db_match, "outputs_ok": row.outputs_ok,
                       "mismatched_records": row.mismatched_records, "missing_outputs": row.missing_outputs},
        })
        native.update(outcome=row.ours, success=row.ours >= 1.0, info=info)
        native.pop("reward", None)
        natives.append(native)
    return Store(store).add_episodes(natives, source=f"replay:{source}", catalogue=dom.catalogue)


def _write_tau2(store: Path, dom: Any, sims: list[dict[str, Any]], rows: list[Any], run_id: str, source: str,
                spec: str) -> Any:
    """Re-scored tau2 simulations as native records (outcome = our reward, tau2's recorded one in info)."""
    from calib.ingest.tau2 import tau2_to_native
    from calib.store import Store

    natives = []
    scored = [r for r in rows if r.error is None]
    for sim, row in zip(sims, scored):
        native = tau2_to_native(sim, run_id=run_id, header={})
        native["info"]["replay"] = {"domain": spec, "db_match": row.db_match, "outputs_ok": row.outputs_ok}
        native.update(outcome=row.ours, success=row.ours >= 1.0)
        natives.append(native)
    return Store(store).add_episodes(natives, source=f"replay:{source}", catalogue=dom.catalogue, fmt="tau2")


def _print(rows: list[Any], result: dict[str, Any], file: Path) -> None:
    from rich.console import Console
    from rich.table import Table

    console = Console()
    table = Table(title=f"Replay of {file.name}")
    for col in ("#", "task", "trial", "recorded", "ours", "agree", "why ours is 0"):
        table.add_column(col, justify="right" if col in ("#", "trial", "recorded", "ours") else "left")
    for r in rows:
        why = r.error or ""
        if not why and r.ours == 0.0:
            parts = []
            if r.db_match is False:
                parts.append("data differ: " + ", ".join(r.mismatched_records[:3]))
            if r.missing_outputs:
                parts.append("missing output " + ", ".join(r.missing_outputs))
            why = "; ".join(parts)
        table.add_row(str(r.index), r.task_id, "-" if r.trial is None else str(r.trial), _fmt(r.recorded),
                      _fmt(r.ours), "[green]yes[/]" if r.agree else "[red]no[/]", why)
    console.print(table)
    agreement = result["agreement"]
    console.print(f"agreement: {result['agree']}/{result['episodes']}"
                  + (f" ({agreement:.0%})" if agreement is not None else ""))
    if "store" in result:
        s = result["store"]
        console.print(f"wrote {s['episodes']} re-scored episodes to {s['path']}"
                      + (f" ({s['duplicates']} already there)" if s["duplicates"] else ""))


def _fmt(v: float | None) -> str:
    return "-" if v is None else f"{v:g}"


def register(app: typer.Typer) -> None:
    app.command("replay")(replay)
