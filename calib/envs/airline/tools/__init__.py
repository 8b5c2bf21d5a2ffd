"""The 14 airline tools, one small unit each with its schema next to its behaviour.

Names, parameters, enums and required fields follow tau-bench's airline tools; descriptions and code
are our own. ``TOOLS`` maps a name to its :class:`Tool`, in tau-bench's (alphabetical) order.
"""

from __future__ import annotations

from calib.envs.airline.tools import booking, cancel, lookup, misc, modify, search  # noqa: F401 - registers
from calib.envs.airline.tools._registry import REGISTRY, Tool

TOOLS: dict[str, Tool] = {name: REGISTRY[name] for name in sorted(REGISTRY)}

__all__ = ["TOOLS", "Tool"]
