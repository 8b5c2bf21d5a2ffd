"""Which input format a file holds: ``sniff_format`` for ``calib ingest --format auto``.

Its own module, above the readers: the format modules (``art``, ``verifiers``) read their files with
:mod:`calib.ingest.readers`, and sniffing asks each of them, so it cannot live in ``readers`` without
the two importing each other.
"""

from __future__ import annotations

import json
from pathlib import Path

from calib.ingest.art import is_art_parquet, sniff_art
from calib.ingest.tau2 import sniff_tau2
from calib.ingest.verifiers import sniff_verifiers


def sniff_format(path: Path) -> str:
    """``tau2`` for a tau2-bench results object, ``taubench`` for a JSON array or tau-bench records,
    ``verifiers`` for verifiers rollouts or v1 episodes, ``art`` for ART trajectory logs (Parquet,
    YAML, or JSONL groups), ``chat`` for prompt/completion or messages+reward lines, else ``native``."""
    with open(path, "rb") as f:
        head = f.read(65536)
    if head.startswith(b"PAR1") or path.suffix == ".parquet":
        return "art" if is_art_parquet(path) else "native"
    text = head.decode("utf-8", errors="replace").lstrip()
    if path.suffix in (".yaml", ".yml"):
        return "art" if "trajectories:" in text else "native"
    if sniff_tau2(text):
        return "tau2"
    if text.startswith("["):
        return "taubench"
    first = text.split("\n", 1)[0]
    if "\n" not in text and len(head) == 65536:  # a long first record (a verifiers prompt): read it whole
        with open(path, "rb") as f:
            first = f.readline(1 << 25).decode("utf-8", errors="replace")
    try:
        rec = json.loads(first)
    except ValueError:
        return "native"
    if isinstance(rec, dict):
        if "traj" in rec:
            return "taubench"
        if sniff_verifiers(rec):
            return "verifiers"
        if sniff_art(rec):
            return "art"
        if "completion" in rec or ("messages" in rec and "task_id" not in rec and "outcome" not in rec):
            return "chat"
    return "native"
