"""The model being trained, as a rollout policy.

``TrainingPolicy`` plays episodes through the same runner as every other policy
(``calib.rollout.play_episode``), generating with the trainer's model through a generation backend
(local transformers, or TRL's vLLM engine), the turns of all episodes in flight batched together
(``calib.batcher``). Two things differ
from the ``hf`` policy, both so that training sees exactly the context each turn was sampled in:

- earlier assistant turns are shown to the model as the raw text it generated (not re-serialised
  from the parsed tool calls), the same form ``trainer.tokenize`` renders for the loss;
- every reply carries ``_meta = {text, prompt_ids, completion_ids, logprobs}``, which the runner hands
  back per turn, so the sampled token ids (and their sampling log-probabilities, for TRL's
  importance-sampling correction) can be spliced into the training sequence.

``PromptView`` optionally shrinks what the model is shown (a short system prompt, tool schemas
without descriptions): a CPU budget knob for tests and demos. The stored episode keeps the
domain's full messages; generation and tokenisation apply the same view.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

from calib.policies.base import EpisodeContext
from calib.policies.hf import BatchedPolicy, parse_reply
from trainer.tokenize import training_messages

TOOL_DETAILS = ("full", "compact", "minimal")


def _strip_descriptions(obj: Any) -> Any:
    if isinstance(obj, dict):
        return {k: _strip_descriptions(v) for k, v in obj.items() if k != "description"}
    if isinstance(obj, list):
        return [_strip_descriptions(v) for v in obj]
    return obj


def _minimal(tool: dict[str, Any]) -> dict[str, Any]:
    fn = tool.get("function", tool)
    params = fn.get("parameters") or {}
    props = {k: {"type": v.get("type", "string")} for k, v in (params.get("properties") or {}).items()}
    out = {"type": "object", "properties": props}
    if params.get("required"):
        out["required"] = list(params["required"])
    return {"type": "function", "function": {"name": fn["name"], "parameters": out}}


@dataclass(frozen=True)
class PromptView:
    """What the policy is shown. ``system_prompt``: None keeps the domain's policy text.
    ``tool_detail``: ``full`` (as the domain defines them), ``compact`` (no descriptions),
    ``minimal`` (names, argument names and types). ``visible_tools``: None shows every tool, else
    only these (the environment still accepts any call: an unseen tool is not an unknown one)."""

    system_prompt: str | None = None
    tool_detail: str = "full"
    visible_tools: tuple[str, ...] | None = None

    def __post_init__(self) -> None:
        if self.tool_detail not in TOOL_DETAILS:
            raise ValueError(f"tool_detail={self.tool_detail!r}: expected one of {', '.join(TOOL_DETAILS)}")

    def messages(self, messages: list[dict[str, Any]]) -> list[dict[str, Any]]:
        if self.system_prompt is None or not messages or messages[0].get("role") != "system":
            return messages
        return [{**messages[0], "content": self.system_prompt}, *messages[1:]]

    def tools(self, tools: list[dict[str, Any]] | None) -> list[dict[str, Any]] | None:
        if tools and self.visible_tools is not None:
            tools = [t for t in tools if t.get("function", t).get("name") in self.visible_tools]
        if not tools or self.tool_detail == "full":
            return tools
        if self.tool_detail == "compact":
            return _strip_descriptions(tools)
        return [_minimal(t) for t in tools]


class TrainingPolicy(BatchedPolicy):
    """Generates with the trainer's model: ``chat`` (a :class:`calib.hf_chat.HFChatModel` around it)
    renders and decodes; ``backend`` generates (local transformers by default, TRL's vLLM engine when
    the trainer runs with ``use_vllm``), batched across the episodes in flight."""

    def __init__(self, chat: Any, *, view: PromptView | None = None, name: str = "train", backend: Any = None,
                 max_batch: int | None = None, collective: Any = None):
        super().__init__(chat, backend=backend, max_batch=max_batch, collective=collective)
        self.view = view or PromptView()
        self.name = name

    def to_template(self, messages: list[dict[str, Any]], tools: list[dict[str, Any]] | None):
        """Messages as the chat template receives them (what ``trainer.tokenize`` must render too)."""
        return self.chat.to_template_messages(self.view.messages(messages), self.view.tools(tools))

    async def act(
        self, messages: list[dict[str, Any]], tools: list[dict[str, Any]], ctx: EpisodeContext
    ) -> dict[str, Any]:
        raws: list[str] = ctx.state.setdefault("raw_texts", [])
        seed = ctx.rng.randrange(2**31)
        # render_ids applies to_template_messages itself, exactly as to_template() does.
        shown = self.view.messages(training_messages(messages, raws))
        prompt_ids = self.chat.render_ids(shown, self.view.tools(tools))
        text, out = await self.complete(prompt_ids, seed)
        raws.append(text)
        meta = {"text": text, "prompt_ids": prompt_ids, "completion_ids": out.ids, "logprobs": out.logprobs}
        return parse_reply(text, turn=len(raws) - 1, meta=meta)
