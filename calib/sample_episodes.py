"""Seeded synthetic airline-like episodes in the native format, for tests, benches and the sample data.

One generator, :func:`synthetic_records`, so that the ingest bench, the analyze bench and the tests
measure the same data (no environment or model is needed): episodes whose success follows from what
they do. Successes make the expected writes with the right arguments; failures make wrong-argument
writes, redundant lookups, unconfirmed writes, malformed calls (arguments that are not JSON, unknown
tools) and tool errors; ``info["progress"]`` holds the per-turn progress, as calib's own rollouts
write it. It exercises every built-in signal end to end, and the ingest's columnar fast path takes
every record of it (``tests/test_ingest_fast.py``).
"""

from __future__ import annotations

import json
from collections.abc import Iterator
from typing import Any

import numpy as np

_CONFIRM = ("yes, go ahead", "Yes please, proceed.", "confirm", "yes")
_NOT_CONFIRM = ("hmm, what would that cost?", "wait, let me think", "can you explain the fees?")


def _task(k: int) -> dict[str, Any]:
    """Task k: a user and a reservation, and one or two expected writes (deterministic in k)."""
    user = f"user_{k:05d}"
    res = f"R{k:05d}"
    kind = k % 3
    if kind == 0:
        actions = [{"name": "cancel_reservation", "arguments": {"reservation_id": res}}]
    elif kind == 1:
        actions = [
            {
                "name": "update_reservation_baggages",
                "arguments": {"reservation_id": res, "total_baggages": 1 + k % 3, "nonfree_baggages": k % 2,
                              "payment_id": f"credit_card_{k:05d}"},
            }
        ]
    else:
        actions = [
            {"name": "cancel_reservation", "arguments": {"reservation_id": res}},
            {"name": "send_certificate", "arguments": {"user_id": user, "amount": 50 + 10 * (k % 5)}},
        ]
    return {"user_id": user, "reservation_id": res, "actions": actions}


def _wrong(action: dict[str, Any], rng: np.random.Generator) -> dict[str, Any]:
    """The same tool with one argument changed (a soft match, and a non-gold write)."""
    args = dict(action["arguments"])
    key = sorted(args)[int(rng.integers(len(args)))]
    v = args[key]
    args[key] = v + 1 if isinstance(v, (int, float)) else f"{v}X"
    return {"name": action["name"], "arguments": args}


def synthetic_records(
    n_groups: int = 50,
    group_size: int = 8,
    *,
    seed: int = 0,
    run_id: str = "synthetic",
    iteration: int = 0,
    chatter: float = 0.0,
) -> Iterator[dict[str, Any]]:
    """Native episode records (docs/architecture.md section 2) of an airline-like agent, deterministic in ``seed``.

    Per task, a skill level p in (0.2, 0.95) sets how likely each write is made with the right
    arguments; episodes that make every expected write correctly and no wrong write succeed. Extra
    behaviours (redundant lookups, unconfirmed writes, malformed calls, chatty messages) are drawn
    more often in episodes that go wrong, as with real agents. ``chatter`` adds a Poisson number
    (this mean) of extra read-only lookups per episode (flight searches, ``think``), e.g. 3.5 for
    about 10 turns per episode as in tau-bench airline.
    """
    rng = np.random.default_rng(seed)
    for gi in range(n_groups):
        task = _task(gi)
        skill = 0.2 + 0.75 * rng.random()
        for k in range(group_size):
            yield _episode(task, gi, k, skill, rng, run_id, iteration, chatter)


_AIRPORTS = ("JFK", "SEA", "LAX", "ORD", "ATL", "DFW", "BOS", "MIA")


def _episode(task, gi, k, skill, rng, run_id, iteration, chatter=0.0) -> dict[str, Any]:
    msgs: list[dict[str, Any]] = [
        {"role": "system", "content": "You are a synthetic airline agent."},
        {"role": "user", "content": f"Hi, I am {task['user_id']} and I need help with {task['reservation_id']}."},
    ]
    n_calls = 0
    progress: list[float] = []
    done = 0
    wrong_write = False
    expected = task["actions"]
    sloppy = rng.random() > skill  # a sloppy episode makes more mistakes of every kind

    def call(name: str, args: Any, result: str, *, raw: bool = False) -> None:
        nonlocal n_calls
        n_calls += 1
        cid = f"c{n_calls}"
        msgs.append({"role": "assistant", "content": "",
                     "tool_calls": [{"id": cid, "type": "function",
                                     "function": {"name": name, "arguments": args if raw else _dumps(args)}}]})
        msgs.append({"role": "tool", "tool_call_id": cid, "name": name, "content": result})
        progress.append(done / len(expected))

    def say(text: str, reply: str | None) -> None:
        msgs.append({"role": "assistant", "content": text})
        if reply is not None:
            msgs.append({"role": "user", "content": reply})
        progress.append(done / len(expected))

    call("get_user_details", {"user_id": task["user_id"]}, json.dumps({"user_id": task["user_id"]}))
    call("get_reservation_details", {"reservation_id": task["reservation_id"]}, '{"status": "active"}')
    for _ in range(int(rng.poisson(chatter)) if chatter > 0 else 0):  # extra read-only lookups
        if rng.random() < 0.3:
            call("think", {"thought": f"check the policy for {task['reservation_id']}"}, "")
        else:
            a, b = rng.choice(len(_AIRPORTS), size=2, replace=False)
            call("search_direct_flight", {"origin": _AIRPORTS[a], "destination": _AIRPORTS[b],
                                          "date": f"2024-05-{int(rng.integers(15, 31)):02d}"}, "[]")
    if rng.random() < (0.5 if sloppy else 0.1):  # the same lookup again
        call("get_reservation_details", {"reservation_id": task["reservation_id"]}, '{"status": "active"}')
    if rng.random() < (0.4 if sloppy else 0.1):  # malformed call
        if rng.random() < 0.5:
            call("get_reservation_details", '{"reservation_id": ', "Error: arguments are not valid JSON", raw=True)
        else:
            call("get_reservation_detail", {"reservation_id": task["reservation_id"]}, "Error: unknown tool")
    for a in expected:
        confirmed = rng.random() < (0.6 if sloppy else 0.95)
        words = " ".join(f"{key}={val}" for key, val in sorted(a["arguments"].items()))
        say(f"I will call {a['name']} with {words}. Shall I proceed?",
            _CONFIRM[int(rng.integers(len(_CONFIRM)))] if confirmed else _NOT_CONFIRM[int(rng.integers(3))])
        if sloppy and rng.random() < 0.7:
            w = _wrong(a, rng)
            wrong_write = True
            call(w["name"], w["arguments"], '{"ok": true}')
            if rng.random() < 0.5:  # noticed, tries again with the right arguments
                done += 1
                call(a["name"], _jitter(a["arguments"], rng), '{"ok": true}')
        else:
            done += 1
            call(a["name"], _jitter(a["arguments"], rng), '{"ok": true}')
    say("Is there anything else?" + (" Let me also explain our policies at length." * int(sloppy)), "no thanks")
    success = done == len(expected) and not wrong_write
    return {
        "episode_id": f"{run_id}-{iteration}-g{gi:06d}-{k}",
        "run_id": run_id,
        "iteration": iteration,
        "task_id": f"synthetic/{gi}",
        "policy": "synthetic",
        "outcome": float(success),
        "success": success,
        "messages": msgs,
        "expected_actions": expected,
        "info": {"progress": progress, "skill": round(skill, 3)},
    }


def _jitter(args: dict[str, Any], rng: np.random.Generator) -> dict[str, Any]:
    """Equal arguments written differently: whole floats, padded strings, reordered keys."""
    out = {}
    for key in sorted(args, reverse=bool(rng.random() < 0.5)):
        v = args[key]
        if isinstance(v, int) and not isinstance(v, bool) and rng.random() < 0.3:
            v = float(v)
        elif isinstance(v, str) and rng.random() < 0.3:
            v = f" {v} "
        out[key] = v
    return out


def _dumps(args: Any) -> str:
    return json.dumps(args)
