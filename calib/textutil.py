"""Text from a store shown to people (a terminal, a log line, a plot label): shown, never interpreted.

A dump's names may hold newlines, ANSI escape sequences, NUL or right-to-left overrides. :func:`visible`
writes every control, format (bidirectional marks, zero-width) and line/paragraph-separator character
as its escape, so such a name can neither restyle nor rewrite a screen, nor reorder the line it sits in.
One function for every place that shows a name (the CLI's tables, recalibration log lines, report plots).
"""

from __future__ import annotations

import unicodedata

_NAMED = {"\n": "\\n", "\r": "\\r", "\t": "\\t"}


def _visible_char(ch: str) -> str:
    if ch in _NAMED:
        return _NAMED[ch]
    if unicodedata.category(ch) in ("Cc", "Cf", "Zl", "Zp"):
        return f"\\u{ord(ch):04x}" if ord(ch) > 0xFF else f"\\x{ord(ch):02x}"
    return ch


def visible(text: object) -> str:
    """``text`` with control and format characters written as escapes (``\\n``, ``\\x1b``, ``\\u202e``)."""
    return "".join(_visible_char(ch) for ch in str(text))


def cut(text: str, width: int, *, say_length: int | None = None) -> str:
    """``text`` cut to ``width`` characters with an ellipsis; ``say_length``: also say the full length."""
    if len(text) <= width:
        return text
    if say_length is not None:
        return text[: width - 1] + f"… ({say_length:,} chars)"
    return text[: width - 1] + "…"
