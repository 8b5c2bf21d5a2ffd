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
    with open(path, "rb") as fb:
        f: IO[str]
        try:
            import io

            f = io.TextIOWrapper(fb, encoding="utf-8")
            buf = f.read(chunk_size)
        except UnicodeDecodeError as e:
            yield 1, None, f"file is not valid UTF-8 ({e.reason})", None
            return
        pos, line, eof = 0, 1, False

        def more() -> bool:
            nonlocal buf, pos, eof
            if eof:
                return False
            try:
                chunk = f.read(chunk_size)
            except UnicodeDecodeError as e:
                eof = True
                raise _Utf8Error(str(e.reason)) from None
            if not chunk:
                eof = True
                return False
            buf = buf[pos:] + chunk
            pos = 0
            return True

        def skip_ws() -> None:
            nonlocal pos, line
            while True:
                while pos < len(buf) and buf[pos] in " \t\r\n":
                    if buf[pos] == "\n":
                        line += 1
                    pos += 1
                if pos < len(buf) or not more():
                    return

        try:
            skip_ws()
            if pos >= len(buf):
                yield 1, None, "empty file", None
                return
            if buf[pos] != "[":
                yield line, None, "expected a JSON array of results ('[' at the start)", buf[pos : pos + 200]
                return
            pos += 1
            first = True
            while True:
                skip_ws()
                if pos >= len(buf):
                    yield line, None, "truncated JSON: the array is not closed", None
                    return
                if buf[pos] == "]":
                    return
                if not first:
                    if buf[pos] != ",":
                        yield line, None, f"invalid JSON: expected ',' or ']' , got {buf[pos]!r}", buf[pos : pos + 200]
                        return
                    pos += 1
                    skip_ws()
                first = False
                start_line = line
                while True:
                    try:
                        obj, end = _DECODER.raw_decode(buf, pos)
                        break
                    except json.JSONDecodeError as e:
                        if more():  # most likely the element runs past the buffer: read on
                            continue
                        yield start_line, None, f"invalid JSON: {e.msg}", buf[pos : pos + 200]
                        return
                line += buf.count("\n", pos, end)
                pos = end
                yield start_line, obj, None, None
        except _Utf8Error as e:
            yield line, None, f"file is not valid UTF-8 ({e})", None


class _Utf8Error(Exception):
    pass
