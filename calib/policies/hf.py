"""The `hf` policy: a local transformers causal LM with its chat template.

The model writes Qwen/Hermes-style ``<tool_call>{json}</tool_call>``; :func:`calib.hf_chat.parse_tool_calls`
turns that into canonical tool calls. A call that cannot be parsed makes the turn invalid (the raw text is
kept), never an exception. Each reply carries ``_meta`` with the exact prompt and completion token ids,
which the trainer needs and the runner keeps out of the stored messages.
"""

from __future__ import annotations

import asyncio
from pathlib import Path
from typing import Any

from calib.hf_chat import GenerationConfig, HFChatModel, parse_tool_calls
from calib.policies.base import EpisodeContext, Policy


class HFPolicy(Policy):
    """Generation runs in a worker thread so the event loop keeps serving users and other episodes."""

    def __init__(self, chat: HFChatModel, *, name: str | None = None):
        self.chat = chat
        self.name = name or f"hf:{getattr(chat.model, 'name_or_path', 'model')}"

    @classmethod
    def from_path(cls, path: str | Path, *, device: str = "cpu", gguf_file: str | None = None,
                  generation: GenerationConfig | None = None) -> HFPolicy:
        return cls(HFChatModel.from_path(path, device=device, gguf_file=gguf_file, generation=generation),
                   name=f"hf:{Path(path).name}")

    async def act(
        self, messages: list[dict[str, Any]], tools: list[dict[str, Any]], ctx: EpisodeContext
    ) -> dict[str, Any]:
        seed = ctx.rng.randrange(2**31)
        text, prompt_ids, completion_ids = await asyncio.to_thread(self.chat.generate, messages, tools, seed=seed)
        return parse_reply(text, turn=sum(1 for m in messages if m["role"] == "assistant"),
                           meta={"prompt_ids": prompt_ids, "completion_ids": completion_ids})


def parse_reply(text: str, *, turn: int, meta: dict[str, Any] | None = None) -> dict[str, Any]:
    """Generation text -> canonical assistant message (invalid when a tool call is unparseable)."""
    visible, calls, invalid = parse_tool_calls(text)
    msg: dict[str, Any]
    if invalid:
        msg = {"role": "assistant", "content": text, "invalid": True}
    elif calls:
        msg = {"role": "assistant", "content": visible or None,
               "tool_calls": [{"id": f"call_{turn}_{i}", **c} for i, c in enumerate(calls)]}
    else:
        msg = {"role": "assistant", "content": visible}
    if meta is not None:
        msg["_meta"] = meta
    return msg
