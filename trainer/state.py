"""Resumable stage records: what a long job (``calib loop``, ``calib experiment real-lm``) has finished.

A JSON file of results by key, rewritten atomically (temp file, then ``os.replace``) after each stage,
so a killed job restarts where it stopped and never reads half a file. One class for both jobs: the
loop keys its stages by (iteration, stage), the experiment by stage name.
"""

from __future__ import annotations

import json
import os
from pathlib import Path
from typing import Any

from calib.jsonutil import plain


class StageRecord:
    """``{key: {sub: result}}`` (two levels) or ``{key: result}`` in one JSON file under ``root``."""

    def __init__(self, path: Path, root: str | None = None):
        self.path = Path(path)
        self.root = root
        raw = json.loads(self.path.read_text()) if self.path.exists() else {}
        self.data: dict[str, Any] = (raw.get(root, {}) if root else raw) if isinstance(raw, dict) else {}

    def get(self, *keys: str) -> Any:
        node: Any = self.data
        for k in keys:
            if not isinstance(node, dict) or k not in node:
                return None
            node = node[k]
        return node

    def put(self, *keys: str, value: Any) -> None:
        node = self.data
        for k in keys[:-1]:
            node = node.setdefault(k, {})
        node[keys[-1]] = value
        self.save()

    def save(self) -> None:
        doc = {self.root: self.data} if self.root else self.data
        tmp = self.path.with_name(self.path.name + ".tmp")
        tmp.write_text(json.dumps(plain(doc, default=str), indent=1))
        os.replace(tmp, self.path)
