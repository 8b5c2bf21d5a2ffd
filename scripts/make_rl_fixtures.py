"""Write the verifiers and ART fixtures in tests/data/ with each library's own serialisation code.

Neither library is a calib dependency (both pull large stacks), so the fixtures are committed and this
script says how they were made. One scenario for all of them: a weather-lookup agent, 3 tasks x 3
rollouts, multi-turn tool calls (call ``lookup_weather``, read the result, answer), partial rewards that
vary inside each group, reward components, one truncated rollout (and, for verifiers, one errored).

    # verifiers results.jsonl + metadata.json: verifiers 0.1.x (state_to_output, save_outputs, save_metadata)
    python scripts/make_rl_fixtures.py verifiers-results tests/data/verifiers/results
    # verifiers traces.jsonl: verifiers >= 0.4 (v1 Episode/Trace, Episode.to_record as the eval writes it)
    python scripts/make_rl_fixtures.py verifiers-traces tests/data/verifiers/traces
    # ART: openpipe-art (write_trajectory_groups_parquet; the JSONL and YAML of older releases)
    python scripts/make_rl_fixtures.py art tests/data/art

The fixtures in the repository were written with verifiers 0.1.14 and openpipe-art 0.5.18 (their wheels
unpacked with ``pip download --no-deps`` and put on ``PYTHONPATH`` next to calib's environment, which
has the pydantic, openai, datasets, litellm and pyyaml those modules import; set
``LITELLM_LOCAL_MODEL_COST_MAP=True`` for ART offline), and verifiers 0.4.0 in a throwaway venv
(``python -m venv v && v/bin/pip install verifiers==0.4.0``).
"""

from __future__ import annotations

import json
import sys
from pathlib import Path

CITIES = ["Paris", "Lima", "Oslo"]
TEMPS = {"Paris": 18, "Lima": 24, "Oslo": 7}
# (correct, format_ok, truncated, errored) per rollout, 3 rollouts per task
PLAN = [
    [(1, 1, False, False), (0, 1, False, False), (1, 0, False, False)],
    [(0, 0, False, False), (1, 1, False, False), (0, 1, True, False)],
    [(1, 1, False, False), (0, 0, False, False), (0, 0, False, True)],
]
W_CORRECT, W_FORMAT = 0.8, 0.2


def _conversation(task: int, k: int, correct: int, fmt: int, truncated: bool):
    """(prompt, completion) as OpenAI-style dicts; the completion has two tool calls."""
    city = CITIES[task]
    prompt = [{"role": "system", "content": "You answer weather questions. Use the tools."},
              {"role": "user", "content": f"What is the temperature in {city} today?"}]
    call1 = {"id": f"call_{task}{k}a", "type": "function",
             "function": {"name": "lookup_weather", "arguments": json.dumps({"city": city})}}
    completion = [
        {"role": "assistant", "content": "", "tool_calls": [call1]},
        {"role": "tool", "tool_call_id": call1["id"], "content": json.dumps({"city": city, "temp_c": TEMPS[city]})},
    ]
    if truncated:
        return prompt, completion
    call2 = {"id": f"call_{task}{k}b", "type": "function",
             "function": {"name": "convert_units", "arguments": json.dumps({"celsius": TEMPS[city]})}}
    completion += [
        {"role": "assistant", "content": "Converting as well.", "tool_calls": [call2]},
        {"role": "tool", "tool_call_id": call2["id"], "content": json.dumps({"fahrenheit": TEMPS[city] * 9 / 5 + 32})},
    ]
    temp = TEMPS[city] if correct else TEMPS[city] + 5
    answer = f"<answer>{temp} C</answer>" if fmt else f"It is {temp} C."
    completion.append({"role": "assistant", "content": answer})
    return prompt, completion


def verifiers_results(out: Path) -> None:
    from verifiers.utils.save_utils import save_metadata, save_outputs, state_to_output

    outputs = []
    for task, plan in enumerate(PLAN):
        for k, (correct, fmt, truncated, errored) in enumerate(plan):
            prompt, completion = _conversation(task, k, correct, fmt, truncated)
            if errored:
                completion = completion[:2]
            metrics = {"correct_answer": float(correct), "format_ok": float(fmt),
                       "num_tool_calls": float(sum(len(m.get("tool_calls") or []) for m in completion))}
            state = {
                "example_id": task, "prompt": prompt, "completion": completion, "answer": str(TEMPS[CITIES[task]]),
                "info": {"city": CITIES[task]},
                "reward": 0.0 if errored else W_CORRECT * correct + W_FORMAT * fmt,
                "metrics": {} if errored else metrics,
                "timing": {"generation_ms": 120.0 + k, "scoring_ms": 3.0, "total_ms": 123.0 + k},
                "is_completed": not truncated and not errored, "is_truncated": truncated,
                "stop_condition": "max_turns" if truncated else ("has_error" if errored else "no_tools"),
                "tool_defs": [{"name": "lookup_weather", "description": "Weather for a city",
                               "parameters": {"type": "object", "properties": {"city": {"type": "string"}}}}],
            }
            if errored:
                state["error"] = {"error": "ModelError", "error_chain_repr": "ModelError('upstream 503')",
                                  "error_chain_str": "ModelError: upstream 503"}
            outputs.append(state_to_output(state))
    save_outputs(outputs, out)
    save_metadata({"env_id": "weather-tools", "env_args": {}, "model": "tiny-agent-v1", "base_url": "http://localhost",
                   "num_examples": 3, "rollouts_per_example": 3, "sampling_args": {"temperature": 1.0},
                   "date": "2026-12-02", "time": 1.0, "avg_reward": 0.0, "avg_metrics": {}, "avg_error": 0.0,
                   "pass_at_k": {}, "pass_all_k": {}, "pass_threshold": 1.0, "usage": None,
                   "version_info": {}, "state_columns": [], "path_to_save": out, "tools": None}, out)


def verifiers_traces(out: Path) -> None:
    from verifiers.v1.episode import Episode, GroupInfo
    from verifiers.v1.graph import MessageNode
    from verifiers.v1.trace import Error, Trace, TraceTask
    from verifiers.v1.types import AssistantMessage, SystemMessage, ToolCall, ToolMessage, UserMessage

    out.mkdir(parents=True, exist_ok=True)
    lines = []
    for task, plan in enumerate(PLAN):
        for k, (correct, fmt, truncated, errored) in enumerate(plan):
            prompt, completion = _conversation(task, k, correct, fmt, truncated)
            msgs = []
            for m in prompt + completion:
                if m["role"] == "system":
                    msgs.append((SystemMessage(content=m["content"]), False))
                elif m["role"] == "user":
                    msgs.append((UserMessage(content=m["content"]), False))
                elif m["role"] == "tool":
                    msgs.append((ToolMessage(tool_call_id=m["tool_call_id"], content=m["content"]), False))
                else:
                    calls = [ToolCall(id=c["id"], name=c["function"]["name"], arguments=c["function"]["arguments"])
                             for c in m.get("tool_calls") or []] or None
                    msgs.append((AssistantMessage(content=m["content"], tool_calls=calls), True))
            nodes = [MessageNode(parent=i - 1 if i else None, message=msg, sampled=s, timestamp=1.0 + i)
                     for i, (msg, s) in enumerate(msgs)]
            data = {"prompt": f"weather in {CITIES[task]}", "idx": task}
            tr = Trace.model_validate({"task": {"type": "WeatherTask", "data": data, "key": f"weather-{task}"},
                                       "agent": {"config": {"model": "tiny-agent-v1"}}, "nodes": nodes})
            if errored:
                tr.record_error(RuntimeError("sandbox died"))
            else:
                tr.record_reward("correct_answer", correct, W_CORRECT)
                tr.record_reward("format_ok", fmt, W_FORMAT)
                tr.record_metric("num_tool_calls", sum(len(m.get("tool_calls") or []) for m in completion))
                tr.ok = True
                tr.stop("max_turns" if truncated else "no_tools")
            ep = Episode(task=TraceTask(type="WeatherTask", data=tr.task.data, key=f"weather-{task}"),
                         group=GroupInfo(id=f"weather-{task}"), traces=[tr], ok=tr.ok,
                         errors=[Error(type="RuntimeError", message="sandbox died")] if errored else [])
            lines.append(json.dumps(ep.to_record()))
    (out / "traces.jsonl").write_text("\n".join(lines) + "\n", encoding="utf-8")


def art(out: Path) -> None:
    import yaml
    from art import Trajectory, TrajectoryGroup
    from art.utils.trajectory_logging import write_trajectory_groups_parquet
    from art.utils.trajectory_migration import serialize_trajectory_groups, trajectory_group_to_dict
    from openai.types.chat.chat_completion import Choice

    groups = []
    for task, plan in enumerate(PLAN):
        trajs = []
        for k, (correct, fmt, truncated, errored) in enumerate(plan):
            prompt, completion = _conversation(task, k, correct, fmt, truncated)
            items = list(prompt)
            for m in completion:
                if m["role"] == "assistant":  # what the model generated: an OpenAI Choice
                    finish = "tool_calls" if m.get("tool_calls") else "stop"
                    items.append(Choice(index=0, finish_reason=finish, message={**m, "role": "assistant"}))
                else:
                    items.append(m)
            if truncated:
                items.append(Choice(index=0, finish_reason="length",
                                    message={"role": "assistant", "content": "The temperature in"}))
            reward = -1.0 if errored else W_CORRECT * correct + W_FORMAT * fmt
            trajs.append(Trajectory(messages_and_choices=items, reward=reward,
                                    metrics={"correct": correct, "format_ok": fmt, "truncated": truncated,
                                             "num_tool_calls": sum(len(m.get("tool_calls") or []) for m in completion)},
                                    metadata={"rollout": k, "city": CITIES[task]}))
        groups.append(TrajectoryGroup(trajectories=trajs, metadata={"scenario_id": f"weather-{task}"}))
    split = out / "proj" / "models" / "agent-001" / "trajectories"
    (split / "train").mkdir(parents=True, exist_ok=True)
    (split / "val").mkdir(parents=True, exist_ok=True)
    write_trajectory_groups_parquet(groups, split / "train" / "0003.parquet")
    write_trajectory_groups_parquet(groups[:2], split / "val" / "0000.parquet")
    (out / "legacy").mkdir(exist_ok=True)
    (out / "legacy" / "0001.jsonl").write_text(serialize_trajectory_groups(groups) + "\n", encoding="utf-8")
    (out / "legacy" / "0002.yaml").write_text(yaml.dump([trajectory_group_to_dict(g) for g in groups]),
                                              encoding="utf-8")


if __name__ == "__main__":
    kind, dest = sys.argv[1], Path(sys.argv[2])
    {"verifiers-results": verifiers_results, "verifiers-traces": verifiers_traces, "art": art}[kind](dest)
    print(f"wrote {kind} fixtures to {dest}")
