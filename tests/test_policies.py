"""Policy interface helpers, Hermes tool-call parsing and chat-template fallbacks (no model needed)."""

from __future__ import annotations

import json

import pytest
from hypothesis import given
from hypothesis import strategies as st

from calib.envs.base import STOP, Task
from calib.envs.users.hf import clean_reply
from calib.envs.users.llm import build_system_prompt
from calib.errors import UsageError
from calib.hf_chat import HFChatModel, parse_tool_calls, render_tool_call, tools_system_block
from calib.policies.base import check_assistant_message
from calib.policies.hf import parse_reply
from calib.rollout.factories import make_policy, user_factory

TOOLS = [{"type": "function", "function": {"name": "get_user_details", "description": "d",
                                           "parameters": {"type": "object", "properties": {"user_id": {"type": "string"}}}}}]


# ----------------------------------------------------------------------------- parsing


@pytest.mark.parametrize(
    ("text", "visible", "calls", "invalid"),
    [
        ("Sure, one moment.", "Sure, one moment.", [], False),
        ('<tool_call>{"name": "get_user_details", "arguments": {"user_id": "u1"}}</tool_call>', "",
         [{"name": "get_user_details", "arguments": {"user_id": "u1"}}], False),
        ('Let me check.\n<tool_call>\n{"name": "a", "parameters": {"x": 1}}\n</tool_call>', "Let me check.",
         [{"name": "a", "arguments": {"x": 1}}], False),
        ('<tool_call>{"name": "a", "arguments": "{\\"x\\": 2}"}</tool_call>', "", [{"name": "a", "arguments": {"x": 2}}], False),
        ('<tool_call>{"name": "a", "arguments": {}}</tool_call><tool_call>{"name": "b"}</tool_call>', "",
         [{"name": "a", "arguments": {}}, {"name": "b", "arguments": {}}], False),
        ('<tool_call>{"name": "a", "argum', "", [], True),  # truncated by max_new_tokens
        ("<tool_call>get_user_details(u1)</tool_call>", "", [], True),  # not JSON
        ('<tool_call>{"arguments": {}}</tool_call>', "", [], True),  # no name
        ('<tool_call>{"name": "a", "arguments": [1]}</tool_call>', "", [], True),  # arguments not an object
    ],
)
def test_parse_tool_calls(text, visible, calls, invalid):
    got = parse_tool_calls(text)
    assert got == (visible, calls, invalid)


@given(st.text(alphabet=st.characters(blacklist_categories=("Cs",)), max_size=200))
def test_parse_never_raises_and_reply_is_a_valid_message(text):
    msg = parse_reply(text, turn=3, meta={"k": 1})
    check_assistant_message(msg)
    assert msg["_meta"] == {"k": 1}
    if msg.get("invalid"):
        assert msg["content"] == text and "tool_calls" not in msg


def test_parse_reply_round_trips_rendered_calls():
    text = render_tool_call("get_user_details", {"user_id": "mia_li_3668"})
    msg = parse_reply(text, turn=2)
    assert msg["tool_calls"] == [{"id": "call_2_0", "name": "get_user_details", "arguments": {"user_id": "mia_li_3668"}}]
    assert msg["content"] is None


def test_check_assistant_message_names_the_problem():
    check_assistant_message({"role": "assistant", "content": "hi"})
    with pytest.raises(ValueError, match="role='user'"):
        check_assistant_message({"role": "user", "content": "hi"})
    with pytest.raises(TypeError, match="tool_calls\\[0\\] without a name"):
        check_assistant_message({"role": "assistant", "content": None, "tool_calls": [{"arguments": {}}]})
    with pytest.raises(ValueError, match="invalid message"):
        check_assistant_message({"role": "assistant", "content": "x", "invalid": True,
                                 "tool_calls": [{"name": "a", "arguments": {}}]})
    with pytest.raises(TypeError, match="content of type int"):
        check_assistant_message({"role": "assistant", "content": 3})


# ----------------------------------------------------------------------------- chat templates


class PlainTemplateTokenizer:
    """A tokenizer whose template knows only role and content (as SmolLM2's does)."""

    def apply_chat_template(self, messages, tools=None, tokenize=False, add_generation_prompt=True):
        out = "".join(f"<|im_start|>{m['role']}\n{m['content']}<|im_end|>\n" for m in messages)
        return out + ("<|im_start|>assistant\n" if add_generation_prompt else "")


class ToolTemplateTokenizer(PlainTemplateTokenizer):
    """A template that renders tools and tool_calls itself (as Qwen's does)."""

    def apply_chat_template(self, messages, tools=None, tokenize=False, add_generation_prompt=True):
        head = f"TOOLS:{json.dumps(tools)}\n" if tools else ""
        body = ""
        for m in messages:
            calls = "".join(f"CALL:{c['function']['name']}" for c in m.get("tool_calls") or [])
            body += f"<{m['role']}>{m.get('content') or ''}{calls}\n"
        return head + body


CONVO = [
    {"role": "system", "content": "policy"},
    {"role": "user", "content": "hi"},
    {"role": "assistant", "content": None, "tool_calls": [{"id": "c", "name": "get_user_details", "arguments": {"user_id": "u"}}]},
    {"role": "tool", "tool_call_id": "c", "name": "get_user_details", "content": '{"name": "x"}'},
]


def test_plain_template_gets_tools_in_the_system_prompt_and_calls_as_text():
    chat = HFChatModel(model=None, tokenizer=PlainTemplateTokenizer())
    assert (chat.native_tools, chat.native_calls) == (False, False)
    msgs, tools = chat.to_template_messages(CONVO, TOOLS)
    assert tools is None
    assert msgs[0]["content"].startswith("policy\n\n") and msgs[0]["content"].endswith(tools_system_block(TOOLS))
    assert "get_user_details" in msgs[0]["content"]
    assert msgs[2] == {"role": "assistant", "content": render_tool_call("get_user_details", {"user_id": "u"})}
    assert msgs[3]["content"] == '<tool_response>\n{"name": "x"}\n</tool_response>'
    assert all(isinstance(m["content"], str) for m in msgs)


def test_tool_aware_template_gets_tools_natively():
    chat = HFChatModel(model=None, tokenizer=ToolTemplateTokenizer())
    assert (chat.native_tools, chat.native_calls) == (True, True)
    msgs, tools = chat.to_template_messages(CONVO, TOOLS)
    assert tools == TOOLS and msgs[0]["content"] == "policy"
    assert msgs[2]["tool_calls"][0]["function"] == {"name": "get_user_details", "arguments": {"user_id": "u"}}


# ----------------------------------------------------------------------------- users and factories


def test_user_prompt_carries_the_instruction_and_stop_protocol():
    p = build_system_prompt(Task("t", "u", "  You want to cancel reservation ABC.  "))
    assert "You want to cancel reservation ABC." in p and STOP in p


def test_hf_user_reply_cleanup():
    assert clean_reply("I want to cancel.<|im_end|>\n<|im_start|>user\nmore") == "I want to cancel."
    assert clean_reply("   ") and clean_reply(f"Thanks! {STOP}").endswith(STOP)


def test_factories_reject_unknown_names_and_missing_models():
    with pytest.raises(UsageError, match="unknown policy"):
        make_policy("gpt")
    with pytest.raises(UsageError, match="unknown user"):
        user_factory("robot")
    with pytest.raises(UsageError, match="--model"):
        make_policy("hf")
    make = user_factory("scripted")
    assert make() is not make()  # a fresh simulator per episode
