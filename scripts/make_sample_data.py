"""Regenerate data/sample_rollouts.jsonl: the small dump that `make demo` ingests.

Real rollouts of the embedded `airline-mini` domain: the oracle policy with seeded mistakes (rate 0.3
of each kind) against the scripted customer, 4 samples per task. Deterministic, so the committed
file only changes when the environment, the oracle or the user simulator does.
"""

from __future__ import annotations

import json
import sys
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))

from calib.policies.oracle import OracleConfig
from calib.rollout.factories import make_policy
from calib.rollout.runner import run_rollouts, strip_private


def main() -> None:
    out = ROOT / "data" / "sample_rollouts.jsonl"
    out.parent.mkdir(exist_ok=True)
    policy = make_policy("oracle", oracle=OracleConfig.uniform(0.3))
    episodes = run_rollouts("airline-mini", policy, "scripted", "all", samples=4, max_turns=20,
                            run_id="sample", seed=7, concurrency=8)
    with open(out, "w", encoding="utf-8") as f:
        f.writelines(json.dumps(strip_private(ep), ensure_ascii=False) + "\n" for ep in episodes)
    ok = sum(1 for e in episodes if e.get("success"))
    print(f"wrote {out}: {len(episodes)} episodes, {ok} successes")


if __name__ == "__main__":
    main()
