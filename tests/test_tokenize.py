"""trainer/tokenize.py with the real SmolLM2 tokenizer: every span decodes back to its turn's text."""

from __future__ import annotations

import json

import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from trainer.tokenize import TokenizationDriftError, assistant_text, tokenize_episode, training_messages

TOOLS = [
    {
        "type": "function",
        "function": {
            "name": "get_reservation_details",
            "description": "Look up a reservation.",
            "parameters": {"type": "object", "properties": {"reservation_id": {"type": "string"}}},
        },
    }
]


@pytest.fixture(scope="module")
def tok(tiny_model_dir):
    from transformers import AutoTokenizer

    return AutoTokenizer.from_pretrained(tiny_model_dir)


def _episode() -> list[dict]:
    return [
        {"role": "system", "content": "You help airline customers."},
        {"role": "user", "content": "Please cancel reservation ABC123, it's for Zoë."},
        {
            "role": "assistant",
            "content": "Let me check.",
            "tool_calls": [
                {"id": "c0", "name": "get_reservation_details", "arguments": {"reservation_id": "ABC123"}}
            ],
        },
        {
            "role": "tool",
            "tool_call_id": "c0",
            "name": "get_reservation_details",
            "content": json.dumps({"reservation_id": "ABC123", "passengers": [{"first_name": "Zoë"}]}),
        },
        {
            "role": "assistant",
            "content": '<tool_call>{"name": "cancel_reservation", "arguments": {',
            "invalid": True,
        },
        {"role": "user", "content": "Hm?"},
        {
            "role": "assistant",
            "content": None,
            "tool_calls": [
                {"id": "c1", "name": "get_reservation_details", "arguments": {"reservation_id": "ABC123"}},
                {"id": "c2", "name": "think", "arguments": {"thought": "two calls in one turn"}},
            ],
        },
        {
            "role": "tool",
            "tool_call_id": "c1",
            "name": "get_reservation_details",
            "content": "Error: not found",
        },
        {"role": "tool", "tool_call_id": "c2", "name": "think", "content": ""},
        {"role": "assistant", "content": "Your trip is cancelled. 👍"},
        {"role": "user", "content": "###STOP###"},
    ]


def _check_spans(tok, et, texts):
    assert len(et.spans) == len(texts)
    for (s, e), text in zip(et.spans, texts):
        got = tok.decode(
            et.completion_ids[s:e], skip_special_tokens=False, clean_up_tokenization_spaces=False
        )
        assert got == text + tok.eos_token
    # The mask is 1 on exactly the span tokens.
    marked = {i for s, e in et.spans for i in range(s, e)}
    assert [i for i, m in enumerate(et.env_mask) if m] == sorted(marked)
    assert len(et.env_mask) == len(et.completion_ids)


def test_every_span_decodes_back_to_its_turn(tok):
    msgs = _episode()
    et = tokenize_episode(tok, msgs, tools=TOOLS)
    texts = [assistant_text(m) for m in msgs if m["role"] == "assistant"]
    assert texts[2].count("<tool_call>") == 2  # a turn with two calls is one span
    _check_spans(tok, et, texts)
    # Prompt + completion is the single tokenisation of the whole rendering (no splicing happened).
    full = tok.apply_chat_template(
        *default_template_args(tok, msgs), tokenize=False, add_generation_prompt=False
    )
    ids = tok(full, add_special_tokens=False)["input_ids"]
    assert et.prompt_ids + et.completion_ids == ids[: len(et.prompt_ids) + len(et.completion_ids)]
    assert tok.decode(et.prompt_ids).endswith("<|im_start|>assistant\n")
    # Tool results and user text are in the completion but masked out.
    env_text = tok.decode([t for t, m in zip(et.completion_ids, et.env_mask) if not m])
    assert "Error: not found" in env_text and "Hm?" in env_text
    assert et.drift_turns == 0


def default_template_args(tok, msgs):
    from trainer.tokenize import default_to_template

    tmsgs, ttools = default_to_template(tok)(training_messages(msgs), TOOLS)
    return (tmsgs,) if not ttools else (tmsgs, ttools)


turn_text = st.text(
    alphabet=st.sampled_from(list("abcXYZ019 .,:;!?{}[]\"'_-/\n") + ["é", "中", "😀", "<", ">", "Ġ"]),
    min_size=1,
    max_size=40,
).filter(lambda s: not s[0].isspace())  # see test_boundary_merge_is_detected


@settings(max_examples=60, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture])
@given(
    texts=st.lists(turn_text, min_size=1, max_size=4),
    observations=st.lists(turn_text, min_size=4, max_size=4),
)
def test_spans_decode_back_for_arbitrary_text(tok, texts, observations):
    msgs = [{"role": "system", "content": "S"}, {"role": "user", "content": "U"}]
    for k, text in enumerate(texts):
        msgs.append({"role": "assistant", "content": "ignored"})
        msgs.append({"role": "user", "content": observations[k]})
    et = tokenize_episode(tok, msgs, raw_texts=texts)
    _check_spans(tok, et, texts)


def test_generated_ids_are_spliced_in(tok):
    msgs = [
        {"role": "system", "content": "S"},
        {"role": "user", "content": "U"},
        {"role": "assistant", "content": "Hello there"},
        {"role": "user", "content": "V"},
        {"role": "assistant", "content": "Bye"},
    ]
    canonical = tok("Hello there", add_special_tokens=False)["input_ids"]
    # A non-canonical tokenisation of the same text (one token per character), as sampling can produce.
    odd = [tok.convert_tokens_to_ids(c) for c in tok.convert_ids_to_tokens(canonical)[0]] + [
        tok.convert_tokens_to_ids(c) for c in tok.tokenize(" there")
    ]
    assert odd != canonical and tok.decode(odd) == "Hello there"
    gen_bye = tok("Bye", add_special_tokens=False)["input_ids"]  # truncated: no end-of-turn token
    et = tokenize_episode(
        tok, msgs, raw_texts=["Hello there", "Bye"], generated_ids=[odd + [tok.eos_token_id], gen_bye]
    )
    s0, e0 = et.spans[0]
    assert et.completion_ids[s0:e0] == odd + [tok.eos_token_id]
    assert et.drift_turns == 1
    s1, e1 = et.spans[1]
    assert et.completion_ids[s1:e1] == gen_bye  # the eos the template adds is not trained
    assert et.env_mask[e1:] == [0] * (len(et.env_mask) - e1)

    with pytest.raises(TokenizationDriftError, match="disagree"):
        other = tok("Goodbye", add_special_tokens=False)["input_ids"]
        tokenize_episode(
            tok, msgs, raw_texts=["Hello there", "Bye"], generated_ids=[other + [tok.eos_token_id], gen_bye]
        )


def test_boundary_merge_is_detected(tok):
    # SmolLM2's BPE merges the template's "\n" after "assistant" with a reply starting "\n\n": the
    # span would include a template token. The guard refuses instead of training on the wrong tokens.
    msgs = [
        {"role": "system", "content": "S"},
        {"role": "user", "content": "U"},
        {"role": "assistant", "content": "x"},
    ]
    with pytest.raises(TokenizationDriftError, match="turn 0"):
        tokenize_episode(tok, msgs, raw_texts=["\n\n"])


def test_templates_that_rewrite_history_are_rejected(tok):
    msgs = [
        {"role": "user", "content": "U"},
        {"role": "assistant", "content": "one"},
        {"role": "user", "content": "V"},
        {"role": "assistant", "content": "two"},
    ]
    tail = "{% if add_generation_prompt %}{{ '<|im_start|>assistant\\n' }}{% endif %}"
    # Hides earlier assistant turns (as reasoning templates do with <think>): turn 0's text is gone.
    hides = type(tok).from_pretrained(tok.name_or_path)
    hides.chat_template = (
        "{% for m in messages %}{% if m['role'] == 'assistant' and not loop.last %}"
        "{{ '<|im_start|>assistant\\n(hidden)<|im_end|>\\n' }}{% else %}"
        "{{ '<|im_start|>' + m['role'] + '\\n' + m['content'] + '<|im_end|>\\n' }}{% endif %}{% endfor %}"
        + tail
    )
    with pytest.raises(TokenizationDriftError, match="turn 0: the rendered conversation does not contain"):
        tokenize_episode(hides, msgs, to_template=lambda m, t: (m, t))
    # Renders the latest message differently: the prompt a turn was sampled from is not a prefix.
    marks = type(tok).from_pretrained(tok.name_or_path)
    marks.chat_template = (
        "{% for m in messages %}{{ '<|im_start|>' + m['role'] + '\\n' + m['content'] }}"
        "{% if loop.last %}{{ ' (latest)' }}{% endif %}{{ '<|im_end|>\\n' }}{% endfor %}" + tail
    )
    with pytest.raises(TokenizationDriftError, match="append-only"):
        tokenize_episode(marks, msgs, to_template=lambda m, t: (m, t))


def test_episode_without_assistant_turns(tok):
    et = tokenize_episode(tok, [{"role": "system", "content": "S"}, {"role": "user", "content": "U"}])
    assert et.completion_ids == [] and et.spans == [] and et.prompt_ids


def test_stopped_flags_without_ids(tok):
    # Rebuilding from a store: no token ids, only whether each generation ended with end-of-turn.
    msgs = [
        {"role": "system", "content": "S"},
        {"role": "user", "content": "U"},
        {"role": "assistant", "content": "cut off mid"},
        {"role": "user", "content": "V"},
        {"role": "assistant", "content": "Bye"},
    ]
    et = tokenize_episode(tok, msgs, stopped=[False, True])
    (s0, e0), (s1, e1) = et.spans
    assert tok.decode(et.completion_ids[s0:e0]) == "cut off mid"
    assert tok.decode(et.completion_ids[s1:e1]) == "Bye" + tok.eos_token
    # The template's end-of-turn token after the cut-off turn is context, not a trained token.
    assert et.completion_ids[e0] == tok.eos_token_id and et.env_mask[e0] == 0
