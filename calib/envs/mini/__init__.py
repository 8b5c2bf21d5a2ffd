"""``airline-mini``: a small airline domain that calib generates itself from a seed.

Same tools and data layout as tau-bench's airline (so the same environment, reward and signals
apply), but our own database, policy text and tasks: 8 airports, 40 flights over 21 days, 50 users,
100 reservations and 40 tasks covering cancellation (allowed and forbidden), flight and cabin
changes, baggage, passenger edits, bookings (direct, round trip, one stop, mixed payments),
compensation, questions with required outputs, transfers to a human and two-request conversations.

Each task is built *with* a reservation made for it, so it is valid by construction, and its
expected actions are computed from the data with the policy text (``policy.py``); ``tests/test_mini_domain.py``
replays them. Everything derives from one ``random.Random(seed)``, so a seed gives the same domain
on every machine; generating it takes a few milliseconds.

The package is split by job: ``world`` (calendar, airports, fees, names), ``policy`` (the policy
text), ``database`` (flights, users, reservations), ``tasks`` (the task kinds), ``split`` (train /
test) and ``domain`` (``generate`` and the cached ``mini_domain``).
"""

from calib.envs.mini.domain import generate, mini_domain
from calib.envs.mini.policy import POLICY
from calib.envs.mini.split import split_by_kind
from calib.envs.mini.world import (
    AIRPORTS,
    BAG_FEE,
    CABINS,
    COMPENSATION_PER_PASSENGER,
    DEFAULT_SEED,
    FREE_BAGS,
    INSURANCE_FEE,
    NOW,
    TODAY,
)

__all__ = ["AIRPORTS", "BAG_FEE", "CABINS", "COMPENSATION_PER_PASSENGER", "DEFAULT_SEED", "FREE_BAGS",
           "INSURANCE_FEE", "NOW", "POLICY", "TODAY", "generate", "mini_domain", "split_by_kind"]
