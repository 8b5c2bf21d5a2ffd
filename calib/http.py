"""One small client for OpenAI-compatible chat endpoints, shared by the `openai` policy and the `llm` user.

Model servers fail in ordinary ways (a 500 from an overloaded vLLM, a 429 from a hosted API, a
connection refused while llama.cpp restarts, a reply that never comes). A rollout of hundreds of
episodes must ride those out, so every request is retried with exponential backoff and jitter; only
when the retries are spent does :class:`EndpointError` reach the runner, which then marks the episode
``status="error"`` (an infrastructure failure, never a policy failure).

``httpx`` is imported lazily so that importing calib (and ``calib --help``) stays fast.
"""

from __future__ import annotations

import asyncio
import json
import os
import random
from dataclasses import dataclass, field
from typing import Any

from calib.errors import CalibError

# Status codes worth another try: server-side failures and rate limits. Every other 4xx is a bad
# request (wrong model name, malformed tools) that would fail the same way again.
RETRY_STATUS = frozenset({408, 409, 425, 429, 500, 502, 503, 504})


class EndpointError(CalibError):
    """The endpoint kept failing after every retry (or refused the request outright)."""


@dataclass
class EndpointConfig:
    """Where and how to reach an OpenAI-compatible ``/chat/completions`` endpoint."""

    # Parameters that control the endpoint
    base_url: str = field(
        default="http://127.0.0.1:8000/v1",
        metadata={"help": "Base URL up to and including /v1 (vLLM, llama.cpp server, a hosted API)."},
    )
    model: str = field(default="default", metadata={"help": "Model name sent in every request."})
    api_key: str | None = field(
        default=None, metadata={"help": "Bearer token; None reads $OPENAI_API_KEY (local servers need none)."}
    )
    # Parameters that control retries
    timeout: float = field(default=60.0, metadata={"help": "Seconds to wait for one reply before retrying."})
    max_retries: int = field(default=4, metadata={"help": "Retries after the first attempt (0 = no retry)."})
    backoff: float = field(
        default=0.5, metadata={"help": "First retry delay in seconds; doubles each retry (with jitter)."}
    )
    backoff_max: float = field(default=8.0, metadata={"help": "Upper bound on one retry delay, in seconds."})
    # Parameters that control generation
    temperature: float | None = field(default=None, metadata={"help": "Sampling temperature (None: server default)."})
    max_tokens: int | None = field(default=None, metadata={"help": "Reply length cap (None: server default)."})
    extra_body: dict[str, Any] = field(
        default_factory=dict, metadata={"help": "Extra fields merged into every request body (e.g. top_p, seed)."}
    )

    def __post_init__(self) -> None:
        if not self.base_url or not self.base_url.startswith(("http://", "https://")):
            raise ValueError(f"base_url={self.base_url!r} should start with http:// or https://")
        if self.timeout <= 0:
            raise ValueError(f"timeout={self.timeout} should be > 0 seconds")
        if self.max_retries < 0:
            raise ValueError(f"max_retries={self.max_retries} should be >= 0")
        if self.backoff < 0 or self.backoff_max < 0:
            raise ValueError(f"backoff={self.backoff}, backoff_max={self.backoff_max} should be >= 0")

    @property
    def url(self) -> str:
        return self.base_url.rstrip("/") + "/chat/completions"

    def headers(self) -> dict[str, str]:
        key = self.api_key if self.api_key is not None else os.environ.get("OPENAI_API_KEY")
        return {"Authorization": f"Bearer {key}"} if key else {}


def backoff_delay(attempt: int, base: float, cap: float, rng: random.Random | None = None) -> float:
    """Delay before retry number ``attempt`` (0-based): base * 2**attempt, capped, with +-25% jitter.

    Jitter keeps 32 concurrent episodes that failed together from retrying in lockstep.
    """
    delay = min(cap, base * (2**attempt))
    r = (rng or random).uniform(0.75, 1.25)
    return min(cap, delay * r)


class ChatClient:
    """Async client for one endpoint. Safe to share between concurrent episodes of one event loop.

    The underlying ``httpx.AsyncClient`` belongs to the event loop that created it; a new loop (a
    second ``asyncio.run``) gets a fresh one, so the same policy object can serve several rollouts.
    """

    def __init__(self, config: EndpointConfig):
        self.config = config
        self._client: Any = None
        self._loop: asyncio.AbstractEventLoop | None = None
        self.attempts = 0  # requests sent, including retries (for tests and logs)
        self.retries = 0

    def _http(self) -> Any:
        import httpx

        loop = asyncio.get_running_loop()
        if self._client is None or self._loop is not loop or self._client.is_closed:
            # Generous pool: --concurrency N episodes may each have a request in flight.
            limits = httpx.Limits(max_connections=512, max_keepalive_connections=512)
            self._client = httpx.AsyncClient(timeout=self.config.timeout, limits=limits)
            self._loop = loop
        return self._client

    async def aclose(self) -> None:
        if self._client is not None and not self._client.is_closed:
            try:
                await self._client.aclose()
            except RuntimeError:  # the loop that owned it is gone; nothing left to close
                pass
        self._client = None

    async def chat(self, messages: list[dict[str, Any]], tools: list[dict[str, Any]] | None = None) -> dict:
        """POST one chat completion and return ``choices[0].message`` (OpenAI wire format)."""
        body: dict[str, Any] = {"model": self.config.model, "messages": messages}
        if tools:
            body["tools"] = tools
        if self.config.temperature is not None:
            body["temperature"] = self.config.temperature
        if self.config.max_tokens is not None:
            body["max_tokens"] = self.config.max_tokens
        body.update(self.config.extra_body)
        data = await self.post_json(body)
        try:
            return data["choices"][0]["message"]
        except (KeyError, IndexError, TypeError) as e:
            raise EndpointError(f"{self.config.url} replied without choices[0].message: {str(data)[:200]}") from e

    async def post_json(self, body: dict[str, Any]) -> dict[str, Any]:
        """POST with retries on timeouts, connection errors, 5xx and 429; raise EndpointError at the end."""
        import httpx

        cfg = self.config
        last = "no attempt made"
        for attempt in range(cfg.max_retries + 1):
            if attempt:
                self.retries += 1
                await asyncio.sleep(backoff_delay(attempt - 1, cfg.backoff, cfg.backoff_max))
            self.attempts += 1
            try:
                resp = await self._http().post(cfg.url, json=body, headers=cfg.headers())
            except httpx.TimeoutException:
                last = f"timed out after {cfg.timeout:g} s"
                continue
            except httpx.TransportError as e:  # connection refused/reset, DNS, protocol errors
                last = f"connection error ({type(e).__name__}: {e})"
                continue
            if resp.status_code in RETRY_STATUS:
                last = f"HTTP {resp.status_code}: {resp.text[:200]}"
                continue
            if resp.status_code >= 400:
                raise EndpointError(f"{cfg.url} refused the request: HTTP {resp.status_code}: {resp.text[:300]}")
            try:
                return resp.json()
            except json.JSONDecodeError:
                last = f"reply is not JSON: {resp.text[:200]!r}"
                continue
        raise EndpointError(f"{cfg.url} failed after {cfg.max_retries + 1} attempts; last: {last}")
