"""Which input format a file holds: ``sniff_format`` for ``calib ingest --format auto``.

Its own module, above the readers: the format modules (``art``, ``verifiers``) read their files with
:mod:`calib.ingest.readers`, and sniffing asks each of them, so it cannot live in ``readers`` without
the two importing each other.

Sniffing never fails on hostile input: it reads at most ``readers.SNIFF_LINES`` lines, each through the same
bounded reader as the ingest (``max_bytes``), skips the lines that are too long, too deep or not JSON,
and decides on the first JSON object; with none, the file is ``native`` (whose ingest quarantines each
bad line with its reason).
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

from calib.ingest.art import is_art_parquet, sniff_art
from calib.ingest.readers import SNIFF_LINE_BYTES, first_record, iter_lines
from calib.ingest.tau2 import sniff_tau2
from calib.ingest.verifiers import sniff_verifiers
from calib.ingest.verl import sniff_verl
from calib.jsonlimits import DEFAULT_MAX_RECORD_BYTES, nesting


def sniff_format(path: Path, max_bytes: int = DEFAULT_MAX_RECORD_BYTES) -> str:
    """``tau2`` for a tau2-bench results object, ``taubench`` for a JSON array or tau-bench records,
    ``verifiers`` for verifiers rollouts or v1 episodes, ``art`` for ART trajectory logs (Parquet,
    YAML, or JSONL groups), ``verl`` for verl's rollout dumps (input, output, score, step), ``chat``
    for prompt/completion or messages+reward lines, else ``native``."""
    with open(path, "rb") as f:
        head = f.read(65536)
    if head.startswith(b"PAR1") or path.suffix == ".parquet":
        return "art" if is_art_parquet(path) else "native"
    text = head.decode("utf-8", errors="replace").lstrip()
    if path.suffix in (".yaml", ".yml"):
        return "art" if "trajectories:" in text else "native"
    if sniff_tau2(text):
        return "tau2"
    if text.startswith("[") and is_json_array_file(path, max_bytes):
        return "taubench"
    return _format_of(first_record(path, max_bytes))


def is_json_array_file(path: Path, max_bytes: int = DEFAULT_MAX_RECORD_BYTES) -> bool:
    """Whether a file that starts with ``[`` is one JSON array (tau-bench results) rather than JSON
    lines whose first line is an array: it is JSON lines when its first line closes every bracket it
    opens and another line follows. A first line too long to look at counts as an array."""
    with open(path, "rb") as f:
        lines = iter_lines(f, min(max_bytes, SNIFF_LINE_BYTES))
        first = next(lines, None)
        if first is None or first[2] is not None:
            return True
        _, final = nesting(first[1].decode("utf-8", errors="replace"))
        return final != 0 or next(lines, None) is None


def _format_of(rec: Any) -> str:
    """The format a first record says the file is in."""
    if isinstance(rec, dict):
        if "traj" in rec:
            return "taubench"
        if sniff_verifiers(rec):
            return "verifiers"
        if sniff_art(rec):
            return "art"
        if sniff_verl(rec):
            return "verl"
        if "completion" in rec or ("messages" in rec and "task_id" not in rec and "outcome" not in rec):
            return "chat"
    return "native"
