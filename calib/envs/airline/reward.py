"""tau-bench's reward and our partial-progress measure, as pure functions of database diffs.

Reward (tau-bench): 1 iff the agent's final data equal the data obtained by replaying the task's
expected actions on a fresh copy, and every required output string occurs in one of the agent's
replies (case-insensitive, commas ignored, so "1,286" matches "1286").

Progress (docs/architecture.md section 3, the ``progress`` signal): the expected database changes are the fields
of existing records that the gold replay changed, plus each record it created; a change *holds*
when the agent's data have the gold value there. Field granularity makes a half-done task show as
half done (a cancellation sets ``status`` and extends ``payment_history``: two changes); a new
booking counts as one change because a booking with wrong flights is not 80% right.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

from calib.envs.airline.db import AirlineDB, record_key

Change = tuple[str, str, str | None]  # (table, record id, field or None for a whole new record)


@dataclass(frozen=True)
class Gold:
    """What the gold replay produced: its diff against the base, and its changes with values."""

    diff: dict[tuple[str, str], str]
    changes: dict[Change, str]
    errors: list[str]  # observations of expected actions that failed (should be empty)


def gold_from_db(db: AirlineDB, errors: list[str]) -> Gold:
    changes: dict[Change, str] = {}
    for table, over in db.overlay.items():
        base = db.base[table]
        for key, rec in over.items():
            if key not in base:
                changes[(table, key, None)] = record_key(rec)
                continue
            old = base[key]
            for f in sorted(set(rec) | set(old)):
                new_v = record_key(rec.get(f, _MISSING))
                if new_v != record_key(old.get(f, _MISSING)):
                    changes[(table, key, f)] = new_v
    return Gold(diff=db.diff(), changes=changes, errors=errors)


_MISSING = "<missing>"


def held_changes(db: AirlineDB, gold: Gold) -> dict[Change, bool]:
    """For each expected change: does the agent's data have the gold value there?"""
    out: dict[Change, bool] = {}
    for (table, key, f), want in gold.changes.items():
        rec = db.reservation(key) if table == "reservations" else db.user(key)
        if rec is None:
            out[(table, key, f)] = False
        elif f is None:
            out[(table, key, f)] = record_key(rec) == want
        else:
            out[(table, key, f)] = record_key(rec.get(f, _MISSING)) == want
    return out


def progress_fraction(held: dict[Change, bool]) -> float:
    """Share of expected changes that hold; 1.0 when the task expects none."""
    if not held:
        return 1.0
    return sum(held.values()) / len(held)


def _squash(text: str) -> str:
    return text.lower().replace(",", "")


def outputs_found(outputs: list[str], replies: list[str]) -> dict[str, bool]:
    """Which required outputs occur in some reply (case-insensitive, commas ignored)."""
    texts = [_squash(r) for r in replies if isinstance(r, str)]
    return {o: any(_squash(str(o)) in t for t in texts) for o in outputs}


def change_label(change: Change) -> str:
    table, key, f = change
    return f"{table}/{key}" + (f".{f}" if f else "")


def summarize(agent: AirlineDB, gold: Gold, outputs: list[str], replies: list[str]) -> dict[str, Any]:
    """Everything ``evaluate`` reports: db match, outputs, progress, and their details."""
    diff = agent.diff()
    db_match = diff == gold.diff
    found = outputs_found(outputs, replies)
    held = held_changes(agent, gold)
    return {
        "db_match": db_match,
        "outputs_ok": all(found.values()),
        "progress": progress_fraction(held),
        "details": {
            "outputs": found,
            "changes": {change_label(c): ok for c, ok in held.items()},
            # records where the agent's data differ from the gold data (either side changed them)
            "mismatched_records": sorted(
                f"{t}/{k}" for (t, k) in set(diff) | set(gold.diff) if diff.get((t, k)) != gold.diff.get((t, k))
            ),
            "gold_errors": gold.errors,
        },
    }
