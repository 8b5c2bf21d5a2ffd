"""Multi-turn GRPO on TRL's ``GRPOTrainer``: our rollouts, our per-token advantages, TRL's everything else.

TRL keeps the loss, KL, clipping, optimiser, logging, checkpointing and accelerate. Two overrides carry
the method (docs/architecture.md section 8, checked against TRL 1.16):

1. ``rollout_func`` (TRL's experimental hook): each prompt of the batch names a task; the model
   being trained plays it through calib's rollout runner (environment + user simulator), and each
   episode becomes one row: prompt ids + one completion holding every turn, with ``env_mask``
   taking the system, user and tool tokens out of the loss. Per-turn rewards come from the signals
   the reward spec names; every episode is written to the store with the run id and step.
2. ``_generate_and_score_completions``: after TRL has built its batch (and its [B] outcome-only
   advantages, which we discard), ``advantages`` becomes the [B, T] tensor from
   ``calib.advantages.turn_advantages`` spread over each turn's tokens. ``_compute_loss`` only
   unsqueezes a 1-D tensor, so a [B, T] tensor flows through the clipped objective unchanged.

Generation goes through a backend (``calib.generation``): batched local transformers generation, or
TRL's vLLM engine with ``use_vllm=True`` (``trainer/vllm_backend.py``; TRL syncs the weights before
``rollout_func``). The turns of all episodes in flight are batched (``calib.batcher``), and each
turn's sampling logprobs are returned to TRL (``logprobs``) for its importance-sampling correction.

Two smaller ones keep runs reproducible and the spec current: ``_get_train_sampler`` reseeds TRL's
sampler per epoch (a resumed run draws the same tasks), and with ``recalibrate_every`` a callback
(``trainer/recalibration.py``) swaps the spec between steps. Everything TRL does with one advantage
per sequence is rejected in ``MultiTurnGRPOConfig`` (the off-policy sequence mask, ``loss_type="vespo"``).
"""

from __future__ import annotations

import asyncio
import hashlib
from collections import Counter
from dataclasses import dataclass, field
from typing import Any, ClassVar

import numpy as np
import torch
from trl import GRPOConfig, GRPOTrainer
from trl.trainer.utils import RepeatSampler

from calib.advantages import expand_to_tokens, group_normalize, turn_advantages
from trainer.policy import TOOL_DETAILS, PromptView, TrainingPolicy
from trainer.rewards import batch_rewards
from trainer.tokenize import TokenizationDriftError, tokenize_episode
from trainer.types import RolloutBatch

TASK_PREFIX = (
    "calib-task:"  # a dataset row's prompt is just the task id: the environment owns the conversation
)


@dataclass
class MultiTurnGRPOConfig(GRPOConfig):
    """``GRPOConfig`` plus what a multi-turn, tool-calling rollout needs. TRL's fields keep their
    meaning, except ``max_completion_length``, which bounds each *turn* (tokens per generation)."""

    # Parameters that control the reward
    spec_path: str | None = field(
        default=None,
        metadata={
            "help": "Reward spec YAML (as `calib analyze` writes): per-turn signals, weights and advantage mode."
        },
    )
    # Parameters that control the environment
    domain: str = field(
        default="airline-mini",
        metadata={"help": "Domain: `airline-mini`, `airline-mini:SEED` or `taubench:PATH`."},
    )
    user: str = field(
        default="scripted",
        metadata={
            "help": "User simulator: `scripted` (deterministic), `llm` (OpenAI-compatible endpoint) or `hf`."
        },
    )
    user_base_url: str | None = field(
        default=None,
        metadata={
            "help": "`llm` user: OpenAI-compatible endpoint up to /v1 (vLLM, an API); key from $OPENAI_API_KEY."
        },
    )
    user_model: str | None = field(
        default=None,
        metadata={"help": "`llm` user: model name sent to the endpoint; `hf` user: checkpoint path."},
    )
    tasks: str | None = field(
        default=None,
        metadata={"help": "Comma-separated task ids to train on (default: every task of the domain)."},
    )
    max_turns: int = field(default=8, metadata={"help": "Assistant turns per episode at most."})
    samples_per_task: int | None = field(
        default=None,
        metadata={
            "help": "Episodes per task per step: the GRPO group size. Sets `num_generations` when given."
        },
    )
    system_prompt: str | None = field(
        default=None,
        metadata={
            "help": "Replace the domain's policy text in what the model sees (CPU budget; default: keep it)."
        },
    )
    tool_detail: str = field(
        default="full",
        metadata={
            "help": "Tool schemas shown to the model: `full`, `compact` (no descriptions) or `minimal`."
        },
    )
    visible_tools: str | None = field(
        default=None,
        metadata={"help": "Comma-separated tool names shown to the model (default: all; a CPU budget knob)."},
    )
    rollout_concurrency: int | None = field(
        default=None,
        metadata={
            "help": "Episodes in flight at once (default: every episode of the step, so that each "
            "generation round batches all of them)."
        },
    )
    turn_batch_size: int | None = field(
        default=None,
        metadata={
            "help": "Turns generated in one batch at most (CLI `--generation-batch-size`; default: every "
            "episode waiting on the model). Not TRL's `generation_batch_size`, which counts prompts per step."
        },
    )
    # Parameters that control online recalibration (calib.analysis.online; docs/training.md)
    recalibrate_every: int = field(
        default=0,
        metadata={"help": "Re-run the analysis every N optimiser steps on this run's recent episodes and move the "
                  "spec's weights toward it (0: never; needs `store_dir`)."},
    )
    recalibration_window: int = field(
        default=10, metadata={"help": "Steps of episodes each recalibration reads: the last W."}
    )
    recalibration_blend: float = field(
        default=0.5, metadata={"help": "Share of the new weight taken: new = (1 - b) * current + b * proposed."}
    )
    recalibration_min_groups: int = field(
        default=3,
        metadata={"help": "Informative groups a signal needs in the window to move; with fewer, or an interval "
                  "that covers 0.5, it keeps its weight."},
    )
    recalibration_rule: str = field(
        default="joint",
        metadata={"help": "Calibration rule of each recalibration: `joint` (measured best online), `auc` or `irc`."}
    )
    # Parameters that control bookkeeping
    store_dir: str | None = field(
        default=None,
        metadata={"help": "Store directory; every step's episodes are written there (default: none)."},
    )
    run_id: str = field(default="train", metadata={"help": "Run id written on every episode."})
    iteration: int = field(
        default=0, metadata={"help": "Calibration-loop iteration written on every episode."}
    )

    def __post_init__(self):
        if self.samples_per_task is not None:
            self.num_generations = self.samples_per_task
        super().__post_init__()
        self.samples_per_task = self.num_generations
        if self.off_policy_mask_threshold is not None:
            raise ValueError(
                f"off_policy_mask_threshold={self.off_policy_mask_threshold}: TRL's off-policy sequence mask assumes one "
                "advantage per sequence, and calib's advantages are per token ([B, T]). Leave it None."
            )
        if self.loss_type == "vespo":
            raise ValueError(
                "loss_type='vespo' weights whole sequences by the sign of a per-sequence advantage; calib's "
                "advantages are per token. Use 'dapo' (default), 'grpo', 'bnpo', 'dr_grpo', 'cispo' or 'sapo'."
            )
        if self.max_turns < 1:
            raise ValueError(f"max_turns={self.max_turns}: should be >= 1")
        if self.rollout_concurrency is not None and self.rollout_concurrency < 1:
            raise ValueError(f"rollout_concurrency={self.rollout_concurrency}: should be >= 1 (or None: all)")
        if self.turn_batch_size is not None and self.turn_batch_size < 1:
            raise ValueError(f"turn_batch_size={self.turn_batch_size}: should be >= 1 (or None: no cap)")
        if self.tool_detail not in TOOL_DETAILS:
            raise ValueError(f"tool_detail={self.tool_detail!r}: expected one of {', '.join(TOOL_DETAILS)}")
        if not self.run_id:
            raise ValueError("run_id: should be a non-empty string")
        self.recalibration_config()  # refuses bad values now, with the field's name
        if self.recalibrate_every and not self.store_dir:
            raise ValueError(f"recalibrate_every={self.recalibrate_every}: recalibration reads this run's episodes "
                             "from the store; set store_dir")

    def recalibration_config(self):
        """The online recalibration settings as :class:`calib.analysis.online.RecalibrationConfig`."""
        from calib.analysis.online import RecalibrationConfig
        from calib.errors import UsageError

        try:
            return RecalibrationConfig(every=self.recalibrate_every, window=self.recalibration_window,
                                       blend=self.recalibration_blend, min_groups=self.recalibration_min_groups,
                                       rule=self.recalibration_rule, seed=self.seed)
        except UsageError as e:
            raise ValueError(str(e)) from None


def task_dataset(task_ids: list[str]):
    """One row per task; the prompt only names the task (the rollout builds the real conversation)."""
    from datasets import Dataset

    if not task_ids:
        raise ValueError("tasks: no task to train on")
    return Dataset.from_list(
        [{"prompt": [{"role": "user", "content": TASK_PREFIX + t}], "task_id": t} for t in task_ids]
    )


def task_of(prompt: Any) -> str:
    """Task id from a dataset prompt (a message list or a plain string)."""
    text = prompt[-1]["content"] if isinstance(prompt, list) else str(prompt)
    if not text.startswith(TASK_PREFIX):
        raise ValueError(f"prompt {text[:60]!r} does not name a task (expected {TASK_PREFIX}<task id>)")
    return text[len(TASK_PREFIX) :]


def spec_version(spec) -> dict[str, Any]:
    """``{name, recalibration}``: the spec's name and its online recalibration version (0: as given)."""
    prov = spec.provenance.model_dump() if spec.provenance is not None else {}
    return {"name": spec.name, "recalibration": int((prov.get("recalibration") or {}).get("version", 0))}


def step_seed(seed: int, step: int) -> int:
    """Rollout seed of a step: fixed by (seed, step), so a resumed run replays the same episodes."""
    return int.from_bytes(hashlib.sha256(f"{seed}/step{step}".encode()).digest()[:4], "big")


def sampling_logprobs(length: int, spans: list[tuple[int, int]], meta: list[dict | None]) -> list[float]:
    """Per completion token, the log-probability it was sampled with (what ``rollout_func`` returns to
    TRL as ``logprobs`` for the importance-sampling correction): a turn's sampled ids were spliced into
    its span, so the turn's logprobs fill it; environment tokens (masked out of the loss) get 0, and a
    turn whose sampling logprobs are unknown gets NaN, which TRL treats as "no correction"."""
    out = [0.0] * length
    for k, (s, e) in enumerate(spans):
        lps = (meta[k] or {}).get("logprobs") if k < len(meta) else None
        out[s:e] = [float(x) for x in lps] if lps is not None and len(lps) == e - s else [float("nan")] * (e - s)
    return out


def calib_outcome(prompts, completions, calib_outcome=None, **kwargs) -> list[float]:
    """TRL reward function: the episode outcome (logged by TRL as ``rewards/calib_outcome``). The
    advantages TRL derives from it are replaced by calib's per-token advantages."""
    return [float(x) for x in calib_outcome]


class EpochSeededRepeatSampler(RepeatSampler):
    """TRL's ``RepeatSampler`` with ``set_epoch``: the permutation depends on (seed, epoch) only.

    Workaround: TRL 1.16's sampler draws each epoch's permutation from one generator, so a run
    resumed at an epoch boundary replays epoch 0's order instead of continuing. transformers calls
    ``set_epoch`` before every epoch (resumed or not), so reseeding there makes the data order of a
    resumed run equal to an uninterrupted one. Can go when TRL's sampler supports ``set_epoch``.
    """

    def set_epoch(self, epoch: int) -> None:
        if self.shuffle:
            self.generator.manual_seed((self.seed or 0) * 1_000_003 + epoch)


class MultiTurnGRPOTrainer(GRPOTrainer):
    """``GRPOTrainer`` whose rollouts are multi-turn episodes and whose advantages are per token."""

    _tag_names: ClassVar[list[str]] = ["trl", "grpo", "calib"]

    def __init__(
        self,
        model,
        args: MultiTurnGRPOConfig,
        *,
        processing_class=None,
        spec=None,
        domain=None,
        user_factory=None,
        store=None,
        train_dataset=None,
        peft_config=None,
        callbacks=None,
    ):
        self._build_environment(args, spec, domain, user_factory, store)
        super().__init__(
            model=model,
            reward_funcs=[calib_outcome],
            args=args,
            train_dataset=train_dataset if train_dataset is not None else task_dataset(self.calib_task_ids),
            processing_class=processing_class,
            peft_config=peft_config,
            callbacks=callbacks,
            rollout_func=self._rollout,
        )
        self._build_policy()
        if args.recalibrate_every:
            from trainer.recalibration import RecalibrationCallback

            self.calib_recalibration = RecalibrationCallback(self, args.recalibration_config())
            self.add_callback(self.calib_recalibration)

    # ------------------------------------------------------------------------------------ setup

    def _build_environment(self, args, spec, domain, user_factory, store) -> None:
        """Reward spec, domain, user simulator factory and store."""
        from calib.envs import load_domain
        from calib.rollout import select_tasks

        if spec is None:
            if not args.spec_path:
                raise ValueError("spec_path: a reward spec is required (or pass spec= to the trainer)")
            from calib.spec import load_spec

            spec = load_spec(args.spec_path)
        self.calib_domain = load_domain(args.domain) if domain is None else domain
        self.calib_task_ids = [t.task_id for t in select_tasks(self.calib_domain, args.tasks)]
        if user_factory is None:
            from calib.rollout.factories import user_factory as make_user_factory

            user_factory = make_user_factory(args.user, seed=args.seed, **self._user_options(args))
        self.calib_user_factory = user_factory
        if store is None and args.store_dir:
            from calib.store import Store

            store = Store(args.store_dir, create=True)
        self.calib_store = store
        if args.recalibrate_every and store is None:
            raise ValueError("recalibrate_every: online recalibration needs a store (store_dir or store=)")
        self.set_calib_spec(spec)

    def set_calib_spec(self, spec) -> None:
        """The spec whose weights reward the next rollouts (online recalibration swaps it between steps)."""
        self.calib_spec = spec
        adv = spec.advantage
        self.calib_adv_kwargs = {
            "mode": adv.mode,
            "gamma": adv.gamma,
            "lam": adv.lam,
            "turn_norm": adv.turn_norm,
        }

    @staticmethod
    def _user_options(args) -> dict[str, Any]:
        """Endpoint (``llm``) or model (``hf``) of the user simulator."""
        if args.user == "llm":
            from calib.http import EndpointConfig

            kw = {"base_url": args.user_base_url} if args.user_base_url else {}
            return {"endpoint": EndpointConfig(**kw, model=args.user_model or "default")}
        if args.user == "hf":
            return {"model": args.user_model}
        return {}

    def _build_policy(self) -> None:
        """The trained model as a rollout policy: TRL's vLLM engine with ``use_vllm``, else batched local
        generation on the unwrapped model (eval mode, no grad)."""
        from calib.hf_chat import GenerationConfig, HFChatModel

        gen = GenerationConfig(
            max_new_tokens=self.args.max_completion_length,
            temperature=self.args.temperature,
            top_p=self.args.top_p,
        )
        chat = HFChatModel(self.accelerator.unwrap_model(self.model), self.processing_class, gen)
        backend, collective = None, None
        if self.use_vllm:
            from trainer.vllm_backend import VLLMBackend

            backend = VLLMBackend(self)
            if self.accelerator.num_processes > 1:
                # Every engine call is a collective in server mode (and across a TP group in colocate
                # mode): generation rounds must run in lockstep on every rank.
                from accelerate.utils import gather_object

                collective = gather_object
        shown = self.args.visible_tools
        unknown = [
            t
            for t in (shown or "").split(",")
            if t.strip() and not self.calib_domain.catalogue.is_known(t.strip())
        ]
        if unknown:
            raise ValueError(f"visible_tools: unknown tool(s) {unknown} in domain {self.calib_domain.name!r}")
        view = PromptView(
            system_prompt=self.args.system_prompt,
            tool_detail=self.args.tool_detail,
            visible_tools=tuple(t.strip() for t in shown.split(",") if t.strip()) if shown else None,
        )
        self.calib_policy = TrainingPolicy(
            chat,
            view=view,
            name=f"train:{self.args.run_id}",
            backend=backend,
            max_batch=self.args.turn_batch_size,
            collective=collective,
        )

    def _get_train_sampler(self, dataset=None) -> EpochSeededRepeatSampler:
        """TRL's sampler layout (each task ``num_generations`` times in a row), reseeded per epoch."""
        return EpochSeededRepeatSampler(
            data_source=dataset if dataset is not None else self.train_dataset,
            mini_repeat_count=self.num_generations,
            batch_size=self.args.generation_batch_size // self.num_generations,
            repeat_count=self.num_iterations * self.args.steps_per_generation,
            shuffle=self.shuffle_dataset,
            seed=self.args.seed,
        )

    # ---------------------------------------------------------------------------------- rollouts

    def _rollout(self, prompts: list, trainer: Any = None) -> RolloutBatch:
        """TRL ``rollout_func``: play every prompt's task, score it, store it, tokenise it."""
        step = self.state.global_step + 1
        task_ids = [task_of(p) for p in prompts]
        groups, samples = self._group_layout(task_ids, step)
        episodes = self._play(task_ids, samples, groups, step)
        outcome, turn_rewards = batch_rewards(episodes, self.calib_spec, self.calib_domain.catalogue)
        rows = [self._encode(ep) for ep in episodes]
        version = spec_version(self.calib_spec)
        for ep, row in zip(episodes, rows):
            ep["info"]["drift_turns"] = row["drift"]
            ep["info"]["reward_spec"] = version  # which weights rewarded it (online recalibration moves them)
        self._write(episodes, step)
        return {
            "prompt_ids": [r["prompt_ids"] for r in rows],
            "completion_ids": [r["completion_ids"] for r in rows],
            "logprobs": [r["logprobs"] for r in rows],
            "env_mask": [r["env_mask"] for r in rows],
            "calib_outcome": [float(e["outcome"]) for e in episodes],
            "calib_R": outcome.tolist(),
            "calib_turn_rewards": [r.tolist() for r in turn_rewards],
            "calib_group": [
                g if e["status"] == "ok" else f"error:{e['episode_id']}" for g, e in zip(groups, episodes)
            ],
            "calib_spans": [r["spans"] for r in rows],
            "calib_success": [float(bool(e["success"])) for e in episodes],
            "calib_drift": [r["drift"] for r in rows],
            "calib_episode_id": [e["episode_id"] for e in episodes],
        }

    def _group_layout(self, task_ids: list[str], step: int) -> tuple[list[str], list[int]]:
        """Group id and sample index of each local prompt.

        TRL's sampler puts each task ``num_generations`` times in a row across the *global* batch
        (a group may straddle processes), so the layout is computed on the gathered list.
        """
        from accelerate.utils import gather_object

        everything = gather_object(task_ids) if self.accelerator.num_processes > 1 else list(task_ids)
        G = self.num_generations
        if len(everything) % G:
            raise RuntimeError(f"batch of {len(everything)} prompts is not a whole number of groups of {G}")
        blocks = [everything[i : i + G] for i in range(0, len(everything), G)]
        for b in blocks:
            if len(set(b)) != 1:
                raise RuntimeError(f"a GRPO group mixes tasks {sorted(set(b))}: the sampler layout changed")
        repeated = Counter(b[0] for b in blocks)
        base = f"{self.args.run_id}/{self.args.iteration}/step{step}"
        group_ids = [
            f"{base}/{b[0]}" + (f"#{k}" if repeated[b[0]] > 1 else "")
            for k, b in enumerate(blocks)
            for _ in b
        ]
        start = self.accelerator.process_index * len(task_ids)
        local = slice(start, start + len(task_ids))
        # The sample index is the global position: distinct seeds even for a task drawn twice.
        return group_ids[local], list(range(len(everything)))[local]

    def _play(self, task_ids: list[str], samples: list[int], groups: list[str], step: int) -> list[dict]:
        """Episodes in prompt order, generated by the current weights (eval mode, no grad)."""
        from calib.rollout import RolloutConfig, play_episode

        cfg = RolloutConfig(
            samples=1,
            max_turns=self.args.max_turns,
            seed=step_seed(self.args.seed, step),
            run_id=self.args.run_id,
            iteration=self.args.iteration,
            concurrency=self.args.rollout_concurrency or max(1, len(task_ids)),
        )
        domain, policy, make_user = self.calib_domain, self.calib_policy, self.calib_user_factory
        tools = domain.catalogue.openai_tools()
        eos = {self.processing_class.eos_token_id}

        async def play_all() -> list[dict]:
            sem = asyncio.Semaphore(cfg.concurrency)

            async def one(task_id: str, sample: int) -> dict:
                async with sem:
                    return await play_episode(
                        domain, policy, make_user(), domain.task(task_id), sample=sample, cfg=cfg, tools=tools
                    )

            try:
                return await asyncio.gather(*(one(t, s) for t, s in zip(task_ids, samples)))
            finally:
                await policy.aclose()  # lockstep: keep joining generation rounds until every rank is done

        model = policy.chat.model
        was_training = model.training
        model.eval()
        clear = getattr(policy.backend, "clear_prefix_cache", None)
        if clear is not None:
            clear()  # kept keys/values were computed with last step's weights
        try:
            episodes = asyncio.run(play_all())
        finally:
            model.train(was_training)
        for ep, group in zip(episodes, groups):
            ep["group_id"] = group
            ep["episode_id"] = f"{group}/{ep['info']['sample']}"
            ep["info"]["step"] = step
            meta = ep.get("_turn_meta") or []
            ep["info"]["raw_texts"] = [m["text"] if m else None for m in meta]
            # Whether each generation ended with the end-of-turn token (False: cut at max tokens),
            # so the training sequence can be rebuilt from the store (trainer.tokenize's `stopped`).
            ep["info"]["stopped"] = [
                bool(m and m["completion_ids"] and m["completion_ids"][-1] in eos) for m in meta
            ]
            # The sampled ids of each turn: where they are not the canonical tokenisation of the raw
            # text (drift), only they rebuild the exact training sequence from the store.
            ep["info"]["generated_ids"] = [list(m["completion_ids"]) if m else None for m in meta]
        return episodes

    def _encode(self, episode: dict) -> dict[str, Any]:
        """One episode -> prompt ids, completion ids, env mask and turn spans (None when dropped)."""
        meta = episode.get("_turn_meta") or []
        tok = self.processing_class
        try:
            et = tokenize_episode(
                tok,
                episode["messages"],
                tools=self.calib_domain.catalogue.openai_tools(),
                raw_texts=[m["text"] for m in meta] if meta and all(meta) else None,
                generated_ids=[m["completion_ids"] for m in meta] if meta and all(meta) else None,
                to_template=self.calib_policy.to_template,
            )
        except TokenizationDriftError as e:
            # Never train on tokens we cannot attribute to a turn: keep the row (its outcome still
            # counts in its group's baseline) with every token masked out.
            episode["info"]["tokenize_error"] = str(e)
            et = None
        if et is None or not et.completion_ids:
            prompt = et.prompt_ids if et is not None else [tok.eos_token_id]
            return {
                "prompt_ids": prompt,
                "completion_ids": [tok.eos_token_id],
                "logprobs": [0.0],
                "env_mask": [0],
                "spans": None,
                "drift": 0,
            }
        return {
            "prompt_ids": et.prompt_ids,
            "completion_ids": et.completion_ids,
            "logprobs": sampling_logprobs(len(et.completion_ids), et.spans, meta),
            "env_mask": et.env_mask,
            "spans": [list(s) for s in et.spans],
            "drift": et.drift_turns,
        }

    def _write(self, episodes: list[dict], step: int) -> None:
        """Every step's episodes go to the store (main process, one atomic ingest per step)."""
        if self.calib_store is None:
            return
        from accelerate.utils import gather_object

        from calib.rollout import write_episodes

        everything = gather_object(episodes) if self.accelerator.num_processes > 1 else episodes
        if self.accelerator.is_main_process:
            write_episodes(
                self.calib_store,
                everything,
                domain=self.calib_domain,
                source=f"train:{self.args.run_id}:step{step}",
            )

    # -------------------------------------------------------------------------------- advantages

    def _generate_and_score_completions(self, inputs):
        output = super()._generate_and_score_completions(inputs)
        completion_ids = output["completion_ids"]  # (B, T)
        output["advantages"] = self._token_advantages(inputs, completion_ids.shape[1], completion_ids.device)
        return output

    def _token_advantages(self, inputs: list[dict], length: int, device) -> torch.Tensor:
        """calib's per-turn advantages for this batch, spread over each turn's tokens: (B, T).

        Groups are normalised over the *global* batch (gathered), then each process keeps its rows.
        """
        from accelerate.utils import gather_object

        local = [(x["calib_R"], x["calib_turn_rewards"], x["calib_group"]) for x in inputs]
        everything = gather_object(local) if self.accelerator.num_processes > 1 else local
        R = np.array([r for r, _, _ in everything], dtype=np.float64)  # (E,)
        rewards = [np.asarray(t, dtype=np.float64) for _, t, _ in everything]  # E x (T_i,)
        groups = np.array([g for _, _, g in everything])  # (E,)
        adv = turn_advantages(R, rewards, groups, **self.calib_adv_kwargs)  # E x (T_i,)
        start = self.accelerator.process_index * len(inputs)
        mine = adv[start : start + len(inputs)]
        spans = [x["calib_spans"] for x in inputs]
        token_adv, _ = expand_to_tokens(
            [a if s is not None else [] for a, s in zip(mine, spans)], [s or [] for s in spans], length
        )  # (B, T)
        self._log_batch(inputs, R, rewards, groups, adv)
        return torch.tensor(token_adv, dtype=torch.float32, device=device)

    def _log_batch(self, inputs, R, rewards, groups, adv) -> None:
        """Per-step metrics (TRL averages and logs them): success, turns, rewards, advantages, alignment."""
        from calib.analysis.metrics import alignment_from_advantages

        mode = "train" if self.model.training else "eval"
        m = self._metrics[mode]
        lengths = np.array([len(r) for r in rewards])
        flat_r = np.concatenate(rewards) if lengths.sum() else np.zeros(0)
        flat_a = np.concatenate(adv) if lengths.sum() else np.zeros(0)
        _, g = np.unique(groups, return_inverse=True)
        outcome_adv = np.repeat(group_normalize(R, g.reshape(-1)), lengths)  # GN(R) of each turn's episode
        m["calib/success_rate"].append(float(np.mean([x["calib_success"] for x in inputs])))
        # groups whose outcomes differ: only those carry an outcome advantage (GRPO's learning signal)
        spread = np.array([np.ptp(R[g == k]) > 0 for k in np.unique(g)], dtype=float)
        m["calib/informative_share"].append(float(spread.mean()) if spread.size else 0.0)
        m["calib/mean_turns"].append(float(lengths.mean()) if lengths.size else 0.0)
        m["calib/turn_reward_mean"].append(float(flat_r.mean()) if flat_r.size else 0.0)
        m["calib/turn_reward_std"].append(float(flat_r.std()) if flat_r.size else 0.0)
        m["calib/advantage_mean"].append(float(flat_a.mean()) if flat_a.size else 0.0)
        m["calib/advantage_std"].append(float(flat_a.std()) if flat_a.size else 0.0)
        m["calib/advantage_abs_mean"].append(float(np.abs(flat_a).mean()) if flat_a.size else 0.0)
        m["calib/advantage_abs_max"].append(float(np.abs(flat_a).max()) if flat_a.size else 0.0)
        mis = alignment_from_advantages(flat_a, outcome_adv).misaligned_mass
        m["calib/misaligned_mass"].append(float(mis))  # NaN (no informative group) is dropped by TRL
        m["calib/dropped_episodes"].append(float(sum(x["calib_spans"] is None for x in inputs)))
        m["calib/drift_turns"].append(float(sum(x["calib_drift"] for x in inputs)))
