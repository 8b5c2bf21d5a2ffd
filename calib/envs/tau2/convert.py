"""calib's canonical messages <-> tau2's message models, and tau2 tasks -> calib tasks.

tau2 keeps tool-call arguments as dicts and answers a call with a ``ToolMessage`` whose ``id`` is the
call's id; calib's canonical messages carry the same facts (``tool_call_id``). The customer's own tool
calls (telecom) are ``requestor: "user"`` on both sides.
"""

from __future__ import annotations

import json
import re
from typing import Any

from calib.envs.base import Task
from calib.envs.tau2.loader import tau2_module


def _args(value: Any) -> dict[str, Any]:
    if isinstance(value, dict):
        return value
    if isinstance(value, str):
        try:
            parsed = json.loads(value) if value.strip() else {}
        except json.JSONDecodeError:
            return {}
        return parsed if isinstance(parsed, dict) else {}
    return {}


def to_tau2_messages(messages: list[dict[str, Any]]) -> list[Any]:
    """Canonical messages (system dropped: tau2 trajectories have none) -> tau2 message objects."""
    msg = tau2_module("tau2.data_model.message")
    out: list[Any] = []
    for i, m in enumerate(messages):
        role = m.get("role")
        calls = [msg.ToolCall(id=str(c.get("id") or f"call_{i}_{j}"), name=str(c.get("name")),
                              arguments=_args(c.get("arguments")), requestor=c.get("requestor", role))
                 for j, c in enumerate(m.get("tool_calls") or [])]
        if role == "assistant":
            out.append(msg.AssistantMessage(role="assistant", content=m.get("content"), tool_calls=calls or None,
                                            turn_idx=len(out)))
        elif role == "user":
            out.append(msg.UserMessage(role="user", content=m.get("content"), tool_calls=calls or None,
                                       turn_idx=len(out)))
        elif role == "tool":
            content = m.get("content")
            out.append(msg.ToolMessage(id=str(m.get("tool_call_id") or ""), role="tool", content=content,
                                       requestor=m.get("requestor", "assistant"), turn_idx=len(out),
                                       error=bool(content) and str(content).startswith("Error")))
    return out


_USER_ID = re.compile(r"user id is\s+([A-Za-z0-9_\-]+)", re.IGNORECASE)


def _instructions(raw_task: Any) -> dict[str, str]:
    scenario = getattr(raw_task, "user_scenario", None)
    ins = getattr(scenario, "instructions", None)
    if ins is None:
        return {}
    if isinstance(ins, str):
        return {"task_instructions": ins}
    return {k: getattr(ins, k) or "" for k in ("reason_for_call", "known_info", "unknown_info", "task_instructions")}


def tau2_task_to_calib(raw_task: Any) -> Task:
    """A tau2 ``Task`` -> calib :class:`Task` (the oracle plays ``actions`` and says ``outputs``).

    ``actions`` are the agent's expected actions (``requestor`` assistant), ``outputs`` the task's
    ``communicate_info``. The scripted user opens with the scenario's reason for the call and its known
    info (what tau2's customers state) and answers id/payment/... questions from facts derived from
    the expected actions.
    """
    from calib.envs.taubench import profile_from_actions, task_kind

    crit = raw_task.evaluation_criteria
    actions = [{"name": a.name, "arguments": dict(a.arguments)}
               for a in (crit.actions or [] if crit is not None else []) if a.requestor == "assistant"]
    outputs = [str(x) for x in (crit.communicate_info or [] if crit is not None else [])]
    ins = _instructions(raw_task)
    user_id = next((str(a["arguments"]["user_id"]) for a in actions if "user_id" in a["arguments"]), "")
    if not user_id:
        m = _USER_ID.search(ins.get("known_info", "") + "\n" + ins.get("task_instructions", ""))
        user_id = m.group(1).rstrip(".") if m else ""
    kind = task_kind(actions)
    profile = profile_from_actions(user_id, actions, outputs, kind)
    opening = " ".join(x.strip() for x in (ins.get("reason_for_call", ""), ins.get("known_info", "")) if x.strip())
    if opening:
        profile["stages"][0]["say"] = opening
    instruction = "\n\n".join(f"{k.replace('_', ' ').capitalize()}: {v}" for k, v in ins.items() if v)
    return Task(task_id=str(raw_task.id), user_id=user_id, instruction=instruction, actions=actions, outputs=outputs,
                profile=profile, kind=kind)
