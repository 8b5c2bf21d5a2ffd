"""The policy interface: given the conversation so far and the tools, return the next assistant message.

Every policy (``oracle``, ``openai``, ``hf``, and the trainer's model-under-training) implements one
coroutine, :meth:`Policy.act`. Messages are canonical (``calib.records``):
``{role, content, tool_calls?: [{id, name, arguments: dict}], tool_call_id?, name?}``. The reply is
an assistant message in the same shape, with two optional extras:

- ``"invalid": True`` (and the raw text in ``content``, no ``tool_calls``) when the model tried to call a
  tool but the call cannot be parsed. The runner records it as an invalid turn; it never crashes.
- ``"_meta": {...}``: anything the caller wants back per turn (the trainer puts the exact prompt and
  completion token ids there). The runner strips it from the stored messages and returns it to the
  caller in ``episode["_turn_meta"]``, one entry per assistant turn.

Per-episode state lives in an :class:`EpisodeContext` that the runner creates for each episode, so one
policy object can serve many concurrent episodes.
"""

from __future__ import annotations

import contextlib
import json
import random
from abc import ABC, abstractmethod
from contextlib import AbstractAsyncContextManager
from dataclasses import dataclass, field
from typing import Any

from calib.envs.base import Task


@dataclass
class EpisodeContext:
    """What a policy may know about the episode it is playing, and where it keeps its notes.

    ``info`` is merged into the episode's ``info`` at the end (the oracle records its mistakes there);
    ``state`` is private scratch space for the policy; ``rng`` is seeded from the run seed, the task and
    the sample index, so a rollout is reproducible whatever the concurrency.
    """

    task: Task
    sample: int = 0
    seed: int = 0
    rng: random.Random = field(default_factory=random.Random)
    info: dict[str, Any] = field(default_factory=dict)
    state: dict[str, Any] = field(default_factory=dict)


class EndEpisode(Exception):
    """Raised by :meth:`Policy.act` to end the episode without taking a turn, when the policy cannot
    play one more (the verl agent loop's token budget, ``rollout.response_length``, is spent). The
    runner scores what was played, as at the turn limit, with ``info.termination = reason``."""

    def __init__(self, reason: str):
        super().__init__(reason)
        self.reason = reason


class Policy(ABC):
    """Produces the next assistant message. Subclasses implement :meth:`act` (a coroutine)."""

    name: str = "policy"

    @abstractmethod
    async def act(
        self, messages: list[dict[str, Any]], tools: list[dict[str, Any]], ctx: EpisodeContext
    ) -> dict[str, Any]:
        """Return ``{"role": "assistant", "content": ..., "tool_calls"?: [...], "invalid"?: True, "_meta"?: {}}``.

        ``tools`` are OpenAI-style (``[{"type": "function", "function": {...}}]``).
        """

    def episode_scope(self) -> AbstractAsyncContextManager[Any]:
        """Entered by the runner around each episode. A policy that batches the turns of concurrent
        episodes (``hf``, the trainer's) counts live episodes with it; the default does nothing."""
        return contextlib.nullcontext()

    async def aclose(self) -> None:
        """Release connections or models (called once by the runner when the rollout ends)."""


# ----------------------------------------------------------------------------- message helpers


def assistant_text(content: str) -> dict[str, Any]:
    return {"role": "assistant", "content": content}


def assistant_call(name: str, arguments: dict[str, Any], call_id: str, content: str | None = None) -> dict[str, Any]:
    return {"role": "assistant", "content": content, "tool_calls": [{"id": call_id, "name": name, "arguments": arguments}]}


def to_openai_messages(messages: list[dict[str, Any]]) -> list[dict[str, Any]]:
    """Canonical messages -> OpenAI chat wire format (arguments as JSON strings).

    An invalid assistant turn is sent back as the plain text it was, so the model sees what it wrote.
    """
    out: list[dict[str, Any]] = []
    for m in messages:
        role = m["role"]
        if role == "assistant":
            msg: dict[str, Any] = {"role": "assistant", "content": m.get("content")}
            calls = m.get("tool_calls") or []
            if calls:
                msg["tool_calls"] = [
                    {
                        "id": c.get("id") or f"call_{i}",
                        "type": "function",
                        "function": {
                            "name": c["name"],
                            "arguments": c["arguments"] if isinstance(c["arguments"], str) else json.dumps(c["arguments"]),
                        },
                    }
                    for i, c in enumerate(calls)
                ]
            elif msg["content"] is None:
                msg["content"] = ""
            out.append(msg)
        elif role == "tool":
            out.append({"role": "tool", "tool_call_id": m.get("tool_call_id"), "name": m.get("name"),
                        "content": m.get("content") or ""})
        else:
            out.append({"role": role, "content": m.get("content") or ""})
    return out


def from_openai_message(msg: dict[str, Any], *, id_prefix: str = "call") -> dict[str, Any]:
    """OpenAI ``choices[0].message`` -> canonical assistant message.

    Arguments that are not a JSON object make the turn invalid: the raw text of the reply (content
    plus the broken call) is kept so that analysis can see what the model produced.
    """
    content = msg.get("content")
    if isinstance(content, list):  # content parts
        content = "".join(p.get("text", "") for p in content if isinstance(p, dict))
    raw_calls = msg.get("tool_calls") or []
    calls: list[dict[str, Any]] = []
    broken: list[str] = []
    for i, c in enumerate(raw_calls):
        fn = c.get("function") if isinstance(c, dict) else None
        fn = fn if isinstance(fn, dict) else (c if isinstance(c, dict) else {})
        name = fn.get("name")
        args = fn.get("arguments", {})
        if isinstance(args, str):
            try:
                args = json.loads(args) if args.strip() else {}
            except json.JSONDecodeError:
                args = None
        if not isinstance(name, str) or not name or not isinstance(args, dict):
            raw_args = fn.get("arguments")
            raw_args = raw_args if isinstance(raw_args, str) else json.dumps(raw_args, default=str)
            broken.append(f'{{"name": {json.dumps(name, default=str)}, "arguments": {raw_args}}}')  # verbatim
            continue
        calls.append({"id": str(c.get("id") or f"{id_prefix}_{i}"), "name": name, "arguments": args})
    if broken:
        raw = "\n".join(x for x in [content or "", *broken] if x)
        return {"role": "assistant", "content": raw, "invalid": True}
    out: dict[str, Any] = {"role": "assistant", "content": content if content is not None else ("" if not calls else None)}
    if calls:
        out["tool_calls"] = calls
    return out


def check_assistant_message(msg: Any) -> dict[str, Any]:
    """Validate a policy's reply; raise TypeError/ValueError naming the field (a policy bug, not a model error)."""
    if not isinstance(msg, dict):
        raise TypeError(f"policy returned {type(msg).__name__}, expected a message dict")
    if msg.get("role", "assistant") != "assistant":
        raise ValueError(f"policy returned role={msg.get('role')!r}, expected 'assistant'")
    content = msg.get("content")
    if content is not None and not isinstance(content, str):
        raise TypeError(f"policy returned content of type {type(content).__name__}, expected str or None")
    calls = msg.get("tool_calls") or []
    if not isinstance(calls, list):
        raise TypeError("policy returned tool_calls that is not a list")
    for i, c in enumerate(calls):
        if not isinstance(c, dict) or not isinstance(c.get("name"), str):
            raise TypeError(f"policy returned tool_calls[{i}] without a name")
        if not isinstance(c.get("arguments", {}), (dict, str)):
            raise TypeError(f"policy returned tool_calls[{i}].arguments that is not an object")
    if msg.get("invalid") and calls:
        raise ValueError("an invalid message carries the raw text only, not tool_calls")
    return msg
