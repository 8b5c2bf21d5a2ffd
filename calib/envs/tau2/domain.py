"""tau2 domains behind calib's :class:`~calib.envs.base.Domain` / :class:`~calib.envs.base.Env` interface.

One episode runs on a fresh tau2 ``Environment`` (set to the task's initial state). Tool calls go
through ``Environment.get_response``, so tools, their schemas, their results and their errors are
tau2's. The reward is ``tau2.evaluator.evaluator.evaluate_simulation`` on the episode's trajectory with
tau2's termination rules: only a conversation that the user or the agent ended scores; one that hit
the turn limit (tau2's ``max_steps``) or ``max_errors`` tool errors (tau2's default 10) scores 0.

Components that need an LLM judge (NL assertions) are scored only when a :class:`JudgeConfig` is given
(an OpenAI-compatible endpoint); a task whose reward basis needs them cannot be scored without one, and
says so (:meth:`Tau2Domain.unscorable`) instead of guessing.
"""

from __future__ import annotations

import contextlib
import datetime as _dt
import functools
import json
import uuid
from collections.abc import Iterator
from dataclasses import dataclass, field
from typing import Any

from calib.envs.base import RewardInfo, Task
from calib.envs.tau2.convert import tau2_task_to_calib, to_tau2_messages
from calib.envs.tau2.loader import import_tau2, tau2_module
from calib.errors import CalibError, UsageError
from calib.tau2_catalogue import TAU2_DOMAINS
from calib.tools import ToolCatalogue

MAX_ERRORS = 10  # tau2's DEFAULT_MAX_ERRORS: this many tool errors end a simulation (reward 0)

# calib runner termination -> tau2 TerminationReason value
# (response_length: a policy ended the episode because its token budget was spent, a turn limit in tokens)
_TERMINATION = {"user_stop": "user_stop", "env_done": "agent_stop", "max_turns": "max_steps",
                "response_length": "max_steps", "error": "agent_error", "too_many_errors": "too_many_errors"}


@dataclass(frozen=True)
class JudgeConfig:
    """An OpenAI-compatible chat endpoint for tau2's NL-assertion judge (``--judge-base-url/--judge-model``)."""

    base_url: str
    model: str
    api_key: str | None = None


@contextlib.contextmanager
def _judge(judge: JudgeConfig) -> Iterator[None]:
    """Point tau2's NL-assertion evaluator at the user's endpoint for the duration of one evaluation.

    tau2 reads its judge model and arguments from module globals (``DEFAULT_LLM_NL_ASSERTIONS*``);
    LiteLLM's ``openai/<model>`` with ``api_base`` reaches any OpenAI-compatible server.
    """
    mod = tau2_module("tau2.evaluator.evaluator_nl_assertions")
    saved = (mod.DEFAULT_LLM_NL_ASSERTIONS, mod.DEFAULT_LLM_NL_ASSERTIONS_ARGS)
    mod.DEFAULT_LLM_NL_ASSERTIONS = f"openai/{judge.model}"
    mod.DEFAULT_LLM_NL_ASSERTIONS_ARGS = {"temperature": 0.0, "api_base": judge.base_url,
                                          "api_key": judge.api_key or "none"}
    try:
        yield
    finally:
        mod.DEFAULT_LLM_NL_ASSERTIONS, mod.DEFAULT_LLM_NL_ASSERTIONS_ARGS = saved


def needs_judge(raw_task: Any) -> bool:
    """The task's reward basis includes NL assertions (only an LLM judge can score them)."""
    crit = raw_task.evaluation_criteria
    return crit is not None and any(getattr(b, "value", b) == "NL_ASSERTION" for b in crit.reward_basis)


def score_trajectory(domain: str, raw_task: Any, tau2_messages: list[Any], termination: str,
                     judge: JudgeConfig | None = None) -> Any:
    """tau2's ``RewardInfo`` for a trajectory, by tau2's ``evaluate_simulation``.

    Evaluation type ``all`` (DB, env assertions, actions, communicate); ``all_with_nl_assertions`` when a
    judge is configured and the task has NL assertions. Raises CalibError for a task whose reward basis
    needs a judge when there is none.
    """
    ev = tau2_module("tau2.evaluator.evaluator")
    sim_mod = tau2_module("tau2.data_model.simulation")
    crit = raw_task.evaluation_criteria
    has_nl = crit is not None and bool(crit.nl_assertions)
    if needs_judge(raw_task) and judge is None:
        raise CalibError(f"tau2:{domain} task {raw_task.id} cannot be scored: its reward needs an LLM judge for NL "
                         "assertions (--judge-base-url and --judge-model)")
    now = _dt.datetime.now().isoformat()
    sim = sim_mod.SimulationRun(id=str(uuid.uuid4()), task_id=str(raw_task.id), start_time=now, end_time=now,
                                duration=0.0, termination_reason=sim_mod.TerminationReason(termination),
                                messages=tau2_messages)
    etype = ev.EvaluationType.ALL_WITH_NL_ASSERTIONS if (judge is not None and has_nl) else ev.EvaluationType.ALL
    ctx = _judge(judge) if (judge is not None and has_nl) else contextlib.nullcontext()
    with ctx:
        return ev.evaluate_simulation(simulation=sim, task=raw_task, evaluation_type=etype, solo_mode=False,
                                      domain=domain)


@dataclass(eq=False)
class Tau2Env:
    """One episode on a fresh tau2 environment. ``step`` never raises (tau2 errors are observations)."""

    domain: Tau2Domain = field(repr=False)
    task: Task
    raw_task: Any = field(repr=False)
    env: Any = field(repr=False)
    done: bool = False
    errors: int = 0
    calls: list[tuple[str, Any, str, bool]] = field(default_factory=list)  # (tool, arguments, observation, error)
    _transcript: list[dict[str, Any]] | None = field(default=None, repr=False)
    _termination: str | None = None

    @property
    def tools(self) -> ToolCatalogue:
        return self.domain.catalogue

    def step(self, tool_name: str, arguments: dict[str, Any] | str) -> str:
        msg = tau2_module("tau2.data_model.message")
        args = arguments
        if isinstance(args, str):
            try:
                args = json.loads(args) if args.strip() else {}
            except json.JSONDecodeError as e:
                args = None
                obs, error = f"Error: arguments are not valid JSON ({e.msg} at position {e.pos})", True
        if args is not None and not isinstance(args, dict):
            args, obs, error = None, "Error: arguments should be a JSON object", True
        if args is not None:
            call = msg.ToolCall(id=f"call_{len(self.calls)}", name=str(tool_name), arguments=args,
                                requestor="assistant")
            resp = self.env.get_response(call)
            obs, error = resp.content or "", bool(resp.error)
        self.calls.append((tool_name, arguments, obs, error))
        if error:
            self.errors += 1
            if self.errors >= self.domain.max_errors:
                self.done, self._termination = True, "too_many_errors"
        elif tool_name == "transfer_to_human_agents":
            self.done = True  # the conversation ends with the transfer, as tau2's customer ends it then
        return obs

    def progress(self) -> float:
        """Share of the task's expected actions that some call so far matches (tau2's comparison rule)."""
        from calib.tau2_format import matches_action

        made = [{"name": n, "arguments": a} for n, a, _, err in self.calls if not err and isinstance(a, dict)]
        crit = self.raw_task.evaluation_criteria
        expected = [{"name": a.name, "arguments": a.arguments, "compare_args": a.compare_args}
                    for a in (crit.actions or [] if crit is not None else []) if a.requestor == "assistant"]
        hit = sum(any(matches_action(e, c) for c in made) for e in expected)
        return hit / len(expected) if expected else 1.0

    def finish(self, messages: list[dict[str, Any]], termination: str) -> None:
        """The runner's transcript and why it ended, so the evaluator sees the conversation as it was."""
        self._transcript = list(messages)
        if self._termination is None:
            self._termination = _TERMINATION.get(termination, "agent_stop")

    def _trajectory(self, agent_replies: list[str]) -> list[dict[str, Any]]:
        if self._transcript is not None:
            return self._transcript
        out: list[dict[str, Any]] = []
        for i, (name, args, obs, _) in enumerate(self.calls):  # no transcript: calls, then the replies
            out.append({"role": "assistant", "content": None,
                        "tool_calls": [{"id": f"call_{i}", "name": name, "arguments": args}]})
            out.append({"role": "tool", "tool_call_id": f"call_{i}", "content": obs})
        out += [{"role": "assistant", "content": r} for r in agent_replies]
        return out

    def evaluate(self, agent_replies: list[str]) -> RewardInfo:
        from calib.tau2_format import action_match_per_turn, component_signals

        messages = self._trajectory(agent_replies)
        termination = self._termination or "agent_stop"
        ri = score_trajectory(self.domain.domain, self.raw_task, to_tau2_messages(messages), termination,
                              self.domain.judge)
        doc = json.loads(ri.model_dump_json())
        checks = doc.get("communicate_checks") or []
        signals: dict[str, Any] = dict(component_signals(doc))
        signals["tau2:action_match"] = action_match_per_turn(messages, doc)
        details = {"tau2_reward_info": doc, "termination_reason": termination, "signals": signals,
                   "tool_errors": self.errors}
        db = doc.get("db_check") or {}
        return RewardInfo(reward=float(ri.reward), db_match=bool(db.get("db_match", False)),
                          outputs_ok=all(c.get("met") for c in checks), progress=self.progress(), details=details)


@dataclass(eq=False)
class Tau2Domain:
    """A tau2 domain: its policy, its tasks (as calib Tasks), its tools and its train/test split."""

    name: str
    domain: str
    policy: str = field(repr=False)
    tasks: list[Task] = field(repr=False)
    catalogue: ToolCatalogue = field(repr=False)
    raw_tasks: dict[str, Any] = field(repr=False)
    splits: dict[str, list[str]] = field(default_factory=dict, repr=False)
    judge: JudgeConfig | None = None
    max_errors: int = MAX_ERRORS

    def new_env(self, task: Task) -> Tau2Env:
        raw = self.raw_tasks[task.task_id]
        reg = import_tau2().registry
        env = reg.get_env_constructor(self.domain)(solo_mode=False)
        init = raw.initial_state
        if init is not None:
            if init.message_history:
                # calib's runner starts every conversation empty; tau2's orchestrator would replay the history.
                raise CalibError(f"{self.name} task {task.task_id} starts from a recorded message history, which "
                                 "calib's runner does not replay: leave it out with --tasks")
            try:
                env.set_state(initialization_data=init.initialization_data,
                              initialization_actions=init.initialization_actions, message_history=[])
            except Exception as e:  # tau2 raises plain exceptions on bad task data
                raise CalibError(f"{self.name} task {task.task_id}: tau2 cannot set up its initial state "
                                 f"({str(e).splitlines()[0]})") from e
        return Tau2Env(domain=self, task=task, raw_task=raw, env=env)

    def task(self, task_id: str) -> Task:
        key = str(task_id).removeprefix(f"{self.name}/")
        for t in self.tasks:
            if t.task_id == key:
                return t
        raise UsageError(f"unknown task {task_id!r} in domain {self.name!r} ({len(self.tasks)} tasks)")

    def unscorable(self, tasks: list[Task]) -> list[str]:
        """Ids of ``tasks`` whose reward needs an LLM judge that is not configured."""
        if self.judge is not None:
            return []
        return [t.task_id for t in tasks if needs_judge(self.raw_tasks[t.task_id])]


@functools.lru_cache(maxsize=8)
def _base(domain: str) -> tuple[str, ToolCatalogue, tuple[Any, ...], dict[str, list[str]]]:
    reg = import_tau2().registry
    env = reg.get_env_constructor(domain)()
    tools = [t.openai_schema for t in env.get_tools()]
    writes = {n for n in env.tools.get_tools() if env.tools.tool_type(n).value == "write"}
    catalogue = ToolCatalogue.from_openai_tools(f"tau2:{domain}", tools, writes)
    raw = tuple(reg.get_tasks_loader(domain)())
    try:
        splits = {k: [str(x) for x in v] for k, v in reg.get_task_splits_loader(domain)().items()}
    except (KeyError, ValueError, TypeError):
        splits = {}
    return env.get_policy(), catalogue, raw, splits


def load_tau2_domain(domain: str, *, judge: JudgeConfig | None = None) -> Tau2Domain:
    """``airline``, ``retail``, ``telecom`` or ``mock``: tau2's tasks (its ``base`` set), tools and split."""
    if domain not in TAU2_DOMAINS:
        raise UsageError(f"unknown tau2 domain {domain!r}: use tau2:{', tau2:'.join(TAU2_DOMAINS)}")
    import_tau2()  # every time: the cached domain below must not hide a missing package
    policy, catalogue, raw, splits = _base(domain)
    tasks = [tau2_task_to_calib(t) for t in raw]
    return Tau2Domain(name=f"tau2:{domain}", domain=domain, policy=policy, tasks=tasks, catalogue=catalogue,
                      raw_tasks={str(t.id): t for t in raw}, splits={k: v for k, v in splits.items()
                                                                    if k in ("train", "test")}, judge=judge)
