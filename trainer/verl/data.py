"""verl data files for the ``calib_env`` agent loop: one Parquet row per task of a calib domain split.

verl's ``RLHFDataset`` reads Parquet rows with a ``prompt`` (chat messages), an optional
``agent_name`` (which agent loop plays the row) and ``extra_info`` (handed to the agent loop). A
``calib_env`` row names its task in ``extra_info`` (``task_id``, ``calib_domain``); the loop builds
the real prompt itself (the domain's policy, the tool schemas, the customer's opening line), so the
row's ``prompt`` holds the domain's policy as the system message: long enough for verl's
``data.max_prompt_length`` filter to mean something, and without the task's instruction, which only
the customer simulator sees. ``rollout.n`` samples of each row form a GRPO group (verl's ``uid``)::

    python -m trainer.verl.data --domain airline-mini --split train --out data/verl/airline-mini-train.parquet
"""

from __future__ import annotations

from pathlib import Path
from typing import Annotated, Any

import pyarrow as pa
import pyarrow.parquet as pq
import typer

from calib.errors import CalibError

AGENT_NAME = "calib_env"


def task_rows(domain_spec: str, split: str = "train", tasks: str | None = None) -> list[dict[str, Any]]:
    """The verl rows of ``split`` (``train``, ``test`` or ``all``) of a calib domain, in task order."""
    from calib.rollout.runner import select_split

    domain, chosen = select_split(domain_spec, tasks, split)
    return [{
        "data_source": f"calib/{domain_spec}",
        "prompt": [{"role": "system", "content": domain.policy}],
        "agent_name": AGENT_NAME,
        "ability": "tool_use",
        "reward_model": {"style": "calib_env", "ground_truth": task.task_id},
        "extra_info": {"index": i, "split": split, "task_id": task.task_id, "calib_domain": domain_spec},
    } for i, task in enumerate(chosen)]


def write_rows(rows: list[dict[str, Any]], out: Path) -> Path:
    """Write rows as Parquet (atomically: a temporary file renamed into place)."""
    if not rows:
        raise CalibError("no task to write")
    out.parent.mkdir(parents=True, exist_ok=True)
    tmp = out.with_name(out.name + ".tmp")
    pq.write_table(pa.Table.from_pylist(rows), tmp)
    tmp.replace(out)
    return out


def main(
    domain: Annotated[str, typer.Option(help="calib domain: airline-mini, tau2:airline, taubench:airline, ...")] = "airline-mini",
    split: Annotated[str, typer.Option(help="train | test | all")] = "train",
    out: Annotated[Path, typer.Option(help="Parquet file to write (verl's data.train_files / data.val_files).")] = Path("train.parquet"),
    tasks: Annotated[str | None, typer.Option(help="Comma-separated task ids (default: every task of the split).")] = None,
) -> None:
    """Write a verl data file whose rows the calib_env agent loop plays (docs/verl.md)."""
    try:
        path = write_rows(task_rows(domain, split, tasks), out)
    except CalibError as e:
        typer.echo(f"error: {e}", err=True)
        raise typer.Exit(2) from None
    typer.echo(f"wrote {pq.read_metadata(path).num_rows} {domain} {split} task(s) to {path}")


if __name__ == "__main__":
    typer.run(main)
