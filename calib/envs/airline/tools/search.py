"""Read-only flight search: direct flights and one-stop connections on a date."""

from __future__ import annotations

import datetime as dt
import json
from typing import Any

from calib.envs.airline.db import AirlineDB
from calib.envs.airline.tools._registry import string, tool

ROUTE = {
    "origin": string("IATA code of the departure airport, e.g. 'JFK'."),
    "destination": string("IATA code of the arrival airport, e.g. 'SEA'."),
    "date": string("Travel date as YYYY-MM-DD."),
}


def _leg(flight: dict[str, Any], date: str) -> dict[str, Any] | None:
    """The flight's fields plus that date's status, seats and prices, if it can be booked."""
    day = flight["dates"].get(date)
    if not day or day.get("status") != "available":
        return None
    leg = {k: v for k, v in flight.items() if k != "dates"}
    leg.update(day)
    leg["date"] = date
    return leg


def _clock(t: str) -> tuple[str, int]:
    """'23:10:00+1' -> ('23:10:00', 1): scheduled time and how many days after departure."""
    base, _, plus = t.partition("+")
    return base, int(plus) if plus.isdigit() else 0


def _shift(date: str, days: int) -> str | None:
    try:
        return (dt.date.fromisoformat(date) + dt.timedelta(days=days)).isoformat()
    except ValueError:
        return None


@tool("Find direct flights between two airports that can be booked on a date.", ROUTE)
def search_direct_flight(db: AirlineDB, origin: str, destination: str, date: str) -> str:
    legs = []
    for flight in db.flights().values():
        if flight["origin"] == origin and flight["destination"] == destination:
            leg = _leg(flight, date)
            if leg is not None:
                legs.append(leg)
    return json.dumps(legs)


@tool(
    "Find connections with exactly one stop between two airports, first leg departing on a date. "
    "Each result is a pair of legs; the second leg may depart the next day.",
    ROUTE,
)
def search_onestop_flight(db: AirlineDB, origin: str, destination: str, date: str) -> str:
    flights = db.flights().values()
    by_origin: dict[str, list[dict[str, Any]]] = {}
    for f in flights:
        by_origin.setdefault(f["origin"], []).append(f)
    pairs = []
    for first in flights:
        if first["origin"] != origin:
            continue
        arrive, days = _clock(first["scheduled_arrival_time_est"])
        date2 = _shift(date, days) if days else date
        if date2 is None:
            continue
        for second in by_origin.get(first["destination"], []):
            if second["destination"] != destination:
                continue
            depart, _ = _clock(second["scheduled_departure_time_est"])
            if depart < arrive:  # the connection leaves before the first leg lands
                continue
            leg1, leg2 = _leg(first, date), _leg(second, date2)
            if leg1 is not None and leg2 is not None:
                pairs.append([leg1, leg2])
    return json.dumps(pairs)
