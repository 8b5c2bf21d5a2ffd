"""Deep comparison of tool-call arguments, for ``gold_match``, ``soft_match`` (and its graded
``soft_match_score``) and ``redundant_call``.

Two calls are the same action when their tool names are equal and their arguments are equal after
normalisation: JSON text is parsed, key order is ignored, numbers are compared by value (``250``,
``250.0`` and, where the schema says number/integer, ``"250"``), strings are compared with
whitespace stripped and runs of whitespace collapsed, and strings of an enum-typed argument
(``cabin``, ``insurance``, ...) are compared case-insensitively. The normal form is a string key,
so matching is a join, and the key of each distinct (tool, arguments) pair is computed once.
"""

from __future__ import annotations

import json
import math
from typing import Any

from calib.tools import ToolCatalogue

RAW_PREFIX = "\x00raw:"  # arguments that are not JSON: compared as whitespace-normalised text


def _number(v: float) -> int | float:
    """Whole numbers as ints, others rounded to 12 significant digits (float noise is not a difference)."""
    if not math.isfinite(v):
        return v
    if float(v).is_integer() and abs(v) < 2**53:
        return int(v)
    return float(f"{v:.12g}")


def _props(schema: dict[str, Any] | None) -> dict[str, Any]:
    return (schema or {}).get("properties", {}) or {}


def normalize_value(v: Any, schema: dict[str, Any] | None = None) -> Any:
    """Normal form of one argument value, guided by its JSON schema when there is one."""
    schema = schema or {}
    types = schema.get("type")
    types = set(types) if isinstance(types, list) else ({types} if types else set())
    if isinstance(v, bool) or v is None:
        return v
    if isinstance(v, (int, float)):
        return _number(v)
    if isinstance(v, str):
        s = " ".join(v.split())
        if types & {"number", "integer"}:
            try:
                return _number(float(s))
            except ValueError:
                pass
        if "enum" in schema:
            return s.casefold()
        return s
    if isinstance(v, dict):
        props = _props(schema)
        return {" ".join(str(k).split()): normalize_value(x, props.get(k)) for k, x in v.items()}
    if isinstance(v, list):
        items = schema.get("items") if isinstance(schema.get("items"), dict) else None
        return [normalize_value(x, items) for x in v]
    return v


def tool_schema(catalogue: ToolCatalogue | None, name: str | None) -> dict[str, Any] | None:
    if catalogue is None or name is None:
        return None
    s = catalogue.schemas.get(name)
    return None if s is None else s.get("parameters", s)


def _parse(args: Any) -> tuple[Any, bool]:
    """(arguments as an object, parsed?) from a dict or JSON text."""
    if isinstance(args, str):
        try:
            return (json.loads(args) if args.strip() else {}), True
        except json.JSONDecodeError:
            return args, False
    return args, True


def _key(name: str | None, parsed: Any, ok: bool, catalogue: ToolCatalogue | None) -> str:
    if not ok:
        return f"{name}{RAW_PREFIX}{' '.join(parsed.split())}"
    norm = normalize_value(parsed, tool_schema(catalogue, name))
    return f"{name}\x00{json.dumps(norm, sort_keys=True, separators=(',', ':'), ensure_ascii=False)}"


def call_facts_row(name: str | None, args: Any, catalogue: ToolCatalogue) -> tuple[str, bool]:
    """(:func:`call_key`, :func:`schema_ok`) with the arguments parsed once."""
    parsed, ok = _parse(args)
    valid = ok and name is not None and not (catalogue.tool_names and not catalogue.is_known(name))
    valid = valid and catalogue.validate_args(name, parsed) is None
    return _key(name, parsed, ok, catalogue), valid


def call_key(name: str | None, args: Any, catalogue: ToolCatalogue | None = None) -> str:
    """A string that is equal for two calls exactly when they are the same action.

    ``args`` may be a dict or JSON text (as the store keeps it); text that is not JSON is kept as
    whitespace-normalised raw text, so two identical malformed calls still compare equal.
    """
    parsed, ok = _parse(args)
    return _key(name, parsed, ok, catalogue)


def schema_ok(name: str | None, args: Any, catalogue: ToolCatalogue) -> bool:
    """Parseable arguments of a known tool that fit its schema (what ``valid_call`` rewards)."""
    return call_facts_row(name, args, catalogue)[1]


def arg_share(name: str | None, args: Any, expected_args: Any, catalogue: ToolCatalogue | None = None) -> float:
    """Share of the expected action's arguments that the call gives with the same normal form.

    What ``soft_match_score`` grades (the seed paper's soft match: 0.5 + 0.5 x this share). Keys
    and values are normalised as in :func:`call_key` and compared through their canonical JSON (so
    ``true`` never equals ``1``). Unparseable arguments on either side, or an expected action
    without arguments, give 0: nothing can be said to match.
    """
    call, ok = _parse(args)
    exp, eok = _parse(expected_args)
    if not (ok and eok and isinstance(call, dict) and isinstance(exp, dict) and exp):
        return 0.0
    schema = tool_schema(catalogue, name)
    nc, ne = normalize_value(call, schema), normalize_value(exp, schema)

    def canon(v: Any) -> str:
        return json.dumps(v, sort_keys=True, separators=(",", ":"), ensure_ascii=False)

    hits = sum(1 for k, v in ne.items() if k in nc and canon(nc[k]) == canon(v))
    return hits / len(ne)
