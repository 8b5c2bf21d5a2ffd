"""A fake OpenAI-compatible chat server on 127.0.0.1, for tests and the rollout benchmark.

It answers ``POST /v1/chat/completions`` with deterministic replies from a *responder* function,
after a fixed latency, and can inject the failures that real model servers produce: an HTTP 500, a
reply that never comes in time, or a server that fails for good. It is a few dozen lines of asyncio
over raw HTTP/1.1 (keep-alive, Content-Length bodies) so that tests need no web framework.

Use it in-process (a background thread with its own event loop)::

    with FakeOpenAI(latency=0.05) as srv:
        cfg = EndpointConfig(base_url=srv.base_url)

or as a separate process (the benchmark does this so that the server has its own core)::

    python -m calib.testing.fake_openai --latency 0.05   # prints "PORT <n>" then serves

Faults: ``faults`` is a list consumed one entry per request (``"ok"``, an HTTP status such as ``"500"``
or ``"429"``, ``"timeout"``: reply only after ``hang`` seconds, ``"drop"``: close the connection
without a reply); ``fault_fn(body)`` may return a fault for any
request (e.g. always ``"500"`` for one model name) and wins over the list.
"""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import json
import threading
import time
from collections import deque
from collections.abc import Callable, Iterable
from typing import Any

STOP = "###STOP###"  # the user simulator's end-of-conversation token (tau-bench protocol)

Responder = Callable[[dict[str, Any]], dict[str, Any]]


def text_message(content: str) -> dict[str, Any]:
    """An assistant message in OpenAI wire format."""
    return {"role": "assistant", "content": content}


def tool_call_message(name: str, arguments: dict[str, Any] | str, call_id: str = "call_0") -> dict[str, Any]:
    """An assistant message that calls one tool (arguments serialised as OpenAI does, as a string)."""
    args = arguments if isinstance(arguments, str) else json.dumps(arguments)
    return {
        "role": "assistant",
        "content": None,
        "tool_calls": [{"id": call_id, "type": "function", "function": {"name": name, "arguments": args}}],
    }


def default_responder(body: dict[str, Any]) -> dict[str, Any]:
    """Deterministic replies that make a short, well-formed conversation.

    Requests that carry ``tools`` come from an agent: it calls the first tool it is offered once
    (with no arguments), then answers in text. Requests without tools come from a user simulator:
    it states a request, thanks the agent, and then says the stop token.
    """
    msgs = body.get("messages") or []
    n_assistant = sum(1 for m in msgs if m.get("role") == "assistant")
    tools = body.get("tools") or []
    if tools:
        called = any(m.get("role") == "tool" for m in msgs)
        if not called:
            name = tools[0].get("function", tools[0]).get("name", "think")
            return tool_call_message(name, {}, call_id=f"call_{n_assistant}")
        return text_message("I have looked into it. Is there anything else I can do for you?")
    replies = ["Hi, I need help with my reservation.", "Thank you, that is all.", STOP]
    return text_message(replies[min(n_assistant, len(replies) - 1)])


def completion(message: dict[str, Any], model: str) -> dict[str, Any]:
    finish = "tool_calls" if message.get("tool_calls") else "stop"
    return {
        "id": "chatcmpl-fake",
        "object": "chat.completion",
        "created": int(time.time()),
        "model": model,
        "choices": [{"index": 0, "message": message, "finish_reason": finish}],
        "usage": {"prompt_tokens": 0, "completion_tokens": 0, "total_tokens": 0},
    }


_REASONS = {200: "OK", 400: "Bad Request", 404: "Not Found", 429: "Too Many Requests", 500: "Internal Server Error",
            503: "Service Unavailable"}


class FakeOpenAI:
    """The server. ``requests`` records every request body received (faulty ones included)."""

    def __init__(
        self,
        responder: Responder | None = None,
        *,
        latency: float = 0.0,
        faults: Iterable[str] = (),
        fault_fn: Callable[[dict[str, Any]], str | None] | None = None,
        hang: float = 5.0,
        chunked: bool = False,
        host: str = "127.0.0.1",
        port: int = 0,
    ):
        if host not in {"127.0.0.1", "localhost", "::1"}:
            raise ValueError(f"host={host!r}: the fake server only listens on the loopback interface")
        self.responder = responder or default_responder
        self.latency = latency
        self.faults: deque[str] = deque(faults)
        self.fault_fn = fault_fn
        self.hang = hang
        self.chunked = chunked  # send bodies with Transfer-Encoding: chunked (as some servers do)
        self.host = host
        self.port = port
        self.requests: list[dict[str, Any]] = []
        self.headers: list[dict[str, str]] = []  # request headers (lower-case names), in order
        self.served = 0
        self._loop: asyncio.AbstractEventLoop | None = None
        self._thread: threading.Thread | None = None
        self._server: asyncio.AbstractServer | None = None
        self._ready = threading.Event()

    @property
    def base_url(self) -> str:
        return f"http://{self.host}:{self.port}/v1"

    # ------------------------------------------------------------------ HTTP

    def _next_fault(self, body: dict[str, Any]) -> str:
        fault = self.fault_fn(body) if self.fault_fn else None
        if fault is None and self.faults:
            fault = self.faults.popleft()
        return fault or "ok"

    async def _handle(self, reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        try:
            while True:
                head = await reader.readuntil(b"\r\n\r\n")
                lines = head.decode("latin-1").split("\r\n")
                method, path, _ = (lines[0].split(" ", 2) + ["", ""])[:3]
                headers = {}
                for line in lines[1:]:
                    if ":" in line:
                        k, v = line.split(":", 1)
                        headers[k.strip().lower()] = v.strip()
                n = int(headers.get("content-length", "0") or 0)
                raw = await reader.readexactly(n) if n else b""
                status, payload = await self._route(method, path, raw, headers)
                if status is None:  # "drop": close without a reply
                    break
                data = json.dumps(payload).encode()
                head = f"HTTP/1.1 {status} {_REASONS.get(status, 'Error')}\r\nContent-Type: application/json\r\n"
                if self.chunked:
                    half = len(data) // 2
                    body = b"".join(b"%x\r\n%s\r\n" % (len(c), c) for c in (data[:half], data[half:]) if c)
                    writer.write(f"{head}Transfer-Encoding: chunked\r\n\r\n".encode() + body + b"0\r\n\r\n")
                else:
                    writer.write(f"{head}Content-Length: {len(data)}\r\n\r\n".encode() + data)
                await writer.drain()
                if headers.get("connection", "").lower() == "close":
                    break
        except (asyncio.IncompleteReadError, ConnectionError, asyncio.LimitOverrunError):
            pass
        finally:
            with contextlib.suppress(Exception):  # the client may already be gone
                writer.close()

    async def _route(self, method: str, path: str, raw: bytes, headers: dict[str, str]) -> tuple[int | None, Any]:
        if method == "GET" and path.rstrip("/").endswith("/models"):
            return 200, {"object": "list", "data": [{"id": "fake", "object": "model"}]}
        if method != "POST" or not path.rstrip("/").endswith("/chat/completions"):
            return 404, {"error": {"message": f"no route {method} {path}"}}
        try:
            body = json.loads(raw or b"{}")
        except json.JSONDecodeError:
            return 400, {"error": {"message": "body is not JSON"}}
        self.requests.append(body)
        self.headers.append(headers)
        fault = self._next_fault(body)
        if self.latency:
            await asyncio.sleep(self.latency)
        if fault.isdigit():  # "500", "503", "429", "400": that status with an error body
            return int(fault), {"error": {"message": f"injected HTTP {fault}"}}
        if fault == "timeout":
            await asyncio.sleep(self.hang)
        if fault == "drop":
            return None, None
        self.served += 1
        try:
            message = self.responder(body)
        except Exception as e:  # noqa: BLE001 - a broken responder is a server error, as in real life
            return 500, {"error": {"message": f"responder failed: {e}"}}
        return 200, completion(message, body.get("model", "fake"))

    # ------------------------------------------------------------------ lifecycle

    async def serve(self) -> None:
        """Serve until cancelled (in the current event loop)."""
        self._server = await asyncio.start_server(self._handle, self.host, self.port, backlog=512)
        self.port = self._server.sockets[0].getsockname()[1]
        self._ready.set()
        async with self._server:
            await self._server.serve_forever()

    def start(self) -> FakeOpenAI:
        """Serve from a daemon thread; returns once the port is bound."""

        def run() -> None:
            self._loop = asyncio.new_event_loop()
            task = self._loop.create_task(self.serve())
            try:
                self._loop.run_until_complete(task)
            except asyncio.CancelledError:
                pass
            finally:
                self._loop.close()

        self._thread = threading.Thread(target=run, name="fake-openai", daemon=True)
        self._thread.start()
        if not self._ready.wait(10):
            raise RuntimeError("fake OpenAI server did not start within 10 s")
        return self

    def stop(self) -> None:
        loop = self._loop
        if loop is not None and self._server is not None and not loop.is_closed():

            def shutdown() -> None:
                self._server.close()
                for t in asyncio.all_tasks(loop):
                    t.cancel()

            loop.call_soon_threadsafe(shutdown)
        if self._thread is not None:
            self._thread.join(5)

    def __enter__(self) -> FakeOpenAI:  # noqa: PYI034
        return self.start()

    def __exit__(self, *exc: object) -> None:
        self.stop()


def main(argv: list[str] | None = None) -> None:
    """Run the server in the foreground (the benchmark starts it as a subprocess)."""
    ap = argparse.ArgumentParser(description="Fake OpenAI-compatible chat server on 127.0.0.1.")
    ap.add_argument("--port", type=int, default=0)
    ap.add_argument("--latency", type=float, default=0.05, help="seconds before each reply")
    ap.add_argument("--max-seconds", type=float, default=600.0, help="stop by itself after this long")
    args = ap.parse_args(argv)
    srv = FakeOpenAI(latency=args.latency, port=args.port)

    async def run() -> None:
        task = asyncio.create_task(srv.serve())
        while not srv._ready.is_set():
            await asyncio.sleep(0.01)
        print(f"PORT {srv.port}", flush=True)
        try:
            await asyncio.wait_for(task, timeout=args.max_seconds)
        except asyncio.TimeoutError:
            pass

    asyncio.run(run())


if __name__ == "__main__":
    main()
