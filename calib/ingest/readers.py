"""Streaming readers: yield ``(line, record | None, error | None, raw)`` without loading whole files.

A reader never raises on bad data: a line that is not UTF-8 or not JSON comes back with an error
string, so the ingest can quarantine it with its file and line and carry on.
"""

from __future__ import annotations

import json
from collections.abc import Iterator
from pathlib import Path
from typing import IO, Any

Item = tuple[int, Any, "str | None", "bytes | str | None"]

_DECODER = json.JSONDecoder()


def _loads(text: str) -> Any:
    # JSON has no NaN/Infinity; Python's json accepts them by default, which would let a NaN reward
    # through. Reject them here with a clear reason.
    def bad_constant(name: str) -> Any:
        raise ValueError(f"{name} is not valid JSON")

    return json.loads(text, parse_constant=bad_constant)


def iter_jsonl(path: Path) -> Iterator[Item]:
    """One JSON value per line; blank lines are skipped; bytes are decoded per line."""
    with open(path, "rb") as f:
        for lineno, raw in enumerate(f, start=1):
            if not raw.strip():
                continue
            try:
                text = raw.decode("utf-8")
            except UnicodeDecodeError as e:
                yield lineno, None, f"line is not valid UTF-8 ({e.reason} at byte {e.start})", raw
                continue
            try:
                yield lineno, _loads(text), None, None
            except (ValueError, RecursionError) as e:
                yield lineno, None, f"invalid JSON: {e}", text


def iter_json_array(path: Path, chunk_size: int = 1 << 20) -> Iterator[Item]:
    """Elements of a top-level JSON array (tau-bench results), decoded incrementally.

    Memory stays bounded by the largest element plus one chunk. The ``line`` of an element is the
    line where it starts in the file. A malformed element ends the array (JSON cannot resync
    reliably): the rest of the file is reported as one error at the line where decoding failed.
    """
    import io

    with open(path, "rb") as fb:
        f = io.TextIOWrapper(fb, encoding="utf-8")
        try:
            scan = _ArrayScanner(f, f.read(chunk_size), chunk_size)
        except UnicodeDecodeError as e:
            yield 1, None, f"file is not valid UTF-8 ({e.reason})", None
            return
        try:
            yield from scan.elements()
        except _Utf8Error as e:
            yield scan.line, None, f"file is not valid UTF-8 ({e})", None


class _ArrayScanner:
    """A text buffer over a file, read on as decoding needs, with the current position and line."""

    def __init__(self, f: IO[str], buf: str, chunk_size: int):
        self.f, self.buf, self.chunk_size = f, buf, chunk_size
        self.pos, self.line, self.eof = 0, 1, False

    def more(self) -> bool:
        """Append the next chunk (dropping what was consumed); False at the end of the file."""
        if self.eof:
            return False
        try:
            chunk = self.f.read(self.chunk_size)
        except UnicodeDecodeError as e:
            self.eof = True
            raise _Utf8Error(str(e.reason)) from None
        if not chunk:
            self.eof = True
            return False
        self.buf = self.buf[self.pos:] + chunk
        self.pos = 0
        return True

    def skip_ws(self) -> None:
        while True:
            while self.pos < len(self.buf) and self.buf[self.pos] in " \t\r\n":
                if self.buf[self.pos] == "\n":
                    self.line += 1
                self.pos += 1
            if self.pos < len(self.buf) or not self.more():
                return

    def at(self) -> str:
        """The text at the position, for an error report."""
        return self.buf[self.pos:self.pos + 200]

    def elements(self) -> Iterator[Item]:
        self.skip_ws()
        if self.pos >= len(self.buf):
            yield 1, None, "empty file", None
            return
        if self.buf[self.pos] != "[":
            yield self.line, None, "expected a JSON array of results ('[' at the start)", self.at()
            return
        self.pos += 1
        first = True
        while True:
            self.skip_ws()
            if self.pos >= len(self.buf):
                yield self.line, None, "truncated JSON: the array is not closed", None
                return
            if self.buf[self.pos] == "]":
                return
            if not first:
                if self.buf[self.pos] != ",":
                    yield self.line, None, f"invalid JSON: expected ',' or ']' , got {self.buf[self.pos]!r}", self.at()
                    return
                self.pos += 1
                self.skip_ws()
            first = False
            item = self.element()
            yield item
            if item[2] is not None:
                return

    def element(self) -> Item:
        """The value at the position, reading on while it runs past the buffer."""
        start_line = self.line
        while True:
            try:
                obj, end = _DECODER.raw_decode(self.buf, self.pos)
                break
            except json.JSONDecodeError as e:
                if self.more():  # most likely the element runs past the buffer: read on
                    continue
                return start_line, None, f"invalid JSON: {e.msg}", self.at()
        self.line += self.buf.count("\n", self.pos, end)
        self.pos = end
        return start_line, obj, None, None


class _Utf8Error(Exception):
    pass
