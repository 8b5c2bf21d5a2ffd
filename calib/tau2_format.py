"""tau2-bench results as JSON: reading both layouts, and the reward components as signal values.

Pure JSON helpers (no ``tau2`` import, no store): the importer (``calib.ingest.tau2``), the tau2
environment (``calib.envs.tau2``) and its replay share them, so a component means the same everywhere.

Layouts, both written by tau2's own code:

- one file, ``{"timestamp", "info", "tasks": [...], "simulations": [...]}`` (what ``tau2 run`` saves);
- a directory with ``results.json`` (``info`` and ``tasks``; ``simulations`` may be empty or absent) and
  ``simulations/*.json``, one simulation per file.
"""

from __future__ import annotations

import json
import math
from collections.abc import Iterator
from pathlib import Path
from typing import Any

from calib.jsonlimits import depth_error, too_long

RESULTS_FILE = "results.json"
SIM_DIR = "simulations"

# tau2 reward_info field -> episode-level signal name (the met share of the checks it lists).
_SHARE_COMPONENTS = {
    "communicate_checks": ("tau2:communicate", "met"),
    "nl_assertions": ("tau2:nl_assertions", "met"),
    "action_checks": ("tau2:action_checks", "action_match"),
    "env_assertions": ("tau2:env_assertions", "met"),
}
EPISODE_SIGNALS = ("tau2:db_match", "tau2:communicate", "tau2:nl_assertions", "tau2:action_checks",
                   "tau2:env_assertions")
TURN_SIGNALS = ("tau2:action_match",)


# ----------------------------------------------------------------------------- reading


def is_tau2_dir(path: Path) -> bool:
    """A tau2 results directory: ``results.json`` next to a ``simulations/`` folder."""
    return path.is_dir() and (path / RESULTS_FILE).is_file() and (path / SIM_DIR).is_dir()


def sniff_tau2(head: str) -> bool:
    """The first bytes of a file look like a tau2 results object."""
    text = head.lstrip()
    return text.startswith("{") and ('"simulations"' in text or ('"environment_info"' in text and '"agent_info"' in text))


def _load(path: Path, max_bytes: int | None = None) -> tuple[Any, str | None]:
    """The file's JSON, or an error: tau2 writes each file as one object, read whole, so ``max_bytes``
    and the depth limit (``calib.jsonlimits``) apply to the whole file."""
    try:
        size = path.stat().st_size
        if max_bytes is not None and size > max_bytes:
            return None, too_long(size, max_bytes, "file (a tau2 results file is read whole)")
        with open(path, encoding="utf-8") as f:
            text = f.read()
        err = depth_error(text)
        return (None, err) if err is not None else (json.loads(text, parse_constant=_bad_constant), None)
    except UnicodeDecodeError as e:
        return None, f"file is not valid UTF-8 ({e.reason})"
    except (ValueError, RecursionError) as e:
        return None, f"invalid JSON: {e}"


def _bad_constant(name: str) -> Any:
    raise ValueError(f"{name} is not valid JSON")


def iter_tau2(path: Path, *, max_bytes: int | None = None
              ) -> Iterator[tuple[str, int | None, Any, str | None, dict[str, Any]]]:
    """Yield ``(file, index, simulation | None, error | None, header)`` for a tau2 file or directory.

    ``index`` is the simulation's position in the file's ``simulations`` list (None for one file per
    simulation); ``header`` is the results object without its simulations (``info``, ``tasks``).
    A file that cannot be read at all (or is longer than ``max_bytes``) comes back as one error, so the
    ingest can quarantine it.
    """
    if path.is_dir():
        doc, err = _load(path / RESULTS_FILE, max_bytes)
        if err is not None or not isinstance(doc, dict):
            yield str(path / RESULTS_FILE), None, None, err or "results.json should hold a JSON object", {}
            return
        header = {k: v for k, v in doc.items() if k != "simulations"}
        for i, sim in enumerate(doc.get("simulations") or []):
            yield str(path / RESULTS_FILE), i, sim, None, header
        for f in sorted((path / SIM_DIR).glob("*.json")):
            sim, err = _load(f, max_bytes)
            yield str(f), None, sim, err, header
        return
    doc, err = _load(path, max_bytes)
    if err is not None:
        yield str(path), None, None, err, {}
        return
    if not isinstance(doc, dict) or not isinstance(doc.get("simulations"), list):
        yield str(path), None, None, "not a tau2 results object (expected a 'simulations' list)", {}
        return
    header = {k: v for k, v in doc.items() if k != "simulations"}
    for i, sim in enumerate(doc["simulations"]):
        yield str(path), i, sim, None, header


def tasks_by_id(header: dict[str, Any]) -> dict[str, dict[str, Any]]:
    return {str(t.get("id")): t for t in header.get("tasks") or [] if isinstance(t, dict)}


def domain_of(header: dict[str, Any]) -> str | None:
    info = header.get("info") if isinstance(header.get("info"), dict) else {}
    env = info.get("environment_info") if isinstance(info.get("environment_info"), dict) else {}
    name = env.get("domain_name")
    return str(name) if name else None


def component_signals(reward_info: dict[str, Any]) -> dict[str, float | None]:
    """Episode-level signals from tau2's ``reward_info``: None where tau2 did not evaluate the component.

    ``tau2:db_match`` is the DB check's reward; the others are the share of checks met. An empty list
    of checks (nothing to communicate, no assertion) gives None: the component says nothing there.
    """
    out: dict[str, float | None] = {}
    db = reward_info.get("db_check")
    out["tau2:db_match"] = float(db["db_reward"]) if isinstance(db, dict) and _num(db.get("db_reward")) else None
    for field_name, (signal, key) in _SHARE_COMPONENTS.items():
        checks = reward_info.get(field_name)
        vals = [bool(c.get(key)) for c in checks if isinstance(c, dict)] if isinstance(checks, list) else []
        out[signal] = sum(vals) / len(vals) if vals else None
    return out


def _num(x: Any) -> bool:
    return isinstance(x, (int, float)) and not isinstance(x, bool) and math.isfinite(x)


def matches_action(action: dict[str, Any], call: dict[str, Any]) -> bool:
    """tau2's rule (``Action.compare_with_tool_call``): same name, equal arguments on ``compare_args``
    (all the call's arguments when None)."""
    if action.get("name") != call.get("name"):
        return False
    args = call.get("arguments") if isinstance(call.get("arguments"), dict) else {}
    keys = action.get("compare_args")
    keys = list(args) if keys is None else keys
    if not keys:
        return True
    want = action.get("arguments") or {}
    return {k: v for k, v in args.items() if k in keys} == {k: v for k, v in want.items() if k in keys}


def action_match_per_turn(messages: list[dict[str, Any]], reward_info: dict[str, Any]) -> list[float | None]:
    """Per agent turn: 1 when one of its calls matches an expected action that tau2 judged matched.

    None on every turn when tau2 did not check actions (no expected actions, or a premature end).
    """
    turns = [m for m in messages if m.get("role") == "assistant"]
    checks = reward_info.get("action_checks")
    if not isinstance(checks, list) or not checks:
        return [None] * len(turns)
    matched = [c["action"] for c in checks
               if isinstance(c, dict) and c.get("action_match") and isinstance(c.get("action"), dict)
               and c["action"].get("requestor", "assistant") == "assistant"]
    return [float(any(matches_action(a, c) for c in (t.get("tool_calls") or []) if isinstance(c, dict) for a in matched))
            for t in turns]
