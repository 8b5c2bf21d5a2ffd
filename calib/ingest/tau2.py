"""tau2-bench results -> native records, plus tau2's reward components as signals.

Two layouts, both written by tau2's own code (no ``tau2`` package is needed to read them: they are JSON):

- one file, ``{"timestamp", "info", "tasks": [...], "simulations": [...]}`` (what ``tau2 run`` saves);
- a directory with ``results.json`` (``info`` and ``tasks``; ``simulations`` may be empty or absent) and
  ``simulations/*.json``, one simulation per file.

A simulation keeps tau2's ids: ``episode_id`` is the simulation id, ``task_id`` the task id, and
``info`` holds the trial, seed, termination reason and the whole ``reward_info``. ``outcome`` is tau2's
reward (success = reward 1). A group is a task within the run (every trial of one task).

tau2 messages map to canonical messages: tool-call arguments are already dicts; a tool message's
``id`` is the call it answers; a customer's own tool calls (telecom) stay on the user message and their
results are marked ``requestor: user`` (``calib.records``), so they are never agent turns.

Reward components become **signals** (docs/architecture.md section 3), carried in ``info["signals"]`` and moved into
the ``signals`` table by ``calib.signals.imported``: a number is an episode-level signal (``turn_idx``
NULL), a list is a per-turn signal (one value per assistant message, ``None`` where there is none).
"""

from __future__ import annotations

import math
from typing import Any

from calib.records import RecordError
from calib.tau2_format import (  # noqa: F401 - re-exported: the importer's public helpers
    EPISODE_SIGNALS,
    TURN_SIGNALS,
    action_match_per_turn,
    component_signals,
    domain_of,
    is_tau2_dir,
    iter_tau2,
    sniff_tau2,
    tasks_by_id,
)


def _messages(raw: Any) -> list[dict[str, Any]]:
    if not isinstance(raw, list):
        raise RecordError("simulation 'messages' should be a list")
    out: list[dict[str, Any]] = []
    for i, m in enumerate(raw):
        if not isinstance(m, dict):
            raise RecordError(f"messages[{i}] should be an object")
        role = m.get("role")
        if role == "tool":
            msg = {"role": "tool", "tool_call_id": m.get("id"), "content": m.get("content")}
            out.append(msg)
            continue
        if role == "multi_tool" or "tool_messages" in m:  # tau2 MultiToolMessage: flatten
            for t in m.get("tool_messages") or []:
                out.append({"role": "tool", "tool_call_id": t.get("id"), "content": t.get("content")})
            continue
        msg = {"role": role, "content": m.get("content")}
        calls = m.get("tool_calls")
        if calls:
            if not isinstance(calls, list):
                raise RecordError(f"messages[{i}].tool_calls should be a list")
            msg["tool_calls"] = [
                {"id": c.get("id"), "name": c.get("name"), "arguments": c.get("arguments")} if isinstance(c, dict) else c
                for c in calls
            ]
        out.append(msg)
    return out


def _reward(reward_info: Any) -> float:
    if not isinstance(reward_info, dict):
        raise RecordError("simulation has no 'reward_info' object")
    r = reward_info.get("reward")
    if isinstance(r, bool) or not isinstance(r, (int, float)):
        raise RecordError(f"reward_info.reward should be a number, got {type(r).__name__} {r!r}")
    if not math.isfinite(r):
        raise RecordError(f"reward_info.reward is {r} (must be finite)")
    return float(r)


def tau2_to_native(sim: Any, *, run_id: str, header: dict[str, Any]) -> dict[str, Any]:
    """One tau2 ``SimulationRun`` (as JSON) -> a native record with ``info["signals"]``."""
    if not isinstance(sim, dict):
        raise RecordError(f"simulation should be an object, got {type(sim).__name__}")
    for key in ("task_id", "messages", "reward_info"):
        if key not in sim:
            raise RecordError(f"simulation is missing field {key!r}")
    reward_info = sim["reward_info"]
    outcome = _reward(reward_info)
    messages = _messages(sim["messages"])
    task_id = str(sim["task_id"])
    task = tasks_by_id(header).get(task_id) or {}
    criteria = task.get("evaluation_criteria") if isinstance(task.get("evaluation_criteria"), dict) else {}
    expected = [{"name": a.get("name"), "arguments": a.get("arguments") or {}}
                for a in criteria.get("actions") or [] if isinstance(a, dict)
                and a.get("requestor", "assistant") == "assistant"]
    info_hdr = header.get("info") if isinstance(header.get("info"), dict) else {}
    agent = info_hdr.get("agent_info") if isinstance(info_hdr.get("agent_info"), dict) else {}
    signals: dict[str, Any] = dict(component_signals(reward_info))
    signals["tau2:action_match"] = action_match_per_turn(messages, reward_info)
    info = {
        "source_format": "tau2",
        "tau2_domain": domain_of(header),
        "trial": sim.get("trial"),
        "seed": sim.get("seed"),
        "termination_reason": sim.get("termination_reason"),
        "reward_info": reward_info,
        "reward_basis": (reward_info.get("reward_basis") or criteria.get("reward_basis")),
        "outputs": list(criteria.get("communicate_info") or []),
        "agent_cost": sim.get("agent_cost"),
        "user_cost": sim.get("user_cost"),
        "duration": sim.get("duration"),
        "recorded_reward": outcome,
        "signals": signals,
    }
    return {
        "episode_id": None if sim.get("id") is None else str(sim["id"]),
        "run_id": run_id,
        "iteration": 0,
        "task_id": task_id,
        "group_id": f"{run_id}/{task_id}",
        "policy": agent.get("llm") or agent.get("implementation"),
        "outcome": outcome,
        "messages": messages,
        "expected_actions": expected,
        "info": info,
    }
