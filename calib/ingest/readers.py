"""Streaming readers: yield ``(line, record | None, error | None, raw)`` without loading whole files.

A reader never raises on bad data: a line that is not UTF-8, not JSON, nested deeper than
``calib.jsonlimits.MAX_DEPTH`` or longer than the record size limit comes back with an error string,
so the ingest can quarantine it with its file and line and carry on. Memory is bounded by the limit
(``max_bytes``), not by the input: a longer line is read in pieces and skipped to its newline, never
held whole.

A file that ends before the size it had when it was opened (cut while it was read) ends with an
:class:`EndedEarly` error at the line where it ended: the partial last record is never parsed.
"""

from __future__ import annotations

import json
import os
import re
from collections.abc import Iterator
from pathlib import Path
from typing import IO, Any, BinaryIO

from calib.jsonlimits import DEFAULT_MAX_RECORD_BYTES, depth_error, too_deep, too_long

Item = tuple[int, Any, "str | None", "bytes | str | None"]

_DECODER = json.JSONDecoder()
SKIP_PIECE = 1 << 20  # how much of an overlong line is read at a time while skipping it
RAW_KEPT = 2000  # bytes of an overlong record kept for the quarantine (the store keeps 2,000 characters)


class EndedEarly(str):
    """A reader's error meaning: the file is shorter than when it was opened, so it was cut while it
    was read. The ingest commits what came before and reports the file (``calib ingest`` exits 1)."""


def ended_early(size_at_open: int, read: int, *, partial: bool = True) -> EndedEarly:
    """The reason for the record a cut falls in (``partial``), or for the line after a cut that fell
    right after a newline."""
    what = "this record is incomplete" if partial else "what followed this line is missing"
    return EndedEarly(f"the file ended early: it had {size_at_open:,} bytes when it was opened and ended after "
                      f"{read:,} (cut while it was read); {what}")


def _loads(text: str) -> Any:
    # JSON has no NaN/Infinity; Python's json accepts them by default, which would let a NaN reward
    # through. Reject them here with a clear reason.
    def bad_constant(name: str) -> Any:
        raise ValueError(f"{name} is not valid JSON")

    return json.loads(text, parse_constant=bad_constant)


def iter_lines(f: BinaryIO, max_bytes: int = DEFAULT_MAX_RECORD_BYTES) -> Iterator[tuple[int, bytes, str | None]]:
    """``(line number, bytes, error)`` for each non-blank line of the binary file ``f``.

    A line is read with at most ``max_bytes`` + 1 bytes at once: a longer one (its newline not
    counted) comes back with an error and its first ``RAW_KEPT`` bytes, the rest read in pieces of
    ``SKIP_PIECE`` and dropped. When the file ends short of its size at opening, the last item is an
    :class:`EndedEarly` error at the line where it ended (with that partial line's bytes, if any).
    """
    size_at_open = os.fstat(f.fileno()).st_size
    piece = max_bytes + 1
    lineno = 0
    while True:
        raw = f.readline(piece)
        if not raw:
            break
        lineno += 1
        if len(raw) == piece and not raw.endswith(b"\n"):
            size = len(raw) + _skip_line(f)
            yield lineno, raw[:RAW_KEPT], too_long(size, max_bytes, "line")
            continue
        if not raw.endswith(b"\n") and f.tell() < size_at_open:
            yield lineno, raw, ended_early(size_at_open, f.tell())
            return
        if raw.strip():
            yield lineno, raw, None
    if f.tell() < size_at_open:
        yield lineno + 1, b"", ended_early(size_at_open, f.tell(), partial=False)


def _skip_line(f: BinaryIO) -> int:
    """Read to the end of the current line in bounded pieces; the number of bytes skipped (newline not
    counted)."""
    skipped = 0
    while True:
        raw = f.readline(SKIP_PIECE)
        if not raw:
            return skipped
        if raw.endswith(b"\n"):
            return skipped + len(raw) - 1
        skipped += len(raw)


def decode_line(raw: bytes) -> tuple[str | None, str | None]:
    """``(text, None)`` for a line that is UTF-8 and nests no deeper than the limit, else ``(text or
    None, reason)``: the per-record path and the fast path give the same reasons."""
    try:
        text = raw.decode("utf-8")
    except UnicodeDecodeError as e:
        return None, f"line is not valid UTF-8 ({e.reason} at byte {e.start})"
    return text, depth_error(text)


def iter_jsonl(path: Path, max_bytes: int = DEFAULT_MAX_RECORD_BYTES) -> Iterator[Item]:
    """One JSON value per line; blank lines are skipped; bytes are decoded per line."""
    with open(path, "rb") as f:
        for lineno, raw, err in iter_lines(f, max_bytes):
            text = None
            if err is None:
                text, err = decode_line(raw)
            if err is not None:
                yield lineno, None, err, raw if text is None else text
                continue
            try:
                yield lineno, _loads(text), None, None  # type: ignore[arg-type]
            except (ValueError, RecursionError) as e:
                yield lineno, None, f"invalid JSON: {e}", text


SNIFF_LINES = 20  # lines a sniffer looks at for a first record that decodes
SNIFF_LINE_BYTES = 1 << 25  # and at most this much of each (a verifiers prompt can be long)


def first_record(path: Path, max_bytes: int = DEFAULT_MAX_RECORD_BYTES) -> Any:
    """The first of the first ``SNIFF_LINES`` non-blank lines that is a JSON value within the limits
    (each line read up to ``min(max_bytes, SNIFF_LINE_BYTES)``), else None: what format sniffing looks at."""
    for k, (_line, rec, err, _raw) in enumerate(iter_jsonl(path, min(max_bytes, SNIFF_LINE_BYTES))):
        if k >= SNIFF_LINES:
            return None
        if err is None:
            return rec
    return None


def iter_json_array(path: Path, chunk_size: int = 1 << 20, max_bytes: int = DEFAULT_MAX_RECORD_BYTES) -> Iterator[Item]:
    """Elements of a top-level JSON array (tau-bench results), decoded incrementally.

    Memory stays bounded by the largest element (at most ``max_bytes``) plus one chunk: an element
    that does not end within ``max_bytes`` is skipped to its end by its brackets, in chunks, and
    reported as too long; one nested deeper than ``MAX_DEPTH`` is skipped the same way. The ``line``
    of an element is the line where it starts in the file. A malformed element ends the array (JSON
    cannot resync reliably): the rest of the file is reported as one error at the line where decoding
    failed.
    """
    import io

    with open(path, "rb") as fb:
        size_at_open = os.fstat(fb.fileno()).st_size
        f = io.TextIOWrapper(fb, encoding="utf-8")
        try:
            scan = _ArrayScanner(f, f.read(chunk_size), chunk_size, max_bytes)
        except UnicodeDecodeError as e:
            yield 1, None, f"file is not valid UTF-8 ({e.reason})", None
            return
        try:
            for item in scan.elements():
                if scan.eof and item[2] is not None and fb.tell() < size_at_open:  # cut while it was read
                    item = (item[0], None, ended_early(size_at_open, fb.tell()), item[3])
                yield item
        except _Utf8Error as e:
            yield scan.line, None, f"file is not valid UTF-8 ({e})", None


# Outside a string: the next quote, bracket or comma; inside: the next quote or backslash.
_OUTSIDE_RE = re.compile(r'["\[\]{},]')
_INSIDE_RE = re.compile(r'["\\]')
_NUMBER_TAIL_RE = re.compile(r"[0-9.eE+-]*")  # what may still belong to a number: read on before taking it


class _ArrayScanner:
    """A text buffer over a file, read on as decoding needs, with the current position and line."""

    def __init__(self, f: IO[str], buf: str, chunk_size: int, max_bytes: int = DEFAULT_MAX_RECORD_BYTES):
        self.f, self.buf, self.chunk_size, self.max_bytes = f, buf, chunk_size, max_bytes
        self.pos, self.line, self.eof = 0, 1, False

    def more(self, size: int | None = None) -> bool:
        """Append the next chunk (``size`` characters, default one chunk), dropping what was consumed;
        False at the end of the file."""
        if self.eof:
            return False
        try:
            chunk = self.f.read(size or self.chunk_size)
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
            item, resumable = self.element()
            yield item
            if item[2] is not None and not resumable:
                return

    def element(self) -> tuple[Item, bool]:
        """The value at the position, reading on while it runs past the buffer, and whether the array
        can go on after it (an element skipped for its depth or size can; a malformed one cannot)."""
        start_line = self.line
        while True:
            try:
                obj, end = _DECODER.raw_decode(self.buf, self.pos)
                if isinstance(obj, (int, float)) and _NUMBER_TAIL_RE.fullmatch(self.buf, end) and self.more():
                    continue  # a number at the end of the buffer ("2" of "2.5") may go on in the next chunk
                break
            except RecursionError:
                return self.skip(start_line, too_deep())
            except json.JSONDecodeError as e:
                if not _cut_by_buffer(e, self.buf):
                    return (start_line, None, f"invalid JSON: {e.msg}", self.at()), False
                held = len(self.buf) - self.pos
                if held > self.max_bytes:  # more characters than bytes allowed
                    return self.skip(start_line, too_long(None, self.max_bytes, "element"))
                # read on, doubling what is held (so that a long element is decoded a few times, not once
                # per chunk) but not past the limit by more than a chunk
                if self.more(max(self.chunk_size, min(held, self.max_bytes + 1 - held))):
                    continue
                return (start_line, None, f"invalid JSON: {e.msg}", self.at()), False
        text = self.buf[self.pos:end]
        self.line += self.buf.count("\n", self.pos, end)
        self.pos = end
        err = depth_error(text)
        if err is None and len(text) * 4 > self.max_bytes and len(text.encode("utf-8")) > self.max_bytes:
            err = too_long(len(text.encode("utf-8")), self.max_bytes, "element")
        if err is not None:
            return (start_line, None, err, text[:RAW_KEPT]), True
        return (start_line, obj, None, None), True

    def skip(self, start_line: int, reason: str) -> tuple[Item, bool]:
        """Skip the value at the position to its end by its brackets and strings, in chunks (it is never
        held whole), and report it with ``reason``; the end of the file before its end is an error
        that ends the array."""
        raw = self.at()
        walk = _Walk()
        while True:
            end = walk.end_in(self.buf, self.pos)
            self.line += self.buf.count("\n", self.pos, len(self.buf) if end is None else end)
            if end is not None:
                self.pos = end
                return (start_line, None, reason, raw), True
            self.pos = len(self.buf)
            if not self.more():
                return (start_line, None, f"{reason}; the file ends inside it", raw), False


class _Walk:
    """Where one JSON value ends, found by its brackets and strings over successive pieces of text,
    without recursion and without holding the value: the state carries over from piece to piece."""

    def __init__(self) -> None:
        self.depth, self.in_string, self.escaped = 0, False, False

    def end_in(self, buf: str, i: int) -> int | None:
        """The index in ``buf`` just after the value that started at or before ``i``; None when it goes
        on past ``buf``."""
        while i < len(buf):
            if self.escaped:
                i, self.escaped = i + 1, False
                continue
            m = (_INSIDE_RE if self.in_string else _OUTSIDE_RE).search(buf, i)
            if m is None:
                return None
            c, i = m.group(), m.end()
            if self.in_string:
                self.escaped = c == "\\"
                self.in_string = self.escaped
                if not self.in_string and self.depth == 0:  # a string was the whole value
                    return i
            elif c == '"':
                self.in_string = True
            elif c in "[{":
                self.depth += 1
            elif self.depth == 0:  # , ] } right after a scalar: the value ended before it
                return m.start()
            elif c in "]}":
                self.depth -= 1
                if self.depth == 0:
                    return i
        return None


def _cut_by_buffer(e: json.JSONDecodeError, buf: str) -> bool:
    """Whether a decoding error may only mean that the element runs past the buffer (read on), rather
    than malformed JSON (no amount of reading mends it)."""
    return e.msg.startswith("Unterminated string") or e.pos >= len(buf) - 6


class _Utf8Error(Exception):
    pass
