"""One training run: load the model, wrap it in LoRA, train with MultiTurnGRPOTrainer, checkpoint, resume.

``calib train`` and ``calib loop`` call :func:`run_train` with a :class:`TrainJob`; nothing here parses
options or prints tables. Resuming picks the last *complete* checkpoint (one whose
``trainer_state.json``, written last by transformers, parses), so a run killed while writing a
checkpoint resumes from the previous one; the step count, the optimiser, the scheduler, the RNG
states and the position in the data order all come back from it.
"""

from __future__ import annotations

import json
import os
import re
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from calib.errors import CalibError, UsageError
from calib.spec import is_preset

_CHECKPOINT = re.compile(r"^checkpoint-(\d+)$")


@dataclass
class TrainJob:
    """Everything ``calib train`` needs; defaults are the CPU-friendly ones."""

    spec: Path
    model: str
    output_dir: Path
    domain: str = "airline-mini"
    user: str = "scripted"
    user_base_url: str | None = None  # llm user endpoint (key from $OPENAI_API_KEY)
    user_model: str | None = None  # llm user model name, or hf user checkpoint
    store: Path | None = None
    run_id: str | None = None  # default: the output directory's name
    iteration: int = 0
    tasks: str | None = None
    split: str = "all"  # train | test | all (calib.envs.splits); the CLI resolves it into `tasks`
    samples_per_task: int = 4
    batch_size: int | None = None  # episodes per optimiser step; default 2 groups
    # episodes per forward/backward pass, the rest of the batch accumulated into the same optimiser step
    # (None: 1 on CPU, where a 4-episode pass of the tiny model peaked at 21 GB and a 1-episode pass at
    # 7.6 GB with the same loss; the whole batch on GPU)
    micro_batch_size: int | None = None
    max_turns: int = 8
    max_new_tokens: int = 256
    max_steps: int = 100
    save_steps: int = 10
    learning_rate: float = 1e-5
    lora_r: int = 8
    lora_alpha: int | None = None  # default 2 * r
    lora_dropout: float = 0.0
    beta: float = 0.0
    temperature: float = 1.0
    seed: int = 0
    resume: bool = False
    system_prompt: str | None = None
    tool_detail: str = "full"
    visible_tools: str | None = None
    threads: int | None = None
    top_p: float = 1.0
    generation_batch_size: int | None = None  # turns per generation call at most (None: all waiting)
    use_vllm: bool = False
    vllm_mode: str = "colocate"  # TRL's names: colocate | server
    vllm_server_base_url: str | None = None
    # online recalibration (calib.analysis.online): every N steps, re-measure on the last W steps
    recalibrate_every: int = 0
    recalibration_window: int = 10
    recalibration_blend: float = 0.5
    recalibration_min_groups: int = 3
    recalibration_rule: str = "joint"
    extra: dict[str, Any] = field(default_factory=dict)  # any other MultiTurnGRPOConfig field


@dataclass
class TrainResult:
    run_id: str
    output_dir: Path
    global_step: int
    resumed_from: Path | None
    log_history: list[dict[str, Any]]
    adapter_dir: Path


def complete_checkpoints(output_dir: Path) -> list[tuple[int, Path]]:
    """``(step, path)`` of every checkpoint whose trainer state is readable, by step."""
    found = []
    if not output_dir.is_dir():
        return found
    for p in output_dir.iterdir():
        m = _CHECKPOINT.match(p.name)
        if not (m and p.is_dir()):
            continue
        try:
            json.loads((p / "trainer_state.json").read_text())
        except (OSError, ValueError):
            continue  # interrupted while saving: not resumable
        found.append((int(m.group(1)), p))
    return sorted(found)


VLLM_MODES = ("colocate", "server")


def resume_checkpoint(output_dir: Path, resume: bool) -> Path | None:
    """The checkpoint to resume from (None: start fresh), or a UsageError: ``--resume`` without a
    checkpoint, or checkpoints without ``--resume`` (a silent restart would overwrite them).
    ``calib train`` and ``calib sft`` share it so that both refuse the same way."""
    checkpoints = complete_checkpoints(output_dir)
    if resume:
        if not checkpoints:
            raise UsageError(f"--resume: no complete checkpoint in {output_dir}; run without --resume first")
        return checkpoints[-1][1]
    if checkpoints:
        raise UsageError(
            f"--output-dir {output_dir} already holds checkpoints (last: {checkpoints[-1][1].name}); "
            "pass --resume to continue, or choose another directory"
        )
    return None


def train_to_adapter(
    trainer: Any, tokenizer: Any, resume_from: Path | None, output_dir: Path, *, what: str
) -> Path:
    """Train (resuming from ``resume_from``), then save the LoRA adapter and the tokenizer in
    ``output_dir/adapter``; returns that directory. A ValueError or RuntimeError from the trainer
    becomes one CalibError line naming ``what`` and the step (``CALIB_DEBUG=1``: the traceback).
    ``calib train`` and ``calib sft`` end their runs through it."""
    try:
        trainer.train(resume_from_checkpoint=str(resume_from) if resume_from else None)
    except (ValueError, RuntimeError) as e:
        if os.environ.get("CALIB_DEBUG"):
            raise
        step = trainer.state.global_step + 1
        raise CalibError(f"{what} failed at step {step}: {type(e).__name__}: {e}") from e
    adapter_dir = output_dir / "adapter"
    trainer.save_model(str(adapter_dir))
    tokenizer.save_pretrained(str(adapter_dir))
    return adapter_dir


def check_options(job: TrainJob) -> None:
    """Validate the job's values and their combinations (no file system access, nothing loaded)."""
    for name in ("max_steps", "save_steps", "samples_per_task", "max_turns", "max_new_tokens", "lora_r"):
        if getattr(job, name) < 1:
            raise UsageError(f"--{name.replace('_', '-')} {getattr(job, name)}: should be >= 1")
    if job.samples_per_task < 2:
        raise UsageError(
            f"--samples-per-task {job.samples_per_task}: GRPO needs at least 2 episodes per task"
        )
    if job.batch_size is not None and job.batch_size % job.samples_per_task:
        raise UsageError(
            f"--batch-size {job.batch_size}: should be a multiple of --samples-per-task {job.samples_per_task} "
            "(whole groups)"
        )
    if job.micro_batch_size is not None:
        batch = job.batch_size or 2 * job.samples_per_task
        if job.micro_batch_size < 1 or batch % job.micro_batch_size:
            raise UsageError(f"--micro-batch-size {job.micro_batch_size}: should divide the batch ({batch} episodes)")
    if job.generation_batch_size is not None and job.generation_batch_size < 1:
        raise UsageError(f"--generation-batch-size {job.generation_batch_size}: should be >= 1")
    if job.vllm_mode not in VLLM_MODES:
        raise UsageError(f"--vllm-mode {job.vllm_mode}: expected one of {', '.join(VLLM_MODES)}")
    if job.vllm_server_base_url and not (job.use_vllm and job.vllm_mode == "server"):
        raise UsageError("--vllm-server-base-url: only with --use-vllm --vllm-mode server")
    _check_recalibration(job)


def _check_recalibration(job: TrainJob) -> None:
    from calib.analysis.online import RecalibrationConfig

    try:
        RecalibrationConfig(every=job.recalibrate_every, window=job.recalibration_window,
                            blend=job.recalibration_blend, min_groups=job.recalibration_min_groups,
                            rule=job.recalibration_rule)
    except UsageError as e:
        raise UsageError("--" + str(e).replace("_", "-", 2).replace("=", " ", 1)) from None
    if job.recalibrate_every and job.store is None:
        raise UsageError(f"--recalibrate-every {job.recalibrate_every}: needs --store (recalibration reads this "
                         "run's episodes from it)")


def _check(job: TrainJob) -> Path | None:
    """Validate the job before anything heavy is loaded; return the checkpoint to resume from."""
    check_options(job)
    if not (job.spec.is_file() or is_preset(job.spec)):  # presets: load_spec resolves them
        raise UsageError(f"--spec {job.spec}: no such file")
    return resume_checkpoint(job.output_dir, job.resume)


def plan_train(job: TrainJob) -> dict[str, Any]:
    """A dry run: validate the options and build the training configuration without loading anything.

    Returns the resolved settings, and ``missing``: the files the run would need that do not exist
    here (the spec; the checkpoint to resume from), so that a recipe written for another machine can
    be checked on this one.
    """
    check_options(job)
    run_id = job.run_id or job.output_dir.name
    args = build_config(job, run_id=run_id, cuda=False)
    missing = [] if job.spec.is_file() or is_preset(job.spec) else [f"--spec {job.spec}"]
    if job.resume and not complete_checkpoints(job.output_dir):
        missing.append(f"--resume: a checkpoint in {job.output_dir}")
    return {
        "run_id": run_id,
        "model": job.model,
        "domain": job.domain,
        "user": job.user,
        "advantage_spec": str(job.spec),
        "group_size": args.num_generations,
        "batch_size": args.generation_batch_size,
        "micro_batch_size": args.per_device_train_batch_size,
        "max_turns": args.max_turns,
        "max_new_tokens": args.max_completion_length,
        "temperature": args.temperature,
        "learning_rate": args.learning_rate,
        "beta": args.beta,
        "use_vllm": args.use_vllm,
        "vllm_mode": args.vllm_mode if args.use_vllm else None,
        "generation_batch_size": args.turn_batch_size,
        "recalibrate_every": args.recalibrate_every or None,
        "missing": missing,
    }


def build_config(job: TrainJob, *, run_id: str, cuda: bool):
    """The MultiTurnGRPOConfig of a job (CPU: fp32, no gradient checkpointing)."""
    import warnings

    # transformers 5 renamed gradient_checkpointing; TRL 1.16 still uses the old name internally.
    warnings.filterwarnings("ignore", message=r".*gradient_checkpointing.*", category=FutureWarning)
    from trainer.grpo import MultiTurnGRPOConfig

    batch = job.batch_size or 2 * job.samples_per_task
    micro = job.micro_batch_size or (batch if cuda else 1)
    kw: dict[str, Any] = {
        "output_dir": str(job.output_dir),
        "spec_path": str(job.spec),
        "domain": job.domain,
        "user": job.user,
        "user_base_url": job.user_base_url,
        "user_model": job.user_model,
        "tasks": job.tasks,
        "samples_per_task": job.samples_per_task,
        # TRL generates steps_per_generation (= gradient_accumulation_steps) micro-batches at once and
        # computes the advantages over all of them: the groups stay whole, only the backward is split.
        "per_device_train_batch_size": micro,
        "gradient_accumulation_steps": batch // micro,
        "max_turns": job.max_turns,
        "max_completion_length": job.max_new_tokens,
        "max_steps": job.max_steps,
        "save_strategy": "steps",
        "save_steps": job.save_steps,
        "learning_rate": job.learning_rate,
        "beta": job.beta,
        "temperature": job.temperature,
        "seed": job.seed,
        "data_seed": job.seed,
        "store_dir": str(job.store) if job.store is not None else None,
        "run_id": run_id,
        "iteration": job.iteration,
        "system_prompt": job.system_prompt,
        "tool_detail": job.tool_detail,
        "visible_tools": job.visible_tools,
        "top_p": job.top_p,
        "turn_batch_size": job.generation_batch_size,
        "use_vllm": job.use_vllm,
        "vllm_mode": job.vllm_mode,
        "vllm_server_base_url": job.vllm_server_base_url,
        "recalibrate_every": job.recalibrate_every,
        "recalibration_window": job.recalibration_window,
        "recalibration_blend": job.recalibration_blend,
        "recalibration_min_groups": job.recalibration_min_groups,
        "recalibration_rule": job.recalibration_rule,
        "logging_steps": 1,
        "report_to": [],
        "disable_tqdm": True,
        "use_cpu": not cuda,
        "bf16": cuda,
        "gradient_checkpointing": cuda,
    }
    kw.update(job.extra)
    try:
        return MultiTurnGRPOConfig(**kw)
    except ValueError as e:
        raise UsageError(f"training configuration: {e}") from None


def run_train(job: TrainJob, *, callbacks: list | None = None) -> TrainResult:
    """Train (or resume) and save the final LoRA adapter in ``output_dir/adapter``."""
    resume_from = _check(job)
    os.environ.setdefault("TRL_EXPERIMENTAL_SILENCE", "1")  # rollout_func is experimental in TRL; we know
    import warnings

    # transformers 5 renamed gradient_checkpointing; TRL 1.16 still uses the old name internally.
    warnings.filterwarnings("ignore", message=r".*gradient_checkpointing.*", category=FutureWarning)
    import torch
    from peft import LoraConfig
    from transformers import PrinterCallback

    from calib.models import load_pretrained
    from calib.spec import load_spec
    from trainer.grpo import MultiTurnGRPOTrainer

    if job.threads:
        torch.set_num_threads(job.threads)
    spec = load_spec(job.spec)  # SpecError (exit 2) names the field
    run_id = job.run_id or job.output_dir.resolve().name
    cuda = torch.cuda.is_available()
    args = build_config(job, run_id=run_id, cuda=cuda)
    model, tokenizer = load_pretrained(job.model, dtype=torch.bfloat16 if cuda else torch.float32)
    lora = LoraConfig(
        r=job.lora_r,
        lora_alpha=job.lora_alpha or 2 * job.lora_r,
        lora_dropout=job.lora_dropout,
        target_modules="all-linear",
        task_type="CAUSAL_LM",
    )
    trainer = MultiTurnGRPOTrainer(
        model, args, processing_class=tokenizer, spec=spec, peft_config=lora, callbacks=callbacks
    )
    trainer.remove_callback(PrinterCallback)  # our callback prints one line per step instead of a dict
    adapter_dir = train_to_adapter(trainer, tokenizer, resume_from, job.output_dir, what="training")
    return TrainResult(
        run_id=run_id,
        output_dir=job.output_dir,
        global_step=trainer.state.global_step,
        resumed_from=resume_from,
        log_history=list(trainer.state.log_history),
        adapter_dir=adapter_dir,
    )
