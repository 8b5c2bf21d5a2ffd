"""The airline environment (one episode) and domain (data + policy + tasks).

``AirlineDomain`` owns the base data, shared read-only by every episode, and caches each task's gold
replay, so creating an environment is cheap and ``evaluate``/``progress`` cost what the episode
changed, not what the database holds.
"""

from __future__ import annotations

import json
from dataclasses import dataclass, field
from typing import Any

from calib.envs.airline.db import AirlineDB
from calib.envs.airline.reward import Gold, gold_from_db, held_changes, progress_fraction, summarize
from calib.envs.airline.tools import TOOLS
from calib.envs.base import RewardInfo, Task
from calib.errors import UsageError
from calib.tools import ToolCatalogue, airline_catalogue


def run_tool(db: AirlineDB, catalogue: ToolCatalogue, name: str, arguments: Any) -> str:
    """Validate and run one call; every failure is an ``Error: ...`` observation, never an exception."""
    if not isinstance(name, str) or name not in TOOLS:
        return f"Error: unknown tool {name!r}"
    if isinstance(arguments, str):
        try:
            arguments = json.loads(arguments) if arguments.strip() else {}
        except json.JSONDecodeError as e:
            return f"Error: arguments are not valid JSON ({e.msg} at position {e.pos})"
    if arguments is None:
        arguments = {}
    problem = catalogue.validate_args(name, arguments)
    if problem:
        return f"Error: {problem}"
    try:
        return TOOLS[name].run(db, **arguments)
    except Exception as e:  # noqa: BLE001 - a tool bug must not crash a rollout
        return f"Error: {e.__class__.__name__}: {e}"


@dataclass(eq=False)
class AirlineEnv:
    """One episode: a private copy-on-write view of the domain's data."""

    domain: AirlineDomain = field(repr=False)
    task: Task
    db: AirlineDB = field(repr=False)
    done: bool = False
    calls: list[tuple[str, Any, str]] = field(default_factory=list)  # (tool, arguments, observation)

    @property
    def tools(self) -> ToolCatalogue:
        return self.domain.catalogue

    def step(self, tool_name: str, arguments: dict[str, Any] | str) -> str:
        obs = run_tool(self.db, self.domain.catalogue, tool_name, arguments)
        self.calls.append((tool_name, arguments, obs))
        if tool_name in TOOLS and TOOLS[tool_name].terminates and not obs.startswith("Error"):
            self.done = True
        return obs

    def progress(self) -> float:
        return progress_fraction(held_changes(self.db, self.domain.gold(self.task)))

    def evaluate(self, agent_replies: list[str]) -> RewardInfo:
        gold = self.domain.gold(self.task)
        s = summarize(self.db, gold, self.task.outputs, list(agent_replies))
        s["details"]["transferred"] = self.done
        reward = 1.0 if s["db_match"] and s["outputs_ok"] else 0.0
        return RewardInfo(reward, s["db_match"], s["outputs_ok"], s["progress"], s["details"])

    def data_hash(self) -> str:
        """tau-bench's hash of this episode's full data (slow on big data; for checks, not loops)."""
        return self.db.data_hash()


@dataclass(eq=False)
class AirlineDomain:
    """Airline data, policy text and tasks; ``new_env`` gives one episode."""

    name: str
    policy: str = field(repr=False)
    tasks: list[Task] = field(repr=False)
    data: dict[str, dict[str, Any]] = field(repr=False)
    catalogue: ToolCatalogue = field(default_factory=airline_catalogue)
    airports: dict[str, str] | None = field(default=None, repr=False)
    taubench_compat: bool = False
    # {"train": ids, "test": ids} (calib.envs.splits); empty: no split, every task is in "all".
    splits: dict[str, list[str]] = field(default_factory=dict, repr=False)
    _gold: dict[str, Gold] = field(default_factory=dict, repr=False)
    _by_id: dict[str, Task] = field(default_factory=dict, repr=False)

    def __post_init__(self) -> None:
        self._by_id = {t.task_id: t for t in self.tasks}

    def new_db(self) -> AirlineDB:
        return AirlineDB(self.data, airports=self.airports, taubench_compat=self.taubench_compat)

    def new_env(self, task: Task) -> AirlineEnv:
        return AirlineEnv(domain=self, task=task, db=self.new_db())

    def task(self, task_id: str) -> Task:
        """A task by id; ``7`` also finds ``<domain>/7``."""
        key = str(task_id)
        t = self._by_id.get(key) or self._by_id.get(f"{self.name}/{key}")
        if t is None:
            raise UsageError(f"unknown task {task_id!r} in domain {self.name!r} ({len(self.tasks)} tasks)")
        return t

    def gold(self, task: Task) -> Gold:
        """The task's expected actions replayed on a fresh copy (cached per task id and actions)."""
        key = task.task_id + json.dumps(task.actions, sort_keys=True, default=str)
        if key not in self._gold:
            db = self.new_db()
            errors = []
            for action in task.actions:
                name = action.get("name")
                if name in TOOLS and TOOLS[name].terminates:
                    continue  # as in tau-bench: a transfer changes nothing and is not replayed
                obs = run_tool(db, self.catalogue, name, action.get("arguments", action.get("kwargs", {})))
                if obs.startswith("Error"):
                    errors.append(f"{name}: {obs}")
            self._gold[key] = gold_from_db(db, errors)
        return self._gold[key]

    def gold_data_hash(self, task: Task) -> str:
        """tau-bench's ``gt_data_hash`` for a task (full-data hash of the gold replay)."""
        db = self.new_db()
        for action in task.actions:
            name = action.get("name")
            if not (name in TOOLS and TOOLS[name].terminates):
                run_tool(db, self.catalogue, name, action.get("arguments", action.get("kwargs", {})))
        return db.data_hash()
