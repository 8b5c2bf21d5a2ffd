"""Canonical episode records (docs/architecture.md section 2) and turn segmentation.

Every importer turns its input into the same canonical dict, validated here, so that the store,
the signals and the trainer see one shape. Validation raises :class:`RecordError` with a reason that
the ingest writes to the quarantine; it never raises anything else on bad data.

Canonical episode::

    {episode_id, run_id, iteration, task_id, group_id, policy, outcome, success, status,
     messages: [{role, content, tool_calls?: [{id, name, arguments}], tool_call_id?, name?}],
     expected_actions: [{name, arguments}], info: {}}

A **turn** is one assistant message plus what follows it until the next assistant message.
"""

from __future__ import annotations

import hashlib
import json
import math
from typing import Any

from calib.jsonlimits import depth_error
from calib.tools import ToolCatalogue

ROLES = frozenset({"system", "user", "assistant", "tool"})
STATUSES = frozenset({"ok", "error"})
MAX_STRING = 1_000_000  # one message longer than this is a broken dump, not a conversation


class RecordError(ValueError):
    """A record that cannot be ingested; the message is the quarantine reason."""


# ----------------------------------------------------------------------------- canonical JSON


def _norm_value(v: Any) -> Any:
    """Numbers that are whole become ints (250.0 -> 250) so equal arguments serialise equally."""
    if isinstance(v, float):
        if math.isfinite(v) and v.is_integer() and abs(v) < 2**53:
            return int(v)
        return v
    if isinstance(v, dict):
        return {str(k): _norm_value(x) for k, x in v.items()}
    if isinstance(v, list):
        return [_norm_value(x) for x in v]
    return v


def canonical_json(obj: Any) -> str:
    """Stable JSON text: sorted keys, no spaces, whole floats as ints, unicode kept."""
    return json.dumps(_norm_value(obj), sort_keys=True, separators=(",", ":"), ensure_ascii=False)


def content_hash(obj: Any) -> str:
    """Hex SHA-256 of the canonical JSON of ``obj`` (first 32 hex digits are plenty here)."""
    return hashlib.sha256(canonical_json(obj).encode("utf-8")).hexdigest()[:32]


def _fast_json(obj: Any) -> str:
    """Sorted-key JSON of data whose numbers are already normalised (what normalize_episode returns)."""
    return json.dumps(obj, sort_keys=True, separators=(",", ":"), ensure_ascii=False)


# ----------------------------------------------------------------------------- messages


def _as_text(value: Any, where: str) -> str | None:
    if value is None:
        return None
    if isinstance(value, str):
        if len(value) > MAX_STRING:
            raise RecordError(f"{where} is {len(value):,} characters long (limit {MAX_STRING:,})")
        return value
    if isinstance(value, list):  # OpenAI content parts: [{"type": "text", "text": "..."}]
        parts = []
        for p in value:
            if isinstance(p, dict) and isinstance(p.get("text"), str):
                parts.append(p["text"])
            elif isinstance(p, str):
                parts.append(p)
            else:
                raise RecordError(f"{where} has a content part that is not text")
        return _as_text("".join(parts), where)
    raise RecordError(f"{where} should be a string, got {type(value).__name__}")


def _parse_tool_call(raw: Any, where: str) -> dict[str, Any]:
    """Accept native ``{id, name, arguments: obj}`` and OpenAI ``{id, function: {name, arguments: str}}``."""
    if not isinstance(raw, dict):
        raise RecordError(f"{where} should be an object")
    fn = raw.get("function") if isinstance(raw.get("function"), dict) else raw
    name = fn.get("name")
    if not isinstance(name, str) or not name:
        raise RecordError(f"{where} has no tool name")
    args = fn.get("arguments", {})
    call: dict[str, Any] = {"id": raw.get("id"), "name": name}
    if isinstance(args, str):
        if len(args) > MAX_STRING:
            raise RecordError(f"{where}.arguments is {len(args):,} characters long (limit {MAX_STRING:,})")
        if (too_deep := depth_error(args)) is not None:  # before Python's recursive decoder sees it
            raise RecordError(f"{where}.arguments is {too_deep}")
        try:
            call["arguments"] = _norm_value(json.loads(args)) if args.strip() else {}
        except json.JSONDecodeError:
            # The model wrote arguments that are not JSON: an invalid turn, not a bad record.
            call["arguments"] = args
            call["parse_error"] = True
    elif isinstance(args, dict):
        call["arguments"] = _norm_value(args)
    elif args is None:
        call["arguments"] = {}
    else:
        raise RecordError(f"{where}.arguments should be an object or a JSON string")
    if call["id"] is not None and not isinstance(call["id"], (str, int)):
        raise RecordError(f"{where}.id should be a string")
    if call["id"] is not None:
        call["id"] = str(call["id"])
    return call


def normalize_messages(messages: Any, *, require_assistant: bool = True) -> list[dict[str, Any]]:
    """Validate and canonicalise a message list; check that every tool call has its result."""
    if not isinstance(messages, list) or not messages:
        raise RecordError("messages should be a non-empty list")
    out: list[dict[str, Any]] = []
    pending: list[dict[str, Any]] = []  # calls of the last assistant message still without a result
    for i, m in enumerate(messages):
        where = f"messages[{i}]"
        if not isinstance(m, dict):
            raise RecordError(f"{where} should be an object")
        role = m.get("role")
        if role not in ROLES:
            raise RecordError(f"{where} has unknown role {role!r} (expected one of {sorted(ROLES)})")
        msg: dict[str, Any] = {"role": role, "content": _as_text(m.get("content"), f"{where}.content")}
        if role == "assistant":
            if pending:
                raise RecordError(f"tool call {pending[0]['name']!r} ({where[:-1]}) has no tool result")
            raw_calls = m.get("tool_calls") or []
            if not isinstance(raw_calls, list):
                raise RecordError(f"{where}.tool_calls should be a list")
            calls = [_parse_tool_call(c, f"{where}.tool_calls[{j}]") for j, c in enumerate(raw_calls)]
            if calls:
                msg["tool_calls"] = calls
            if m.get("invalid"):
                msg["invalid"] = True  # the policy produced an unparseable tool call
            pending = list(calls)
        elif role == "tool":
            if not pending:
                raise RecordError(f"{where} is a tool result without a preceding tool call")
            call_id = m.get("tool_call_id")
            idx = 0
            if call_id is not None:
                ids = [c["id"] for c in pending]
                if str(call_id) not in ids:
                    raise RecordError(f"{where} answers tool_call_id {call_id!r}, which no pending call has")
                idx = ids.index(str(call_id))
            call = pending.pop(idx)
            msg["tool_call_id"] = call["id"] if call_id is None else str(call_id)
            msg["name"] = m.get("name") or call["name"]
            if call.get("requestor") == "user":
                msg["requestor"] = "user"
        else:
            if pending:
                raise RecordError(f"tool call {pending[0]['name']!r} has no tool result before {where}")
            if role == "user" and m.get("tool_calls"):
                # A customer's own tool calls (tau2 telecom: the user acts on their phone). Kept on the
                # user message, and their results marked requestor=user, so they never count as agent turns.
                if not isinstance(m["tool_calls"], list):
                    raise RecordError(f"{where}.tool_calls should be a list")
                calls = [dict(_parse_tool_call(c, f"{where}.tool_calls[{j}]"), requestor="user")
                         for j, c in enumerate(m["tool_calls"])]
                msg["tool_calls"] = calls
                pending = list(calls)
        out.append(msg)
    if pending:
        raise RecordError(f"tool call {pending[0]['name']!r} has no tool result at the end of the episode")
    if require_assistant and not any(m["role"] == "assistant" for m in out):  # error episodes may have none
        raise RecordError("episode has no assistant message")
    return out


def _normalize_actions(actions: Any) -> list[dict[str, Any]]:
    if actions is None:
        return []
    if not isinstance(actions, list):
        raise RecordError("expected_actions should be a list")
    out = []
    for i, a in enumerate(actions):
        if not isinstance(a, dict) or not isinstance(a.get("name"), str):
            raise RecordError(f"expected_actions[{i}] should be an object with a name")
        args = a.get("arguments", a.get("kwargs", {}))
        if isinstance(args, str):
            if (too_deep := depth_error(args)) is not None:
                raise RecordError(f"expected_actions[{i}].arguments is {too_deep}")
            try:
                args = json.loads(args)
            except json.JSONDecodeError as e:
                raise RecordError(f"expected_actions[{i}].arguments is not JSON") from e
        if not isinstance(args, dict):
            raise RecordError(f"expected_actions[{i}].arguments should be an object")
        out.append({"name": a["name"], "arguments": _norm_value(args)})
    return out


def _opt_str(rec: dict, key: str) -> str | None:
    v = rec.get(key)
    if v is None:
        return None
    if isinstance(v, bool) or not isinstance(v, (str, int)):
        raise RecordError(f"{key} should be a string, got {type(v).__name__}")
    return str(v)


def normalize_episode(rec: Any, *, run_id: str | None = None, with_hash: bool = False) -> dict[str, Any]:
    """Validate one native record and return the canonical episode dict.

    ``run_id`` given on the command line overrides the record's. ``episode_id`` defaults to a
    content hash of the canonical record, so re-ingesting the same data adds nothing. With
    ``with_hash`` the hash is also returned under ``_content_hash``.
    """
    if not isinstance(rec, dict):
        raise RecordError(f"record should be a JSON object, got {type(rec).__name__}")
    messages = normalize_messages(rec.get("messages"), require_assistant=rec.get("status", "ok") != "error")
    outcome = rec.get("outcome", rec.get("reward"))
    if isinstance(outcome, bool):
        outcome = float(outcome)
    if outcome is None:
        success_raw = rec.get("success")
        if isinstance(success_raw, bool):
            outcome = float(success_raw)
        else:
            raise RecordError("missing field 'outcome' (or 'reward')")
    if not isinstance(outcome, (int, float)):
        raise RecordError(f"outcome should be a number, got {type(outcome).__name__}")
    outcome = float(outcome)
    if not math.isfinite(outcome):
        raise RecordError(f"outcome is {outcome} (must be finite)")
    success = rec.get("success")
    if success is None:
        success = outcome >= 1.0 - 1e-9
    elif not isinstance(success, bool):
        raise RecordError(f"success should be true or false, got {type(success).__name__}")
    status = rec.get("status", "ok")
    if status not in STATUSES:
        raise RecordError(f"status should be one of {sorted(STATUSES)}, got {status!r}")
    iteration = rec.get("iteration", 0)
    if isinstance(iteration, bool) or not isinstance(iteration, int):
        if isinstance(iteration, float) and iteration.is_integer():
            iteration = int(iteration)
        else:
            raise RecordError(f"iteration should be an integer, got {iteration!r}")
    info = rec.get("info") or {}
    if not isinstance(info, dict):
        raise RecordError("info should be an object")
    task_id = _opt_str(rec, "task_id")
    if task_id is None:
        raise RecordError("missing field 'task_id'")
    run = run_id or _opt_str(rec, "run_id") or "default"
    ep: dict[str, Any] = {
        "episode_id": _opt_str(rec, "episode_id"),
        "run_id": run,
        "iteration": iteration,
        "task_id": task_id,
        "group_id": _opt_str(rec, "group_id") or f"{run}/{iteration}/{task_id}",
        "policy": _opt_str(rec, "policy"),
        "outcome": outcome,
        "success": bool(success),
        "status": status,
        "messages": messages,
        "expected_actions": _normalize_actions(rec.get("expected_actions")),
        "info": info,
    }
    # The content hash identifies the record: it is the default episode_id (so re-ingesting the same
    # data adds nothing) and tells a harmless re-ingest from an id clash. Numbers in tool arguments
    # and expected actions are already normalised, so plain sorted-key JSON is canonical here.
    body = {k: v for k, v in ep.items() if k != "episode_id"}
    body["info"] = _norm_value(info)
    h = hashlib.sha256(_fast_json(body).encode("utf-8")).hexdigest()[:32]
    if ep["episode_id"] is None:
        ep["episode_id"] = h
    if with_hash:
        ep["_content_hash"] = h
    return ep


# ----------------------------------------------------------------------------- turns

ERROR_PREFIXES = ("error", "Error", "ERROR")


def is_error_observation(text: str | None) -> bool:
    """tau-bench tools report failures as an observation that starts with ``Error``."""
    return bool(text) and text.lstrip().startswith(ERROR_PREFIXES)


def segment_turns(episode: dict[str, Any], catalogue: ToolCatalogue) -> list[dict[str, Any]]:
    """One row per assistant message (docs/architecture.md section 2).

    ``tool_name``/``tool_args`` describe the first tool call (tau-bench agents make one call per
    message); ``n_tool_calls`` and ``tool_calls`` keep the rest. ``observation`` joins the tool
    results, ``user_text`` the user's reply that follows the turn, and ``prev_user_text`` the last
    user message before it (what ``confirm_before_write`` reads).
    """
    turns: list[dict[str, Any]] = []
    eid = episode["episode_id"]
    last_user: str | None = None
    cur: dict[str, Any] | None = None
    obs: list[str] = []
    users: list[str] = []

    def close() -> None:
        if cur is not None:
            cur["observation"] = "\n".join(obs) if obs else None
            cur["user_text"] = "\n".join(users) if users else None
            if cur["kind"] == "tool_call" and is_error_observation(cur["observation"]):
                cur["tool_error"] = True
            turns.append(cur)

    for i, m in enumerate(episode["messages"]):
        role = m["role"]
        if role == "assistant":
            close()
            obs, users = [], []
            calls = m.get("tool_calls") or []
            first = calls[0] if calls else None
            invalid = bool(m.get("invalid")) or any(c.get("parse_error") for c in calls)
            kind = "invalid" if invalid else ("tool_call" if calls else "message")
            name = first["name"] if first else None
            args = first["arguments"] if first else None
            tool_error = invalid
            if first is not None and not invalid and (
                    (catalogue.tool_names and not catalogue.is_known(name))
                    or catalogue.validate_args(name, args) is not None):
                tool_error = True
            cur = {
                "episode_id": eid,
                "turn_idx": len(turns),
                "msg_idx": i,
                "kind": kind,
                "tool_name": name,
                "tool_args": (args if isinstance(args, str) else _fast_json(args)) if first else None,
                "n_tool_calls": len(calls),
                "tool_calls": _fast_json(calls) if len(calls) > 1 else None,
                "is_write": catalogue.is_write(name) if name else None,
                "tool_error": tool_error,
                "text": m.get("content"),
                "prev_user_text": last_user,
            }
        elif role == "tool":
            if m.get("requestor") != "user":  # results of the customer's own tool calls are not the agent's
                obs.append(m.get("content") or "")
        elif role == "user" and m.get("content") is not None:
            users.append(m["content"])
            last_user = m["content"]
    close()
    return turns
