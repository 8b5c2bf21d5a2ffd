"""A local transformers chat model: load it, render conversations with its chat template, generate.

Shared by the ``hf`` policy and the ``hf`` user simulator. Tool-calling conventions follow
Qwen/Hermes: the model writes ``<tool_call>{"name": ..., "arguments": {...}}</tool_call>`` and reads
tool results as ``tool`` messages. Chat templates differ in what they support, so the template is
probed once: when it renders ``tools`` and ``tool_calls`` itself (Qwen2.5, Qwen3, Hermes), those are
passed through; when it does not (SmolLM2's template knows only role and content), the tool list is
written into the system message and earlier calls into the assistant text, in the same Hermes format,
so the model always sees the tools and its own past calls.

torch and transformers are imported inside the functions (docs/architecture.md section 11).
"""

from __future__ import annotations

import json
import re
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

TOOL_CALL_RE = re.compile(r"<tool_call>(.*?)(</tool_call>|$)", re.DOTALL)

_TOOLS_HEADER = (
    "You can call functions. Their signatures, as JSON, are listed between <tools> and </tools>.\n"
    "To call one, reply with a JSON object inside <tool_call></tool_call> tags, for example:\n"
    '<tool_call>{"name": "function_name", "arguments": {"arg": "value"}}</tool_call>'
)


def render_tool_call(name: str, arguments: Any) -> str:
    return "<tool_call>" + json.dumps({"name": name, "arguments": arguments}) + "</tool_call>"


def tools_system_block(tools: list[dict[str, Any]]) -> str:
    """Hermes-style tool list for templates that do not render ``tools`` themselves."""
    sigs = "\n".join(json.dumps(t.get("function", t)) for t in tools)
    return f"{_TOOLS_HEADER}\n<tools>\n{sigs}\n</tools>"


def parse_tool_calls(text: str) -> tuple[str, list[dict[str, Any]], bool]:
    """Split a generation into (visible text, tool calls, invalid).

    ``invalid`` is True when the text opens a ``<tool_call>`` whose body is not a JSON object with a
    string ``name`` (unterminated, truncated by max_new_tokens, or malformed JSON). ``arguments`` may
    also be spelled ``parameters`` (some Hermes fine-tunes do), and may be a JSON string.
    """
    calls: list[dict[str, Any]] = []
    invalid = False
    for m in TOOL_CALL_RE.finditer(text):
        body = m.group(1).strip()
        try:
            obj = json.loads(body)
        except json.JSONDecodeError:
            invalid = True
            continue
        if not isinstance(obj, dict) or not isinstance(obj.get("name"), str) or not obj["name"]:
            invalid = True
            continue
        args = obj.get("arguments", obj.get("parameters", {}))
        if isinstance(args, str):
            try:
                args = json.loads(args) if args.strip() else {}
            except json.JSONDecodeError:
                invalid = True
                continue
        if not isinstance(args, dict):
            invalid = True
            continue
        calls.append({"name": obj["name"], "arguments": args})
    visible = TOOL_CALL_RE.sub("", text).strip()
    return visible, calls, invalid


@dataclass
class GenerationConfig:
    """Sampling settings for a local model."""

    max_new_tokens: int = field(default=256, metadata={"help": "Tokens generated per turn at most."})
    temperature: float = field(default=0.7, metadata={"help": "Sampling temperature; 0 means greedy decoding."})
    top_p: float = field(default=1.0, metadata={"help": "Nucleus sampling mass (1.0 = off)."})
    prefix_cache_tokens: int = field(
        default=32768,
        metadata={"help": "Tokens of earlier turns whose keys/values are kept for reuse (0 = off)."},
    )

    def __post_init__(self) -> None:
        self.sampling()  # validates max_new_tokens, temperature and top_p (one place: calib.generation)
        if self.prefix_cache_tokens < 0:
            raise ValueError(f"prefix_cache_tokens={self.prefix_cache_tokens} should be >= 0 (0 = off)")

    def sampling(self) -> Any:
        """These settings as the generation backend's :class:`calib.generation.SamplingSettings`."""
        from calib.generation import SamplingSettings

        return SamplingSettings(max_new_tokens=self.max_new_tokens, temperature=self.temperature, top_p=self.top_p)


def load_model(path: str | Path, *, device: str = "cpu", gguf_file: str | None = None) -> tuple[Any, Any]:
    """(model, tokenizer) in eval mode from ``tiny``, a local directory or a hub id (``gguf_file`` loads
    a GGUF inside it; needs `gguf`). Errors are one line (:func:`calib.models.load_pretrained`)."""
    from calib.models import load_pretrained

    model, tok = load_pretrained(str(path), device=device, gguf_file=gguf_file)
    model.eval()
    return model, tok


class HFChatModel:
    """A model + tokenizer pair with its chat template probed once.

    Generation goes through :meth:`backend` (a :class:`calib.generation.LocalBackend`: batched, one
    batch at a time on the model); ``generate`` is the one-conversation convenience over it.
    """

    def __init__(self, model: Any, tokenizer: Any, generation: GenerationConfig | None = None):
        self.model = model
        self.tokenizer = tokenizer
        self.generation = generation or GenerationConfig()
        self._backend: Any = None
        self.native_tools, self.native_calls = self._probe_template()

    @classmethod
    def from_path(cls, path: str | Path, *, device: str = "cpu", gguf_file: str | None = None,
                  generation: GenerationConfig | None = None) -> HFChatModel:
        model, tok = load_model(path, device=device, gguf_file=gguf_file)
        return cls(model, tok, generation)

    def _render(self, messages: list[dict[str, Any]], tools: list[dict[str, Any]] | None) -> str:
        kw: dict[str, Any] = {"tokenize": False, "add_generation_prompt": True}
        if tools:
            kw["tools"] = tools
        return self.tokenizer.apply_chat_template(messages, **kw)

    def _probe_template(self) -> tuple[bool, bool]:
        probe_tool = {"type": "function", "function": {"name": "zz_probe_tool", "description": "probe",
                                                       "parameters": {"type": "object", "properties": {}}}}
        try:
            native_tools = "zz_probe_tool" in self._render([{"role": "user", "content": "hi"}], [probe_tool])
        except Exception:  # noqa: BLE001 - templates raise anything on inputs they do not expect
            native_tools = False
        call_msg = {"role": "assistant", "content": "",
                    "tool_calls": [{"type": "function", "function": {"name": "zz_probe_call", "arguments": {}}}]}
        try:
            native_calls = "zz_probe_call" in self._render([{"role": "user", "content": "hi"}, call_msg], None)
        except Exception:  # noqa: BLE001
            native_calls = False
        return native_tools, native_calls

    def to_template_messages(
        self, messages: list[dict[str, Any]], tools: list[dict[str, Any]] | None
    ) -> tuple[list[dict[str, Any]], list[dict[str, Any]] | None]:
        """Canonical messages -> what this template accepts (strings only where it needs them)."""
        out: list[dict[str, Any]] = []
        for m in messages:
            role, content = m["role"], m.get("content") or ""
            calls = m.get("tool_calls") or []
            if role == "assistant" and calls:
                if self.native_calls:
                    out.append({"role": "assistant", "content": content, "tool_calls": [
                        {"type": "function", "function": {"name": c["name"], "arguments": c["arguments"]}}
                        for c in calls]})
                else:
                    text = "\n".join([content] * bool(content) + [render_tool_call(c["name"], c["arguments"])
                                                                  for c in calls])
                    out.append({"role": "assistant", "content": text})
            elif role == "tool" and not self.native_calls:
                out.append({"role": "tool", "content": f"<tool_response>\n{content}\n</tool_response>"})
            else:
                out.append({"role": role, "content": content})
        if tools and not self.native_tools:
            block = tools_system_block(tools)
            if out and out[0]["role"] == "system":
                out[0] = {"role": "system", "content": out[0]["content"] + "\n\n" + block}
            else:
                out.insert(0, {"role": "system", "content": block})
            tools = None
        return out, tools

    def render_ids(self, messages: list[dict[str, Any]], tools: list[dict[str, Any]] | None = None) -> list[int]:
        """Prompt token ids of a conversation, ready for the next assistant turn (template applied)."""
        msgs, tools = self.to_template_messages(messages, tools)
        prompt = self._render(msgs, tools)
        return list(self.tokenizer(prompt, add_special_tokens=False)["input_ids"])

    def decode(self, completion_ids: list[int]) -> str:
        """A completion's text (special tokens, such as the end-of-turn token, removed)."""
        return self.tokenizer.decode(completion_ids, skip_special_tokens=True)

    def backend(self) -> Any:
        """The batched local generation backend over this model (built once, with these settings)."""
        if self._backend is None:
            from calib.generation import LocalBackend

            g = self.generation
            self._backend = LocalBackend(self.model, self.tokenizer, g.sampling(),
                                         prefix_cache_tokens=g.prefix_cache_tokens)
        return self._backend

    def generate(self, messages: list[dict[str, Any]], tools: list[dict[str, Any]] | None = None,
                 *, seed: int | None = None) -> tuple[str, list[int], list[int]]:
        """One conversation, one turn: (completion text, prompt token ids, completion token ids).

        Blocking; a batch of one through :meth:`backend`. Rollouts of many episodes go through
        :class:`calib.batcher.TurnBatcher` instead, which batches the turns of all waiting episodes.
        """
        prompt_ids = self.render_ids(messages, tools)
        out = self.backend().generate([prompt_ids], [seed] if seed is not None else None)[0]
        return self.decode(out.ids), prompt_ids, out.ids
