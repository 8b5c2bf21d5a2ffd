"""Supervised warm start: fine-tune on a store's successful episodes with TRL's ``SFTTrainer``.

RL from a model that never succeeds learns nothing (every GRPO group has the same outcome), so
``calib sft`` first teaches the format and the moves from demonstrations: the successful episodes of
some runs (oracle rollouts, imported tau-bench or tau2 results). Every episode is rendered and
tokenised exactly as the RL trainer renders it (:func:`trainer.tokenize.tokenize_episode` through the
same :class:`trainer.policy.PromptView` and ``TrainingPolicy.to_template``), so the SFT model and the
RL policy see identical text, and the loss is taken on the assistant tokens only: the spans that GRPO
would train.

The run is resumable like ``calib train`` (checkpoints in ``output_dir/checkpoint-N``, ``resume``
picks the last complete one). At the end the LoRA adapter is saved in ``output_dir/adapter`` and
merged into a plain checkpoint in ``output_dir/merged``, which ``calib train --model`` and the ``hf``
policy load like any other. ``calib sft`` (``calib/cli/sft_cmd.py``) is the command line around
:func:`run_sft`; nothing here parses options or prints.
"""

from __future__ import annotations

import os
import shutil
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from calib.errors import CalibError, UsageError
from trainer.policy import TOOL_DETAILS, PromptView
from trainer.run import resume_checkpoint, train_to_adapter


@dataclass
class SFTJob:
    """Everything ``calib sft`` needs; defaults suit a LoRA warm start on CPU."""

    store: Path
    runs: list[str]
    model: str
    output_dir: Path
    min_outcome: float = 1.0
    domain: str = "airline-mini"  # whose tool schemas are rendered (as `calib train --domain`)
    tasks: list[str] | None = None
    split: str = "all"  # train | test | all of --domain (calib.envs.splits): only its tasks' episodes
    epochs: float = 3.0
    max_steps: int = -1  # > 0 overrides epochs
    batch_size: int = 1
    learning_rate: float = 2e-4
    lora_r: int = 8
    lora_alpha: int | None = None  # default 2 * r
    save_steps: int = 50
    seed: int = 0
    resume: bool = False
    system_prompt: str | None = None
    tool_detail: str = "full"
    visible_tools: str | None = None
    threads: int | None = None
    extra: dict[str, Any] = field(default_factory=dict)  # any other SFTConfig field


@dataclass
class SFTResult:
    output_dir: Path
    global_step: int
    resumed_from: Path | None
    log_history: list[dict[str, Any]]
    adapter_dir: Path
    merged_dir: Path
    episodes: int  # episodes trained on
    skipped: int  # episodes whose tokens could not be attributed to turns (never trained on)
    tokens: int  # tokens in the training set
    assistant_tokens: int  # of which the loss sees


def make_view(system_prompt: str | None, tool_detail: str, visible_tools: str | None, catalogue: Any) -> PromptView:
    """The same view ``calib train`` builds from the same three options (unknown tools refused)."""
    if tool_detail not in TOOL_DETAILS:
        raise UsageError(f"--tool-detail {tool_detail}: expected one of {', '.join(TOOL_DETAILS)}")
    shown = tuple(t.strip() for t in (visible_tools or "").split(",") if t.strip()) or None
    unknown = [t for t in shown or () if not catalogue.is_known(t)]
    if unknown:
        raise UsageError(f"--visible-tools: unknown tool(s) {', '.join(unknown)}")
    return PromptView(system_prompt=system_prompt, tool_detail=tool_detail, visible_tools=shown)


def split_tasks(domain: Any, split: str, tasks: list[str] | None) -> list[str] | None:
    """``tasks`` restricted to ``split`` of ``domain`` (None: every task of the runs)."""
    from calib.envs.splits import split_task_ids

    if split == "all":
        split_task_ids(domain, split)  # validates the name
        return tasks
    keep = split_task_ids(domain, split)
    if tasks:
        keep = [t for t in keep if t in set(tasks)]
        if not keep:
            raise UsageError(f"--tasks: none of them is in the {split!r} split of {domain.name!r}")
    return keep


def check_options(job: SFTJob) -> None:
    for name in ("batch_size", "lora_r", "save_steps"):
        if getattr(job, name) < 1:
            raise UsageError(f"--{name.replace('_', '-')} {getattr(job, name)}: should be >= 1")
    if job.epochs <= 0:
        raise UsageError(f"--epochs {job.epochs}: should be > 0")
    if job.learning_rate <= 0:
        raise UsageError(f"--learning-rate {job.learning_rate}: should be > 0")
    if not job.runs:
        raise UsageError("--runs: give at least one run id")


def check_output_dir(job: SFTJob) -> Path | None:
    """Refuse a finished output directory or a silent restart; return the checkpoint to resume from."""
    merged = job.output_dir / "merged"
    if merged.exists():
        raise CalibError(
            f"--output-dir {job.output_dir} already holds a finished model ({merged}); choose another directory"
        )
    return resume_checkpoint(job.output_dir, job.resume)


def select_episodes(store: Any, runs: list[str], min_outcome: float, tasks: list[str] | None = None
                    ) -> list[dict[str, Any]]:
    """The episodes of ``runs`` with ``outcome >= min_outcome`` (and of ``tasks``), in store order.

    An unknown run id, or no episode that qualifies, is a :class:`CalibError` saying what the store
    holds, since training on nothing (or on the wrong run) must not look like success.
    """
    present = store.runs()
    missing = [r for r in runs if r not in present]
    if missing:
        raise CalibError(
            f"--runs: run(s) {', '.join(map(repr, missing))} not in the store at {store.path}; "
            f"runs in it: {', '.join(present) or 'none'}"
        )
    con = store.connect()
    try:
        con.execute("CREATE TEMP TABLE _sft_runs (run_id VARCHAR)")
        con.executemany("INSERT INTO _sft_runs VALUES (?)", [[r] for r in runs])
        task_clause = ""
        params: list[Any] = [float(min_outcome)]
        if tasks:
            task_clause = " AND task_id IN (SELECT unnest(?::VARCHAR[]))"
            params.append(list(tasks))
        n_all, best = con.execute(
            "SELECT count(*), max(outcome) FROM episodes WHERE run_id IN (SELECT run_id FROM _sft_runs)"
            + (" AND task_id IN (SELECT unnest(?::VARCHAR[]))" if tasks else ""),
            params[1:],
        ).fetchone()
        cur = con.execute(
            "SELECT episode_id, task_id, outcome, messages, info FROM episodes "
            "WHERE run_id IN (SELECT run_id FROM _sft_runs) AND outcome >= ?" + task_clause
            + " ORDER BY ingest_id, source_line",
            params,
        )
        cols = [d[0] for d in cur.description]
        rows = [dict(zip(cols, r)) for r in cur.fetchall()]
    finally:
        con.close()
    if not rows:
        scope = f"run(s) {', '.join(runs)}" + (f", task(s) {', '.join(tasks)}" if tasks else "")
        raise CalibError(
            f"no successful episode to learn from: none of the {n_all} episode(s) of {scope} has outcome >= "
            f"{min_outcome:g} (best: {'-' if best is None else f'{best:g}'}); lower --min-outcome or choose other runs"
        )
    import json

    for r in rows:
        r["messages"] = json.loads(r["messages"])
        r["info"] = json.loads(r["info"]) if r["info"] else {}
    return rows


def encode_episodes(tokenizer: Any, episodes: list[dict[str, Any]], tools: list[dict[str, Any]] | None,
                    to_template: Any) -> tuple[list[dict[str, list[int]]], list[str]]:
    """Each episode -> ``{"input_ids", "assistant_masks"}`` as the RL trainer tokenises it.

    The mask is 1 exactly on the tokens of the RL trainer's assistant spans (``EpisodeTokens.spans``).
    An episode the tokeniser cannot attribute (``TokenizationDriftError``) is skipped and named, as
    the RL trainer masks such episodes out.
    """
    from trainer.tokenize import TokenizationDriftError, tokenize_episode

    rows, skipped = [], []
    for ep in episodes:
        info = ep.get("info") or {}
        raw = info.get("raw_texts")
        gen = info.get("generated_ids")
        try:
            et = tokenize_episode(
                tokenizer,
                ep["messages"],
                tools=tools,
                raw_texts=raw if raw and all(t is not None for t in raw) else None,
                generated_ids=gen if gen and all(g is not None for g in gen) else None,
                stopped=info.get("stopped"),
                to_template=to_template,
            )
        except TokenizationDriftError:
            skipped.append(ep["episode_id"])
            continue
        if not et.completion_ids:
            skipped.append(ep["episode_id"])
            continue
        rows.append({
            "input_ids": et.prompt_ids + et.completion_ids,
            "assistant_masks": [0] * len(et.prompt_ids) + et.env_mask,
        })
    return rows, skipped


def rl_to_template(tokenizer: Any, view: PromptView) -> Any:
    """The RL trainer's own ``to_template`` (``TrainingPolicy.to_template``) for this tokenizer and view."""
    from calib.hf_chat import HFChatModel
    from trainer.policy import TrainingPolicy

    return TrainingPolicy(HFChatModel(None, tokenizer), view=view).to_template


def build_config(job: SFTJob, *, cuda: bool):
    """The TRL ``SFTConfig`` of a job (CPU: fp32; no truncation: an episode is trained whole)."""
    from trl import SFTConfig

    kw: dict[str, Any] = {
        "output_dir": str(job.output_dir),
        "num_train_epochs": job.epochs,
        "max_steps": job.max_steps,
        "per_device_train_batch_size": job.batch_size,
        "learning_rate": job.learning_rate,
        "save_strategy": "steps",
        "save_steps": job.save_steps,
        "logging_steps": 1,
        "report_to": [],
        "disable_tqdm": True,
        "seed": job.seed,
        "data_seed": job.seed,
        "max_length": None,
        "use_cpu": not cuda,
        "bf16": cuda,
        "gradient_checkpointing": cuda,  # SFTConfig turns it on by default; on CPU it only costs time
    }
    kw.update(job.extra)
    try:
        return SFTConfig(**kw)
    except ValueError as e:
        raise UsageError(f"SFT configuration: {e}") from None


def run_sft(job: SFTJob, *, callbacks: list | None = None) -> SFTResult:
    """Fine-tune (or resume), then save ``adapter/`` and the merged checkpoint ``merged/``."""
    check_options(job)
    resume_from = check_output_dir(job)
    from calib.envs import load_domain
    from calib.store import Store

    if not Path(job.store).is_dir():
        raise CalibError(f"--store {job.store}: no such store")
    domain = load_domain(job.domain)
    view = make_view(job.system_prompt, job.tool_detail, job.visible_tools, domain.catalogue)
    episodes = select_episodes(Store(job.store, create=False), job.runs, job.min_outcome,
                               split_tasks(domain, job.split, job.tasks))

    import warnings

    warnings.filterwarnings("ignore", message=r".*gradient_checkpointing.*", category=FutureWarning)
    import torch
    from datasets import Dataset
    from peft import LoraConfig
    from transformers import PrinterCallback
    from trl import SFTTrainer

    from calib.models import load_pretrained

    if job.threads:
        torch.set_num_threads(job.threads)
    _quiet_progress_bars()  # the command shows its own progress; --json output stays one line
    cuda = torch.cuda.is_available()
    args = build_config(job, cuda=cuda)
    model, tokenizer = load_pretrained(job.model, dtype=torch.bfloat16 if cuda else torch.float32)
    rows, skipped = encode_episodes(tokenizer, episodes, domain.catalogue.openai_tools(),
                                    rl_to_template(tokenizer, view))
    if not rows:
        raise CalibError(f"none of the {len(episodes)} selected episode(s) could be tokenised turn by turn "
                         "(chat template not append-only?)")
    lora = LoraConfig(r=job.lora_r, lora_alpha=job.lora_alpha or 2 * job.lora_r, lora_dropout=0.0,
                      target_modules="all-linear", task_type="CAUSAL_LM")
    trainer = SFTTrainer(model=model, args=args, train_dataset=Dataset.from_list(rows),
                         processing_class=tokenizer, peft_config=lora, callbacks=callbacks)
    trainer.remove_callback(PrinterCallback)
    adapter_dir = train_to_adapter(trainer, tokenizer, resume_from, job.output_dir, what="SFT")
    merged_dir = save_merged(trainer.model, tokenizer, job.output_dir / "merged")
    return SFTResult(
        output_dir=job.output_dir,
        global_step=trainer.state.global_step,
        resumed_from=resume_from,
        log_history=list(trainer.state.log_history),
        adapter_dir=adapter_dir,
        merged_dir=merged_dir,
        episodes=len(rows),
        skipped=len(skipped),
        tokens=sum(len(r["input_ids"]) for r in rows),
        assistant_tokens=sum(sum(r["assistant_masks"]) for r in rows),
    )


def save_merged(peft_model: Any, tokenizer: Any, target: Path) -> Path:
    """Merge the adapter into the base weights and save a plain checkpoint, atomically: ``target``
    appears only complete, so its presence means a finished run."""
    merged = peft_model.merge_and_unload()
    tmp = target.with_name(target.name + ".partial")
    if tmp.exists():
        shutil.rmtree(tmp)
    merged.save_pretrained(str(tmp))
    tokenizer.save_pretrained(str(tmp))
    os.replace(tmp, target)
    return target


def _quiet_progress_bars() -> None:
    import datasets
    from transformers.utils import logging as hf_logging

    datasets.disable_progress_bars()
    hf_logging.disable_progress_bar()
