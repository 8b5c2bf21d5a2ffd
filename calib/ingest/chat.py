"""Chat JSONL as TRL, verifiers or ART-style tools export it -> native records.

Accepted lines: ``{"messages": [...], "reward": x}`` or ``{"prompt": [...], "completion": [...],
"reward": x}`` (``prompt``/``completion`` may also be plain strings). These exports usually carry no
task id; samples of the same prompt are what GRPO groups, so the task id defaults to a hash of the
prompt (every message before the first assistant message).
"""

from __future__ import annotations

from typing import Any

from calib.records import RecordError, content_hash


def _as_messages(value: Any, role: str, field: str) -> list[Any]:
    if isinstance(value, str):
        return [{"role": role, "content": value}]
    if isinstance(value, list):
        return value
    raise RecordError(f"{field} should be a list of messages or a string")


def chat_to_native(rec: Any, *, run_id: str) -> dict[str, Any]:
    if not isinstance(rec, dict):
        raise RecordError(f"record should be a JSON object, got {type(rec).__name__}")
    if "messages" in rec:
        messages = _as_messages(rec["messages"], "user", "messages")
    elif "prompt" in rec and "completion" in rec:
        messages = _as_messages(rec["prompt"], "user", "prompt") + _as_messages(
            rec["completion"], "assistant", "completion"
        )
    else:
        raise RecordError("chat record needs 'messages', or 'prompt' and 'completion'")
    reward = rec.get("reward", rec.get("outcome", rec.get("score")))
    if reward is None:
        raise RecordError("missing field 'reward'")
    task_id = rec.get("task_id", rec.get("task", rec.get("example_id")))
    if task_id is None:
        prompt = []
        for m in messages:
            if isinstance(m, dict) and m.get("role") == "assistant":
                break
            prompt.append(m)
        task_id = "prompt-" + content_hash(prompt)[:12]
    info = {k: v for k, v in rec.items() if k not in {"messages", "prompt", "completion", "reward", "task_id"}}
    info["source_format"] = "chat"
    out = {
        "run_id": run_id,
        "task_id": task_id,
        "outcome": reward,
        "messages": messages,
        "info": info,
    }
    for k in ("episode_id", "group_id", "iteration", "policy", "success", "expected_actions"):
        if k in rec:
            out[k] = rec[k]
    return out
