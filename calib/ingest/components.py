"""Shared pieces of the RL-library importers (verifiers, ART): reward components as signals, success.

Both libraries carry per-rollout numbers next to the reward (verifiers ``metrics`` and weighted
``rewards``, ART ``metrics``). They become episode-level signals named ``<source>:<name>`` in the
episode's ``info["signals"]`` (docs/architecture.md section 3), which ``calib.signals.imported`` moves into the
``signals`` table and ``calib.analysis.episode`` measures. Only numbers are kept: a string metric
says nothing a group AUC can measure.
"""

from __future__ import annotations

import hashlib
import json
import math
from collections.abc import Mapping
from typing import Any

from calib.jsonlimits import depth_error
from calib.records import RecordError

DEFAULT_SUCCESS_THRESHOLD = 1.0


def threshold_free_id(rec: dict[str, Any]) -> str:
    """The ``episode_id`` of a converted rollout that has none of its own: a hash of the native record
    without its ``success`` label and without ``info.success_threshold``.

    The default id (``normalize_episode``) hashes the whole record, label included, so the same
    rollouts ingested with another ``--success-threshold`` became new episodes (9 rollouts, 18
    episodes). With this id they meet their earlier selves in the store, whose commit check sees two
    labels for one episode and refuses the second ingest (``IngestWriter._refuse_other_threshold``)."""
    body = {k: v for k, v in rec.items() if k not in ("success", "episode_id")}
    body["info"] = {k: v for k, v in (rec.get("info") or {}).items() if k != "success_threshold"}
    try:
        text = json.dumps(body, sort_keys=True, separators=(",", ":"), ensure_ascii=False, default=str)
    except (TypeError, ValueError, RecursionError) as e:
        raise RecordError(f"record cannot be serialised: {e}") from None
    return hashlib.sha256(text.encode("utf-8")).hexdigest()[:32]


def as_number(x: Any) -> float | None:
    """A finite float from a JSON number or boolean, else None (strings, NaN, objects say nothing)."""
    if isinstance(x, bool):
        return float(x)
    if isinstance(x, (int, float)) and math.isfinite(x):
        return float(x)
    return None


def reward_value(x: Any, field: str = "reward") -> float:
    """The rollout's reward: a finite number (a boolean counts as 0/1), else a quarantine reason."""
    if x is None:
        raise RecordError(f"missing field {field!r}")
    v = as_number(x)
    if v is None:
        raise RecordError(f"{field} should be a finite number, got {type(x).__name__} {x!r}"[:200])
    return v


def component_signals(source: str, values: Mapping[str, Any] | None, *,
                      into: dict[str, float] | None = None) -> dict[str, float]:
    """``{"<source>:<name>": value}`` for every numeric entry of ``values`` (the first name wins). Any name
    is kept as it is: names reach SQL only as data (``calib/sqlutil.py``)."""
    out = {} if into is None else into
    for name, v in (values or {}).items():
        num = as_number(v)
        key = f"{source}:{name}"
        if num is not None and key not in out:
            out[key] = num
    return out


def parse_json_text(text: str, field: str) -> Any:
    """JSON text inside a record (a tool call or a column stored as a string): RecordError when it is
    not JSON or nests deeper than ``MAX_DEPTH``, checked before Python's recursive decoder sees it."""
    err = depth_error(text)
    if err is not None:
        raise RecordError(f"{field} is {err}")
    try:
        return json.loads(text)
    except ValueError as e:
        raise RecordError(f"{field} is not valid JSON: {e}") from None


def json_object(text: Any, field: str) -> dict[str, Any]:
    """A JSON-text column (ART writes metadata and metrics as JSON strings) as a dict; None is {}."""
    if text is None or text == "":
        return {}
    if isinstance(text, dict):
        return text
    if not isinstance(text, str):
        raise RecordError(f"{field} should be JSON text, got {type(text).__name__}")
    value = parse_json_text(text, field)
    if value is None:
        return {}
    if not isinstance(value, dict):
        raise RecordError(f"{field} should hold a JSON object, got {type(value).__name__}")
    return value


def tool_calls(raw: Any, where: str) -> list[Any]:
    """Tool calls as dicts: verifiers stores each call (and older ART files the whole list) as JSON text."""
    if raw is None:
        return []
    if isinstance(raw, str):
        raw = parse_json_text(raw, f"{where}.tool_calls")
    if not isinstance(raw, list):
        raise RecordError(f"{where}.tool_calls should be a list")
    out = []
    for j, c in enumerate(raw):
        if isinstance(c, str):
            c = parse_json_text(c, f"{where}.tool_calls[{j}]")
        out.append(c)
    return out


def role_of(role: Any) -> Any:
    """OpenAI's ``developer`` role is the system prompt of newer models; the canonical roles have ``system``."""
    return "system" if role == "developer" else role


def first_prompt_key(messages: list[Any]) -> list[Any]:
    """The messages before the first assistant message: what identifies a task when nothing else does."""
    prompt = []
    for m in messages:
        if isinstance(m, dict) and m.get("role") == "assistant":
            break
        prompt.append(m)
    return prompt
