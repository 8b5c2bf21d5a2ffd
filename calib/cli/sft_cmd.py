"""CLI: ``calib sft`` — supervised warm start on a store's successful episodes (TRL SFTTrainer, LoRA)."""

from __future__ import annotations

from pathlib import Path
from typing import Annotated

import typer

from calib.cli.options import DEFAULT_STORE, JsonOpt, SplitOpt, StoreOpt, check_output, split_csv
from calib.cli.training_options import LoraROpt, ResumeOpt, ThreadsOpt, ToolDetailOpt, VisibleToolsOpt


def register(app: typer.Typer) -> None:
    """Add ``calib sft`` to the root app."""

    @app.command("sft")
    def sft(
        runs: Annotated[str, typer.Option("--runs", help="Comma-separated run ids whose episodes are learned from.")],
        model: Annotated[
            str,
            typer.Option(
                "--model",
                help="Local checkpoint directory, a model hub id (its cache, HF_HUB_OFFLINE honoured), "
                "or `tiny` (SmolLM2-135M).",
            ),
        ],
        output_dir: Annotated[
            Path,
            typer.Option(
                "--output-dir",
                help="Checkpoints (checkpoint-N/), the LoRA adapter (adapter/) and the merged model (merged/).",
            ),
        ],
        store: StoreOpt = Path(DEFAULT_STORE),
        min_outcome: Annotated[
            float, typer.Option("--min-outcome", help="Learn from episodes with outcome >= this.")
        ] = 1.0,
        tasks: Annotated[
            str | None, typer.Option("--tasks", help="Comma-separated task ids (default: all in the runs).")
        ] = None,
        split: SplitOpt = "all",
        domain: Annotated[
            str,
            typer.Option("--domain", help="Domain whose tool schemas are shown (as for `calib train`)."),
        ] = "airline-mini",
        lora_r: LoraROpt = 8,
        epochs: Annotated[float, typer.Option("--epochs", help="Passes over the episodes.")] = 3.0,
        max_steps: Annotated[
            int, typer.Option("--max-steps", help="Optimiser steps in total; > 0 overrides --epochs.")
        ] = -1,
        batch_size: Annotated[int, typer.Option("--batch-size", help="Episodes per optimiser step.")] = 1,
        learning_rate: Annotated[float, typer.Option("--learning-rate", help="AdamW learning rate.")] = 2e-4,
        save_steps: Annotated[int, typer.Option("--save-steps", help="Write a checkpoint every N steps.")] = 50,
        resume: ResumeOpt = False,
        seed: Annotated[int, typer.Option("--seed", help="Seed for data order and initialisation.")] = 0,
        system_prompt: Annotated[
            str | None,
            typer.Option(
                "--system-prompt",
                help="Show the model this system prompt instead of the episode's (use the same as for `calib train`).",
            ),
        ] = None,
        tool_detail: ToolDetailOpt = "full",
        visible_tools: VisibleToolsOpt = None,
        threads: ThreadsOpt = None,
        json_out: JsonOpt = False,
    ) -> None:
        """Fine-tune a model on the successful episodes of some runs (loss on the agent's tokens only).

        Episodes are rendered and tokenised exactly as `calib train` renders them (give the same
        --system-prompt/--tool-detail/--visible-tools), so the warm-started model sees the text the RL
        policy will see. The LoRA adapter is merged into a plain checkpoint, output-dir/merged, for
        `calib train --model` and `--policy hf`.
        """
        from rich.console import Console

        from calib.cli.finish import finish, resumed_from, resumed_note
        from trainer.callbacks import SFT_COLUMNS, RichProgressCallback
        from trainer.sft import SFTJob, run_sft

        console = Console(stderr=True)
        job = SFTJob(
            store=store,
            runs=split_csv(runs) or [],
            model=model,
            output_dir=output_dir,
            min_outcome=min_outcome,
            domain=domain,
            tasks=split_csv(tasks),
            split=split,
            epochs=epochs,
            max_steps=max_steps,
            batch_size=batch_size,
            learning_rate=learning_rate,
            lora_r=lora_r,
            save_steps=save_steps,
            seed=seed,
            resume=resume,
            system_prompt=system_prompt,
            tool_detail=tool_detail,
            visible_tools=visible_tools,
            threads=threads,
        )
        check_output(job.output_dir, folder=True, flag="--output-dir")  # before the model loads
        progress = RichProgressCallback(console, show_bar=not json_out, columns=SFT_COLUMNS, label="sft")
        result = run_sft(job, callbacks=[progress])
        summary = {
            "global_step": result.global_step,
            "resumed_from": resumed_from(result.resumed_from),
            "episodes": result.episodes,
            "skipped": result.skipped,
            "tokens": result.tokens,
            "assistant_tokens": result.assistant_tokens,
            "adapter": str(result.adapter_dir),
            "merged": str(result.merged_dir),
        }
        finish(console, summary, f"fine-tuned on {result.episodes} episode(s) ({result.assistant_tokens} of "
               f"{result.tokens} tokens in the loss) to step {result.global_step}{resumed_note(result.resumed_from)}; "
               f"merged model in [bold]{result.merged_dir}[/]", json_out=json_out)
