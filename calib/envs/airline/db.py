"""The airline database: flights, users and reservations, copied on write per episode.

An episode must not see another episode's writes, but copying the whole tau-bench database (300
flights x 30 dates, 500 users, 2000 reservations) for every episode costs ~0.1 s. So each episode
holds a shared, never-mutated ``base`` and an overlay of the records it has written: a record is
deep-copied the first time a tool asks for it writably. No tool writes flights (tau-bench does not
update seats either), so flights are only ever read.

Two hashes:
- :func:`data_hash` is tau-bench's: SHA-256 of ``str()`` of the data frozen into sorted tuples. It
  reproduces the ``gt_data_hash`` values that tau-bench records, so ``5`` and ``5.0`` differ, as there.
- :meth:`AirlineDB.diff` / :meth:`AirlineDB.changes_hash` describe only the records that differ from
  the base. Two databases over the same base are equal iff their diffs are equal, which makes the
  reward comparison cost proportional to what the episode changed, not to the database size.
"""

from __future__ import annotations

import copy
import hashlib
import json
from pathlib import Path
from typing import Any

TABLES = ("flights", "reservations", "users")
WRITABLE = ("reservations", "users")


def freeze(item: Any) -> Any:
    """Dicts become tuples of sorted ``(key, value)`` pairs and lists become tuples, recursively."""
    if isinstance(item, dict):
        return tuple((k, freeze(v)) for k, v in sorted(item.items()))
    if isinstance(item, list):
        return tuple(freeze(v) for v in item)
    if isinstance(item, set):
        return tuple(sorted(freeze(v) for v in item))
    return item


def data_hash(data: dict[str, Any]) -> str:
    """tau-bench's data hash (same value for the same data): sha256 of str(freeze(data))."""
    return hashlib.sha256(str(freeze(data)).encode("utf-8")).hexdigest()


def record_key(record: Any) -> str:
    """Exact text of a record, for comparisons that, like tau-bench's hash, tell 5 from 5.0."""
    return str(freeze(record))


def load_tables(path: str | Path) -> dict[str, dict[str, Any]]:
    """Read ``flights.json``, ``reservations.json`` and ``users.json`` from a tau-bench data dir."""
    path = Path(path)
    return {t: json.loads((path / f"{t}.json").read_text()) for t in TABLES}


# City names for the IATA codes that tau-bench's flights use (public facts, for list_all_airports).
CITIES = {
    "ATL": "Atlanta", "BOS": "Boston", "CLT": "Charlotte", "DEN": "Denver", "DFW": "Dallas",
    "DTW": "Detroit", "EWR": "Newark", "IAH": "Houston", "JFK": "New York", "LAS": "Las Vegas",
    "LAX": "Los Angeles", "LGA": "New York (LaGuardia)", "MCO": "Orlando", "MIA": "Miami",
    "MSP": "Minneapolis", "ORD": "Chicago", "PHL": "Philadelphia", "PHX": "Phoenix",
    "SEA": "Seattle", "SFO": "San Francisco",
}


def airports_of(flights: dict[str, Any]) -> dict[str, str]:
    """Airports that appear in the flights, with their city where known."""
    codes = sorted({f[k] for f in flights.values() for k in ("origin", "destination")})
    return {c: CITIES.get(c, c) for c in codes}


class AirlineDB:
    """One episode's view of the data: shared base tables plus a private overlay of written records."""

    def __init__(self, base: dict[str, dict[str, Any]], *, airports: dict[str, str] | None = None,
                 taubench_compat: bool = False):
        missing = [t for t in TABLES if not isinstance(base.get(t), dict)]
        if missing:
            raise ValueError(f"airline data is missing table(s) {missing}")
        self.base = base
        self.airports = airports if airports is not None else airports_of(base["flights"])
        # Reproduce tau-bench's quirks that change data (see tools/modify.py), so that replayed
        # tau-bench episodes get the rewards tau-bench recorded.
        self.taubench_compat = taubench_compat
        self.overlay: dict[str, dict[str, Any]] = {t: {} for t in WRITABLE}

    # -- reads (callers must not mutate what they get) -------------------------------------------
    def flight(self, number: str) -> dict[str, Any] | None:
        return self.base["flights"].get(number)

    def flights(self) -> dict[str, Any]:
        return self.base["flights"]

    def user(self, user_id: str) -> dict[str, Any] | None:
        return self._get("users", user_id)

    def reservation(self, reservation_id: str) -> dict[str, Any] | None:
        return self._get("reservations", reservation_id)

    def has_reservation(self, reservation_id: str) -> bool:
        return self._get("reservations", reservation_id) is not None

    def _get(self, table: str, key: str) -> dict[str, Any] | None:
        if not isinstance(key, str):
            return None
        over = self.overlay[table]
        if key in over:
            return over[key]
        return self.base[table].get(key)

    # -- writes -----------------------------------------------------------------------------------
    def user_w(self, user_id: str) -> dict[str, Any]:
        """The user record, copied into this episode's overlay on first write."""
        return self._writable("users", user_id)

    def reservation_w(self, reservation_id: str) -> dict[str, Any]:
        return self._writable("reservations", reservation_id)

    def add_reservation(self, reservation: dict[str, Any]) -> None:
        self.overlay["reservations"][reservation["reservation_id"]] = reservation

    def _writable(self, table: str, key: str) -> dict[str, Any]:
        over = self.overlay[table]
        if key not in over:
            over[key] = copy.deepcopy(self.base[table][key])
        return over[key]

    # -- comparison -------------------------------------------------------------------------------
    def diff(self) -> dict[tuple[str, str], str]:
        """``{(table, id): record text}`` for every record that differs from the base."""
        out: dict[tuple[str, str], str] = {}
        for table, over in self.overlay.items():
            base = self.base[table]
            for key, rec in over.items():
                text = record_key(rec)
                if key not in base or record_key(base[key]) != text:
                    out[(table, key)] = text
        return out

    def changes_hash(self) -> str:
        """Stable hash of :meth:`diff`: equal for two episodes iff their final data are equal."""
        items = sorted(self.diff().items())
        return hashlib.sha256(repr(items).encode("utf-8")).hexdigest()

    def materialize(self) -> dict[str, dict[str, Any]]:
        """The full data (base with the overlay applied); shares unmodified records with the base."""
        out = {t: dict(self.base[t]) for t in TABLES}
        for table, over in self.overlay.items():
            out[table].update(over)
        return out

    def data_hash(self) -> str:
        """tau-bench's hash of the full data (~0.2 s on the tau-bench database)."""
        return data_hash(self.materialize())
