"""Limits on one JSON record read from a dump: how deep it may nest and how many bytes it may take.

Why a leaf module (only the standard library): every reader of untrusted JSON uses it, the ingest's
(``calib.ingest``) and the tau2 results reader (``calib.tau2_format``, which the tau2 environment also
imports), and neither may drag the other in.

Depth. Python's ``json`` decodes recursively and raises ``RecursionError`` near 1,000 levels (the
interpreter's recursion limit, shared with whatever is already on the stack); calib's own
normalisation (``calib.records``) recurses once or twice per level, so a record 512 deep already fails
there. DuckDB's JSON reader has no depth limit of its own. ``MAX_DEPTH`` = 256 leaves room for both
(real rollouts nest fewer than 20 levels); a deeper record is quarantined as "nested deeper than 256"
before anything recursive sees it. The check is a scan of the brackets outside strings, with no
recursion: ``depth_error``.

Size. ``DEFAULT_MAX_RECORD_BYTES`` (64 MiB, ``calib ingest --max-record-bytes``): the readers read a
record in pieces of at most this many bytes and quarantine a longer one without holding it whole.
"""

from __future__ import annotations

import re
from itertools import accumulate
from typing import Any

MAX_DEPTH = 256
DEFAULT_MAX_RECORD_BYTES = 64 * 1024 * 1024

# A JSON string (with its escapes); what is left after removing them is structure.
_STRING_RE = re.compile(r'"[^"\\]*(?:\\.[^"\\]*)*"', re.DOTALL)
_NOT_BRACKET_RE = re.compile(r"[^\[\]{}]+")
_STEP = {"[": 1, "{": 1, "]": -1, "}": -1}
_SIZE_RE = re.compile(r"\s*(\d+)\s*([kmg]i?b?|b)?\s*", re.IGNORECASE)
_UNITS = {"": 1, "b": 1, **{p + s: 1024 ** n for n, p in enumerate("kmg", 1) for s in ("", "i", "ib")},
          **{p + "b": 1000 ** n for n, p in enumerate("kmg", 1)}}


def nesting(text: str) -> tuple[int, int]:
    """``(deepest, final)`` nesting of ``text``'s arrays and objects, strings skipped: ``[{}]`` is
    ``(2, 0)``; ``final`` is not 0 when the brackets do not balance. Linear, no recursion."""
    brackets = _NOT_BRACKET_RE.sub("", _STRING_RE.sub("", text))
    if not brackets:
        return 0, 0
    depths = list(accumulate(map(_STEP.__getitem__, brackets)))
    return max(depths), depths[-1]


def depth_error(text: str, limit: int = MAX_DEPTH) -> str | None:
    """The quarantine reason when ``text`` nests deeper than ``limit``, else None.

    Cheap on the common case: fewer opening brackets than the limit cannot nest deeper, and
    ``str.count`` runs at memory speed; only a record with more brackets than that is scanned."""
    if text.count("[") + text.count("{") <= limit:
        return None
    if nesting(text)[0] <= limit:
        return None
    return too_deep(limit)


def deeper_than(value: Any, limit: int = MAX_DEPTH) -> bool:
    """Whether a decoded value (a YAML document) nests deeper than ``limit``: a walk with its own stack,
    no recursion, that stops at the first path too deep. A container shared by several paths (a YAML
    alias) is walked again only when reached at a shallower depth, so a shared or cyclic one ends."""
    stack = [(value, 1)]
    seen: dict[int, int] = {}
    while stack:
        v, depth = stack.pop()
        if isinstance(v, (dict, list)):
            if depth > limit:
                return True
            if seen.get(id(v), limit + 1) <= depth:
                continue
            seen[id(v)] = depth
            stack.extend((x, depth + 1) for x in (v.values() if isinstance(v, dict) else v))
    return False


def too_deep(limit: int = MAX_DEPTH) -> str:
    """The reason for a record nested deeper than ``limit`` (one wording on every path)."""
    return f"nested deeper than {limit} levels of arrays and objects"


def too_long(size: int | None, limit: int, what: str = "record") -> str:
    """The reason for a record longer than ``limit`` bytes (``size``: how long, when known)."""
    known = f" ({size:,} bytes)" if size is not None else ""
    return f"{what} is longer than {limit:,} bytes{known} (raise --max-record-bytes to read it)"


def parse_size(text: str) -> int:
    """``"64MiB"`` -> 67108864; a plain number is bytes; KB/MB/GB are powers of 1000 and K/M/G,
    KiB/MiB/GiB powers of 1024. ValueError when ``text`` is not a positive size."""
    m = _SIZE_RE.fullmatch(text)
    if m is None:
        raise ValueError(f"not a size: {text!r}")
    value = int(m.group(1)) * _UNITS[(m.group(2) or "").lower()]
    if value < 1:
        raise ValueError(f"not a positive size: {text!r}")
    return value
