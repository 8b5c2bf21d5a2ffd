"""Text from a store (signal names, run ids) printed to a terminal: shown, never interpreted.

A dump's names may hold rich markup (``[bold]``), ANSI escape sequences, newlines or right-to-left
overrides. :func:`term_text` makes a ``rich.text.Text`` (never parsed as markup) in which every control
and bidirectional-formatting character is written as its escape, so a name can neither restyle nor
rewrite the screen, nor reorder the line it sits in.
"""

from __future__ import annotations

import unicodedata

from rich.text import Text


def _visible(ch: str) -> str:
    if ch in "\n\r\t":
        return {"\n": "\\n", "\r": "\\r", "\t": "\\t"}[ch]
    cat = unicodedata.category(ch)
    if cat in ("Cc", "Cf", "Zl", "Zp"):  # controls, format (bidi marks, zero-width), line/paragraph separators
        return f"\\u{ord(ch):04x}" if ord(ch) > 0xFF else f"\\x{ord(ch):02x}"
    return ch


def plain_text(s: object, max_chars: int = 200) -> str:
    """``s`` with control and format characters escaped, cut to ``max_chars`` (with the full length said)."""
    text = "".join(_visible(ch) for ch in str(s))
    if len(text) > max_chars:
        text = text[: max_chars - 1] + f"… ({len(str(s)):,} chars)"
    return text


def term_text(s: object, max_chars: int = 200) -> Text:
    """A rich ``Text`` of :func:`plain_text` (markup in ``s`` stays literal)."""
    return Text(plain_text(s, max_chars))
