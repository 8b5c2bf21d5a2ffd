"""Regenerate data/sample_rollouts.jsonl: the small dump that `make demo` ingests.

Deterministic (seeded), so the committed file only changes when the generator does.
"""

from __future__ import annotations

import json
import sys
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))

from calib.ingest.synthetic import synthetic_episodes  # noqa: E402


def main() -> None:
    out = ROOT / "data" / "sample_rollouts.jsonl"
    out.parent.mkdir(exist_ok=True)
    with open(out, "w", encoding="utf-8") as f:
        for ep in synthetic_episodes(48, seed=7, run_id="sample", group_size=8, turns_mean=5):
            f.write(json.dumps(ep, ensure_ascii=False) + "\n")
    print(f"wrote {out}")


if __name__ == "__main__":
    main()
