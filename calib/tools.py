"""Tool catalogues: which tools a domain has, which of them change state, and their schemas.

The store needs ``is_write`` per turn and the signals need "known tool" and "schema-valid
arguments"; both come from here so that ingest, signals and environments agree. A catalogue is plain
data (names, write flags, JSON schemas), so this module sits below the store and the environments.
"""

from __future__ import annotations

import json
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

# tau-bench airline's write tools (the six that change the database; ``transfer_to_human_agents`` ends the
# conversation but changes nothing, ``think`` and ``calculate`` are read-only) are declared on each tool,
# ``@tool(..., write=True)`` in ``calib.envs.airline.tools``. ``AIRLINE_WRITE_TOOLS`` and
# ``AIRLINE_READ_TOOLS`` are read from there on first use (module ``__getattr__``): importing the tools
# here at module level would import the environments, which import this module.


def __getattr__(name: str) -> Any:
    if name in ("AIRLINE_WRITE_TOOLS", "AIRLINE_READ_TOOLS"):
        from calib.envs.airline.schemas import AIRLINE_READ_TOOL_NAMES, AIRLINE_WRITE_TOOL_NAMES

        return AIRLINE_WRITE_TOOL_NAMES if name == "AIRLINE_WRITE_TOOLS" else AIRLINE_READ_TOOL_NAMES
    raise AttributeError(f"module {__name__!r} has no attribute {name!r}")


_JSON_TYPES: dict[str, tuple[type, ...]] = {
    "string": (str,),
    "integer": (int,),
    "number": (int, float),
    "boolean": (bool,),
    "array": (list,),
    "object": (dict,),
    "null": (type(None),),
}


@dataclass(frozen=True)
class ToolCatalogue:
    """Names, write flags and (optionally) OpenAI-style JSON schemas of a domain's tools."""

    name: str
    write_tools: frozenset[str]
    read_tools: frozenset[str]
    schemas: dict[str, dict[str, Any]] = field(default_factory=dict, compare=False, hash=False)

    @property
    def tool_names(self) -> frozenset[str]:
        return self.write_tools | self.read_tools

    def is_known(self, tool: str | None) -> bool:
        return tool is not None and tool in self.tool_names

    def is_write(self, tool: str | None) -> bool | None:
        """True for state-changing tools, False for read-only ones, None for unknown tools."""
        if tool in self.write_tools:
            return True
        if tool in self.read_tools:
            return False
        return None

    def validate_args(self, tool: str, args: Any) -> str | None:
        """Return why ``args`` do not fit the tool's schema, or None when they do (or no schema).

        Checks what tool-calling models get wrong in practice: not an object, missing required
        arguments, unexpected arguments, wrong JSON types, values outside an enum. Nested objects are
        checked with the same rules, one level at a time.
        """
        schema = self.schemas.get(tool)
        if schema is None:
            return None
        params = schema.get("parameters", schema)
        return _validate(args, params, "arguments")

    def openai_tools(self) -> list[dict[str, Any]]:
        """The schemas in OpenAI ``tools=[{"type": "function", "function": ...}]`` form."""
        return [{"type": "function", "function": s} for s in self.schemas.values()]

    @classmethod
    def from_openai_tools(
        cls, name: str, tools: list[dict[str, Any]], write_tools: frozenset[str] | set[str]
    ) -> ToolCatalogue:
        schemas = {}
        for t in tools:
            fn = t.get("function", t)
            schemas[fn["name"]] = fn
        writes = frozenset(write_tools) & frozenset(schemas)
        return cls(name=name, write_tools=writes, read_tools=frozenset(schemas) - writes, schemas=schemas)

    @classmethod
    def from_json_file(cls, name: str, path: str | Path, write_tools: frozenset[str] | set[str]) -> ToolCatalogue:
        return cls.from_openai_tools(name, json.loads(Path(path).read_text()), write_tools)


def _validate(value: Any, schema: dict[str, Any], where: str) -> str | None:
    typ = schema.get("type")
    if typ is not None:
        types = typ if isinstance(typ, list) else [typ]
        allowed = tuple(t for name in types for t in _JSON_TYPES.get(name, (object,)))
        ok = isinstance(value, allowed)
        if ok and isinstance(value, bool) and "boolean" not in types:
            ok = False  # JSON true is not a number
        if ok and "integer" in types and "number" not in types and isinstance(value, float):
            ok = value.is_integer()
        if not ok:
            return f"{where} should be {'/'.join(types)}, got {type(value).__name__}"
    if "enum" in schema and value not in schema["enum"]:
        return f"{where} must be one of {schema['enum']}, got {value!r}"
    if isinstance(value, dict) and ("properties" in schema or "required" in schema):
        props = schema.get("properties", {})
        for key in schema.get("required", []):
            if key not in value:
                return f"{where} is missing required field {key!r}"
        if schema.get("additionalProperties", True) is False or props:
            extra = sorted(set(value) - set(props))
            if extra and schema.get("additionalProperties", False) is False:
                return f"{where} has unexpected field(s) {extra}"
        for key, sub in props.items():
            if key in value:
                err = _validate(value[key], sub, f"{where}.{key}")
                if err:
                    return err
    if isinstance(value, list) and isinstance(schema.get("items"), dict):
        for i, item in enumerate(value):
            err = _validate(item, schema["items"], f"{where}[{i}]")
            if err:
                return err
    return None


def airline_catalogue() -> ToolCatalogue:
    """The airline catalogue: each tool's schema and write flag as declared next to its behaviour."""
    from calib.envs.airline.schemas import AIRLINE_TOOL_SCHEMAS, AIRLINE_WRITE_TOOL_NAMES

    return ToolCatalogue.from_openai_tools("airline", AIRLINE_TOOL_SCHEMAS, AIRLINE_WRITE_TOOL_NAMES)


def tau2_catalogue(domain: str | None) -> ToolCatalogue:
    """Names and write flags of a tau2 domain's agent tools; an open catalogue for an unknown domain.

    An open catalogue (no names) flags no tool as unknown and leaves ``is_write`` NULL, which is what
    a results file of a domain calib does not know deserves.
    """
    from calib.tau2_catalogue import TAU2_READ_TOOLS, TAU2_WRITE_TOOLS

    if domain in TAU2_WRITE_TOOLS:
        return ToolCatalogue(f"tau2:{domain}", TAU2_WRITE_TOOLS[domain], TAU2_READ_TOOLS[domain])
    return ToolCatalogue(f"tau2:{domain or 'unknown'}", frozenset(), frozenset())
