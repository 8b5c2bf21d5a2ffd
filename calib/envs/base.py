"""The environment interface: tasks, one-episode environments, domains and user simulators.

Policies and the rollout runner code against these types only, so that a new domain (or a new user
simulator) plugs in without touching them. ``calib.envs`` knows nothing of the store, the trainer or
the CLI (docs/architecture.md section 11).
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any, Protocol, TypedDict, runtime_checkable

from calib.tools import ToolCatalogue

STOP = "###STOP###"
"""What a user simulator says when the conversation is over (tau-bench's protocol)."""


class Stage(TypedDict, total=False):
    """One request of a scripted conversation (docs/environments.md, "Tasks and the scripted user's profile")."""

    say: str  # the message that opens the request
    actions: list[int]  # indices into Task.actions that serve it
    writes: int  # confirmations the customer expects to give
    outputs: list[str]  # strings it waits to hear
    refusal: bool  # the request is forbidden: satisfied when the agent refuses
    transfer: bool  # satisfied when the agent transfers
    facts: dict[str, str]  # overrides the task-level facts for this request


class UserProfile(TypedDict, total=False):
    """What the scripted user knows and wants (``Task.profile``): typed, as the stages are read by the
    user simulator, the oracle and the tau-bench/tau2 converters alike."""

    user_id: str
    reservation_ids: list[str]
    facts: dict[str, str]  # answers by topic ("user_id", "payment", "cabin", ...)
    confirm: bool  # whether the customer says yes to "Do you confirm?"
    stages: list[Stage]
    patience: int  # turns without headway before the customer gives up


@dataclass
class Task:
    """One task: who the user is, what they want, and what a correct agent does.

    ``actions`` are the expected tool calls (``{"name", "arguments"}``) whose replay on a fresh database
    defines the goal state; ``outputs`` are strings the agent must say; ``profile`` holds structured
    facts for the scripted user (keys documented in docs/environments.md); ``kind`` names the task
    family (``cancel``, ``change_flight``, ``change_cabin``, ``baggage``, ``passengers``, ``book``,
    ``forbidden``, ``transfer``, ...).
    """

    task_id: str
    user_id: str
    instruction: str
    actions: list[dict[str, Any]] = field(default_factory=list)
    outputs: list[str] = field(default_factory=list)
    profile: UserProfile = field(default_factory=lambda: UserProfile())
    kind: str = "other"


@dataclass
class RewardInfo:
    """Outcome of an episode: ``reward`` is 1.0 iff ``db_match`` and ``outputs_ok``.

    ``progress`` is the fraction of the task's expected database changes that hold in the final
    database (1.0 when the task expects none). ``details`` carries the hashes, the missing outputs and
    the per-change flags.
    """

    reward: float
    db_match: bool
    outputs_ok: bool
    progress: float
    details: dict[str, Any] = field(default_factory=dict)


@runtime_checkable
class Env(Protocol):
    """One episode on its own copy of the database.

    ``step`` never raises: failures come back as observations that start with ``"Error: "``.
    ``done`` becomes True once the agent transfers the user to a human.
    """

    tools: ToolCatalogue
    task: Task
    done: bool

    def step(self, tool_name: str, arguments: dict[str, Any] | str) -> str: ...

    def progress(self) -> float: ...

    def evaluate(self, agent_replies: list[str]) -> RewardInfo: ...


@runtime_checkable
class Domain(Protocol):
    """A set of tasks over one database, with the agent's policy text and the tool catalogue."""

    name: str
    policy: str
    tasks: list[Task]
    catalogue: ToolCatalogue

    def new_env(self, task: Task) -> Env: ...

    def task(self, task_id: str) -> Task: ...


@runtime_checkable
class UserSimulator(Protocol):
    """A simulated customer: ``reset`` gives the first message, ``step`` answers the agent.

    A reply containing :data:`STOP` ends the conversation and sets ``done``.
    """

    done: bool

    def reset(self, task: Task) -> str: ...

    def step(self, agent_message: str) -> str: ...
