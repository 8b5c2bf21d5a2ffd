"""The `hf` policy: a local transformers causal LM with its chat template.

The model writes Qwen/Hermes-style ``<tool_call>{json}</tool_call>``; :func:`calib.hf_chat.parse_tool_calls`
turns that into canonical tool calls. A call that cannot be parsed makes the turn invalid (the raw text is
kept), never an exception. Each reply carries ``_meta`` with the exact prompt and completion token ids
and the sampling log-probabilities, which the trainer needs and the runner keeps out of the stored
messages. Turns of concurrent episodes are batched (:class:`BatchedPolicy`).
"""

from __future__ import annotations

import asyncio
from pathlib import Path
from typing import Any

from calib.batcher import TurnBatcher
from calib.generation import Completion
from calib.hf_chat import GenerationConfig, HFChatModel, parse_tool_calls
from calib.policies.base import EpisodeContext, Policy


class BatchedPolicy(Policy):
    """A policy whose turns go through a :class:`calib.batcher.TurnBatcher` over a generation backend.

    The batcher belongs to the event loop that runs the rollout (one per ``asyncio.run``): it is made
    on first use and closed by :meth:`aclose`, which the runner calls when the rollout ends. The
    backend is the model's (a :class:`calib.generation.LocalBackend` unless one is given: the
    trainer passes TRL's vLLM engine), so ``max_batch`` and the lockstep ``collective`` are the only
    batching knobs.
    """

    def __init__(self, chat: HFChatModel, *, backend: Any = None, max_batch: int | None = None,
                 collective: Any = None):
        self.chat = chat
        self._backend = backend
        self.max_batch = max_batch
        self.collective = collective
        self._batchers: dict[int, TurnBatcher] = {}

    @property
    def backend(self) -> Any:
        return self._backend if self._backend is not None else self.chat.backend()

    def batcher(self) -> TurnBatcher:
        """The current event loop's batcher."""
        key = id(asyncio.get_running_loop())
        b = self._batchers.get(key)
        if b is None:
            placeholder = None
            if self.collective is not None:  # a one-token prompt for lockstep padding rows
                placeholder = [min(self.backend.eos_token_ids)]
            b = self._batchers[key] = TurnBatcher(self.backend, max_batch=self.max_batch,
                                                  collective=self.collective, placeholder=placeholder)
        return b

    def episode_scope(self):
        return self.batcher().episode()

    async def complete(self, prompt_ids: list[int], seed: int) -> tuple[str, Completion]:
        """One turn through the batcher: (text, completion)."""
        out = await self.batcher().generate(prompt_ids, seed)
        return self.chat.decode(out.ids), out

    async def aclose(self) -> None:
        b = self._batchers.pop(id(asyncio.get_running_loop()), None)
        if b is not None:
            await b.aclose()


class HFPolicy(BatchedPolicy):
    """A local model; the turns of concurrent episodes are generated in one batch."""

    def __init__(self, chat: HFChatModel, *, name: str | None = None, max_batch: int | None = None):
        super().__init__(chat, max_batch=max_batch)
        self.name = name or f"hf:{getattr(chat.model, 'name_or_path', 'model')}"

    @classmethod
    def from_path(cls, path: str | Path, *, device: str = "cpu", gguf_file: str | None = None,
                  generation: GenerationConfig | None = None, max_batch: int | None = None) -> HFPolicy:
        return cls(HFChatModel.from_path(path, device=device, gguf_file=gguf_file, generation=generation),
                   name=f"hf:{Path(path).name}", max_batch=max_batch)

    async def act(
        self, messages: list[dict[str, Any]], tools: list[dict[str, Any]], ctx: EpisodeContext
    ) -> dict[str, Any]:
        seed = ctx.rng.randrange(2**31)
        prompt_ids = self.chat.render_ids(messages, tools)
        text, out = await self.complete(prompt_ids, seed)
        return parse_reply(text, turn=sum(1 for m in messages if m["role"] == "assistant"),
                           meta={"prompt_ids": prompt_ids, "completion_ids": out.ids, "logprobs": out.logprobs})


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
