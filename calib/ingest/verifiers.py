"""verifiers (PrimeIntellect-ai/verifiers) evaluation outputs -> native records.

Two layouts, both written by verifiers' own code (no ``verifiers`` package is needed: they are JSON):

- ``results.jsonl`` + ``metadata.json`` (``vf-eval`` and the legacy environments, ``save_outputs``):
  one rollout per line, ``example_id``, ``prompt``, ``completion``, ``reward``, ``metrics``,
  ``info``, ``answer``, ``error``, ``is_completed``, ``is_truncated``, ``stop_condition``,
  ``tool_defs``, ``timing`` ...; each assistant tool call is stored as a JSON *string* (newer files
  ``{id, name, arguments}``, older ones OpenAI's ``{id, type, function: {name, arguments}}``), its
  arguments a JSON string again. The metrics are also flattened to top-level keys (older files have
  only those).
- ``traces.jsonl`` (verifiers v1): one *episode* per line, ``{id, env, task: {type, data, key, hash},
  group?, run?, ok, errors, traces: [...]}``; each trace holds a message graph (``nodes`` with a
  ``parent`` index; the messages are the last branch), ``rewards`` (name -> ``{score, weight}``,
  null when scoring did not run), ``metrics``, ``stop_condition``, ``errors``.

Mapping: one rollout (trace) is one episode; ``example_id`` (v1: the episode's ``group.id``, else
the task key) is the task and the group; ``outcome`` is the reward (v1: the weighted sum of the
rewards, as ``Trace.reward`` computes it) and ``success`` is ``reward >= success_threshold``. A
rollout that errored keeps status ``error``; a truncated one stays ``ok`` (running out of turns is
the policy's outcome) with ``info.is_truncated`` and ``info.stop_condition``. Numeric ``metrics``
and (v1) each reward's unweighted score become ``verifiers:<name>`` signals.
"""

from __future__ import annotations

import json
from collections.abc import Iterator
from pathlib import Path
from typing import Any

from calib.ingest.components import (
    DEFAULT_SUCCESS_THRESHOLD,
    as_number,
    component_signals,
    reward_value,
    role_of,
    threshold_free_id,
    tool_calls,
)
from calib.ingest.readers import iter_jsonl
from calib.jsonlimits import DEFAULT_MAX_RECORD_BYTES, depth_error
from calib.records import RecordError

RESULTS_FILE = "results.jsonl"
TRACES_FILE = "traces.jsonl"
METADATA_FILE = "metadata.json"
SOURCE = "verifiers"
# The fields state_to_output writes itself; any other numeric top-level key is a flattened metric.
_RESULT_FIELDS = frozenset({
    "example_id", "prompt", "completion", "answer", "info", "reward", "error", "error_chain",
    "long_error_chain", "timing", "is_completed", "is_truncated", "stop_condition", "metrics", "tool_defs",
    "token_usage", "task", "id",
})
_TRUNCATION = frozenset({"max_turns", "max_input_tokens", "max_output_tokens", "max_total_tokens",
                         "context_length"})

Item = tuple[str, int | None, dict[str, Any] | None, str | None, Any]


# ----------------------------------------------------------------------------- detection


def is_verifiers_dir(path: Path) -> bool:
    """A verifiers output folder: ``results.jsonl`` or ``traces.jsonl`` inside."""
    return path.is_dir() and ((path / RESULTS_FILE).is_file() or (path / TRACES_FILE).is_file())


def sniff_verifiers(rec: Any) -> bool:
    """The first record of a JSONL file looks like a verifiers rollout or v1 episode."""
    if not isinstance(rec, dict):
        return False
    if "example_id" in rec and ("completion" in rec or "prompt" in rec):
        return True
    return isinstance(rec.get("traces"), list) and isinstance(rec.get("task"), dict)


# ----------------------------------------------------------------------------- reading


def _metadata(folder: Path, max_bytes: int = DEFAULT_MAX_RECORD_BYTES) -> dict[str, Any]:
    """``metadata.json`` (the model and environment names), or {} when it is missing or unreadable: it
    is optional, so a file longer than ``max_bytes``, nested too deep or not JSON is left out."""
    try:
        if (folder / METADATA_FILE).stat().st_size > max_bytes:
            return {}
        text = (folder / METADATA_FILE).read_text(encoding="utf-8")
        doc = None if depth_error(text) else json.loads(text)
    except (OSError, ValueError, RecursionError):
        return {}
    return doc if isinstance(doc, dict) else {}


def iter_verifiers(path: Path, *, run_id: str, threshold: float = DEFAULT_SUCCESS_THRESHOLD,
                   max_bytes: int = DEFAULT_MAX_RECORD_BYTES) -> Iterator[Item]:
    """Yield ``(file, line, native_record | None, error | None, raw)`` for a folder or one JSONL file;
    ``max_bytes`` bounds each line (``calib.ingest.readers.iter_jsonl``)."""
    files = [path / RESULTS_FILE, path / TRACES_FILE] if path.is_dir() else [path]
    for f in files:
        if not f.is_file():
            continue
        meta = _metadata(f.parent, max_bytes)
        for line, rec, err, raw in iter_jsonl(f, max_bytes):
            if err is not None:
                yield str(f), line, None, err, raw
                continue
            try:
                if isinstance(rec, dict) and "traces" in rec and "example_id" not in rec:
                    natives = episode_to_native(rec, run_id=run_id, threshold=threshold)
                else:
                    natives = [result_to_native(rec, run_id=run_id, metadata=meta, threshold=threshold, index=line)]
            except RecordError as e:
                yield str(f), line, None, str(e), rec
                continue
            for nat in natives:
                if isinstance(nat, RecordError):
                    yield str(f), line, None, str(nat), rec
                else:
                    yield str(f), line, nat, None, None


# ----------------------------------------------------------------------------- messages


def _messages(value: Any, role: str, field: str) -> list[dict[str, Any]]:
    """verifiers messages -> canonical ones; a plain string is one message of ``role``."""
    if value is None:
        return []
    if isinstance(value, str):
        return [{"role": role, "content": value}]
    if not isinstance(value, list):
        raise RecordError(f"{field} should be a list of messages or a string")
    out = []
    for i, m in enumerate(value):
        where = f"{field}[{i}]"
        if not isinstance(m, dict):
            raise RecordError(f"{where} should be an object")
        msg = {"role": role_of(m.get("role")), "content": m.get("content")}
        calls = tool_calls(m.get("tool_calls"), where)
        if calls:
            msg["tool_calls"] = calls
        if m.get("tool_call_id") is not None:
            msg["tool_call_id"] = m["tool_call_id"]
        if m.get("name") is not None and m.get("role") == "tool":
            msg["name"] = m["name"]
        out.append(msg)
    return out


# ----------------------------------------------------------------------------- results.jsonl


def result_to_native(rec: Any, *, run_id: str, metadata: dict[str, Any] | None = None,
                     threshold: float = DEFAULT_SUCCESS_THRESHOLD, index: int | None = None) -> dict[str, Any]:
    """One ``results.jsonl`` rollout (``RolloutOutput``) -> a native record with ``info["signals"]``.

    ``index`` (the line) goes into ``info``: two identical rollouts of one example are two episodes,
    not a duplicate."""
    if not isinstance(rec, dict):
        raise RecordError(f"record should be a JSON object, got {type(rec).__name__}")
    if "example_id" not in rec:
        raise RecordError("missing field 'example_id'")
    meta = metadata or {}
    outcome = reward_value(rec.get("reward"))
    messages = _messages(rec.get("prompt"), "user", "prompt") + _messages(rec.get("completion"), "assistant",
                                                                          "completion")
    metrics = rec.get("metrics")
    if not isinstance(metrics, dict):  # older files: only the flattened top-level keys
        metrics = {k: v for k, v in rec.items() if k not in _RESULT_FIELDS and as_number(v) is not None}
    task = str(rec["example_id"])
    error = rec.get("error")
    info = {
        "source_format": "verifiers",
        "example_id": rec["example_id"],
        "rollout_index": index,
        "answer": rec.get("answer"),
        "verifiers_info": rec.get("info"),
        "metrics": metrics,
        "is_completed": rec.get("is_completed"),
        "is_truncated": rec.get("is_truncated"),
        "stop_condition": rec.get("stop_condition"),
        "error": error,
        "timing": rec.get("timing"),
        "token_usage": rec.get("token_usage"),
        "env_id": meta.get("env_id"),
        "recorded_reward": outcome,
        "success_threshold": threshold,
        "signals": component_signals(SOURCE, metrics),
    }
    native = {
        "run_id": run_id,
        "iteration": 0,
        "task_id": task,
        "group_id": f"{run_id}/{task}",
        "policy": meta.get("model"),
        "outcome": outcome,
        "success": outcome >= threshold - 1e-9,
        "status": "error" if error else "ok",
        "messages": messages,
        "info": {k: v for k, v in info.items() if v is not None},
    }
    return {"episode_id": threshold_free_id(native), **native}


# ----------------------------------------------------------------------------- traces.jsonl (v1)


def _branch(nodes: list[Any]) -> list[dict[str, Any]]:
    """Messages of the trace's last branch: walk the last leaf's parents back to the root."""
    if not nodes:
        return []
    has_child = {n.get("parent") for n in nodes if isinstance(n, dict) and n.get("parent") is not None}
    leaves = [i for i in range(len(nodes)) if i not in has_child]
    path: list[int] = []
    nid: Any = leaves[-1] if leaves else len(nodes) - 1
    while nid is not None:
        if not isinstance(nid, int) or not 0 <= nid < len(nodes) or nid in path or not isinstance(nodes[nid], dict):
            raise RecordError(f"trace nodes have a broken parent link at node {nid!r}")
        path.append(nid)
        nid = nodes[nid].get("parent")
    msgs = []
    for i in reversed(path):
        m = nodes[i].get("message")
        if not isinstance(m, dict):
            raise RecordError(f"nodes[{i}].message should be an object")
        msgs.append(m)
    return msgs


def trace_reward(rewards: Any) -> float:
    """``Trace.reward``: the sum of score x weight over the rewards that were scored."""
    if rewards is None:
        return 0.0
    if not isinstance(rewards, dict):
        raise RecordError("trace rewards should be an object of name -> {score, weight}")
    total = 0.0
    for name, r in rewards.items():
        if r is None:
            continue
        if not isinstance(r, dict):
            raise RecordError(f"rewards.{name} should be {{score, weight}}")
        score = reward_value(r.get("score"), f"rewards.{name}.score")
        weight = reward_value(r.get("weight", 1.0), f"rewards.{name}.weight")
        total += score * weight
    return total


def episode_to_native(ep: Any, *, run_id: str, threshold: float = DEFAULT_SUCCESS_THRESHOLD
                      ) -> list[dict[str, Any] | RecordError]:
    """One v1 episode line -> one native record per trace (a bad trace comes back as its RecordError)."""
    if not isinstance(ep, dict):
        raise RecordError(f"episode should be a JSON object, got {type(ep).__name__}")
    traces = ep.get("traces")
    if not isinstance(traces, list):
        raise RecordError("episode 'traces' should be a list")
    task = ep.get("task") if isinstance(ep.get("task"), dict) else {}
    task_key = task.get("key") or task.get("hash")
    group = ep.get("group") if isinstance(ep.get("group"), dict) else {}
    agents = {t.get("agent", {}).get("name") for t in traces if isinstance(t, dict) and isinstance(t.get("agent"), dict)}
    run = ep.get("run") if isinstance(ep.get("run"), dict) else {}
    work = run.get("work") if isinstance(run.get("work"), dict) else {}
    iteration = work.get("step", 0) if isinstance(work.get("step"), int) else 0
    out: list[dict[str, Any] | RecordError] = []
    for k, tr in enumerate(traces):
        try:
            out.append(_trace_to_native(tr, k, ep=ep, task=task, task_key=task_key, group=group,
                                        multi_agent=len(agents) > 1, run_id=run_id, iteration=iteration,
                                        threshold=threshold))
        except RecordError as e:
            out.append(RecordError(f"traces[{k}]: {e}"))
    if not traces:
        out.append(RecordError("episode has no traces"))
    return out


def _trace_to_native(tr: Any, k: int, *, ep: dict[str, Any], task: dict[str, Any], task_key: Any,
                     group: dict[str, Any], multi_agent: bool, run_id: str, iteration: int,
                     threshold: float) -> dict[str, Any]:
    if not isinstance(tr, dict):
        raise RecordError("trace should be an object")
    t_task = tr.get("task") if isinstance(tr.get("task"), dict) else task
    key = t_task.get("key") or t_task.get("hash") or task_key
    if key is None:
        raise RecordError("trace has no task key or hash")
    outcome = trace_reward(tr.get("rewards"))
    nodes = tr.get("nodes")
    if not isinstance(nodes, list):
        raise RecordError("trace 'nodes' should be a list")
    messages = _messages(_branch(nodes), "assistant", "messages")
    agent = tr.get("agent") if isinstance(tr.get("agent"), dict) else {}
    config = agent.get("config") if isinstance(agent.get("config"), dict) else {}
    group_id = str(group.get("id") or f"{run_id}/{key}")
    if multi_agent:
        group_id += f"/{agent.get('name')}"
    rewards = tr.get("rewards") if isinstance(tr.get("rewards"), dict) else {}
    scores = {n: r.get("score") for n, r in rewards.items() if isinstance(r, dict)}
    metrics = tr.get("metrics") if isinstance(tr.get("metrics"), dict) else {}
    signals = component_signals(SOURCE, scores)
    component_signals(SOURCE, metrics, into=signals)
    errors = tr.get("errors") or []
    stop = tr.get("stop_condition")
    info = {
        "source_format": "verifiers-traces",
        "verifiers_episode_id": ep.get("id"),
        "env": ep.get("env"),
        "task_type": t_task.get("type"),
        "task_data": t_task.get("data"),
        "agent_name": agent.get("name"),
        "rewards": rewards,
        "metrics": metrics,
        "is_completed": tr.get("is_completed"),
        "is_truncated": stop in _TRUNCATION,
        "stop_condition": stop,
        "ok": tr.get("ok"),
        "errors": errors or None,
        "verifiers_info": tr.get("info") or None,
        "recorded_reward": outcome,
        "success_threshold": threshold,
        "signals": signals,
    }
    native = {
        "run_id": run_id,
        "iteration": iteration,
        "task_id": str(key),
        "group_id": group_id,
        "policy": config.get("model") if isinstance(config.get("model"), str) else None,
        "outcome": outcome,
        "success": outcome >= threshold - 1e-9,
        "status": "error" if errors else "ok",
        "messages": messages,
        "info": {k2: v for k2, v in info.items() if v is not None},
    }
    return {"episode_id": threshold_free_id(native) if tr.get("id") is None else str(tr["id"]), **native}
