"""The `hf` user simulator: a local transformers chat model plays the customer.

Same prompt and ``###STOP###`` protocol as the ``llm`` user (:mod:`calib.envs.users.llm`), generated
with :class:`calib.hf_chat.HFChatModel` in a worker thread so the rollout's event loop keeps running.
Small local models ramble; the reply is cut at the first end-of-turn marker the model writes and
empty replies are replaced by a neutral request, so a conversation always moves on.
"""

from __future__ import annotations

import asyncio
import random
from typing import Any

from calib.envs.base import STOP, Task
from calib.envs.users.llm import GREETING, build_system_prompt

FALLBACK = "Could you please help me with my request?"


class HFUser:
    """One customer for one episode, over a shared :class:`~calib.hf_chat.HFChatModel`."""

    name = "hf"

    def __init__(self, chat: Any, *, seed: int | None = None):
        self.chat = chat
        self.rng = random.Random(seed)
        self.done = False
        self.history: list[dict[str, Any]] = []

    async def areset(self, task: Task) -> str:
        self.done = False
        self.history = [{"role": "system", "content": build_system_prompt(task)},
                        {"role": "user", "content": GREETING}]
        return await self._reply()

    async def astep(self, agent_message: str) -> str:
        self.history.append({"role": "user", "content": agent_message or ""})
        return await self._reply()

    async def _reply(self) -> str:
        text, _, _ = await asyncio.to_thread(self.chat.generate, self.history, None, seed=self.rng.randrange(2**31))
        text = clean_reply(text)
        self.history.append({"role": "assistant", "content": text})
        if STOP in text:
            self.done = True
        return text

    def reset(self, task: Task) -> str:
        return asyncio.run(self.areset(task))

    def step(self, agent_message: str) -> str:
        return asyncio.run(self.astep(agent_message))


def clean_reply(text: str) -> str:
    """Keep the customer's own message: cut where a small model starts writing the next speaker's turn."""
    for marker in ("<|im_end|>", "<|im_start|>", "\nAgent:", "\nassistant:", "\nuser:"):
        if marker in text:
            text = text.split(marker, 1)[0]
    text = text.strip()
    return text or FALLBACK
