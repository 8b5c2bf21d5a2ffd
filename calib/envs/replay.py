"""Re-score a recorded episode by replaying its tool calls through an environment.

This is how users check that the environment is faithful (replayed tau-bench results should get the
reward tau-bench recorded) and how they re-score old runs after a fix. The agent's replies are the
contents of assistant messages without tool calls: tau-bench's agent either calls a tool or
answers, and only answers count for required outputs.
"""

from __future__ import annotations

import json
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from calib.envs.base import Domain, RewardInfo, Task


def tool_calls_of(message: dict[str, Any]) -> list[tuple[str, Any]]:
    """``(name, arguments)`` of each call, from native or OpenAI-style (``function``) tool calls."""
    out = []
    for call in message.get("tool_calls") or []:
        if not isinstance(call, dict):
            continue
        fn = call.get("function") if isinstance(call.get("function"), dict) else call
        args = fn.get("arguments", {})
        if isinstance(args, str):
            try:
                args = json.loads(args) if args.strip() else {}
            except json.JSONDecodeError:
                pass  # the env answers with an error observation, as it would have live
        out.append((fn.get("name"), args))
    return out


def replay_episode(domain: Domain, task: Task, messages: list[dict[str, Any]]) -> RewardInfo:
    """Run the episode's tool calls on a fresh environment and score it.

    ``details["progress"]`` holds, per assistant message (turn), the fraction of expected database
    changes that hold after it: what rollouts store as ``info["progress"]``. ``details["observations"]``
    are the replayed tool results, in call order.
    """
    env = domain.new_env(task)
    replies: list[str] = []
    per_turn: list[float] = []
    observations: list[str] = []
    for m in messages:
        if not isinstance(m, dict) or m.get("role") != "assistant":
            continue
        calls = tool_calls_of(m)
        if env.done:  # the conversation ended at a transfer; later messages never reached the env
            per_turn.append(per_turn[-1] if per_turn else env.progress())
            continue
        if calls:
            for name, args in calls:
                observations.append(env.step(name, args))
        elif isinstance(m.get("content"), str):
            replies.append(m["content"])
        per_turn.append(env.progress())
    result = env.evaluate(replies)
    result.details["progress"] = per_turn
    result.details["observations"] = observations
    return result


# ----------------------------------------------------------------------------- many records


def read_records(path: str | Path) -> list[dict[str, Any]]:
    """A JSON list (tau-bench results) or JSON lines (native records) from ``path``."""
    from calib.errors import UsageError

    p = Path(path)
    try:
        text = p.read_text()
    except OSError as e:
        raise UsageError(f"cannot read {p}: {e.strerror or e}") from e
    stripped = text.lstrip()
    try:
        if stripped.startswith("["):
            data = json.loads(text)
        else:
            data = [json.loads(line) for line in text.splitlines() if line.strip()]
    except json.JSONDecodeError as e:
        raise UsageError(f"{p}: not JSON or JSON lines ({e.msg}, line {e.lineno})") from e
    if not isinstance(data, list) or not all(isinstance(r, dict) for r in data):
        raise UsageError(f"{p}: expected a list of episode objects")
    return data


@dataclass
class ReplayRow:
    """One re-scored episode: the recorded reward next to ours."""

    index: int
    task_id: str
    trial: Any
    recorded: float | None
    ours: float | None
    db_match: bool | None = None
    outputs_ok: bool | None = None
    mismatched_records: list[str] = field(default_factory=list)
    missing_outputs: list[str] = field(default_factory=list)
    progress: list[float] = field(default_factory=list)
    error: str | None = None

    @property
    def agree(self) -> bool:
        return self.error is None and self.recorded is not None and self.ours is not None and \
            abs(self.recorded - self.ours) < 1e-9

    def to_dict(self) -> dict[str, Any]:
        return {"index": self.index, "task_id": self.task_id, "trial": self.trial, "recorded": self.recorded,
                "ours": self.ours, "db_match": self.db_match, "outputs_ok": self.outputs_ok,
                "mismatched_records": self.mismatched_records, "missing_outputs": self.missing_outputs,
                "error": self.error}


def _record_task(domain: Domain, rec: dict[str, Any]) -> Task:
    """The task a record was played on: its embedded tau-bench task if any, else the domain's."""
    info = rec.get("info") if isinstance(rec.get("info"), dict) else {}
    raw = info.get("task")
    task_id = str(rec.get("task_id"))
    if isinstance(raw, dict) and "actions" in raw:
        from calib.envs.taubench import task_from_record

        name = getattr(domain, "name", "taubench")
        tid = task_id if "/" in task_id else f"{name}/{task_id}"
        return task_from_record(raw, tid, getattr(domain, "data", None))
    return domain.task(task_id)


def rescore(domain: Domain, records: list[dict[str, Any]]) -> list[ReplayRow]:
    """Replay every record (tau-bench ``traj`` or native ``messages``) and compare rewards."""
    from calib.errors import CalibError

    rows = []
    for i, rec in enumerate(records):
        recorded = rec.get("reward", rec.get("outcome"))
        info = rec.get("info") if isinstance(rec.get("info"), dict) else {}
        row = ReplayRow(index=i, task_id=str(rec.get("task_id")), trial=rec.get("trial", info.get("trial")),
                        recorded=float(recorded) if isinstance(recorded, (int, float)) else None, ours=None)
        messages = rec.get("traj", rec.get("messages"))
        if not isinstance(messages, list):
            row.error = "record has no 'traj' or 'messages' list"
        else:
            try:
                task = _record_task(domain, rec)
                result = replay_episode(domain, task, messages)
            except CalibError as e:
                row.error = str(e)
            else:
                row.ours = result.reward
                row.db_match, row.outputs_ok = result.db_match, result.outputs_ok
                row.mismatched_records = list(result.details.get("mismatched_records", []))
                row.missing_outputs = [o for o, ok in result.details.get("outputs", {}).items() if not ok]
                row.progress = list(result.details.get("progress", []))
        rows.append(row)
    return rows


def summary(rows: list[ReplayRow]) -> dict[str, Any]:
    """``{episodes, agree, agreement, disagreements}``: what ``calib replay --json`` prints."""
    n = len(rows)
    agree = sum(r.agree for r in rows)
    return {
        "episodes": n,
        "agree": agree,
        "agreement": agree / n if n else None,
        "disagreements": [r.to_dict() for r in rows if not r.agree],
    }
