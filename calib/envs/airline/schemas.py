"""OpenAI-style schemas of the airline tools (what ``calib.tools.airline_catalogue`` imports).

Kept as a thin module so that the store and the signals can get the catalogue without thinking
about environments; the schemas themselves live next to each tool's behaviour.
"""

from __future__ import annotations

from calib.envs.airline.tools import TOOLS

AIRLINE_TOOL_SCHEMAS: list[dict] = [{"type": "function", "function": t.schema} for t in TOOLS.values()]
# the write flag is declared on each tool (``@tool(..., write=True)``); these sets are read from it
AIRLINE_WRITE_TOOL_NAMES: frozenset[str] = frozenset(t.name for t in TOOLS.values() if t.write)
AIRLINE_READ_TOOL_NAMES: frozenset[str] = frozenset(t.name for t in TOOLS.values() if not t.write)
