"""CLI: ``calib train`` — multi-turn GRPO with a reward spec, LoRA, checkpoints and resume."""

from __future__ import annotations

from pathlib import Path
from typing import Annotated

import typer

from calib.cli.options import (
    DEFAULT_STORE,
    JsonOpt,
    SplitOpt,
    StoreOpt,
    check_domain,
    check_output,
    check_store,
)
from calib.cli.training_options import LoraROpt, ResumeOpt, ThreadsOpt, ToolDetailOpt, VisibleToolsOpt
from calib.jsonutil import dumps


def register(app: typer.Typer) -> None:
    """Add ``calib train`` to the root app."""

    @app.command("train")
    def train(
        ctx: typer.Context,
        spec: Annotated[
            Path | None, typer.Option("--spec", help="Reward spec YAML (from `calib analyze`), or preset:NAME (calib spec list). Required.")
        ] = None,
        model: Annotated[
            str | None,
            typer.Option(
                "--model",
                help="Local checkpoint directory, a model hub id (e.g. Qwen/Qwen3-4B; its cache, "
                "HF_HUB_OFFLINE honoured), or `tiny` (SmolLM2-135M). Required.",
            ),
        ] = None,
        output_dir: Annotated[
            Path | None,
            typer.Option(
                "--output-dir", help="Checkpoints (checkpoint-N/) and the final adapter (adapter/). Required."
            ),
        ] = None,
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
        lora_r: LoraROpt = 8,
        max_steps: Annotated[
            int,
            typer.Option(
                "--max-steps", help="Optimiser steps in total (a resumed run counts the steps already done)."
            ),
        ] = 100,
        save_steps: Annotated[
            int, typer.Option("--save-steps", help="Write a checkpoint every N steps.")
        ] = 10,
        resume: ResumeOpt = False,
        tasks: Annotated[
            str | None, typer.Option("--tasks", help="Comma-separated task ids (default: all).")
        ] = None,
        samples_per_task: Annotated[
            int, typer.Option("--samples-per-task", help="Episodes per task per step (the GRPO group size).")
        ] = 4,
        batch_size: Annotated[
            int | None, typer.Option("--batch-size", help="Episodes per step (default: 2 groups).")
        ] = None,
        micro_batch_size: Annotated[
            int | None,
            typer.Option("--micro-batch-size", help="Episodes per forward/backward pass; the rest of the batch "
                         "is accumulated into the same step (default: 1 on CPU, the whole batch on GPU)."),
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
        tool_detail: ToolDetailOpt = "full",
        visible_tools: VisibleToolsOpt = None,
        threads: ThreadsOpt = None,
        temperature: Annotated[
            float, typer.Option("--temperature", help="Sampling temperature of the rollouts.")
        ] = 1.0,
        generation_batch_size: Annotated[
            int | None,
            typer.Option(
                "--generation-batch-size",
                help="Turns generated in one batch at most (default: every episode waiting on the model).",
            ),
        ] = None,
        use_vllm: Annotated[
            bool, typer.Option("--use-vllm", help="Generate with TRL's vLLM engine (needs vllm and a GPU).")
        ] = False,
        vllm_mode: Annotated[
            str, typer.Option("--vllm-mode", help="TRL's vllm_mode: colocate (in-process) or server (trl vllm-serve).")
        ] = "colocate",
        vllm_server_base_url: Annotated[
            str | None,
            typer.Option("--vllm-server-base-url", help="server mode: URL of `trl vllm-serve` (TRL's name)."),
        ] = None,
        recalibrate_every: Annotated[
            int,
            typer.Option("--recalibrate-every", help="Online recalibration: every N optimiser steps, re-run the "
                         "analysis on this run's last --recalibration-window steps and move the weights toward it "
                         "(0: never; needs --store). See docs/training.md."),
        ] = 0,
        recalibration_window: Annotated[
            int, typer.Option("--recalibration-window", help="Steps of episodes each recalibration reads.")
        ] = 10,
        recalibration_blend: Annotated[
            float, typer.Option("--recalibration-blend", help="Share of the new weight taken: (1-b) old + b new.")
        ] = 0.5,
        recalibration_min_groups: Annotated[
            int,
            typer.Option("--recalibration-min-groups", help="Informative groups a signal needs in the window to "
                         "move (with fewer, or an interval covering 0.5, it keeps its weight)."),
        ] = 3,
        recalibration_rule: Annotated[
            str, typer.Option("--recalibration-rule", help="Calibration rule of each recalibration: joint (measured "
                              "best online, docs/results.md) | auc | irc.")
        ] = "joint",
        config: Annotated[
            Path | None,
            typer.Option("--config", help="YAML of these options (keys as the flags); flags given here override it."),
        ] = None,
        dry_run: Annotated[
            bool,
            typer.Option("--dry-run", help="Validate the options and print the resolved settings; load nothing."),
        ] = False,
        json_out: JsonOpt = False,
    ) -> None:
        """Train a policy with multi-turn GRPO on a domain, rewarded by a calibrated reward spec.

        Rollouts come from the model being trained; every step's episodes go to the store (run id,
        info.step) so that `calib analyze` can read them. Logs one line per step: loss, success rate,
        mean turns, turn-reward and advantage statistics, misaligned mass.
        """
        from rich.console import Console

        from calib.cli.finish import finish, resumed_from, resumed_note
        from trainer.callbacks import RichProgressCallback
        from trainer.run import plan_train, run_train
        from trainer.train_options import job_from_options

        console = Console(stderr=True)
        options = dict(ctx.params)
        explicit = {k for k in options if (src := ctx.get_parameter_source(k)) is not None and src.name != "DEFAULT"}
        job = job_from_options(options, explicit, config)
        check_domain(job.domain)  # before the heavy imports: one line when the tau2 package is missing
        if dry_run:
            plan = plan_train(job)
            if json_out:
                typer.echo(dumps(plan))
            else:
                for k, v in plan.items():
                    console.print(f"{k}: {v}", highlight=False, soft_wrap=True)
            return
        if job.split != "all":
            job.tasks = _split_tasks(job.domain, job.split, job.tasks)
        check_output(job.output_dir, folder=True, flag="--output-dir")  # before the model loads
        if job.store is not None:
            check_store(job.store)
        result = run_train(job, callbacks=[RichProgressCallback(console, show_bar=not json_out)])
        summary = {
            "run_id": result.run_id,
            "global_step": result.global_step,
            "resumed_from": resumed_from(result.resumed_from),
            "adapter": str(result.adapter_dir),
            "store": str(job.store),
        }
        finish(console, summary, f"trained run [bold]{result.run_id}[/] to step {result.global_step}"
               f"{resumed_note(result.resumed_from)}; adapter in {result.adapter_dir}; episodes in {job.store}",
               json_out=json_out)


def _split_tasks(domain: str, split: str, tasks: str | None) -> str:
    """--tasks restricted to --split, as the comma-separated ids the trainer takes."""
    from calib.rollout.runner import select_split

    return ",".join(t.task_id for t in select_split(domain, tasks, split)[1])
