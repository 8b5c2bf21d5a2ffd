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

from calib.envs.users.llm import ChatUser

FALLBACK = "Could you please help me with my request?"


class HFUser(ChatUser):
    """One customer for one episode, over a shared :class:`~calib.hf_chat.HFChatModel`."""

    name = "hf"

    def __init__(self, chat: Any, *, seed: int | None = None):
        super().__init__()
        self.chat = chat
        self.rng = random.Random(seed)

    async def _generate(self) -> str:
        text, _, _ = await asyncio.to_thread(self.chat.generate, self.history, None, seed=self.rng.randrange(2**31))
        return clean_reply(text)


def clean_reply(text: str) -> str:
    """Keep the customer's own message: cut where a small model starts writing the next speaker's turn."""
    for marker in ("<|im_end|>", "<|im_start|>", "\nAgent:", "\nassistant:", "\nuser:"):
        if marker in text:
            text = text.split(marker, 1)[0]
    text = text.strip()
    return text or FALLBACK
