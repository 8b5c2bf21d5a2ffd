"""tau-bench results (``[{task_id, trial, reward, traj, info}, ...]``) -> native records.

A group is a task within the run: every trial of one task, so GRPO-style statistics compare the
trials of the same task. Expected actions come from ``info.reward_info.actions``, else
``info.task.actions``; required outputs from ``info.task.outputs``.
"""

from __future__ import annotations

from typing import Any

from calib.records import RecordError


def taubench_to_native(rec: Any, *, run_id: str) -> dict[str, Any]:
    if not isinstance(rec, dict):
        raise RecordError(f"tau-bench result should be an object, got {type(rec).__name__}")
    for key in ("task_id", "reward", "traj"):
        if key not in rec:
            raise RecordError(f"tau-bench result is missing field {key!r}")
    info = rec.get("info") or {}
    if not isinstance(info, dict):
        raise RecordError("tau-bench result 'info' should be an object")
    task = info.get("task") if isinstance(info.get("task"), dict) else {}
    reward_info = info.get("reward_info") if isinstance(info.get("reward_info"), dict) else {}
    actions = reward_info.get("actions") or task.get("actions") or []
    if not isinstance(actions, list):
        raise RecordError("tau-bench expected actions should be a list")
    expected = [
        {"name": a.get("name"), "arguments": a.get("kwargs", a.get("arguments", {}))} if isinstance(a, dict) else a
        for a in actions
    ]
    trial = rec.get("trial", 0)
    extra = {
        "trial": trial,
        "source_format": "taubench",
        "outputs": task.get("outputs") or [],
        "user_id": task.get("user_id"),
        "recorded_reward": rec["reward"],
    }
    if isinstance(reward_info.get("info"), dict):
        extra["reward_info"] = reward_info["info"]
    return {
        "episode_id": None if rec.get("episode_id") is None else rec["episode_id"],
        "run_id": run_id,
        "iteration": 0,
        "task_id": str(rec["task_id"]),
        "group_id": f"{run_id}/{rec['task_id']}",
        "policy": rec.get("policy") or info.get("agent"),
        "outcome": rec["reward"],
        "messages": rec["traj"],
        "expected_actions": expected,
        "info": extra,
    }
