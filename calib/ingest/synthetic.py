"""Seeded synthetic airline-like episodes in the native format.

For the shipped sample in ``data/``, the ingest benchmark and property tests: realistic shapes
(system + user opening, tool calls with JSON results, user replies, occasional errors and invalid
calls) without needing an environment or a model.
"""

from __future__ import annotations

import json
import random
from collections.abc import Iterator
from typing import Any

_READS = [
    ("get_user_details", lambda r, u, res: {"user_id": u}),
    ("get_reservation_details", lambda r, u, res: {"reservation_id": res}),
    ("search_direct_flight", lambda r, u, res: {"origin": "JFK", "destination": r.choice(["SEA", "LAX", "ORD"]),
                                                 "date": f"2024-05-{r.randint(16, 30):02d}"}),
    ("calculate", lambda r, u, res: {"expression": f"{r.randint(50, 900)} + {r.randint(10, 300)}"}),
]
_WRITES = [
    ("cancel_reservation", lambda r, u, res: {"reservation_id": res}),
    ("update_reservation_baggages", lambda r, u, res: {"reservation_id": res, "total_baggages": r.randint(1, 3),
                                                        "nonfree_baggages": 0, "payment_id": "credit_card_1"}),
]


def synthetic_episode(rng: random.Random, *, run_id: str, task: int, sample: int, turns: int) -> dict[str, Any]:
    user = f"user_{task:04d}"
    res = "".join(rng.choice("ABCDEFGHJKLMNPQRSTUVWXYZ0123456789") for _ in range(6))
    messages: list[dict[str, Any]] = [
        {"role": "system", "content": "You are an airline agent. Follow the policy."},
        {"role": "user", "content": f"Hi, I am {user} and I need help with reservation {res}."},
    ]
    gold_name, gold_args = rng.choice(_WRITES)
    expected = [{"name": gold_name, "arguments": gold_args(rng, user, res)}]
    success = rng.random() < 0.5
    for t in range(turns - 1):
        name, make = rng.choice(_READS + _WRITES) if rng.random() < 0.9 else (gold_name, gold_args)
        args = make(rng, user, res)
        call_id = f"c{t}"
        messages.append({"role": "assistant", "content": "", "tool_calls": [
            {"id": call_id, "type": "function", "function": {"name": name, "arguments": json.dumps(args)}}]})
        result = "Error: reservation not found" if rng.random() < 0.05 else json.dumps(
            {"ok": True, "tool": name, "detail": "x" * rng.randint(20, 200)})
        messages.append({"role": "tool", "tool_call_id": call_id, "name": name, "content": result})
        if rng.random() < 0.3:
            messages.append({"role": "assistant", "content": "Shall I proceed with that?"})
            messages.append({"role": "user", "content": rng.choice(["yes", "Yes, go ahead.", "no, wait"])})
    messages.append({"role": "assistant", "content": "Your request is done. Anything else?"})
    return {
        "run_id": run_id,
        "iteration": 0,
        "task_id": f"synthetic/{task}",
        "policy": "synthetic",
        "outcome": 1.0 if success else 0.0,
        "messages": messages,
        "expected_actions": expected,
        "info": {"sample": sample},
    }


def synthetic_episodes(n: int, *, seed: int = 0, run_id: str = "synthetic", group_size: int = 8,
                       turns_mean: int = 10) -> Iterator[dict[str, Any]]:
    """``n`` episodes in groups of ``group_size`` (samples of one task); about ``turns_mean`` tool turns each."""
    rng = random.Random(seed)
    for i in range(n):
        turns = max(1, int(rng.gauss(turns_mean, 2)))
        yield synthetic_episode(rng, run_id=run_id, task=i // group_size, sample=i % group_size, turns=turns)
