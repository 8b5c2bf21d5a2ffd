"""Names from a store printed to a terminal are shown, never interpreted (issue 23: hostile names)."""

from __future__ import annotations

import io

from rich.console import Console

from calib.cli.display import plain_text, term_text


def _render(text) -> str:
    buf = io.StringIO()
    Console(file=buf, force_terminal=True, color_system="truecolor", width=200).print(text)
    return buf.getvalue()


def test_markup_in_a_name_stays_literal():
    out = _render(term_text("[bold red]rich markup[/]"))
    assert "[bold red]rich markup[/]" in out
    assert "\x1b[1" not in out  # not turned bold


def test_control_and_bidi_characters_are_escaped():
    s = "a\x1b[2Jb\nc\u202ed\0e\tf\u2028"
    assert plain_text(s) == "a\\x1b[2Jb\\nc\\u202ed\\x00e\\tf\\u2028"
    out = _render(term_text(s))
    assert "\x1b[2J" not in out and "\u202e" not in out and "\0" not in out


def test_long_names_are_cut_with_their_length():
    t = plain_text("x" * 10_000, 50)
    assert len(t) < 80 and t.endswith("(10,000 chars)")
