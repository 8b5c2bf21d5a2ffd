"""calib's agent loops for verl: per-turn rewards written during verl's own rollout (docs/verl.md).

verl 0.9's reward managers return one float per trajectory, and verl writes it on the last response
token. calib's estimators need each turn's reward on the turn's first token and the outcome on the
last assistant token (:mod:`trainer.verl.layout`). Two agent loops write that layout from inside the
rollout, in verl's v1 trainer (``trainer.use_v1=True``, verl 0.9's default):

- ``calib_env`` (:class:`CalibEnvAgentLoop`) plays a **calib domain** (``airline-mini``,
  ``tau2:airline``, ``taubench:airline``...) with verl's LLM server as the agent: calib's tools and
  database, calib's customer simulator (scripted, or an LLM at an endpoint you name), calib's
  rollout runner (``calib.rollout.runner.play_episode``, the loop ``calib rollout`` and ``calib train``
  play), the environment's reward as the outcome. verl 0.9.1's ``ToolAgentLoop`` has no user
  simulator hook (no ``Interaction``), so it cannot play a customer-service conversation.
- ``calib_tool_agent`` (:class:`CalibToolAgentLoop`) is verl's ``ToolAgentLoop`` with *your* tools
  (``multi_turn.tool_config_path``) and *your* scorer (verl's reward loop, ``compute_score``), plus
  the spec's per-turn signals measured on the decoded trajectory (:mod:`trainer.verl.reward`, the
  conversion ``calib ingest --format verl`` uses).

Both return a :class:`CalibAgentLoopOutput`, whose ``as_dict`` (what verl's v1 agent-loop worker
calls to put a trajectory into its TransferQueue) writes ``rm_scores`` in calib's layout instead of
verl's one scalar on the last token. verl then reads ``rm_scores`` as ``token_level_rewards`` and
hands them to the calib estimator. The reward spec is the estimators' (``algorithm.calib_spec``, else
``$CALIB_SPEC``); without one, the turn rewards are 0 and only the layout of the outcome changes.

Nothing here has run on a GPU: ``tests/with_verl/test_verl_agent_loop.py`` runs both loops on CPU as
verl instantiates them, against an LLM server that follows verl's ``LLMServerClient.generate``
signature (checked with ``inspect``), and feeds their output through verl's own v1 advantage path.
"""

from __future__ import annotations

import functools
import json
import os
import time
from collections.abc import Mapping
from dataclasses import dataclass, field, fields
from pathlib import Path
from typing import Any
from uuid import uuid4

import torch
from verl.experimental.agent_loop.agent_loop import (
    AgentLoopBase,
    AgentLoopMetrics,
    AgentLoopOutput,
    _agent_loop_registry,
)
from verl.experimental.agent_loop.tool_agent_loop import ToolAgentLoop

from calib.advantages import get_mode
from calib.errors import CalibError, UsageError
from calib.policies.base import EndEpisode, EpisodeContext, Policy, to_openai_messages
from calib.policies.hf import parse_reply
from calib.tools import ToolCatalogue
from trainer.verl import layout, reward
from trainer.verl.estimators import EstimatorError, configured_spec

CONFIG_KEY = "calib"  # the top-level section of verl's config these loops read (+calib.domain=...)
BUDGET_REASON = "response_length"  # info.termination of an episode whose token budget was spent


class AgentLoopError(CalibError):
    """A calib agent loop cannot run with the configuration or the data verl gave it."""


class CalibAgentLoopOutput(AgentLoopOutput):
    """verl's ``AgentLoopOutput`` plus the trajectory's per-turn rewards: ``as_dict`` lays them out."""

    calib_turn_rewards: list[float] | None = None
    """The spec's weighted reward of each assistant turn (one per run of ``response_mask == 1``)."""
    calib_outcome_weight: float = 1.0
    """The spec's ``outcome.weight``: the last assistant token holds it times ``reward_score``."""

    def as_dict(self) -> dict[str, Any]:
        out = super().as_dict()
        out.pop("calib_turn_rewards", None)
        out.pop("calib_outcome_weight", None)
        if self.calib_turn_rewards is not None and self.reward_score is not None:
            mask = out["response_mask"].unsqueeze(0)
            out["rm_scores"] = layout.pack([self.calib_turn_rewards],
                                           [self.calib_outcome_weight * float(self.reward_score)], mask)[0]
        return out


@dataclass
class CalibLoopConfig:
    """The ``calib`` section of verl's config (``+calib.<name>=<value>`` overrides), TRL-style."""

    domain: str = field(default="airline-mini", metadata={
        "help": "calib domain the calib_env loop plays (a row's extra_info.calib_domain wins); for "
                "calib_tool_agent, the domain whose tool catalogue the signals read."})
    user: str = field(default="scripted", metadata={"help": "Customer simulator: scripted | llm."})
    user_base_url: str | None = field(default=None, metadata={"help": "OpenAI-compatible URL of the llm user."})
    user_model: str = field(default="default", metadata={"help": "Model name sent to the llm user's endpoint."})
    max_turns: int | None = field(default=None, metadata={
        "help": "Assistant turns per episode (default: rollout.multi_turn.max_assistant_turns, else 30)."})
    seed: int = field(default=0, metadata={
        "help": "Run seed: each episode's seed (info.seed, what seeded users and policies draw from) derives "
                "from it, the task and the sample, as with `calib rollout --seed`."})
    run_id: str = field(default="verl", metadata={"help": "Run id of the episodes written to episodes_dir."})
    episodes_dir: str | None = field(default=None, metadata={
        "help": "Folder where calib_env appends each played episode (native JSONL, one file per worker "
                "process) for `calib ingest` and `calib analyze`."})

    @classmethod
    def from_config(cls, config: Any) -> CalibLoopConfig:
        section = config.get(CONFIG_KEY, None) if hasattr(config, "get") else None
        raw = dict(section) if section else {}
        known = {f.name for f in fields(cls)}
        unknown = sorted(set(raw) - known)
        if unknown:
            raise AgentLoopError(f"unknown key(s) {unknown} in verl's '{CONFIG_KEY}' section: known are {sorted(known)}")
        return cls(**raw)


def _loop_spec(config: Any) -> Any:
    """The reward spec the estimators read (``algorithm.calib_spec``, ``$CALIB_SPEC``), or None."""
    try:
        return configured_spec(config.get("algorithm", None) if hasattr(config, "get") else None)
    except EstimatorError as e:
        raise AgentLoopError(str(e)) from None


def _check_v1(config: Any) -> None:
    trainer_cfg = config.get("trainer", None) if hasattr(config, "get") else None
    if trainer_cfg is not None and trainer_cfg.get("use_v1", True) is False:
        raise AgentLoopError("calib's agent loops write per-turn rewards through verl's v1 trainer "
                             "(trainer.use_v1=True, verl 0.9's default); the legacy trainer rebuilds rm_scores "
                             "with one score on the last token")


def _turn_rewards(spec: Any, per_turn: Any, runs: list[tuple[int, int]], where: str,
                  extra_fields: dict[str, Any]) -> list[float]:
    """The spec's turn rewards as a list that matches the response's assistant runs.

    A trajectory that ends on a one-token turn (an empty reply: the end-of-turn token alone) has one
    token for that turn's reward and the outcome; the outcome keeps it, and the turn's reward is
    dropped and logged in ``extra_fields["calib_dropped_turn_reward"]`` rather than failing the group.
    Without a spec, or with one whose mode ignores turn rewards (``grpo``), they are 0."""
    uses_turns = spec is not None and get_mode(spec.advantage.mode).uses_turn_rewards
    values = [float(v) for v in per_turn()] if uses_turns else [0.0] * len(runs)
    if len(values) != len(runs):
        raise layout.LayoutError(f"{where}: the decoded trajectory has {len(values)} assistant turns but "
                                 f"response_mask has {len(runs)} runs of assistant tokens ({layout.DOC})")
    if runs and runs[-1][1] - runs[-1][0] < 2 and values[-1] != 0:
        extra_fields["calib_dropped_turn_reward"] = values[-1]
        values[-1] = 0.0
    return values


# ----------------------------------------------------------------------------- calib_env


@functools.lru_cache(maxsize=8)
def _domain(name: str) -> Any:
    from calib.envs import load_domain

    return load_domain(name)


@functools.lru_cache(maxsize=8)
def _user_factory(name: str, base_url: str | None, model: str) -> Any:
    """One factory per process: the llm user's connection pool is shared by every episode."""
    from calib.rollout.factories import user_factory

    if name == "llm":
        if not base_url:
            raise UsageError("calib.user=llm needs +calib.user_base_url=<OpenAI-compatible URL>")
        from calib.http import EndpointConfig

        return user_factory("llm", endpoint=EndpointConfig(base_url=base_url, model=model))
    return user_factory(name)


class _VerlPolicy(Policy):
    """calib's policy interface on verl's LLM server: one trajectory's token ids, built as verl's
    ``ToolAgentLoop`` builds them (the loop's Continuous Token builder renders the context messages;
    the generated ids are kept as the model produced them, ``response_mask`` 1)."""

    name = "verl"

    def __init__(self, loop: AgentLoopBase, sampling_params: dict[str, Any], budget: int):
        self.loop, self.sampling_params, self.budget = loop, dict(sampling_params), budget
        self.request_id = uuid4().hex
        self.tokens: list[int] | None = None  # prompt + response so far
        self.mask: list[int] = []
        self.logprobs: list[float] = []
        self.n_rendered = 0  # how many of the runner's messages the tokens hold
        self.metrics: dict[str, float] = {"generate_sequences": 0.0, "num_preempted": 0}
        self.extra_fields: dict[str, Any] = {}

    async def act(self, messages: list[dict[str, Any]], tools: list[dict[str, Any]], ctx: EpisodeContext) -> dict[str, Any]:
        wire = to_openai_messages(messages)
        if self.tokens is None:
            self.tokens = await self.loop.ct_build_initial_tokens(wire, tools=tools)
        else:
            merged, self.mask, lp = await self.loop.ct_merge_context_msg(
                wire[: self.n_rendered], wire, self.tokens, self.mask, self.logprobs or None, tools=tools)
            self.tokens = merged.token_ids
            self.logprobs = lp or []
        room = self.budget - len(self.mask)
        if room < 2:  # a turn needs its text and its end-of-turn token (calib's layout)
            raise EndEpisode(BUDGET_REASON)
        started = time.perf_counter()
        out = await self.loop.server_manager.generate(
            request_id=self.request_id, prompt_ids=self.tokens,
            sampling_params={**self.sampling_params, "max_tokens": room})
        self.metrics["generate_sequences"] += time.perf_counter() - started
        self.metrics["num_preempted"] += out.num_preempted or 0
        if not self.extra_fields:
            self.extra_fields.update(out.extra_fields)
        elif out.extra_fields.get("max_global_steps") is not None:
            self.extra_fields["max_global_steps"] = out.extra_fields["max_global_steps"]
        ids = list(out.token_ids)[:room]
        if not ids:
            raise AgentLoopError("verl's LLM server returned no token for a turn")
        want_lp = bool(self.logprobs or out.log_probs)
        merged, self.mask, lp = await self.loop.ct_merge_assistant_token(
            self.tokens, ids, self.mask, self.logprobs if want_lp else None,
            assistant_logprobs=list(out.log_probs)[: len(ids)] if out.log_probs else None)
        self.tokens = merged.token_ids
        self.logprobs = lp or []
        self.n_rendered = len(wire) + 1  # the context so far, then this turn
        # hermes <tool_call> blocks, as verl's multi_turn.format=hermes and calib's own models write them;
        # an unparseable call makes the turn invalid, kept with its text
        return parse_reply(self.loop.tokenizer.decode(ids, skip_special_tokens=True),
                           turn=sum(1 for m in messages if m["role"] == "assistant"))

    def split(self) -> tuple[list[int], list[int], list[int], list[float]]:
        """(prompt ids, response ids, response mask, response logprobs) of the trajectory played."""
        tokens = self.tokens or []
        n = len(self.mask)
        prompt, response = tokens[: len(tokens) - n], tokens[len(tokens) - n:]
        return prompt, response[: self.budget], self.mask[: self.budget], self.logprobs[: self.budget]


class CalibEnvAgentLoop(AgentLoopBase):
    """``calib_env``: verl's LLM plays one episode of a calib domain; the row's ``extra_info`` names the
    task (``task_id``, and optionally ``calib_domain``: ``python -m trainer.verl.data`` writes such rows)."""

    def __init__(self, *args: Any, tools: Any = None, **kwargs: Any):
        super().__init__(*args, **kwargs)  # verl's own tools are not used: the domain brings its tools
        self.settings = CalibLoopConfig.from_config(self.config)
        multi_turn = self.rollout_config.get("multi_turn", {})
        self.max_turns = self.settings.max_turns or multi_turn.get("max_assistant_turns") or 30
        self.response_length = int(self.rollout_config.response_length)

    async def run(self, sampling_params: dict[str, Any], **kwargs: Any) -> AgentLoopOutput:
        from calib.rollout.runner import RolloutConfig, play_episode

        _check_v1(self.config)
        extra = dict(kwargs.get("extra_info") or {})
        if "task_id" not in extra:
            raise AgentLoopError("calib_env plays a calib task: the data row's extra_info needs 'task_id' "
                                 "(write the data with `python -m trainer.verl.data`)")
        domain_name = str(extra.get("calib_domain") or self.settings.domain)
        domain = _domain(domain_name)
        task = domain.task(str(extra["task_id"]))
        step = int(kwargs.get("global_steps", 0) or 0)
        sample = int(kwargs.get("session_id", 0) or 0)
        uid = str(kwargs.get("uid", task.task_id))
        policy = _VerlPolicy(self, sampling_params, self.response_length)
        s = self.settings
        user = _user_factory(s.user, s.user_base_url, s.user_model)()
        cfg = RolloutConfig(samples=1, max_turns=int(self.max_turns), seed=s.seed, run_id=s.run_id, iteration=step,
                            info={"step": step, "verl_uid": uid})
        episode = await play_episode(domain, policy, user, task, sample=sample, cfg=cfg)
        if episode["status"] != "ok":
            raise AgentLoopError(f"calib_env task {task.task_id}: {episode['info'].get('error')}")
        episode["group_id"] = f"{s.run_id}/{step}/{uid}"
        episode["episode_id"] = f"{episode['group_id']}/{sample}"
        prompt, response, mask, logprobs = policy.split()
        spec = _loop_spec(self.config)
        runs = layout.turn_runs(torch.tensor(mask))
        weights = spec.turn_weights() if spec is not None else {}
        extra = {**policy.extra_fields, "calib_outcome": float(episode["outcome"]),
                 "calib_termination": episode["info"]["termination"], "calib_task_id": task.task_id}
        turn_rewards = _turn_rewards(spec, lambda: _env_turn_rewards(episode, weights, domain.catalogue), runs,
                                     f"calib_env task {task.task_id}", extra)
        if s.episodes_dir:
            _append_episode(Path(s.episodes_dir), episode)
        return CalibAgentLoopOutput(
            prompt_ids=prompt, response_ids=response, response_mask=mask,
            response_logprobs=logprobs or None,
            reward_score=float(episode["outcome"]),
            num_turns=len(episode["messages"]),
            metrics=AgentLoopMetrics(generate_sequences=policy.metrics["generate_sequences"],
                                     num_preempted=int(policy.metrics["num_preempted"])),
            extra_fields=extra,
            calib_turn_rewards=turn_rewards,
            calib_outcome_weight=float(spec.outcome.weight) if spec is not None else 1.0,
        )


def _env_turn_rewards(episode: dict[str, Any], weights: dict[str, float], catalogue: ToolCatalogue) -> list[float]:
    from trainer.rewards import episode_turn_rewards

    return [float(x) for x in episode_turn_rewards(episode, weights, catalogue)]


def _append_episode(folder: Path, episode: dict[str, Any]) -> None:
    """One JSONL file per worker process, so concurrent Ray workers never interleave their lines."""
    from calib.jsonutil import plain
    from calib.rollout.runner import strip_private

    folder.mkdir(parents=True, exist_ok=True)
    line = json.dumps(plain(strip_private(episode)), ensure_ascii=False)
    with open(folder / f"episodes-{os.getpid()}.jsonl", "a", encoding="utf-8") as f:
        f.write(line + "\n")


# ----------------------------------------------------------------------------- calib_tool_agent


class CalibToolAgentLoop(ToolAgentLoop):
    """``calib_tool_agent``: verl's ``ToolAgentLoop`` (your tools, your reward function for the outcome)
    with the spec's per-turn rewards measured on the decoded trajectory."""

    def __init__(self, *args: Any, **kwargs: Any):
        from calib.envs.registry import domain_catalogue

        super().__init__(*args, **kwargs)
        self.settings = CalibLoopConfig.from_config(self.config)
        self.catalogue = domain_catalogue(self.settings.domain)  # what the signals read, once per loop

    async def run(self, sampling_params: dict[str, Any], **kwargs: Any) -> AgentLoopOutput:
        _check_v1(self.config)
        out = await super().run(sampling_params, **kwargs)
        spec = _loop_spec(self.config)
        runs = layout.turn_runs(torch.tensor(out.response_mask))
        if not runs:  # nothing generated fits the budget: leave verl's scalar, the estimator will say so
            return out
        prompt_text = self.tokenizer.decode(out.prompt_ids, skip_special_tokens=False)
        response_text = self.tokenizer.decode(out.response_ids, skip_special_tokens=False)
        turn_rewards = _turn_rewards(
            spec, lambda: reward.turn_rewards(prompt_text, response_text, spec, catalogue=self.catalogue), runs,
            "calib_tool_agent", out.extra_fields)
        data = out.model_dump(exclude_unset=True)
        data["metrics"] = out.metrics
        return CalibAgentLoopOutput(**data, calib_turn_rewards=turn_rewards,
                                    calib_outcome_weight=float(spec.outcome.weight) if spec is not None else 1.0)


# ----------------------------------------------------------------------------- registration

AGENT_LOOPS: Mapping[str, type] = {"calib_env": CalibEnvAgentLoop, "calib_tool_agent": CalibToolAgentLoop}


def register() -> list[str]:
    """Put calib's agent loops in verl's agent-loop registry (what ``agent.default_agent_loop`` and a
    row's ``agent_name`` name); returns the names newly registered. Harmless to call again; a name
    that holds someone else's agent loop is an error, not silently replaced."""
    added = []
    for name, cls in AGENT_LOOPS.items():
        target = f"{cls.__module__}.{cls.__qualname__}"
        existing = _agent_loop_registry.get(name)
        if existing is not None:
            if existing.get("_target_") == target:
                continue
            raise AgentLoopError(f"verl already has an agent loop named {name!r} that is not calib's "
                                 f"({existing.get('_target_')})")
        _agent_loop_registry[name] = {"_target_": target}
        added.append(name)
    return added


__all__ = ["AGENT_LOOPS", "BUDGET_REASON", "CONFIG_KEY", "AgentLoopError", "CalibAgentLoopOutput", "CalibEnvAgentLoop",
           "CalibLoopConfig", "CalibToolAgentLoop", "register"]
