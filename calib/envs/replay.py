"""Re-score a recorded episode by replaying its tool calls through an environment.

This is how users check that the environment is faithful (replayed tau-bench results should get the
reward tau-bench recorded) and how they re-score old runs after a fix. The agent's replies are the
contents of assistant messages without tool calls: tau-bench's agent either calls a tool or
answers, and only answers count for required outputs.
"""

from __future__ import annotations

import json
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
