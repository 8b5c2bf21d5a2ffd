"""The `openai` policy: any OpenAI-compatible chat endpoint with function calling.

Works with vLLM (``--enable-auto-tool-choice``), llama.cpp's server (``--jinja``), and hosted APIs.
Retries live in :mod:`calib.http`; when they are spent the :class:`~calib.http.EndpointError`
propagates and the runner marks the episode ``status="error"``.
"""

from __future__ import annotations

from typing import Any

from calib.http import ChatClient, EndpointConfig
from calib.policies.base import EpisodeContext, Policy, from_openai_message, to_openai_messages


class OpenAIPolicy(Policy):
    """Sends the whole conversation and the tool schemas each turn; parses the reply's tool calls."""

    def __init__(self, config: EndpointConfig | None = None, *, client: ChatClient | None = None, **kw: Any):
        self.client = client or ChatClient(config or EndpointConfig(**kw))
        self.name = f"openai:{self.client.config.model}"

    async def act(
        self, messages: list[dict[str, Any]], tools: list[dict[str, Any]], ctx: EpisodeContext
    ) -> dict[str, Any]:
        n = sum(1 for m in messages if m["role"] == "assistant")
        reply = await self.client.chat(to_openai_messages(messages), tools=tools)
        return from_openai_message(reply, id_prefix=f"call_{n}")

    async def aclose(self) -> None:
        await self.client.aclose()
