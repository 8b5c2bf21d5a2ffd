"""Multi-turn episodes -> one token sequence with a token span per assistant turn.

The whole conversation is rendered with the model's chat template and tokenised **once**; each
assistant turn is then located in that sequence. Rendering each turn separately and concatenating
the pieces is what goes wrong in practice: a template that is not append-only, or a token that
merges across a boundary, silently shifts the loss mask onto the wrong tokens (the retokenisation
drift of TRL #5144 and SkyRL #1492). So every span is checked: its tokens must decode back to
exactly the turn's text (plus the end-of-turn token when the model generated one), or
:class:`TokenizationDriftError` names the turn.

Assistant turns are rendered as the *raw text the model generated* (``raw_texts``), not as a
re-serialisation of the parsed tool calls, so the trained tokens are the sampled ones. When the
sampled token ids are known (``generated_ids``) they are spliced into their spans: the loss is then
taken on exactly the tokens the policy sampled even where a BPE tokenizer would have split the same
text differently (``EpisodeTokens.drift_turns`` counts those turns).

Tools are rendered the way ``calib.hf_chat.HFChatModel`` renders them for generation (natively when
the template supports them, else a Hermes-style block in the system message), so training sees the
context the policy saw. No torch here; the tokenizer is any transformers fast tokenizer.
"""

from __future__ import annotations

from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from typing import Any

ToTemplate = Callable[[list[dict[str, Any]], list[dict[str, Any]] | None], tuple[list[dict[str, Any]], Any]]


class TokenizationDriftError(ValueError):
    """A turn's tokens in the whole-conversation tokenisation do not decode back to the turn's text."""


@dataclass
class EpisodeTokens:
    """One episode as a prompt plus one completion whose agent tokens are marked.

    ``spans[k] = (start, end)`` indexes ``completion_ids`` (end exclusive) for assistant turn k;
    ``env_mask`` is 1 on agent tokens and 0 on system, user and tool tokens between them.
    """

    prompt_ids: list[int]
    completion_ids: list[int]
    spans: list[tuple[int, int]]
    env_mask: list[int]
    texts: list[str] = field(default_factory=list)
    drift_turns: int = 0


def assistant_text(message: dict[str, Any]) -> str:
    """The text of an assistant message when its raw generation is unknown (oracle, imported data):
    content followed by each tool call in the Hermes ``<tool_call>{json}</tool_call>`` format."""
    from calib.hf_chat import render_tool_call

    content = message.get("content") or ""
    calls = message.get("tool_calls") or []
    parts = [content] if content else []
    parts += [render_tool_call(c["name"], c.get("arguments", {})) for c in calls]
    return "\n".join(parts)


def training_messages(
    messages: Sequence[dict[str, Any]], raw_texts: Sequence[str] | None = None
) -> list[dict[str, Any]]:
    """Messages with every assistant turn replaced by its text (the raw generation when known).

    Both generation (the trainer's policy) and training render this form, so the context a turn was
    sampled in is the context it is trained in.
    """
    out: list[dict[str, Any]] = []
    k = 0
    for m in messages:
        if m.get("role") == "assistant":
            text = raw_texts[k] if raw_texts is not None and k < len(raw_texts) else assistant_text(m)
            out.append({"role": "assistant", "content": text})
            k += 1
        else:
            out.append(dict(m))
    return out


def default_to_template(tokenizer: Any) -> ToTemplate:
    """The same message conversion the ``hf`` policy applies before its chat template."""
    from calib.hf_chat import HFChatModel

    chat = HFChatModel(None, tokenizer)  # only the tokenizer is used: probes the template once
    return chat.to_template_messages


def _render(tokenizer: Any, messages: list[dict[str, Any]], tools: Any, *, generation_prompt: bool) -> str:
    kw: dict[str, Any] = {"tokenize": False, "add_generation_prompt": generation_prompt}
    if tools:
        kw["tools"] = tools
    return tokenizer.apply_chat_template(messages, **kw)


def _locate_turns(
    tokenizer: Any, tmsgs: list[dict[str, Any]], tools: Any, full: str, eos_flags: Sequence[bool]
) -> list[tuple[int, int, str]]:
    """Character span ``(start, end, expected_text)`` of every assistant turn inside ``full``.

    The turn starts where the rendering of the messages before it, with the generation prompt,
    ends: that is exactly the string the policy continued from. A template for which that prefix
    is not a prefix of the whole rendering is not append-only and cannot be trained this way.
    """
    eos = tokenizer.eos_token or ""
    out = []
    positions = [j for j, m in enumerate(tmsgs) if m["role"] == "assistant"]
    for k, j in enumerate(positions):
        prefix = _render(tokenizer, tmsgs[:j], tools, generation_prompt=True)
        if not full.startswith(prefix):
            raise TokenizationDriftError(
                f"assistant turn {k}: the chat template is not append-only (rendering the conversation up to "
                "this turn is not a prefix of rendering all of it); multi-turn training needs a template "
                "that keeps earlier turns unchanged"
            )
        text = tmsgs[j]["content"]
        start = len(prefix)
        if not full.startswith(text, start):
            stripped = text.strip()  # some templates trim message content
            if full.startswith(stripped, start):
                text = stripped
            else:
                raise TokenizationDriftError(
                    f"assistant turn {k}: the rendered conversation does not contain the turn's text "
                    f"where the turn starts (template rewrites assistant content?)"
                )
        end = start + len(text)
        if eos_flags[k] and eos and full.startswith(eos, end):
            text, end = text + eos, end + len(eos)
        out.append((start, end, text))
    return out


def tokenize_episode(
    tokenizer: Any,
    messages: Sequence[dict[str, Any]],
    *,
    tools: list[dict[str, Any]] | None = None,
    raw_texts: Sequence[str] | None = None,
    generated_ids: Sequence[Sequence[int] | None] | None = None,
    stopped: Sequence[bool] | None = None,
    to_template: ToTemplate | None = None,
) -> EpisodeTokens:
    """Tokenise an episode once and map each assistant turn to its token span.

    ``raw_texts[k]`` is what the model generated at turn k (default: the message re-serialised);
    ``generated_ids[k]`` the sampled token ids of that turn, spliced into its span when given. A
    turn's span includes the end-of-turn token when the generation ended with it: the model must
    learn to stop, but a turn cut off by the token limit never produced that token. Whether it
    did comes from ``generated_ids``, else from ``stopped[k]``, else is assumed.
    """
    n_turns = sum(1 for m in messages if m.get("role") == "assistant")
    eos_flags = _eos_flags(tokenizer, n_turns, generated_ids, stopped)
    to_template = to_template or default_to_template(tokenizer)
    tmsgs, ttools = to_template(training_messages(messages, raw_texts), tools)
    full = _render(tokenizer, tmsgs, ttools, generation_prompt=False)
    turns = _locate_turns(tokenizer, tmsgs, ttools, full, eos_flags)

    enc = tokenizer(full, add_special_tokens=False, return_offsets_mapping=True)
    ids: list[int] = list(enc["input_ids"])
    if not turns:
        return EpisodeTokens(prompt_ids=ids, completion_ids=[], spans=[], env_mask=[], texts=[])
    tok_spans = _token_spans(tokenizer, ids, enc["offset_mapping"], turns)
    first = tok_spans[0][0]
    completion, spans, drift = _splice_generated(tokenizer, ids, tok_spans, generated_ids)
    env_mask = [0] * len(completion)
    for s, e in spans:
        env_mask[s:e] = [1] * (e - s)
    return EpisodeTokens(
        prompt_ids=ids[:first],
        completion_ids=completion,
        spans=spans,
        env_mask=env_mask,
        texts=[t for _, _, t in turns],
        drift_turns=drift,
    )


def _eos_flags(tokenizer: Any, n_turns: int, generated_ids: Sequence[Sequence[int] | None] | None,
               stopped: Sequence[bool] | None) -> list[bool]:
    """Whether each turn ended with an end-of-turn token: from its sampled ids, else ``stopped``, else yes."""
    eos_ids = _eos_ids(tokenizer)
    flags = []
    for k in range(n_turns):
        if generated_ids is not None and k < len(generated_ids) and generated_ids[k]:
            flags.append(int(generated_ids[k][-1]) in eos_ids)
        elif stopped is not None and k < len(stopped):
            flags.append(bool(stopped[k]))
        else:
            flags.append(True)
    return flags


def _token_spans(tokenizer: Any, ids: list[int], offsets: Sequence[tuple[int, int]],
                 turns: Sequence[tuple[int, int, str]]) -> list[tuple[int, int]]:
    """Token span of each turn: from the first token that ends after the turn's first character to
    the first token that starts at or after its last character; then the decode check (a token that
    crosses a turn boundary would train the model on environment text, or miss some of its own)."""
    import bisect

    tok_end = [e for _, e in offsets]
    tok_start = [s for s, _ in offsets]
    tok_spans = []
    for k, (c0, c1, text) in enumerate(turns):
        t0 = bisect.bisect_right(tok_end, c0)
        t1 = bisect.bisect_left(tok_start, c1, lo=t0)
        got = tokenizer.decode(ids[t0:t1], skip_special_tokens=False, clean_up_tokenization_spaces=False)
        if got != text:
            raise TokenizationDriftError(
                f"assistant turn {k}: tokens {t0}:{t1} decode to {got[:60]!r}..., expected {text[:60]!r}...: "
                "a token crosses the turn boundary"
            )
        tok_spans.append((t0, t1))
    return tok_spans


def _splice_generated(tokenizer: Any, ids: list[int], tok_spans: list[tuple[int, int]],
                      generated_ids: Sequence[Sequence[int] | None] | None
                      ) -> tuple[list[int], list[tuple[int, int]], int]:
    """The completion (everything from the first turn on) rebuilt left to right with each turn's
    sampled ids in place of its re-tokenised ids (the policy's logprobs are of the sampled ids);
    returns it, the turns' spans in it, and how many turns' ids differed."""
    completion: list[int] = []
    spans: list[tuple[int, int]] = []
    drift = 0
    cursor = tok_spans[0][0]
    for k, (t0, t1) in enumerate(tok_spans):
        completion += ids[cursor:t0]  # environment tokens before this turn
        turn_ids = ids[t0:t1]
        gen = generated_ids[k] if generated_ids is not None and k < len(generated_ids) else None
        if gen:
            gen = [int(t) for t in gen]
            if gen != turn_ids:
                _check_same_text(tokenizer, gen, turn_ids, k)
                drift += 1
            turn_ids = gen
        spans.append((len(completion), len(completion) + len(turn_ids)))
        completion += turn_ids
        cursor = t1
    return completion, spans, drift


def _eos_ids(tokenizer: Any) -> set[int]:
    ids = set()
    if tokenizer.eos_token_id is not None:
        ids.add(int(tokenizer.eos_token_id))
    return ids


def _check_same_text(tokenizer: Any, gen: list[int], turn_ids: list[int], k: int) -> None:
    """Sampled ids may tokenise the turn differently, never say something else."""
    a = tokenizer.decode(gen, skip_special_tokens=True, clean_up_tokenization_spaces=False)
    b = tokenizer.decode(turn_ids, skip_special_tokens=True, clean_up_tokenization_spaces=False)
    if a != b:
        raise TokenizationDriftError(
            f"assistant turn {k}: the sampled token ids decode to {a[:60]!r}..., but the turn's text is "
            f"{b[:60]!r}...: raw_texts and generated_ids disagree"
        )
