"""verl rollout dumps (``trainer.rollout_data_dir``) -> native records.

verl's trainer (``RayPPOTrainer._write_generations``, the same in ``verl/trainer/ppo/v1``) writes one
JSONL file per training step, ``{global_steps}.jsonl``, one sample per line (no verl package is
needed to read them)::

    {"input": <decoded prompt>, "output": <decoded response>, "gts": <ground truth or null>,
     "score": <token_level_scores summed>, "step": <int>, ...every reward-extra-info key with one value
     per sample (e.g. "acc", "request_id"; the v1 trainer adds "uid": "{uid}_{rollout}_{output}")}

``input`` and ``output`` are ``tokenizer.batch_decode(..., skip_special_tokens=True)`` of the prompt
and response ids, so the chat template's special tokens are gone; :func:`calib.ingest.chat_text.
split_verl_sample` splits them back into messages (hermes tool calls, tool responses; the known
ambiguity of that form is in its docstring).

Mapping: one line is one episode. ``run_id`` is ``--run-id``, else the folder's name; ``iteration``
and ``info.step`` are the step. The group is the prompt's uid when the line has one (the v1 key's
``_{rollout}_{output}`` suffix stripped), else a hash of the prompt text within the step: GRPO groups
the samples of one prompt. The task is the prompt hash (verl's uids are new random ids every step, so
they cannot name a task across steps). ``outcome`` is the score and ``success`` is
``score >= success_threshold``. Every other numeric key becomes an episode-level signal
``verl:<key>``; ``gts``, ``uid`` and ``request_id`` are kept in ``info``, other values in
``info.extra``. A tool call that verl never ran (it stopped at its turn or length limit right after
the call, or the call was past ``max_parallel_calls``) gets an empty result (``content`` null),
counted in ``info.unanswered_tool_calls``, so the episode keeps its last turn.
"""

from __future__ import annotations

import hashlib
import re
from collections.abc import Iterator
from pathlib import Path
from typing import Any

from calib.ingest.chat_text import split_verl_sample
from calib.ingest.components import (
    DEFAULT_SUCCESS_THRESHOLD,
    component_signals,
    reward_value,
    threshold_free_id,
)
from calib.ingest.readers import first_record, iter_jsonl
from calib.jsonlimits import DEFAULT_MAX_RECORD_BYTES
from calib.records import RecordError

SOURCE = "verl"
_STEP_FILE = re.compile(r"^[0-9]+\.jsonl$")
_V1_SUFFIX = re.compile(r"_\d+_\d+$")  # the v1 trainer's uid key: {uid}_{rollout}_{output}
# What _write_generations writes itself, and the ids kept in info: never signals.
_FIELDS = frozenset({"input", "output", "gts", "score", "step", "uid", "request_id"})
SNIFF_KEYS = ("input", "output", "score", "step")

Item = tuple[str, int | None, dict[str, Any] | None, str | None, Any]


# ----------------------------------------------------------------------------- detection


def sniff_verl(rec: Any) -> bool:
    """A JSONL record that ``_write_generations`` wrote: an object with input, output, score and step."""
    return isinstance(rec, dict) and all(k in rec for k in SNIFF_KEYS)


def verl_files(path: Path) -> list[Path]:
    """The ``<step>.jsonl`` files directly in a folder (a rollout_data_dir), by step number."""
    if not path.is_dir():
        return []
    files = [p for p in path.iterdir() if _STEP_FILE.match(p.name) and p.is_file()]
    return sorted(files, key=lambda p: int(p.stem))


def is_verl_dir(path: Path, max_bytes: int = DEFAULT_MAX_RECORD_BYTES) -> bool:
    """A rollout_data_dir: ``<step>.jsonl`` files, the first of which starts with a verl sample (its
    first line that is JSON, as ``calib.ingest.readers.first_record`` finds it)."""
    files = verl_files(path)
    return bool(files) and sniff_verl(first_record(files[0], max_bytes))


# ----------------------------------------------------------------------------- reading


def default_run(path: Path) -> str:
    """The run id of a dump: the rollout_data_dir's name (a file's folder)."""
    folder = path.resolve() if path.is_dir() else path.resolve().parent
    return folder.name or path.stem or "verl"


def iter_verl(path: Path, *, run_id: str, threshold: float = DEFAULT_SUCCESS_THRESHOLD,
              max_bytes: int = DEFAULT_MAX_RECORD_BYTES) -> Iterator[Item]:
    """Yield ``(file, line, native_record | None, error | None, raw)`` for one ``{step}.jsonl`` file or a
    rollout_data_dir (its ``<step>.jsonl`` files in step order); ``max_bytes`` bounds each line."""
    for f in verl_files(path) if path.is_dir() else [path]:
        file_step = int(f.stem) if _STEP_FILE.match(f.name) else None
        for line, rec, err, raw in iter_jsonl(f, max_bytes):
            if err is not None:
                yield str(f), line, None, err, raw
                continue
            try:
                yield str(f), line, sample_to_native(rec, run_id=run_id, threshold=threshold, line=line,
                                                    file_step=file_step), None, None
            except RecordError as e:
                yield str(f), line, None, str(e), rec


# ----------------------------------------------------------------------------- conversion


def _step(rec: dict[str, Any], file_step: int | None) -> int:
    step = rec.get("step", file_step)
    if isinstance(step, float) and step.is_integer():
        step = int(step)
    if step is None:
        raise RecordError("missing field 'step'")
    if isinstance(step, bool) or not isinstance(step, int):
        raise RecordError(f"step should be an integer, got {type(step).__name__} {step!r}"[:200])
    return step


def _prompt_key(text: str) -> str:
    return "prompt-" + hashlib.sha256(text.encode("utf-8")).hexdigest()[:12]


def _answer_open_calls(messages: list[dict[str, Any]]) -> int:
    """Give every call that no tool message answers an empty result (content null) right where its
    results belong (before the next message that is not a tool result); returns how many."""
    out: list[dict[str, Any]] = []
    pending: list[dict[str, Any]] = []
    added = 0

    def close() -> None:
        nonlocal added
        for c in pending:
            out.append({"role": "tool", "content": None, "tool_call_id": c["id"], "name": c["name"]})
            added += 1
        pending.clear()

    for m in messages:
        if m["role"] == "tool":
            pending[:] = [c for c in pending if c["id"] != m.get("tool_call_id")]
        else:
            close()
            if m["role"] == "assistant":
                pending.extend(m.get("tool_calls") or [])
        out.append(m)
    close()
    messages[:] = out
    return added


def sample_to_native(rec: Any, *, run_id: str, threshold: float = DEFAULT_SUCCESS_THRESHOLD,
                     line: int | None = None, file_step: int | None = None, template: str = "chatml"
                     ) -> dict[str, Any]:
    """One line of ``{step}.jsonl`` -> a native record with ``info["signals"]``.

    ``line`` (the sample's line in its step file) goes into ``info.sample_index``: GRPO often samples
    the same response twice for one prompt, and those are two episodes, not a duplicate."""
    if not isinstance(rec, dict):
        raise RecordError(f"record should be a JSON object, got {type(rec).__name__}")
    for k in ("input", "output"):
        if k not in rec:
            raise RecordError(f"missing field {k!r}")
    outcome = reward_value(rec.get("score"), "score")
    step = _step(rec, file_step)
    messages = split_verl_sample(rec["input"], rec["output"], template=template)
    unanswered = _answer_open_calls(messages)
    uid = rec.get("uid")
    if uid is not None and (isinstance(uid, bool) or not isinstance(uid, (str, int))):
        raise RecordError(f"uid should be a string, got {type(uid).__name__}")
    prompt = _prompt_key(rec["input"])
    group = _V1_SUFFIX.sub("", str(uid)) if uid is not None else prompt
    extra = {k: v for k, v in rec.items() if k not in _FIELDS}
    info = {
        "source_format": SOURCE,
        "step": step,
        "sample_index": line,
        "uid": uid,
        "request_id": rec.get("request_id"),
        "gts": rec.get("gts"),
        "extra": {k: v for k, v in extra.items() if not isinstance(v, (int, float))} or None,
        "unanswered_tool_calls": unanswered or None,
        "recorded_reward": outcome,
        "success_threshold": threshold,
        "signals": component_signals(SOURCE, extra),
    }
    native = {
        "run_id": run_id,
        "iteration": step,
        "task_id": prompt,
        "group_id": f"{run_id}/{step}/{group}",
        "outcome": outcome,
        "success": outcome >= threshold - 1e-9,
        "messages": messages,
        "info": {k: v for k, v in info.items() if v is not None},
    }
    return {"episode_id": threshold_free_id(native), **native}
