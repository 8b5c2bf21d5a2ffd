"""Decoded chat-template text -> canonical messages (docs/architecture.md section 2).

RL engines such as verl dump a rollout as two strings, the decoded prompt and the decoded response,
not as messages. :func:`parse_chat_text` splits such text back into ``{"role", "content"}`` messages
and :func:`split_verl_sample` does it for one verl sample (prompt + response). Pure functions: no
tokenizer, no model, nothing but the text.

Both forms of a template are read:

- with its special tokens (``<|im_start|>user\\nU<|im_end|>\\n``: decoded with
  ``skip_special_tokens=False``, or rendered by ``apply_chat_template(..., tokenize=False)``);
- with them stripped, as verl's ``_log_rollout_data`` writes them (``tokenizer.batch_decode(...,
  skip_special_tokens=True)``): the chatml prompt ``<|im_start|>system\\nS<|im_end|>\\n<|im_start|>user\\nU
  <|im_end|>\\n<|im_start|>assistant\\n`` becomes ``system\\nS\\nuser\\nU\\nassistant\\n``, and a role is
  only a role name alone on a line (at the start of the text or right after a newline), or right
  after a ``</tool_call>`` (an engine that appends the tool response straight after the generated
  ``<|im_end|>``, with no newline, as verl does for chatml models other than Qwen).

Tool calls are read in the hermes format that verl's ``HermesToolParser`` reads (Qwen2.5/Qwen3,
SmolLM2 prompted for tools): ``<tool_call>\\n{"name": ..., "arguments": {...}}\\n</tool_call>`` blocks
inside the assistant text, found with the same regex (``<tool_call>(.*?)</tool_call>``, DOTALL). Tool
results come either as ``tool`` messages (templates that render the role as it is, such as SmolLM2's)
or, as Qwen's template renders them, as a ``user`` message holding only ``<tool_response>`` blocks
(one block per result): those become one ``tool`` message per block.

Known ambiguity of the stripped form: a line that is exactly a role name (``system``, ``user``,
``assistant``, ``tool``) inside a message's content reads as the start of a new message, since the
special tokens that told the two apart are gone. The text alone cannot settle it; dump with the
special tokens kept (``skip_special_tokens=False``) where that matters. The converse also holds: a
message that follows an assistant message which does not end with ``</tool_call>`` and was not
separated from it by a newline (an engine that appends a user turn straight after ``<|im_end|>``) is
not found; its text stays in the assistant message.
"""

from __future__ import annotations

import json
import re
from dataclasses import dataclass
from typing import Any

from calib.jsonlimits import depth_error
from calib.records import RecordError

__all__ = ["TEMPLATES", "ChatTemplate", "parse_chat_text", "split_verl_sample"]


@dataclass(frozen=True)
class ChatTemplate:
    """How one chat template marks its messages, in both the token form and the stripped form.

    A message is ``start + role + header_end + content + end``; ``separator`` follows ``end`` before
    the next message. With the special tokens stripped, ``start`` and ``end`` (and ``extra_special``,
    the padding and end-of-text tokens) are gone, so a header is ``role + header_end`` alone on a line
    and each content is followed by the ``separator``."""

    name: str
    start: str
    end: str
    header_end: str = "\n"
    separator: str = "\n"
    extra_special: tuple[str, ...] = ()
    roles: tuple[str, ...] = ("system", "user", "assistant", "tool")
    tool_call_open: str = "<tool_call>"
    tool_call_close: str = "</tool_call>"
    tool_response_open: str = "<tool_response>"
    tool_response_close: str = "</tool_response>"

    def generation_markers(self) -> tuple[str, str]:
        """The assistant generation prompt: with the special tokens, and stripped."""
        return self.start + "assistant" + self.header_end, "assistant" + self.header_end

    def stripped_header(self) -> re.Pattern[str]:
        """A header with the special tokens stripped: a role name alone on a line (at the start of the
        text or right after a newline), or right after a closing ``</tool_call>``. The latter is what a
        tool-calling turn decodes to when the engine appended the tool response straight after the
        generated end token, without the newline the template puts there (verl's default
        ``ContinuousTokenBuilder``, which it uses for chatml models that are not Qwen, e.g. SmolLM2)."""
        roles = "|".join(map(re.escape, self.roles))
        return re.compile(rf"(?:^|(?<={re.escape(self.tool_call_close)}))({roles}){re.escape(self.header_end)}",
                          re.MULTILINE)


# The registry: add a template here (name -> marker rules); ``template=`` picks one by name.
TEMPLATES: dict[str, ChatTemplate] = {
    "chatml": ChatTemplate(name="chatml", start="<|im_start|>", end="<|im_end|>", extra_special=("<|endoftext|>",)),
}

Segment = tuple[str, str]  # (role, content exactly as rendered)


def _template(name: str) -> ChatTemplate:
    try:
        return TEMPLATES[name]
    except KeyError:
        raise ValueError(f"unknown chat template {name!r}: known are {', '.join(sorted(TEMPLATES))}") from None


# ----------------------------------------------------------------------------- segments


def _segments(text: str, t: ChatTemplate, *, lead_role: str | None = None, closed: bool = False,
              what: str = "text") -> list[Segment]:
    """Split ``text`` into (role, content) in order.

    ``lead_role``: text before the first header is a message of this role (a response, which starts
    inside the assistant turn its prompt opened); without it such text is an error. ``closed``: the
    text ended right before a header (a prompt whose generation marker was cut off), so its last
    content is followed by the separator, which is dropped."""
    if t.start in text or t.end in text:
        return _token_segments(text, t, lead_role=lead_role, what=what)
    headers = list(t.stripped_header().finditer(text))
    out: list[Segment] = []
    lead_end = headers[0].start() if headers else len(text)
    if lead_role is not None:
        if headers or text:
            lead = text[:lead_end]
            out.append((lead_role, _drop_separator(lead, t) if headers else lead))
    elif not headers:
        raise RecordError(f"{what} has no chat role markers (no line that is only one of {', '.join(t.roles)}, "
                          f"nor {t.start}ROLE): it was not rendered with the {t.name} template")
    elif text[:lead_end].strip():
        raise RecordError(f"{what} has text before its first role marker: {text[:lead_end][:80]!r}")
    for k, h in enumerate(headers):
        body = text[h.end():headers[k + 1].start() if k + 1 < len(headers) else len(text)]
        if k + 1 < len(headers) or closed:
            body = _drop_separator(body, t)
        out.append((h.group(1), body))
    return out


def _drop_separator(body: str, t: ChatTemplate) -> str:
    return body.removesuffix(t.separator)


def _token_segments(text: str, t: ChatTemplate, *, lead_role: str | None, what: str) -> list[Segment]:
    """The form with the special tokens: ``start role header_end content end separator`` per message."""
    pieces = text.split(t.start)
    out: list[Segment] = []
    lead = pieces[0]
    if lead_role is not None:
        out.append((lead_role, _content_and_rest(lead, t, what)))
    elif _strip_special(lead.replace(t.end, ""), t).strip():  # left padding may come first
        raise RecordError(f"{what} has text before its first {t.start}: {lead[:80]!r}")
    for piece in pieces[1:]:
        role, sep, body = piece.partition(t.header_end)
        if not sep and role in t.roles:  # a header cut at the end of the text (an unfinished generation)
            body = ""
        elif role not in t.roles:
            raise RecordError(f"{what} has a message of unknown role {role[:40]!r} (expected one of "
                              f"{', '.join(t.roles)})")
        out.append((role, _content_and_rest(body, t, what)))
    return out


def _content_and_rest(body: str, t: ChatTemplate, what: str) -> str:
    """The content before ``end``; after it only the separator and padding tokens may follow."""
    content, sep, rest = body.partition(t.end)
    if not sep:  # no end token: an unfinished message (or padding only), the content runs to the end
        return _strip_special(content, t)
    if _strip_special(rest.replace(t.end, ""), t).strip():
        raise RecordError(f"{what} has text outside any message after {t.end}: {rest[:80]!r}")
    return content


def _strip_special(s: str, t: ChatTemplate) -> str:
    for tok in t.extra_special:
        s = s.replace(tok, "")
    return s


# ----------------------------------------------------------------------------- messages


def _tool_calls(content: str, t: ChatTemplate) -> tuple[str, list[dict[str, Any]], bool]:
    """``(content without the blocks, calls, invalid)``, the way verl's HermesToolParser reads them:
    ``json.loads`` of each ``<tool_call>`` block, which needs ``name`` and ``arguments``. A block that
    does not parse (verl skips it) and an unclosed block make the message ``invalid``."""
    pattern = re.compile(re.escape(t.tool_call_open) + "(.*?)" + re.escape(t.tool_call_close), re.DOTALL)
    calls: list[dict[str, Any]] = []
    invalid = False
    for block in pattern.findall(content):
        call = _hermes_call(block)
        if call is None:
            invalid = True
        else:
            calls.append(call)
    rest = pattern.sub("", content)
    if t.tool_call_open in rest:
        invalid = True  # a call the model began and never closed (cut by the length limit)
    if not calls and not invalid:
        return content, [], False
    return rest.strip(), calls, invalid


def _hermes_call(block: str) -> dict[str, Any] | None:
    """One ``<tool_call>`` block as ``{name, arguments}``, None when verl's parser would skip it.
    JSON nested deeper than ``calib.jsonlimits.MAX_DEPTH`` is refused before it is decoded, as JSON
    text inside any record is (docs/importing.md, Limits)."""
    _check_depth(block, "a <tool_call> block")
    try:
        obj = json.loads(block)
    except (ValueError, RecursionError):
        return None
    if not isinstance(obj, dict) or not isinstance(obj.get("name"), str) or not obj["name"] or "arguments" not in obj:
        return None
    args = obj["arguments"]
    if isinstance(args, str):  # arguments given as JSON text
        _check_depth(args, "the arguments of a <tool_call> block")
        try:
            args = json.loads(args) if args.strip() else {}
        except (ValueError, RecursionError):
            return None
    if args is None:
        args = {}
    if not isinstance(args, dict):
        return None
    return {"name": obj["name"], "arguments": args}


def _check_depth(text: str, what: str) -> None:
    err = depth_error(text)
    if err is not None:
        raise RecordError(f"{what} is {err}")


def _tool_responses(content: str, t: ChatTemplate) -> list[str] | None:
    """The results in a user message made only of ``<tool_response>`` blocks (Qwen's rendering of tool
    messages), else None. Each result is the block's text without the newline the template puts on
    either side of it."""
    pattern = re.compile(re.escape(t.tool_response_open) + "(.*?)" + re.escape(t.tool_response_close), re.DOTALL)
    blocks = pattern.findall(content)
    if not blocks or pattern.sub("", content).strip():
        return None
    return [b.removeprefix("\n").removesuffix("\n") for b in blocks]


def _messages(segments: list[Segment], t: ChatTemplate) -> list[dict[str, Any]]:
    """Segments -> canonical messages: hermes calls parsed, tool responses split and paired, in order,
    with the calls of the assistant message before them."""
    out: list[dict[str, Any]] = []
    pending: list[dict[str, Any]] = []  # calls of the last assistant message still without a result
    last_calls = 0  # how many calls the last assistant message made
    n_calls = 0
    for role, content in segments:
        if role == "assistant":
            text, calls, invalid = _tool_calls(content, t)
            msg: dict[str, Any] = {"role": "assistant", "content": text}
            calls = [{"id": f"call_{n_calls + k}", **c} for k, c in enumerate(calls)]
            n_calls += len(calls)
            if calls:
                msg["tool_calls"] = calls
            if invalid:
                msg["invalid"] = True
            out.append(msg)
            pending, last_calls = list(calls), len(calls)
            continue
        results = [content] if role == "tool" else _tool_responses(content, t) if role == "user" else None
        if results is None:
            out.append({"role": role, "content": content})
            continue
        for r in results:
            if not pending:
                why = ("no assistant message comes before it" if not any(m["role"] == "assistant" for m in out)
                       else "the assistant message before it made none" if not last_calls
                       else f"the {last_calls} call(s) of the assistant message before it were already answered")
                raise RecordError(f"a tool response (message {len(out)}) answers no tool call: {why}")
            call = pending.pop(0)
            out.append({"role": "tool", "content": r, "tool_call_id": call["id"], "name": call["name"]})
    return out


# ----------------------------------------------------------------------------- public


def parse_chat_text(text: str, *, template: str = "chatml") -> list[dict[str, Any]]:
    """Split decoded chat-template text into canonical messages.

    Each message is ``{"role", "content"}``; an assistant message with hermes ``<tool_call>`` blocks
    gets ``tool_calls`` ``[{"id", "name", "arguments" (dict)}]`` (ids ``call_0``, ``call_1``... in
    order) and its content is the text without the blocks, stripped; one whose block is not valid JSON
    (or lacks ``name``/``arguments``, or is never closed) gets ``"invalid": True`` and keeps only the
    calls that parse. Tool results are ``{"role": "tool", "content", "tool_call_id", "name"}``, paired
    in order with the calls of the assistant message before them; a ``user`` message made only of
    ``<tool_response>`` blocks is one tool message per block. Other contents are kept exactly as
    rendered (with the special tokens stripped, the newline that followed each message's end token
    is dropped, the last one's too). Calls that no result answers stay unanswered (the caller decides
    what that means).

    Accepts the text with the template's special tokens and with them stripped (role names alone on a
    line). Known ambiguity of the stripped form: a content line that is exactly a role name starts a
    new message. A trailing generation prompt (``assistant`` header with nothing after it) is an empty
    assistant message.

    Raises :class:`calib.records.RecordError` when the text has no role markers, has text before the
    first one, a message of an unknown role, a tool response with no call to answer, or a ``<tool_call>``
    block nested deeper than ``calib.jsonlimits.MAX_DEPTH``; ``ValueError``
    for an unknown ``template`` (the registry is :data:`TEMPLATES`)."""
    t = _template(template)
    if not isinstance(text, str):
        raise RecordError(f"chat text should be a string, got {type(text).__name__}")
    return _messages(_segments(text, t, closed=True), t)


def split_verl_sample(input_text: str, output_text: str, template: str = "chatml") -> list[dict[str, Any]]:
    """One verl sample (its decoded ``input`` prompt and ``output`` response) -> canonical messages.

    The prompt must end with the assistant generation marker (``<|im_start|>assistant\\n``, or
    ``assistant\\n`` on a line of its own when the special tokens were stripped): the response starts
    the first assistant turn, and may go on with tool responses and further assistant turns (verl's
    multi-turn agent loop appends them to the response). Messages, tool calls and pairing as in
    :func:`parse_chat_text`, over the prompt and the response together.

    Raises :class:`calib.records.RecordError` with the reason when the sample cannot be split: a
    prompt or response that is not a string, a prompt without role markers or not ending with the
    marker, an empty response, a tool response with no call to answer."""
    t = _template(template)
    if not isinstance(input_text, str):
        raise RecordError(f"input should be a string (the decoded prompt), got {type(input_text).__name__}")
    if not isinstance(output_text, str):
        raise RecordError(f"output should be a string (the decoded response), got {type(output_text).__name__}")
    with_tokens, stripped = t.generation_markers()
    prompt = input_text
    if t.start in prompt and prompt.endswith(with_tokens):
        body, closed = prompt[: -len(with_tokens)], False
    elif t.start not in prompt and prompt.endswith(stripped) and (
            len(prompt) == len(stripped) or prompt[-len(stripped) - 1] == "\n"):
        body, closed = prompt[: -len(stripped)], True
    else:
        if t.start not in prompt and not t.stripped_header().search(prompt):
            raise RecordError(f"input has no chat role markers: it was not rendered with the {t.name} template")
        raise RecordError(f"input does not end with the assistant generation marker ({with_tokens!r}, or "
                          f"{stripped!r} with the special tokens stripped): cannot tell where the response "
                          f"starts; its end: {input_text[-60:]!r}")
    if not _strip_special(output_text.replace(t.end, ""), t).strip():
        raise RecordError("output is empty: the response has no text")
    segments = _segments(body, t, closed=closed, what="input") if body.strip() else []
    segments += _segments(output_text, t, lead_role="assistant", what="output")
    return _messages(segments, t)
