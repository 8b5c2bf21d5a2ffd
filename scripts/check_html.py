"""Check that an HTML file is well-formed enough to trust: a doctype, one html/head/body, balanced
non-void elements, a charset and a Content-Security-Policy meta, and no remote references.

Usage: python scripts/check_html.py FILE   (exit 1 with the problems listed)
"""

from __future__ import annotations

import re
import sys
from html.parser import HTMLParser
from pathlib import Path

VOID = {"area", "base", "br", "col", "embed", "hr", "img", "input", "link", "meta", "param", "source", "track", "wbr"}
# Elements whose end tag HTML lets you omit; none of them is expected here, but be lenient.
OPTIONAL_END = {"p", "li", "dt", "dd", "tr", "td", "th", "thead", "tbody", "tfoot", "option"}


class _Checker(HTMLParser):
    def __init__(self) -> None:
        super().__init__(convert_charrefs=True)
        self.stack: list[tuple[str, int]] = []
        self.problems: list[str] = []
        self.counts: dict[str, int] = {}
        self.meta: list[dict[str, str]] = []

    def handle_starttag(self, tag, attrs):
        self.counts[tag] = self.counts.get(tag, 0) + 1
        if tag == "meta":
            self.meta.append({k: v or "" for k, v in attrs})
        for k, v in attrs:
            if k in ("src", "href") and v and re.match(r"^(https?:)?//", v):
                self.problems.append(f"line {self.getpos()[0]}: remote reference {k}={v!r}")
        if tag not in VOID:
            self.stack.append((tag, self.getpos()[0]))

    def handle_endtag(self, tag):
        if tag in VOID:
            return
        while self.stack and self.stack[-1][0] != tag and self.stack[-1][0] in OPTIONAL_END:
            self.stack.pop()
        if not self.stack or self.stack[-1][0] != tag:
            self.problems.append(f"line {self.getpos()[0]}: </{tag}> does not close the open element "
                                 f"{self.stack[-1] if self.stack else None}")
            return
        self.stack.pop()


def check(path: Path) -> list[str]:
    text = path.read_text(encoding="utf-8")
    c = _Checker()
    c.feed(text)
    c.close()
    problems = list(c.problems)
    if not text.lstrip().lower().startswith("<!doctype html>"):
        problems.append("no <!DOCTYPE html> at the start")
    for tag in ("html", "head", "body", "title"):
        if c.counts.get(tag) != 1:
            problems.append(f"expected one <{tag}>, found {c.counts.get(tag, 0)}")
    leftover = [t for t in c.stack if t[0] not in OPTIONAL_END]
    if leftover:
        problems.append(f"unclosed elements: {leftover[:5]}")
    if not any("charset" in m for m in c.meta):
        problems.append("no <meta charset>")
    if not any(m.get("http-equiv", "").lower() == "content-security-policy" for m in c.meta):
        problems.append("no Content-Security-Policy meta")
    return problems


def main() -> int:
    path = Path(sys.argv[1])
    problems = check(path)
    for p in problems:
        print(f"{path}: {p}")
    if not problems:
        print(f"{path}: valid HTML ({path.stat().st_size / 1024:.0f} KiB)")
    return 1 if problems else 0


if __name__ == "__main__":
    sys.exit(main())
