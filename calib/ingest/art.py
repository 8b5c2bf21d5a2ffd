"""OpenPipe ART trajectory logs -> native records.

ART logs every step's trajectory groups under ``{project}/models/{model}/trajectories/{split}/``
(written by ART's own code; no ``art`` package is needed to read them):

- ``{step:04d}.parquet`` (``write_trajectory_groups_parquet``), one row per trajectory: the flat
  columns of the installable releases (``group_index``, ``group_metadata``/``group_metrics`` as JSON
  text, ``reward``, ``metrics``/``metadata``/``tools`` as JSON text, ``messages`` a list of
  ``{role, content, tool_calls (JSON text), tool_call_id, trainable}``), and in newer releases also
  ``format_version``, ``trajectory_index``, ``group_json`` and ``trajectory_json`` (the whole
  trajectory, authoritative when present; a group without trajectories is one row with a null
  ``trajectory_json``, skipped here);
- older ``{step:04d}.jsonl`` (one group per line, ``{"trajectories": [...]}``) and ``{step:04d}.yaml``
  (a list of groups), where a trajectory is ``{reward, metrics, metadata, messages_and_choices, logs}``
  and a *choice* (what the model generated) is ``{finish_reason, index, message}``.

Mapping: a ``TrajectoryGroup`` is a group (``<run>/<step>/<group index>``); the step (file name) is the
iteration and the split (folder) the run (``<model>/<split>`` when the folder layout names the model;
``--run-id`` overrides). The task id is the group's ``scenario_id``/``task_id``/``id`` metadata when
there is one, else a hash of the prompt. ``outcome`` is the reward, ``success`` is
``reward >= success_threshold``; metrics and metadata are kept in ``info`` and the numeric metrics
become ``art:<name>`` signals. A Parquet row's ``line`` (in the quarantine) is its row number in the
file, from 1; a YAML group's is its position in the list, from 1.
"""

from __future__ import annotations

import json
import re
from collections.abc import Iterator
from pathlib import Path
from typing import Any

from calib.ingest.components import (
    DEFAULT_SUCCESS_THRESHOLD,
    component_signals,
    first_prompt_key,
    json_object,
    reward_value,
    role_of,
    threshold_free_id,
    tool_calls,
)
from calib.ingest.readers import iter_jsonl
from calib.jsonlimits import DEFAULT_MAX_RECORD_BYTES, deeper_than, depth_error, too_deep, too_long
from calib.records import RecordError, content_hash

SOURCE = "art"
SUFFIXES = (".parquet", ".jsonl", ".yaml", ".yml")
_TASK_KEYS = ("scenario_id", "task_id", "task", "id", "scenario")
_STEP = re.compile(r"^\d+$")

Item = tuple[str, int | None, dict[str, Any] | None, str | None, Any]


# ----------------------------------------------------------------------------- detection


def is_art_parquet(path: Path) -> bool:
    """A Parquet file with ART's trajectory columns."""
    try:
        with open(path, "rb") as f:
            if f.read(4) != b"PAR1":
                return False
        import pyarrow.parquet as pq

        names = set(pq.read_schema(path).names)
    except Exception:  # noqa: BLE001 - a damaged file is not recognised by its schema; the suffix decides
        return path.suffix == ".parquet" and path.parent.parent.name == "trajectories"
    return "group_index" in names and ("messages" in names or "trajectory_json" in names)


def sniff_art(rec: Any) -> bool:
    """The first record of a JSONL file is an ART trajectory group."""
    return isinstance(rec, dict) and isinstance(rec.get("trajectories"), list) and "task" not in rec


def art_files(path: Path) -> list[Path]:
    """ART log files under a folder (a model folder, its ``trajectories/``, or one split), sorted."""
    files = [p for p in path.rglob("*") if p.is_file() and p.suffix in SUFFIXES and _STEP.match(p.stem)]
    return sorted(files, key=lambda p: (str(p.parent), int(p.stem), p.suffix))


def is_art_dir(path: Path) -> bool:
    """A folder holding ART trajectory logs (``{step:04d}.parquet`` and the like)."""
    return path.is_dir() and bool(art_files(path))


def run_and_step(path: Path) -> tuple[str, int]:
    """``(run, step)`` from ``.../models/{model}/trajectories/{split}/{step:04d}.ext``."""
    step = int(path.stem) if _STEP.match(path.stem) else 0
    split = path.parent.name or path.stem
    if path.parent.parent.name == "trajectories" and path.parent.parent.parent.name:
        return f"{path.parent.parent.parent.name}/{split}", step
    return split, step


# ----------------------------------------------------------------------------- reading


def iter_art(path: Path, *, run_id: str | None, threshold: float = DEFAULT_SUCCESS_THRESHOLD,
             max_bytes: int = DEFAULT_MAX_RECORD_BYTES) -> Iterator[Item]:
    """Yield ``(file, line, native_record | None, error | None, raw)`` for one file or a folder of them.

    ``max_bytes`` bounds a JSONL line, and a whole YAML file (read at once: PyYAML does not stream);
    Parquet is read by pyarrow in batches of 1,024 rows, whose sizes the file declares."""
    for f in art_files(path) if path.is_dir() else [path]:
        run, step = run_and_step(f)
        conv = _Converter(run_id or run, f.parent.name, step, threshold)
        if f.suffix == ".parquet":
            yield from _iter_parquet(f, conv)
        elif f.suffix in (".yaml", ".yml"):
            yield from _iter_yaml(f, conv, max_bytes)
        else:
            yield from _iter_jsonl(f, conv, max_bytes)


def _iter_parquet(f: Path, conv: _Converter) -> Iterator[Item]:
    import pyarrow.parquet as pq

    try:
        pf = pq.ParquetFile(f)
    except Exception as e:  # noqa: BLE001 - pyarrow raises several types for a damaged file
        yield str(f), None, None, f"not a readable Parquet file ({type(e).__name__}: {e})", None
        return
    row = 0
    try:
        for batch in pf.iter_batches(batch_size=1024):
            for r in batch.to_pylist():
                row += 1
                if r.get("trajectory_json") is None and r.get("reward") is None and r.get("messages") is None:
                    continue  # an empty group's sentinel row: no trajectory
                try:
                    yield str(f), row, conv.parquet_row(r, row), None, None
                except RecordError as e:
                    yield str(f), row, None, str(e), {k: v for k, v in r.items() if k != "messages"}
    except Exception as e:  # noqa: BLE001 - a damaged row group after good ones
        yield str(f), row + 1, None, f"Parquet data unreadable from row {row + 1} ({type(e).__name__}: {e})", None


def _iter_jsonl(f: Path, conv: _Converter, max_bytes: int) -> Iterator[Item]:
    for line, group, err, raw in iter_jsonl(f, max_bytes):
        if err is not None:
            yield str(f), line, None, err, raw
            continue
        yield from _group_items(f, line, group, line - 1, conv)


def _iter_yaml(f: Path, conv: _Converter, max_bytes: int) -> Iterator[Item]:
    import yaml

    size = f.stat().st_size
    if size > max_bytes:
        yield str(f), None, None, too_long(size, max_bytes, "YAML file (read whole)"), None
        return
    try:
        doc = yaml.safe_load(f.read_text(encoding="utf-8"))
    except (OSError, UnicodeDecodeError, yaml.YAMLError) as e:
        yield str(f), None, None, f"not a readable YAML file: {str(e).splitlines()[0]}", None
        return
    except RecursionError:  # PyYAML composes recursively
        yield str(f), None, None, f"YAML file is {too_deep()}", None
        return
    if deeper_than(doc):
        yield str(f), None, None, f"YAML file is {too_deep()}", None
        return
    if not isinstance(doc, list):
        yield str(f), None, None, "ART YAML should hold a list of trajectory groups", None
        return
    for i, group in enumerate(doc):
        yield from _group_items(f, i + 1, group, i, conv)


def _group_items(f: Path, line: int, group: Any, index: int, conv: _Converter) -> Iterator[Item]:
    if not isinstance(group, dict) or not isinstance(group.get("trajectories"), list):
        yield str(f), line, None, "trajectory group should be an object with a 'trajectories' list", group
        return
    meta = group.get("metadata") if isinstance(group.get("metadata"), dict) else {}
    for k, traj in enumerate(group["trajectories"]):
        try:
            yield str(f), line, conv.trajectory(traj, index, k, group_meta=meta, group_metrics=group.get("metrics")), None, None
        except RecordError as e:
            yield str(f), line, None, f"trajectories[{k}]: {e}", traj


# ----------------------------------------------------------------------------- conversion


def _flat_messages(rows: Any) -> list[dict[str, Any]]:
    """The Parquet ``messages`` column: ``{role, content, tool_calls (JSON text), tool_call_id, trainable}``."""
    if not isinstance(rows, list):
        raise RecordError("messages should be a list")
    out = []
    for i, m in enumerate(rows):
        if not isinstance(m, dict):
            raise RecordError(f"messages[{i}] should be a struct")
        out.append(_message(m, f"messages[{i}]"))
    return out


def _messages_and_choices(items: Any) -> list[dict[str, Any]]:
    """Messages and choices (``{finish_reason, index, message}``: the model's generations) in order."""
    if not isinstance(items, list):
        raise RecordError("messages_and_choices should be a list")
    out = []
    for i, item in enumerate(items):
        if not isinstance(item, dict):
            raise RecordError(f"messages_and_choices[{i}] should be an object")
        m = item.get("message") if "finish_reason" in item or "message" in item else item
        if not isinstance(m, dict):
            raise RecordError(f"messages_and_choices[{i}].message should be an object")
        out.append(_message(m, f"messages_and_choices[{i}]"))
    return out


def _message(m: dict[str, Any], where: str) -> dict[str, Any]:
    """One ART message as a canonical message (role, content, parsed tool calls, tool_call_id)."""
    msg: dict[str, Any] = {"role": role_of(m.get("role")), "content": m.get("content")}
    calls = tool_calls(m.get("tool_calls"), where)
    if calls:
        msg["tool_calls"] = calls
    if m.get("tool_call_id") is not None:
        msg["tool_call_id"] = m["tool_call_id"]
    return msg


class _Converter:
    """Turns one ART trajectory into a native record, for one file's run and step."""

    def __init__(self, run_id: str, split: str, step: int, threshold: float):
        self.run_id, self.split, self.step, self.threshold = run_id, split, step, threshold

    def parquet_row(self, r: dict[str, Any], row: int) -> dict[str, Any]:
        gi = r.get("group_index")
        if not isinstance(gi, int):
            raise RecordError("group_index should be an integer")
        if r.get("trajectory_json") is not None:  # newer releases: the whole trajectory, authoritative
            traj = json_object(r["trajectory_json"], "trajectory_json")
            group = json_object(r.get("group_json"), "group_json")
            meta = group.get("metadata") if isinstance(group.get("metadata"), dict) else {}
            return self.trajectory(traj, gi, r.get("trajectory_index", row), group_meta=meta,
                                   group_metrics=group.get("metrics"))
        traj = {
            "reward": r.get("reward"),
            "metrics": json_object(r.get("metrics"), "metrics"),
            "metadata": json_object(r.get("metadata"), "metadata"),
            "tools": r.get("tools"),
            "logs": r.get("logs"),
            "_messages": _flat_messages(r.get("messages")),
        }
        return self.trajectory(traj, gi, row, group_meta=json_object(r.get("group_metadata"), "group_metadata"),
                               group_metrics=r.get("group_metrics"))

    def trajectory(self, traj: Any, group_index: int, index: Any, *, group_meta: dict[str, Any],
                   group_metrics: Any) -> dict[str, Any]:
        if not isinstance(traj, dict):
            raise RecordError(f"trajectory should be an object, got {type(traj).__name__}")
        outcome = reward_value(traj.get("reward"))
        if "_messages" in traj:
            messages = traj["_messages"]
        else:
            messages = _messages_and_choices(traj.get("messages_and_choices"))
        metrics = traj.get("metrics") or {}
        metadata = traj.get("metadata") or {}
        if not isinstance(metrics, dict) or not isinstance(metadata, dict):
            raise RecordError("metrics and metadata should be objects")
        task = next((str(src[k]) for src in (group_meta, metadata) for k in _TASK_KEYS
                     if isinstance(src.get(k), (str, int)) and not isinstance(src.get(k), bool)), None)
        if task is None:
            task = "prompt-" + content_hash(first_prompt_key(messages))[:12]
        tools = traj.get("tools")
        if isinstance(tools, str) and depth_error(tools) is None:  # else kept as the text it is
            try:
                tools = json.loads(tools)
            except ValueError:
                pass
        info = {
            "source_format": "art",
            "split": self.split,
            "step": self.step,
            "group_index": group_index,
            "trajectory_index": index,  # keeps two identical rollouts of one group apart
            "metrics": metrics,
            "metadata": metadata,
            "group_metadata": group_meta or None,
            "group_metrics": json_object(group_metrics, "group_metrics") or None,
            "tools": tools,
            "logs": traj.get("logs") or None,
            "recorded_reward": outcome,
            "success_threshold": self.threshold,
            "signals": component_signals(SOURCE, metrics),
        }
        native = {
            "run_id": self.run_id,
            "iteration": self.step,
            "task_id": task,
            "group_id": f"{self.run_id}/{self.step}/{group_index}",
            "outcome": outcome,
            "success": outcome >= self.threshold - 1e-9,
            "messages": messages,
            "info": {k: v for k, v in info.items() if v is not None},
        }
        return {"episode_id": threshold_free_id(native), **native}
