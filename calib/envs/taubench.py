"""Load a tau-bench airline data directory as a :class:`~calib.envs.airline.AirlineDomain`.

Layout (as in ``../shared/taubench/airline/``): ``users.json``, ``flights.json``,
``reservations.json``, ``tasks_test.json`` (or ``tasks.json``), ``policy.md`` (or ``wiki.md``).
Tasks get ids ``taubench/<index>`` and a scripted-user profile derived from their data (ids and
values in the expected actions); the instruction text itself is passed through untouched for LLM
user simulators. Data are read at run time; nothing of tau-bench is copied into this package.
"""

from __future__ import annotations

import functools
import json
from pathlib import Path
from typing import Any

from calib.envs.airline.db import TABLES, load_tables
from calib.envs.airline.env import AirlineDomain
from calib.envs.base import Task
from calib.errors import UsageError
from calib.tools import AIRLINE_WRITE_TOOLS

TASK_FILES = ("tasks_test.json", "tasks.json")
POLICY_FILES = ("policy.md", "wiki.md")

# What a tau-bench task is about, from its first state-changing action.
KIND_OF_ACTION = {
    "book_reservation": "book",
    "cancel_reservation": "cancel",
    "update_reservation_flights": "change_flight",
    "update_reservation_baggages": "baggage",
    "update_reservation_passengers": "passengers",
    "send_certificate": "compensation",
    "transfer_to_human_agents": "transfer",
}
OPENINGS = {
    "book": "Hi, I would like to book a flight.",
    "cancel": "Hi, I would like to cancel a reservation.",
    "change_flight": "Hi, I need to change the flights on my reservation.",
    "change_cabin": "Hi, I would like to change the cabin class of my reservation.",
    "baggage": "Hi, I want to update the checked bags on my reservation.",
    "passengers": "Hi, I need to update the passenger details on my reservation.",
    "compensation": "Hi, I had a problem with a flight and would like some compensation.",
    "transfer": "Hi, I need help with something about my trip.",
    "no_write": "Hi, I have a question about my reservation.",
}


def resolve_dir(path: str | Path) -> Path:
    """Accept the airline directory itself or a tau-bench data root that contains ``airline/``."""
    p = Path(path).expanduser()
    for cand in (p, p / "airline"):
        if all((cand / f"{t}.json").exists() for t in TABLES):
            return cand.resolve()
    raise UsageError(
        f"taubench:{path}: no tau-bench airline data there (expected users.json, flights.json and "
        "reservations.json in it or in its airline/ subdirectory)"
    )


def _first_existing(d: Path, names: tuple[str, ...]) -> Path | None:
    return next((d / n for n in names if (d / n).exists()), None)


def task_kind(actions: list[dict[str, Any]], data: dict[str, dict[str, Any]] | None = None) -> str:
    """``cancel``, ``book``, ... from the actions; several kinds join with ``+``; none -> ``no_write``."""
    kinds: list[str] = []
    for a in actions:
        k = KIND_OF_ACTION.get(a["name"])
        if k == "change_flight" and data is not None:
            res = data["reservations"].get(a["arguments"].get("reservation_id"), {})
            old = [(f["flight_number"], f["date"]) for f in res.get("flights", [])]
            new = [(f.get("flight_number"), f.get("date")) for f in a["arguments"].get("flights", [])]
            if old == new and res.get("cabin") != a["arguments"].get("cabin"):
                k = "change_cabin"
        if k and k not in kinds:
            kinds.append(k)
    return "+".join(kinds) if kinds else "no_write"


def profile_from_actions(user_id: str, actions: list[dict[str, Any]], outputs: list[str], kind: str
                         ) -> dict[str, Any]:
    """A scripted-user profile from a task's data (see docs/environments.md for the keys)."""
    args = [a["arguments"] for a in actions]
    res_ids = list(dict.fromkeys(a["reservation_id"] for a in args if "reservation_id" in a))
    pay_ids = list(dict.fromkeys(
        [a["payment_id"] for a in args if "payment_id" in a]
        + [p["payment_id"] for a in args for p in a.get("payment_methods", []) if isinstance(p, dict)]
    ))
    facts: dict[str, str] = {"user_id": f"My user id is {user_id}."}
    if res_ids:
        facts["reservation_id"] = "The reservation id is " + " and ".join(res_ids) + "."
    if pay_ids:
        facts["payment"] = "Please use " + " and ".join(pay_ids) + "."
    for a in args:
        if "cabin" in a and "cabin" not in facts:
            facts["cabin"] = f"{a['cabin'].replace('_', ' ')}, please."
        if "passengers" in a and "passengers" not in facts:
            facts["passengers"] = "; ".join(
                f"{p.get('first_name')} {p.get('last_name')}, born {p.get('dob')}" for p in a["passengers"]
            )
        if "total_baggages" in a and "baggage" not in facts:
            facts["baggage"] = f"{a['total_baggages']} checked bags in total."
        if "insurance" in a and "insurance" not in facts:
            facts["insurance"] = "Yes, I want travel insurance." if a["insurance"] == "yes" else "No insurance, thanks."
        if "flight_type" in a and "trip_type" not in facts:
            facts["trip_type"] = "Round trip." if a["flight_type"] == "round_trip" else "One way."
        if "origin" in a and "destination" in a and "route" not in facts:
            facts["route"] = f"From {a['origin']} to {a['destination']}."
        if "flights" in a and "flight" not in facts:
            facts["flight"] = "I want " + ", ".join(f"{f.get('flight_number')} on {f.get('date')}" for f in a["flights"]) + "."
    writes = sum(1 for a in actions if a["name"] in AIRLINE_WRITE_TOOLS)
    transfer = any(a["name"] == "transfer_to_human_agents" for a in actions)
    first_kind = kind.split("+")[0]
    return {
        "user_id": user_id,
        "reservation_ids": res_ids,
        "facts": facts,
        "confirm": True,
        "stages": [{
            "say": OPENINGS.get(first_kind, OPENINGS["no_write"]),
            "actions": list(range(len(actions))),
            "writes": writes,
            "outputs": list(outputs),
            "refusal": writes == 0 and not outputs and not transfer,
            "transfer": transfer,
        }],
        "patience": 4,
    }


def task_from_record(raw: dict[str, Any], task_id: str, data: dict[str, dict[str, Any]] | None = None) -> Task:
    """A Task from a tau-bench task dict (an entry of tasks_test.json, or ``info.task`` of a result)."""
    actions = [
        {"name": a["name"], "arguments": a.get("kwargs", a.get("arguments", {}))} for a in raw.get("actions", [])
    ]
    outputs = [str(o) for o in raw.get("outputs", [])]
    kind = task_kind(actions, data)
    user_id = str(raw.get("user_id", ""))
    return Task(
        task_id=task_id,
        user_id=user_id,
        instruction=raw.get("instruction", ""),
        actions=actions,
        outputs=outputs,
        profile=profile_from_actions(user_id, actions, outputs, kind),
        kind=kind,
    )


@functools.lru_cache(maxsize=4)
def _load(path: str) -> AirlineDomain:
    d = Path(path)
    try:
        data = load_tables(d)
    except (OSError, json.JSONDecodeError) as e:
        raise UsageError(f"taubench:{d}: cannot read the database ({e})") from e
    tasks_file = _first_existing(d, TASK_FILES)
    raw_tasks = json.loads(tasks_file.read_text()) if tasks_file else []
    if not isinstance(raw_tasks, list):
        raise UsageError(f"{tasks_file}: expected a JSON list of tasks")
    policy_file = _first_existing(d, POLICY_FILES)
    policy = policy_file.read_text() if policy_file else ""
    tasks = [task_from_record(t, f"taubench/{i}", data) for i, t in enumerate(raw_tasks)]
    return AirlineDomain(name="taubench", policy=policy, tasks=tasks, data=data, taubench_compat=True)


def load_taubench(path: str | Path) -> AirlineDomain:
    """The domain for a tau-bench data directory (cached: the database is shared read-only)."""
    return _load(str(resolve_dir(path)))
