"""CLI: ``calib train`` — multi-turn GRPO with a reward spec, LoRA, checkpoints and resume."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Annotated

import typer

from calib.cli.options import DEFAULT_STORE, JsonOpt, SplitOpt, StoreOpt, check_domain


def register(app: typer.Typer) -> None:
    """Add ``calib train`` to the root app."""

    @app.command("train")
    def train(
        spec: Annotated[Path, typer.Option("--spec", help="Reward spec YAML (from `calib analyze`).")],
        model: Annotated[
            str,
            typer.Option(
                "--model", help="Local transformers checkpoint directory, or `tiny` (SmolLM2-135M)."
            ),
        ],
        output_dir: Annotated[
            Path,
            typer.Option(
                "--output-dir", help="Checkpoints (checkpoint-N/) and the final adapter (adapter/)."
            ),
        ],
        domain: Annotated[
            str, typer.Option("--domain", help="airline-mini, airline-mini:SEED, taubench:PATH or tau2:DOMAIN.")
        ] = "airline-mini",
        split: SplitOpt = "all",
        user: Annotated[
            str, typer.Option("--user", help="User simulator: scripted, llm or hf.")
        ] = "scripted",
        user_base_url: Annotated[
            str | None,
            typer.Option(
                "--user-base-url",
                help="llm user: OpenAI-compatible endpoint up to /v1 (key: $OPENAI_API_KEY).",
            ),
        ] = None,
        user_model: Annotated[
            str | None,
            typer.Option("--user-model", help="llm user: model name; hf user: checkpoint path or 'tiny'."),
        ] = None,
        store: StoreOpt = Path(DEFAULT_STORE),
        lora_r: Annotated[int, typer.Option("--lora-r", help="LoRA rank (all linear layers).")] = 8,
        max_steps: Annotated[
            int,
            typer.Option(
                "--max-steps", help="Optimiser steps in total (a resumed run counts the steps already done)."
            ),
        ] = 100,
        save_steps: Annotated[
            int, typer.Option("--save-steps", help="Write a checkpoint every N steps.")
        ] = 10,
        resume: Annotated[
            bool, typer.Option("--resume", help="Continue from the last complete checkpoint in --output-dir.")
        ] = False,
        tasks: Annotated[
            str | None, typer.Option("--tasks", help="Comma-separated task ids (default: all).")
        ] = None,
        samples_per_task: Annotated[
            int, typer.Option("--samples-per-task", help="Episodes per task per step (the GRPO group size).")
        ] = 4,
        batch_size: Annotated[
            int | None, typer.Option("--batch-size", help="Episodes per step (default: 2 groups).")
        ] = None,
        max_turns: Annotated[
            int, typer.Option("--max-turns", help="Assistant turns per episode at most.")
        ] = 8,
        max_new_tokens: Annotated[
            int, typer.Option("--max-new-tokens", help="Tokens per assistant turn at most.")
        ] = 256,
        learning_rate: Annotated[float, typer.Option("--learning-rate", help="AdamW learning rate.")] = 1e-5,
        beta: Annotated[
            float, typer.Option("--beta", help="KL coefficient to the base model (0 = no reference pass).")
        ] = 0.0,
        seed: Annotated[
            int, typer.Option("--seed", help="Seed for data order, rollouts and initialisation.")
        ] = 0,
        run_id: Annotated[
            str | None,
            typer.Option(
                "--run-id", help="Run id of the stored episodes (default: the output directory's name)."
            ),
        ] = None,
        iteration: Annotated[
            int, typer.Option("--iteration", help="Calibration-loop iteration written on the episodes.")
        ] = 0,
        system_prompt: Annotated[
            str | None,
            typer.Option(
                "--system-prompt",
                help="Show the model this system prompt instead of the domain's policy (CPU budget).",
            ),
        ] = None,
        tool_detail: Annotated[
            str,
            typer.Option(
                "--tool-detail", help="Tool schemas shown: full, compact (no descriptions) or minimal."
            ),
        ] = "full",
        visible_tools: Annotated[
            str | None,
            typer.Option("--visible-tools", help="Comma-separated tools shown to the model (default: all)."),
        ] = None,
        threads: Annotated[
            int | None, typer.Option("--threads", help="torch CPU threads (1 is fastest on a busy machine).")
        ] = None,
        json_out: JsonOpt = False,
    ) -> None:
        """Train a policy with multi-turn GRPO on a domain, rewarded by a calibrated reward spec.

        Rollouts come from the model being trained; every step's episodes go to the store (run id,
        info.step) so that `calib analyze` can read them. Logs one line per step: loss, success rate,
        mean turns, turn-reward and advantage statistics, misaligned mass.
        """
        check_domain(domain)  # before the heavy imports: one line when the tau2 package is missing
        if split != "all":
            tasks = _split_tasks(domain, split, tasks)
        from rich.console import Console

        from trainer.callbacks import RichProgressCallback
        from trainer.run import TrainJob, run_train

        console = Console(stderr=True)
        job = TrainJob(
            spec=spec,
            model=model,
            output_dir=output_dir,
            domain=domain,
            user=user,
            user_base_url=user_base_url,
            user_model=user_model,
            store=store,
            run_id=run_id,
            iteration=iteration,
            tasks=tasks,
            samples_per_task=samples_per_task,
            batch_size=batch_size,
            max_turns=max_turns,
            max_new_tokens=max_new_tokens,
            max_steps=max_steps,
            save_steps=save_steps,
            learning_rate=learning_rate,
            lora_r=lora_r,
            beta=beta,
            seed=seed,
            resume=resume,
            system_prompt=system_prompt,
            tool_detail=tool_detail,
            visible_tools=visible_tools,
            threads=threads,
        )
        result = run_train(job, callbacks=[RichProgressCallback(console, show_bar=not json_out)])
        summary = {
            "run_id": result.run_id,
            "global_step": result.global_step,
            "resumed_from": str(result.resumed_from) if result.resumed_from else None,
            "adapter": str(result.adapter_dir),
            "store": str(job.store),
        }
        if json_out:
            typer.echo(json.dumps(summary))
        else:
            where = f" (resumed from {result.resumed_from.name})" if result.resumed_from else ""
            console.print(
                f"trained run [bold]{result.run_id}[/] to step {result.global_step}{where}; "
                f"adapter in {result.adapter_dir}; episodes in {job.store}",
                highlight=False,
                soft_wrap=True,
            )


def _split_tasks(domain: str, split: str, tasks: str | None) -> str:
    """--tasks restricted to --split, as the comma-separated ids the trainer takes."""
    from calib.envs.base import load_domain
    from calib.envs.splits import filter_split
    from calib.rollout.runner import select_tasks

    dom = load_domain(domain)
    return ",".join(t.task_id for t in filter_split(dom, select_tasks(dom, tasks), split))
