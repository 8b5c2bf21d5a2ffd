"""Text from a store (signal names, run ids) printed to a terminal: shown, never interpreted.

:func:`term_text` makes a ``rich.text.Text`` (never parsed as markup) of :func:`calib.textutil.visible`,
so a name's rich markup (``[bold]``) stays literal and its control characters are escapes.
"""

from __future__ import annotations

from rich.text import Text

from calib.textutil import cut, visible


def plain_text(s: object, max_chars: int = 200) -> str:
    """``s`` with control and format characters escaped, cut to ``max_chars`` (with the full length said)."""
    return cut(visible(s), max_chars, say_length=len(str(s)))


def term_text(s: object, max_chars: int = 200) -> Text:
    """A rich ``Text`` of :func:`plain_text` (markup in ``s`` stays literal)."""
    return Text(plain_text(s, max_chars))
