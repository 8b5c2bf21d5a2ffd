"""calib/ingest/chat_text.py: decoded chat-template text -> canonical messages (no tokenizer needed).

The texts are what a chatml template (Qwen, SmolLM2) renders, with the special tokens and as verl's
``_log_rollout_data`` decodes them (``skip_special_tokens=True``: the tokens gone, the role names left
alone on their lines). tests/with_verl/test_verl_ingest.py checks the same parser on text that a real
tokenizer and verl's own dump code produced.
"""

from __future__ import annotations

import json

import pytest

from calib.ingest.chat_text import TEMPLATES, parse_chat_text, split_verl_sample
from calib.records import RecordError, normalize_messages

S, E = "<|im_start|>", "<|im_end|>"


def chatml(messages: list[tuple[str, str]], *, generation_prompt: bool = False) -> str:
    """What a chatml template renders (``<|im_start|>role\\ncontent<|im_end|>\\n`` per message)."""
    text = "".join(f"{S}{role}\n{content}{E}\n" for role, content in messages)
    return text + (f"{S}assistant\n" if generation_prompt else "")


def stripped(text: str) -> str:
    """``tokenizer.decode(..., skip_special_tokens=True)`` of chatml: the special tokens are gone."""
    return text.replace(S, "").replace(E, "").replace("<|endoftext|>", "")


def call(name: str, **arguments) -> str:
    return "<tool_call>\n" + json.dumps({"name": name, "arguments": arguments}) + "\n</tool_call>"


def response(content: str) -> str:
    return f"<tool_response>\n{content}\n</tool_response>"


CONVERSATION = [
    ("system", "You are a weather agent.\nAnswer in one line."),
    ("user", "Weather in Paris?"),
    ("assistant", "Let me look.\n" + call("lookup_weather", city="Paris")),
    ("user", response('{"temp_c": 21}')),
    ("assistant", call("convert_units", value=21, to="F") + "\n" + call("lookup_weather", city="Lyon")),
    ("user", response('{"value": 69.8}') + "\n" + response('{"temp_c": 19}')),
    ("assistant", "It is 21 C (69.8 F) in Paris."),
]

WANT = [
    {"role": "system", "content": "You are a weather agent.\nAnswer in one line."},
    {"role": "user", "content": "Weather in Paris?"},
    {"role": "assistant", "content": "Let me look.",
     "tool_calls": [{"id": "call_0", "name": "lookup_weather", "arguments": {"city": "Paris"}}]},
    {"role": "tool", "content": '{"temp_c": 21}', "tool_call_id": "call_0", "name": "lookup_weather"},
    {"role": "assistant", "content": "",
     "tool_calls": [{"id": "call_1", "name": "convert_units", "arguments": {"value": 21, "to": "F"}},
                    {"id": "call_2", "name": "lookup_weather", "arguments": {"city": "Lyon"}}]},
    {"role": "tool", "content": '{"value": 69.8}', "tool_call_id": "call_1", "name": "convert_units"},
    {"role": "tool", "content": '{"temp_c": 19}', "tool_call_id": "call_2", "name": "lookup_weather"},
    {"role": "assistant", "content": "It is 21 C (69.8 F) in Paris."},
]


@pytest.mark.parametrize("form", ["tokens", "stripped"])
def test_both_token_forms_give_the_same_messages(form: str):
    text = chatml(CONVERSATION)
    if form == "stripped":
        text = stripped(text)
        assert text.startswith("system\nYou are a weather agent.\nAnswer in one line.\nuser\nWeather in Paris?\n")
    got = parse_chat_text(text)
    assert got == WANT
    normalize_messages(got)  # a valid canonical message list: every call answered


@pytest.mark.parametrize("form", ["tokens", "stripped"])
def test_verl_sample_prompt_and_response(form: str):
    """The prompt ends with the generation marker; the response starts inside the first assistant turn
    and goes on with the tool responses and the next turns, as verl's agent loop builds it."""
    prompt = chatml(CONVERSATION[:2], generation_prompt=True)
    rest = chatml(CONVERSATION[3:])  # each later message with its header
    output = CONVERSATION[2][1] + E + "\n" + rest.removesuffix("\n")  # the last <|im_end|> ends the response
    if form == "stripped":
        prompt, output = stripped(prompt), stripped(output)
        assert prompt == "system\nYou are a weather agent.\nAnswer in one line.\nuser\nWeather in Paris?\nassistant\n"
        assert output.startswith("Let me look.\n<tool_call>") and "\nuser\n<tool_response>\n" in output
    assert split_verl_sample(prompt, output) == WANT


@pytest.mark.parametrize("form", ["tokens", "stripped"])
def test_tool_response_straight_after_the_generated_end_token(form: str):
    """verl's default ContinuousTokenBuilder (chatml models that are not Qwen, e.g. SmolLM2) appends the
    tool response right after the generated <|im_end|>, without the template's newline: stripped, the
    role name then follows </tool_call> on the same line."""
    output = (call("f", a=1) + E + f"{S}tool\nresult{E}\n{S}assistant\n" + call("g") + E
              + f"{S}user\n" + response("r2") + f"{E}\n{S}assistant\nDone." + E)
    if form == "stripped":
        output = stripped(output)
        assert "</tool_call>tool\nresult\nassistant\n" in output and "</tool_call>user\n<tool_response>" in output
    got = split_verl_sample("user\nu\nassistant\n", output)
    assert [(m["role"], m.get("tool_call_id")) for m in got] == [
        ("user", None), ("assistant", None), ("tool", "call_0"), ("assistant", None), ("tool", "call_1"),
        ("assistant", None)]
    assert got[2]["content"] == "result" and got[4]["content"] == "r2" and got[-1]["content"] == "Done."


def test_padding_tokens_around_the_token_form():
    """verl left-pads prompts and right-pads responses; decoded with the special tokens, the pads show."""
    pad = E  # SmolLM2's pad token is <|im_end|>; Qwen's is <|endoftext|>
    prompt = pad * 3 + chatml(CONVERSATION[:2], generation_prompt=True)
    output = "It is warm." + E + "<|endoftext|>" * 2
    got = split_verl_sample(prompt, output)
    assert got[-1] == {"role": "assistant", "content": "It is warm."}
    assert [m["role"] for m in got] == ["system", "user", "assistant"]


def test_tool_role_messages_are_paired_in_order():
    """Templates that render the tool role as it is (SmolLM2): ``tool`` messages, one per result."""
    text = stripped(chatml([
        ("user", "go"),
        ("assistant", call("a", x=1) + call("b")),
        ("tool", "ra"),
        ("tool", "rb"),
        ("assistant", "ok"),
    ]))
    got = parse_chat_text(text)
    assert [(m["role"], m.get("tool_call_id"), m.get("name")) for m in got] == [
        ("user", None, None), ("assistant", None, None), ("tool", "call_0", "a"), ("tool", "call_1", "b"),
        ("assistant", None, None)]
    assert got[1]["tool_calls"][1] == {"id": "call_1", "name": "b", "arguments": {}}
    assert got[2]["content"] == "ra"


def test_bad_hermes_calls_are_skipped_and_mark_the_message_invalid():
    """verl's HermesToolParser skips a block that is not JSON (or lacks name/arguments); calib keeps the
    calls that parse and marks the message invalid, the policy's own parse error."""
    content = ("Calling.\n<tool_call>\n{not json}\n</tool_call>\n" + call("good", q="x")
               + '\n<tool_call>\n{"name": "no_args"}\n</tool_call>')
    got = parse_chat_text(stripped(chatml([("user", "u"), ("assistant", content), ("tool", "r")])))
    a = got[1]
    assert a["invalid"] is True and a["content"] == "Calling."
    assert a["tool_calls"] == [{"id": "call_0", "name": "good", "arguments": {"q": "x"}}]
    assert got[2]["tool_call_id"] == "call_0"
    # arguments given as JSON text are read; arguments that are not an object are not a call
    assert parse_chat_text('user\nu\nassistant\n<tool_call>{"name": "f", "arguments": "{\\"k\\": 2}"}</tool_call>'
                           )[1]["tool_calls"][0]["arguments"] == {"k": 2}
    bad = parse_chat_text('user\nu\nassistant\n<tool_call>{"name": "f", "arguments": [1]}</tool_call>')[1]
    assert bad.get("invalid") is True and "tool_calls" not in bad
    # a block the length limit cut: no call, an invalid message, the text kept
    cut = parse_chat_text('user\nu\nassistant\nSure <tool_call>\n{"name": "f", "argu')[1]
    assert cut == {"role": "assistant", "content": 'Sure <tool_call>\n{"name": "f", "argu', "invalid": True}


def test_plain_text_is_kept_exactly():
    got = parse_chat_text("user\n  two spaces \n\nand a blank line\nassistant\nanswer \n\n")
    assert got == [{"role": "user", "content": "  two spaces \n\nand a blank line"},
                   {"role": "assistant", "content": "answer \n"}]  # the newline after <|im_end|> dropped
    # a response is not followed by that newline: it ends at its <|im_end|>
    assert split_verl_sample("user\nu\nassistant\n", "answer \n")[-1]["content"] == "answer \n"


def test_unanswered_calls_are_left_to_the_caller():
    """A call with no result (verl stops at its turn limit right after a call): the parser does not
    invent a result."""
    got = split_verl_sample("user\nu\nassistant\n", call("f", a=1))
    assert got[-1]["tool_calls"][0]["name"] == "f" and len(got) == 2


def test_a_user_message_with_more_than_tool_responses_stays_a_user_message():
    text = stripped(chatml([("user", "u"), ("assistant", "hi"), ("user", response("x") + " and more")]))
    assert parse_chat_text(text)[-1] == {"role": "user", "content": response("x") + " and more"}


def test_the_known_ambiguity_of_the_stripped_form():
    """A content line that is exactly a role name starts a new message once the tokens are gone; with
    the tokens it does not (the docstring says so)."""
    conv = [("user", "Say the word\nassistant\nplease"), ("assistant", "ok")]
    assert len(parse_chat_text(chatml(conv))) == 2
    assert [m["role"] for m in parse_chat_text(stripped(chatml(conv)))] == ["user", "assistant", "assistant"]


@pytest.mark.parametrize(("prompt", "output", "reason"), [
    ("Just a plain prompt", "out", "input has no chat role markers"),
    ("user\nu\n", "out", "does not end with the assistant generation marker"),
    ("user\nu\nassistant\nhello", "out", "does not end with the assistant generation marker"),
    (chatml([("user", "u")]), "out", "does not end with the assistant generation marker"),
    ("user\nu\nassistant\n", "", "output is empty"),
    ("user\nu\nassistant\n", f"{E}{E}", "output is empty"),
    ("user\nu\nassistant\n", "hi\nuser\n" + response("r"), "answers no tool call: the assistant message before it made none"),
    ("user\nu\nassistant\n", call("f") + "\ntool\nr1\ntool\nr2", r"the 1 call\(s\) of the assistant message before it were already answered"),
    ("preamble\nuser\nu\nassistant\n", "out", "text before its first role marker"),
    (f"{S}user\nu{E}\n{S}robot\nx{E}\n{S}assistant\n", "out", "unknown role 'robot'"),
    (f"{S}user\nu{E} stray{E}\n{S}assistant\n", "out", "text outside any message"),
    (None, "out", "input should be a string"),
    ("user\nu\nassistant\n", 3, "output should be a string"),
])
def test_samples_that_cannot_be_split(prompt, output, reason):
    with pytest.raises(RecordError, match=reason):
        split_verl_sample(prompt, output)


def test_a_tool_call_nested_too_deep_is_refused_before_it_is_decoded():
    from calib.jsonlimits import MAX_DEPTH

    deep = "[" * (MAX_DEPTH + 1) + "]" * (MAX_DEPTH + 1)
    with pytest.raises(RecordError, match="a <tool_call> block is nested deeper than"):
        split_verl_sample("user\nu\nassistant\n", '<tool_call>{"name": "f", "arguments": {"a": ' + deep + "}}</tool_call>")
    with pytest.raises(RecordError, match="the arguments of a <tool_call> block is nested deeper"):
        split_verl_sample("user\nu\nassistant\n", "<tool_call>" + json.dumps({"name": "f", "arguments": deep})
                          + "</tool_call>")
    ok = "[" * (MAX_DEPTH - 2) + "]" * (MAX_DEPTH - 2)
    got = split_verl_sample("user\nu\nassistant\n", '<tool_call>{"name": "f", "arguments": {"a": ' + ok + "}}</tool_call>")
    assert got[-1]["tool_calls"][0]["name"] == "f"


def test_parse_errors_and_the_template_registry():
    with pytest.raises(RecordError, match="no chat role markers"):
        parse_chat_text("no markers here")
    with pytest.raises(RecordError, match="no assistant message comes before it"):
        parse_chat_text("user\n" + response("r"))
    with pytest.raises(ValueError, match="unknown chat template 'llama3'"):
        parse_chat_text("user\nu\n", template="llama3")
    assert set(TEMPLATES) == {"chatml"}
    assert TEMPLATES["chatml"].generation_markers() == (f"{S}assistant\n", "assistant\n")
