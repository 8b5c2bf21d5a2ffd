"""The rollout runner: play policy x user x environment episodes concurrently, score them, store them.

One episode (tau-bench's loop)::

    system = domain policy text; user opens (user.reset(task))
    repeat up to max_turns assistant turns:
        reply = policy.act(messages, tools, ctx)   (EndEpisode(reason): stop, termination = reason)
        tool calls  -> env.step each, append the tool results; stop if the env is done (transfer)
        plain text  -> it is a reply to the user (also an invalid turn's raw text); user.step(text);
                       stop when the user says ###STOP###
        record env.progress() after the turn (info["progress"], one float per turn)
    outcome = env.evaluate(agent replies).reward

Episodes run as asyncio tasks under a semaphore (``concurrency``), so endpoint-backed policies and users
overlap their waits: 32 concurrent episodes against a 50 ms endpoint run ~30x faster than one at a time
(``bench/rollout.py``). The G samples of one task form a group (``group_id = run/iteration/task``).

An episode whose policy or user fails for infrastructure reasons (the endpoint still failing after
its retries, a lost connection) gets ``status="error"``: it is kept, visible, and excluded from success
rates, never counted as a failure. Any other exception is a bug and stops the rollout with a
:class:`~calib.errors.CalibError` naming the task and sample.

Per-turn extras that a policy returns in ``message["_meta"]`` (the trainer's token ids) are kept out of
the stored messages and returned in ``episode["_turn_meta"]`` (one entry per assistant turn, None where
the policy gave none); ``Store.add_episodes`` never sees them.
"""

from __future__ import annotations

import asyncio
import hashlib
import random
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from typing import Any

from calib.envs.base import STOP, Domain, Task, UserSimulator
from calib.errors import CalibError, UsageError
from calib.http import EndpointError
from calib.jsonutil import plain
from calib.policies.base import EndEpisode, EpisodeContext, Policy, check_assistant_message
from calib.rollout.types import PRIVATE_FIELDS, Episode, EpisodeRecord

UserFactory = Callable[[], UserSimulator]

# Failures of the machinery around the policy, not of the policy: they make an episode status="error".
INFRA_ERRORS: tuple[type[BaseException], ...] = (EndpointError, ConnectionError, TimeoutError)


@dataclass
class RolloutConfig:
    """How many episodes to play and how."""

    # Parameters that control what is played
    samples: int = field(default=1, metadata={"help": "Episodes per task (G, the GRPO group size)."})
    max_turns: int = field(default=30, metadata={"help": "Assistant turns per episode at most."})
    seed: int = field(default=0, metadata={"help": "Run seed; each episode's seed derives from it, the task and the sample."})
    # Parameters that control bookkeeping
    run_id: str = field(default="run", metadata={"help": "Run id written on every episode."})
    iteration: int = field(default=0, metadata={"help": "Loop iteration written on every episode."})
    info: dict[str, Any] = field(
        default_factory=dict,
        metadata={"help": "Extra keys merged into every episode's info (e.g. {'step': 120} from the trainer)."},
    )
    # Parameters that control speed
    concurrency: int = field(default=8, metadata={"help": "Episodes in flight at once (raise it for remote endpoints)."})

    def __post_init__(self) -> None:
        if self.samples < 1:
            raise ValueError(f"samples={self.samples} should be >= 1")
        if self.max_turns < 1:
            raise ValueError(f"max_turns={self.max_turns} should be >= 1")
        if self.concurrency < 1:
            raise ValueError(f"concurrency={self.concurrency} should be >= 1")
        if not self.run_id:
            raise ValueError("run_id should be a non-empty string")


def episode_seed(seed: int, task_id: str, sample: int) -> int:
    """A seed per episode that does not depend on scheduling order (so concurrency changes nothing)."""
    h = hashlib.sha256(f"{seed}/{task_id}/{sample}".encode()).digest()
    return int.from_bytes(h[:4], "big")


def select_tasks(domain: Domain, task_ids: Sequence[str] | str | None) -> list[Task]:
    """``None``/``"all"`` -> every task; else the listed ids (a clear error names unknown ones)."""
    if task_ids is None or task_ids == "all" or list(task_ids) == ["all"]:
        return list(domain.tasks)
    if isinstance(task_ids, str):
        task_ids = [t.strip() for t in task_ids.split(",") if t.strip()]
    known = {t.task_id: t for t in domain.tasks}
    missing = [t for t in task_ids if str(t) not in known]
    if missing:
        sample = ", ".join(list(known)[:5])
        raise UsageError(f"--tasks: unknown task id(s) {missing} in domain {domain.name!r} (ids look like: {sample}, ...)")
    return [known[str(t)] for t in task_ids]


def select_split(domain_spec: str, tasks: Sequence[str] | str | None, split: str) -> tuple[Domain, list[Task]]:
    """(the domain, the tasks of ``tasks`` within ``split``): the one split mechanism of ``calib train``,
    ``calib loop`` and its policy families."""
    from calib.envs import load_domain
    from calib.envs.splits import filter_split

    domain = load_domain(domain_spec)
    return domain, filter_split(domain, select_tasks(domain, tasks), split)


def _set_or_str(obj: Any) -> Any:
    """How episode info stores what JSON has no type for: a set as its sorted list, anything else as text."""
    return sorted(obj) if isinstance(obj, (set, frozenset)) else str(obj)


async def _user_reset(user: UserSimulator, task: Task) -> str:
    if hasattr(user, "areset"):
        return await user.areset(task)  # type: ignore[attr-defined]
    return user.reset(task)


async def _user_step(user: UserSimulator, text: str) -> str:
    if hasattr(user, "astep"):
        return await user.astep(text)  # type: ignore[attr-defined]
    return user.step(text)


@dataclass
class _Transcript:
    """What one episode accumulates while it is played."""

    messages: list[dict[str, Any]]
    progress: list[float] = field(default_factory=list)  # env.progress() after each turn
    turn_meta: list[Any] = field(default_factory=list)  # the policy's _meta per assistant turn
    replies: list[str] = field(default_factory=list)  # text the agent said to the user
    termination: str = "max_turns"


async def _play_turns(env: Any, policy: Policy, user: UserSimulator, task: Task, ctx: EpisodeContext,
                      cfg: RolloutConfig, tools: list[dict[str, Any]], tr: _Transcript) -> None:
    """The conversation loop of :func:`play_episode`."""
    messages, progress, replies = tr.messages, tr.progress, tr.replies
    messages.append({"role": "user", "content": await _user_reset(user, task)})
    for turn in range(cfg.max_turns):
        try:
            reply = await policy.act(list(messages), tools, ctx)
        except EndEpisode as e:  # the policy cannot play another turn (a spent token budget)
            tr.termination = e.reason
            break
        msg = dict(check_assistant_message(reply))
        tr.turn_meta.append(msg.pop("_meta", None))
        msg["role"] = "assistant"
        calls = [dict(c) for c in msg.get("tool_calls") or []]
        seen: set[str] = set()
        for i, c in enumerate(calls):
            if not c.get("id") or c["id"] in seen:
                c["id"] = f"call_{turn}_{i}"
            seen.add(c["id"])
            c.setdefault("arguments", {})
        if calls:
            msg["tool_calls"] = calls
        else:
            msg.pop("tool_calls", None)
        messages.append(msg)
        if calls:
            for c in calls:
                obs = env.step(c["name"], c["arguments"])
                messages.append({"role": "tool", "tool_call_id": c["id"], "name": c["name"], "content": obs})
            progress.append(float(env.progress()))
            if env.done:
                tr.termination = "env_done"
                break
        else:
            text = msg.get("content") or ""
            replies.append(text)
            progress.append(float(env.progress()))
            answer = await _user_step(user, text)
            messages.append({"role": "user", "content": answer})
            if user.done or STOP in answer:
                tr.termination = "user_stop"
                break


async def play_episode(
    domain: Domain, policy: Policy, user: UserSimulator, task: Task, *, sample: int, cfg: RolloutConfig,
    tools: list[dict[str, Any]] | None = None,
) -> Episode:
    """Play one episode and return its native record (plus ``_turn_meta``: :class:`Episode`)."""
    seed = episode_seed(cfg.seed, task.task_id, sample)
    ctx = EpisodeContext(task=task, sample=sample, seed=seed, rng=random.Random(seed))
    env = domain.new_env(task)
    tools = tools if tools is not None else domain.catalogue.openai_tools()
    tr = _Transcript(messages=[{"role": "system", "content": domain.policy}])
    status, error = "ok", None
    try:
        async with policy.episode_scope():
            await _play_turns(env, policy, user, task, ctx, cfg, tools, tr)
    except INFRA_ERRORS as e:
        status, error, tr.termination = "error", f"{type(e).__name__}: {e}", "error"
    except Exception as e:  # a bug in a policy/user/env: stop the rollout, say where
        raise CalibError(f"episode task={task.task_id} sample={sample} failed: {type(e).__name__}: {e}") from e
    messages, progress, turn_meta, replies, termination = tr.messages, tr.progress, tr.turn_meta, tr.replies, tr.termination

    if hasattr(env, "finish"):  # environments that score the whole conversation (tau2) get the transcript
        env.finish(messages, termination)
    reward = env.evaluate(replies)
    n_turns = sum(1 for m in messages if m["role"] == "assistant")
    info: dict[str, Any] = {
        "reward": {"db_match": reward.db_match, "outputs_ok": reward.outputs_ok, "progress": reward.progress,
                   "details": reward.details},
        "progress": progress,
        "termination": termination,
        "n_turns": n_turns,
        "seed": seed,
        "sample": sample,
        "task_kind": task.kind,
        "user": getattr(user, "name", type(user).__name__),
    }
    if isinstance(reward.details.get("signals"), dict):  # reward components as signals (calib.signals.imported)
        info["signals"] = reward.details.pop("signals")
    info.update(cfg.info)
    info.update(ctx.info)  # e.g. the oracle's "mistakes"
    if error:
        info["error"] = error
    outcome = float(reward.reward) if status == "ok" else 0.0
    episode: Episode = {
        "episode_id": f"{cfg.run_id}/{cfg.iteration}/{task.task_id}/{cfg.seed}/{sample}",
        "run_id": cfg.run_id,
        "iteration": cfg.iteration,
        "task_id": task.task_id,
        "group_id": f"{cfg.run_id}/{cfg.iteration}/{task.task_id}",
        "policy": policy.name,
        "outcome": outcome,
        "success": status == "ok" and outcome >= 1.0,
        "status": status,
        "messages": messages,
        "expected_actions": [{"name": a["name"], "arguments": a.get("arguments", a.get("kwargs", {}))}
                             for a in task.actions],
        "info": plain(info, default=_set_or_str, nan_to_none=False),  # as before: info keeps a NaN
    }
    if any(m is not None for m in turn_meta):
        episode["_turn_meta"] = turn_meta
    return episode


async def arun_rollouts(
    domain: Domain, policy: Policy, user: UserFactory, tasks: Sequence[Task], cfg: RolloutConfig,
    *, progress: bool = True,
) -> list[dict[str, Any]]:
    """All episodes of ``tasks`` x ``cfg.samples``, in task order then sample order."""
    sem = asyncio.Semaphore(cfg.concurrency)
    tools = domain.catalogue.openai_tools()
    jobs = [(t, s) for t in tasks for s in range(cfg.samples)]
    results: list[dict[str, Any] | None] = [None] * len(jobs)
    bar = _ProgressBar(len(jobs)) if progress else None

    async def one(i: int, task: Task, sample: int) -> None:
        async with sem:
            results[i] = await play_episode(domain, policy, user(), task, sample=sample, cfg=cfg, tools=tools)
        if bar is not None:
            bar.advance(error=results[i]["status"] != "ok")

    try:
        if bar is not None:
            bar.start()
        await asyncio.gather(*(one(i, t, s) for i, (t, s) in enumerate(jobs)))
    finally:
        if bar is not None:
            bar.stop()
        await policy.aclose()
    return [r for r in results if r is not None]


class _ProgressBar:
    """A rich progress bar on stderr that also counts episodes with status error."""

    def __init__(self, total: int):
        from rich.console import Console
        from rich.progress import BarColumn, MofNCompleteColumn, Progress, TextColumn, TimeRemainingColumn

        self.errors = 0
        self.progress = Progress(TextColumn("rollout"), BarColumn(), MofNCompleteColumn(),
                                 TextColumn("errors {task.fields[errors]}"), TimeRemainingColumn(),
                                 console=Console(stderr=True), transient=True)
        self.task = self.progress.add_task("rollout", total=total, errors=0)

    def start(self) -> None:
        self.progress.start()

    def stop(self) -> None:
        self.progress.stop()

    def advance(self, *, error: bool) -> None:
        self.errors += int(error)
        self.progress.update(self.task, advance=1, errors=self.errors)


def strip_private(episode: Episode | dict[str, Any]) -> EpisodeRecord:
    """The record without runner-private keys (``_turn_meta``), as the store gets it."""
    return {k: v for k, v in episode.items() if k not in PRIVATE_FIELDS and not k.startswith("_")}  # type: ignore[return-value]


def run_rollouts(
    domain: Domain | str,
    policy: Policy,
    user: UserFactory | str,
    task_ids: Sequence[str] | str | None = "all",
    samples: int = 1,
    max_turns: int = 30,
    concurrency: int = 8,
    run_id: str = "run",
    iteration: int = 0,
    store: Any = None,
    seed: int = 0,
    *,
    progress: bool = False,
    source: str | None = None,
    info: dict[str, Any] | None = None,
) -> list[dict[str, Any]]:
    """Play ``samples`` episodes of each task and return them (written to ``store`` when given).

    ``domain`` may be a spec (``airline-mini``, ``taubench:PATH``); ``user`` a name (``scripted``) or a
    zero-argument factory that returns a fresh simulator per episode; ``info`` is merged into every
    episode's info (the trainer passes ``{"step": n}``). Must be called outside a running event loop
    (use :func:`arun_rollouts` inside one).
    """
    if isinstance(domain, str):
        from calib.envs import load_domain

        domain = load_domain(domain)
    if isinstance(user, str):
        from calib.rollout.factories import user_factory

        user = user_factory(user)
    cfg = RolloutConfig(samples=samples, max_turns=max_turns, seed=seed, run_id=run_id, iteration=iteration,
                        concurrency=concurrency, info=dict(info or {}))
    tasks = select_tasks(domain, task_ids)
    episodes = asyncio.run(arun_rollouts(domain, policy, user, tasks, cfg, progress=progress))
    if store is not None:
        write_episodes(store, episodes, domain=domain, source=source or f"rollout:{run_id}")
    return episodes


def write_episodes(store: Any, episodes: list[dict[str, Any]], *, domain: Domain, source: str) -> Any:
    """Write through ``Store.add_episodes`` (one atomic ingest); returns its IngestResult."""
    return store.add_episodes((strip_private(e) for e in episodes), source=source, catalogue=domain.catalogue)
