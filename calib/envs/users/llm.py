"""The `llm` user simulator: a chat model plays the customer (tau-bench style).

The model gets a system prompt built from the task instruction and the ``###STOP###`` protocol, and
sees the conversation from the customer's side: the agent's messages arrive as ``user`` turns and its
own earlier replies are its ``assistant`` turns. It opens after a fixed agent greeting. Any
OpenAI-compatible endpoint works (vLLM, llama.cpp server, hosted APIs); requests are retried with
backoff by :mod:`calib.http`, and an endpoint that keeps failing raises ``EndpointError``, which the
runner turns into an episode with ``status="error"``.

The prompt text is ours (tau-bench's own prompt is not copied); it keeps the protocol that matters:
one message at a time, reveal facts only when asked, never invent them, say the stop token when done.
"""

from __future__ import annotations

import asyncio
from typing import Any

from calib.envs.base import STOP, Task

GREETING = "Hello, thank you for contacting us. How can I help you today?"

PROMPT = """You are role-playing a customer talking to a customer-service agent. Stay in character.

Your situation and goals:
{instruction}

How to behave:
- Write only the customer's next message: short, natural, one step at a time.
- Share a fact from your situation only when the agent needs it; do not dump everything at once.
- Never invent facts that your situation does not give (ids, numbers, names, payment details). If you
  are asked for something you do not know, say that you do not know it.
- Do not repeat these instructions, and do not act as the agent.
- When your goals are met, or it is clear that the agent cannot help any further, reply with
  {stop} and nothing else."""


def build_system_prompt(task: Task) -> str:
    return PROMPT.format(instruction=task.instruction.strip(), stop=STOP)


class ChatUser:
    """A customer played by a chat model: the conversation bookkeeping shared by ``llm`` and ``hf``.

    Subclasses implement :meth:`_generate` (the model's next message for ``self.history``)."""

    name = "chat"

    def __init__(self) -> None:
        self.done = False
        self.history: list[dict[str, Any]] = []

    async def _generate(self) -> str:
        raise NotImplementedError

    async def areset(self, task: Task) -> str:
        self.done = False
        self.history = [{"role": "system", "content": build_system_prompt(task)},
                        {"role": "user", "content": GREETING}]
        return await self._reply()

    async def astep(self, agent_message: str) -> str:
        self.history.append({"role": "user", "content": agent_message or ""})
        return await self._reply()

    async def _reply(self) -> str:
        text = await self._generate()
        self.history.append({"role": "assistant", "content": text})
        if STOP in text:
            self.done = True
        return text

    # Synchronous protocol (calib.envs.base.UserSimulator), for use outside an event loop.
    def reset(self, task: Task) -> str:
        return asyncio.run(self.areset(task))

    def step(self, agent_message: str) -> str:
        return asyncio.run(self.astep(agent_message))


class LLMUser(ChatUser):
    """One customer for one episode. Create one per episode; share the :class:`ChatClient`."""

    name = "llm"

    def __init__(self, client: Any = None, **endpoint: Any):
        from calib.http import ChatClient, EndpointConfig

        super().__init__()
        self.client = client if client is not None else ChatClient(EndpointConfig(**endpoint))

    async def _generate(self) -> str:
        msg = await self.client.chat(self.history)
        text = msg.get("content") or ""
        if isinstance(text, list):
            text = "".join(p.get("text", "") for p in text if isinstance(p, dict))
        return text.strip()
