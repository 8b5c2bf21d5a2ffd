"""The ``hf`` policy family of ``calib loop``: a transformers model trained with TRL (LoRA).

Iteration ``i`` rolls out the model it starts from, trains a LoRA adapter on it with the iteration's
spec (:func:`trainer.run.run_train`, resumable), and merges the adapter into a full checkpoint
``models/it<i>`` that iteration ``i + 1`` starts from. Merging keeps every iteration's policy a plain
transformers checkpoint, which ``calib rollout --policy hf --model PATH`` and vLLM both load.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

from calib.store import Store
from trainer.family_base import existing_episodes, run_summary, select_split
from trainer.loop_config import LoopConfig


class HFFamily:
    def __init__(self, cfg: LoopConfig, work: Path):
        self.cfg = cfg
        self.work = work
        (work / "models").mkdir(exist_ok=True)

    def _model(self, it: int) -> str:
        """The checkpoint iteration ``it`` starts from: the previous merge, else the configured model."""
        prev = self.work / "models" / f"it{it - 1}"
        if it > 0 and (prev / "config.json").exists():
            return str(prev)
        return self.cfg.train.model

    def _play(self, it: int, run_id: str, store: Store, seed: int, samples: int, model: str, *,
              domain: str | None = None, user: str | None = None, tasks: str | list[str] | None = None,
              split: str | None = None, max_turns: int | None = None,
              temperature: float | None = None) -> dict[str, Any]:
        from calib.hf_chat import GenerationConfig
        from calib.rollout.factories import load_chat_model
        from calib.rollout.runner import run_rollouts
        from trainer.policy import PromptView, TrainingPolicy

        if existing_episodes(store, run_id) == 0:
            r, t = self.cfg.rollout, self.cfg.train
            dom, chosen = select_split(domain or self.cfg.domain, r.tasks if tasks is None else tasks,
                                       split or r.split)
            if t.threads:
                import torch

                torch.set_num_threads(t.threads)
            gen = GenerationConfig(max_new_tokens=t.max_new_tokens)
            if temperature is not None:
                gen = GenerationConfig(max_new_tokens=t.max_new_tokens, temperature=temperature)
            chat = load_chat_model(model, generation=gen)
            # The same view of the conversation as in training, so rollouts and updates see one prompt.
            view = PromptView(system_prompt=t.system_prompt, tool_detail=t.tool_detail,
                              visible_tools=tuple(t.visible_tools) if t.visible_tools else None)
            policy = TrainingPolicy(chat, view=view, name=f"hf@it{it}")
            run_rollouts(dom, policy, user or self.cfg.user, [x.task_id for x in chosen], samples=samples,
                         max_turns=max_turns or r.max_turns, concurrency=r.concurrency, run_id=run_id, iteration=it, store=store,
                         seed=seed)
        return run_summary(store, run_id, it)

    def rollout(self, it: int, run_id: str, store: Store, *, seed: int) -> dict[str, Any]:
        return self._play(it, run_id, store, seed, self.cfg.rollout.samples, self._model(it))

    def train(self, it: int, spec_path: Path, store: Store, *, seed: int) -> dict[str, Any]:
        from trainer.run import TrainJob, complete_checkpoints, run_train

        out = self.work / "checkpoints" / f"it{it}"
        t = self.cfg.train
        r = self.cfg.rollout
        job = TrainJob(
            spec=spec_path,
            model=self._model(it),
            output_dir=out,
            domain=self.cfg.domain,
            user=self.cfg.user,
            store=store.path,
            run_id=self.cfg.run_id(it, "train"),
            iteration=it,
            tasks=self._train_tasks(),
            samples_per_task=r.samples,
            batch_size=r.samples * t.batch_tasks,
            max_turns=r.max_turns,
            max_new_tokens=t.max_new_tokens,
            max_steps=t.max_steps,
            save_steps=1,
            learning_rate=t.learning_rate,
            lora_r=t.lora_r,
            seed=seed,
            system_prompt=t.system_prompt,
            tool_detail=t.tool_detail,
            visible_tools=",".join(t.visible_tools) if t.visible_tools else None,
            threads=t.threads,
            recalibrate_every=t.recalibrate_every,
            recalibration_window=t.recalibration_window,
            recalibration_blend=t.recalibration_blend,
            recalibration_rule=t.recalibration_rule,
            resume=bool(complete_checkpoints(out)),  # a killed train stage continues where it stopped
        )
        result = run_train(job)
        merged = merge_adapter(job.model, result.adapter_dir, self.work / "models" / f"it{it}")
        losses = [h["loss"] for h in result.log_history if "loss" in h]
        return {"trained": True, "steps": result.global_step, "final_loss": losses[-1] if losses else None,
                "adapter": str(result.adapter_dir), "checkpoint": str(merged)}

    def _train_tasks(self) -> str | None:
        """--tasks for the trainer: the rollout tasks within the rollout split (None: every task)."""
        r = self.cfg.rollout
        if r.split == "all":
            return None if r.tasks == "all" else ",".join(r.tasks)
        _, chosen = select_split(self.cfg.domain, r.tasks, r.split)
        return ",".join(t.task_id for t in chosen)

    def evaluate(self, it: int, run_id: str, store: Store, *, seed: int) -> dict[str, Any]:
        e = self.cfg.eval
        return self._play(it, run_id, store, seed, self.cfg.eval_trials, self._model(it + 1),
                          domain=self.cfg.eval_domain, user=e.user, tasks=self.cfg.eval_tasks, split=self.cfg.eval_split,
                          max_turns=e.max_turns, temperature=e.temperature)


def merge_adapter(base: str, adapter: Path, out: Path) -> Path:
    """``base`` + the LoRA ``adapter`` as one plain checkpoint in ``out`` (written aside, then renamed,
    so ``out`` only ever holds a complete model)."""
    import shutil

    from calib.models import resolve_model, save_merged_lora

    tmp = out.with_name(out.name + ".tmp")
    if tmp.exists():
        shutil.rmtree(tmp)
    save_merged_lora(resolve_model(base), adapter, tmp)
    if out.exists():
        shutil.rmtree(out)
    tmp.rename(out)
    return out
