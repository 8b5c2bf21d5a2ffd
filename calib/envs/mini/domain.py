"""airline-mini assembled: ``generate`` runs the builders in a fixed order, ``mini_domain`` caches the result."""

from __future__ import annotations

import functools
from typing import Any

from calib.envs.airline.env import AirlineDomain
from calib.envs.base import Task
from calib.envs.mini.database import DatabaseBuilder
from calib.envs.mini.policy import POLICY
from calib.envs.mini.split import split_by_kind
from calib.envs.mini.tasks import TaskBuilder
from calib.envs.mini.world import AIRPORTS, DEFAULT_SEED


def generate(seed: int = DEFAULT_SEED, n_reservations: int = 100) -> tuple[dict[str, Any], list[Task]]:
    """The data (flights, reservations, users) and tasks of airline-mini for ``seed``."""
    g = DatabaseBuilder(seed)
    g.build_flights()
    g.build_users()
    t = TaskBuilder(g)
    for v in ("recent", "business", "insurance", "airline_cancelled"):
        t.cancel(v, ask_refund=v == "recent")
    t.cancel("recent")
    for v in ("old", "insurance_wrong_reason", "flown"):
        t.cancel_forbidden(v)
    t.change_forbidden_basic()
    t.change_forbidden_basic()
    for v, ask in (("date", True), ("return_date", False), ("other_flight", False), ("gift_card", False),
                   ("date", False)):
        t.change_flight(v, ask_cost=ask)
    for old, new in (("basic_economy", "economy"), ("economy", "business"), ("business", "economy"),
                     ("basic_economy", "business")):
        t.change_cabin(old, new)
    t.upgrade_inquiry()
    for add, ask in ((1, False), (2, True), (1, False), (3, False)):
        t.baggage(add, ask_fee=ask)
    for v in ("dob", "name", "replace"):
        t.passengers(v)
    for v in ("one_way", "round_trip_pair", "onestop", "gift_card", "bags", "certificate"):
        t.book(v, ask_total=v == "one_way")
    t.transfer("lost_bag")
    t.transfer("assistance")
    t.compensation(True)
    t.compensation(True)
    t.compensation(False)
    t.info("paid")
    t.info("gift_balance")
    t.two_requests()
    # Background reservations (some flown, some cancelled) up to the target size.
    while len(g.reservations) < n_reservations:
        user = g.pick_user()
        when = g.rng.choice(["future", "future", "past"])
        g.reservation(user, when=when, insurance=g.rng.choice(["no", "no", "yes"]),
                      status="cancelled" if g.rng.random() < 0.1 else None)
    data = {"flights": g.flights, "reservations": g.reservations, "users": g.users}
    return data, t.tasks


def mini_domain(seed: int = DEFAULT_SEED) -> AirlineDomain:
    """The airline-mini domain for ``seed`` (cached: its data are shared read-only by episodes)."""
    return _cached_domain(int(seed))


@functools.lru_cache(maxsize=8)
def _cached_domain(seed: int) -> AirlineDomain:
    data, tasks = generate(seed)
    return AirlineDomain(name="airline-mini", policy=POLICY, tasks=tasks, data=data, airports=dict(AIRPORTS),
                         splits=split_by_kind(tasks))
