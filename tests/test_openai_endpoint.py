"""The `openai` policy and the `llm` user against a fake OpenAI-compatible server on 127.0.0.1.

The server (calib/testing/fake_openai.py) replies deterministically: the fake customer names its task,
the fake agent replays that task's expected actions as function calls, then both wrap up. Faults are
injected per request: a 500 and a timeout are retried away; a server that keeps failing gives
episodes with status `error`, which evaluation excludes.
"""

from __future__ import annotations

import asyncio
import json
import re
import socket
from typing import Any

import pytest

from calib.envs.base import STOP, Task
from calib.http import ChatClient, EndpointConfig, EndpointError, backoff_delay
from calib.policies.base import EpisodeContext, from_openai_message, to_openai_messages
from calib.policies.openai import OpenAIPolicy
from calib.rollout.factories import user_factory
from calib.rollout.runner import run_rollouts
from calib.testing.fake_openai import FakeOpenAI, text_message, tool_call_message

FAST = {"backoff": 0.01, "backoff_max": 0.02}  # retries in tests wait milliseconds, not seconds


@pytest.fixture(scope="module")
def domain():
    from calib.envs import load_domain

    return load_domain("airline-mini")


@pytest.fixture(scope="module")
def tasks(domain) -> list[Task]:
    """Three tasks whose success needs only the expected actions (no required outputs)."""
    picked = [t for t in domain.tasks if not t.outputs and t.actions
              and all(a["name"] != "transfer_to_human_agents" for a in t.actions)]
    return picked[:3]


def make_responder(tasks: list[Task]):
    by_id = {t.task_id: t for t in tasks}

    def respond(body: dict[str, Any]) -> dict[str, Any]:
        msgs = body["messages"]
        if body.get("tools"):  # the agent
            first_user = next(m["content"] for m in msgs if m["role"] == "user")
            task = by_id[re.search(r"\[task (\S+)\]", first_user).group(1)]
            done = sum(1 for m in msgs if m["role"] == "tool")
            if done < len(task.actions):
                a = task.actions[done]
                return tool_call_message(a["name"], a.get("arguments", a.get("kwargs")), call_id=f"c{done}")
            return text_message("All done: your request has been completed.")
        # the customer: name the task (from the instruction in the system prompt), then stop
        system = msgs[0]["content"]
        task = next(t for t in tasks if t.instruction.strip() in system)
        n_replies = sum(1 for m in msgs if m["role"] == "assistant")
        return text_message(f"Hello, I need help [task {task.task_id}]." if n_replies == 0 else STOP)

    return respond


# ----------------------------------------------------------------------------- the HTTP client


TRANSPORTS = pytest.mark.parametrize("transport", ["asyncio", "httpx"])


@TRANSPORTS
def test_retries_500_and_timeout_then_succeeds(transport):
    with FakeOpenAI(faults=["500", "timeout"], hang=2.0) as srv:
        client = ChatClient(EndpointConfig(base_url=srv.base_url, timeout=0.3, max_retries=3, transport=transport, **FAST))
        msg = asyncio.run(client.chat([{"role": "user", "content": "hi"}]))
    assert msg["role"] == "assistant" and msg["content"]
    assert len(srv.requests) == 3 and client.retries == 2


@TRANSPORTS
def test_persistent_failure_raises_after_all_retries(transport):
    with FakeOpenAI(fault_fn=lambda body: "503") as srv:
        client = ChatClient(EndpointConfig(base_url=srv.base_url, max_retries=2, transport=transport, **FAST))
        with pytest.raises(EndpointError, match="failed after 3 attempts; last: HTTP 503"):
            asyncio.run(client.chat([{"role": "user", "content": "hi"}]))
    assert len(srv.requests) == 3


@TRANSPORTS
def test_client_error_is_not_retried(transport):
    with FakeOpenAI(faults=["400"]) as srv:
        client = ChatClient(EndpointConfig(base_url=srv.base_url, max_retries=3, transport=transport, **FAST))
        with pytest.raises(EndpointError, match="refused the request: HTTP 400"):
            asyncio.run(client.chat([{"role": "user", "content": "hi"}]))
    assert len(srv.requests) == 1


@TRANSPORTS
def test_connection_refused_is_retried_then_reported(transport):
    with socket.socket() as s:  # a port that nothing listens on
        s.bind(("127.0.0.1", 0))
        port = s.getsockname()[1]
    client = ChatClient(EndpointConfig(base_url=f"http://127.0.0.1:{port}/v1", max_retries=1, transport=transport,
                                       **FAST))
    with pytest.raises(EndpointError, match="connection error"):
        asyncio.run(client.chat([{"role": "user", "content": "hi"}]))
    assert client.attempts == 2


@TRANSPORTS
def test_dropped_connection_is_retried(transport):
    with FakeOpenAI(faults=["drop"]) as srv:
        client = ChatClient(EndpointConfig(base_url=srv.base_url, max_retries=2, transport=transport, **FAST))
        assert asyncio.run(client.chat([{"role": "user", "content": "hi"}]))["content"]
    assert len(srv.requests) == 2


@TRANSPORTS
def test_keep_alive_chunked_bodies_and_a_second_event_loop(transport):
    with FakeOpenAI(chunked=True) as srv:
        client = ChatClient(EndpointConfig(base_url=srv.base_url, transport=transport, **FAST))

        async def three():
            return [await client.chat([{"role": "user", "content": f"hi {i}"}]) for i in range(3)]

        first = asyncio.run(three())
        second = asyncio.run(three())  # a new loop gets new connections, not the dead loop's
    assert [m["content"] for m in first] == [m["content"] for m in second]
    assert len(srv.requests) == 6 and client.retries == 0
    assert srv.requests[0]["messages"] == [{"role": "user", "content": "hi 0"}]


@TRANSPORTS
def test_api_key_and_generation_options_are_sent(transport, monkeypatch):
    monkeypatch.setenv("OPENAI_API_KEY", "from-env")
    with FakeOpenAI() as srv:
        explicit = EndpointConfig(base_url=srv.base_url, api_key="sk-test", temperature=0.2, max_tokens=64,
                                  extra_body={"seed": 3}, transport=transport)
        asyncio.run(ChatClient(explicit).chat([{"role": "user", "content": "hi"}]))
        asyncio.run(ChatClient(EndpointConfig(base_url=srv.base_url, transport=transport)).chat(
            [{"role": "user", "content": "hi"}]))
    assert srv.headers[0]["authorization"] == "Bearer sk-test"
    assert srv.headers[1]["authorization"] == "Bearer from-env"
    assert srv.requests[0]["temperature"] == 0.2 and srv.requests[0]["max_tokens"] == 64
    assert srv.requests[0]["seed"] == 3 and "temperature" not in srv.requests[1]


def test_auto_transport_by_scheme():
    assert ChatClient(EndpointConfig(base_url="http://127.0.0.1:1/v1")).transport_name == "asyncio"
    assert ChatClient(EndpointConfig(base_url="https://api.example.com/v1")).transport_name == "httpx"
    with pytest.raises(ValueError, match="plain http only"):
        EndpointConfig(base_url="https://api.example.com/v1", transport="asyncio")


def test_backoff_grows_and_is_capped():
    import random

    rng = random.Random(0)
    d = [backoff_delay(a, 0.5, 4.0, rng) for a in range(6)]
    assert 0.375 <= d[0] <= 0.625 and 0.75 <= d[1] <= 1.25
    assert all(x <= 4.0 for x in d) and d[5] >= 3.0


def test_endpoint_config_names_bad_fields():
    with pytest.raises(ValueError, match="base_url"):
        EndpointConfig(base_url="localhost:8000")
    with pytest.raises(ValueError, match="max_retries"):
        EndpointConfig(max_retries=-1)


# ----------------------------------------------------------------------------- wire format


def test_wire_round_trip_and_invalid_arguments():
    canonical = [
        {"role": "system", "content": "policy"},
        {"role": "user", "content": "hi"},
        {"role": "assistant", "content": None, "tool_calls": [{"id": "c1", "name": "get_user_details",
                                                                "arguments": {"user_id": "u1"}}]},
        {"role": "tool", "tool_call_id": "c1", "name": "get_user_details", "content": "{}"},
    ]
    wire = to_openai_messages(canonical)
    assert json.loads(wire[2]["tool_calls"][0]["function"]["arguments"]) == {"user_id": "u1"}
    back = from_openai_message(wire[2])
    assert back["tool_calls"] == canonical[2]["tool_calls"]
    bad = from_openai_message(tool_call_message("get_user_details", '{"user_id": "u1"'))
    assert bad["invalid"] is True and "tool_calls" not in bad and '{"user_id": "u1"' in bad["content"]


def test_openai_policy_sends_tools_and_parses_reply():
    def respond(body):
        assert body["model"] == "agent-model" and body["tools"][0]["function"]["name"] == "get_user_details"
        return tool_call_message("get_user_details", {"user_id": "u1"})

    tools = [{"type": "function", "function": {"name": "get_user_details", "parameters": {"type": "object"}}}]
    with FakeOpenAI(respond) as srv:
        policy = OpenAIPolicy(EndpointConfig(base_url=srv.base_url, model="agent-model"))
        ctx = EpisodeContext(task=Task("t", "u1", "instr"))
        msg = asyncio.run(policy.act([{"role": "user", "content": "hi"}], tools, ctx))
    assert msg["tool_calls"][0]["name"] == "get_user_details"
    assert msg["tool_calls"][0]["arguments"] == {"user_id": "u1"}


# ----------------------------------------------------------------------------- rollouts


def _endpoints(srv: FakeOpenAI, **kw):
    agent = EndpointConfig(base_url=srv.base_url, model="agent", timeout=0.5, max_retries=3, **FAST, **kw)
    user = EndpointConfig(base_url=srv.base_url, model="user", timeout=0.5, max_retries=3, **FAST, **kw)
    return agent, user


def test_rollout_openai_policy_and_llm_user_survive_500_and_timeout(domain, tasks):
    with FakeOpenAI(make_responder(tasks), faults=["500", "timeout"], hang=1.5) as srv:
        agent, user = _endpoints(srv)
        eps = run_rollouts(domain, OpenAIPolicy(agent), user_factory("llm", endpoint=user),
                           [t.task_id for t in tasks], samples=2, concurrency=4, run_id="fake")
    assert len(eps) == 6
    assert all(e["status"] == "ok" for e in eps), [e["info"].get("error") for e in eps]
    assert all(e["success"] and e["outcome"] == 1.0 for e in eps)
    for e in eps:
        task = next(t for t in tasks if t.task_id == e["task_id"])
        calls = [c["name"] for m in e["messages"] if m["role"] == "assistant" for c in m.get("tool_calls", [])]
        assert calls == [a["name"] for a in task.actions]
        assert not any(m["content"].startswith("Error") for m in e["messages"] if m["role"] == "tool")
        assert e["messages"][-1] == {"role": "user", "content": STOP}
        assert e["info"]["termination"] == "user_stop" and len(e["info"]["progress"]) == e["info"]["n_turns"]
        assert e["info"]["progress"][-1] == 1.0
    # agent requests carried the tools; the customer's never did
    assert {r["model"] for r in srv.requests if r.get("tools")} == {"agent"}
    assert {r["model"] for r in srv.requests if not r.get("tools")} == {"user"}
    n_expected = sum(2 * (len(t.actions) + 1 + 2) for t in tasks)  # agent turns + customer turns, per sample
    assert len(srv.requests) == n_expected + 2  # the 500 and the timeout were retried


def test_persistent_failure_gives_status_error_and_is_excluded(domain, tasks, store_dir):
    from calib.rollout.evaluate import evaluate_run
    from calib.rollout.runner import write_episodes
    from calib.store import Store

    broken = tasks[0].task_id

    def fault(body):  # the agent endpoint fails for good on one task
        first_user = next((m["content"] for m in body["messages"] if m["role"] == "user"), "")
        return "500" if body.get("tools") and f"[task {broken}]" in first_user else None

    with FakeOpenAI(make_responder(tasks), fault_fn=fault) as srv:
        agent, user = _endpoints(srv)
        agent.max_retries = 2
        eps = run_rollouts(domain, OpenAIPolicy(agent), user_factory("llm", endpoint=user),
                           [t.task_id for t in tasks], samples=2, concurrency=4, run_id="fake")
    bad = [e for e in eps if e["task_id"] == broken]
    good = [e for e in eps if e["task_id"] != broken]
    assert len(bad) == 2 and all(e["status"] == "error" and not e["success"] for e in bad)
    assert all("failed after 3 attempts" in e["info"]["error"] for e in bad)
    assert all(e["status"] == "ok" and e["success"] for e in good)

    st = Store(store_dir)
    res = write_episodes(st, eps, domain=domain, source="test")
    assert res.episodes == 6 and res.quarantined == 0 and res.errors == 2
    r = evaluate_run(st, "fake")
    assert r.errors == 2 and r.success_rate == 1.0  # errors are neither successes nor failures
    assert r.per_task.set_index("task_id").loc[broken, "n"] == 0
