"""Changing an existing reservation: flights/cabin, baggage, passengers (state-changing).

Payment rules follow tau-bench: the price difference (which may be negative: a refund) goes to one
credit card or gift card from the reservation owner's profile; certificates cannot pay for changes;
a gift card must cover a positive difference. A payment entry is recorded only when money moves.
The flight inventory is not updated (tau-bench leaves seats alone too).
"""

from __future__ import annotations

import json
from typing import Any

from calib.envs.airline.db import AirlineDB
from calib.envs.airline.tools._registry import (
    CABINS,
    FLIGHTS_PARAM,
    PASSENGERS_PARAM,
    integer,
    string,
    tool,
)
from calib.envs.airline.tools.booking import BAG_FEE, price_segments

RESERVATION_ID = string("Six-character reservation code.")
PAYMENT_ID = string("Credit card or gift card id from the user's profile that pays (or receives) the difference.")


def _charge(db: AirlineDB, reservation: dict[str, Any], payment_id: str, amount: float
            ) -> tuple[dict[str, Any] | None, str | None]:
    """Check that ``payment_id`` may pay ``amount``; return the writable method or an error."""
    owner = db.user(reservation["user_id"])
    if owner is None:
        return None, "Error: user not found"
    method = owner["payment_methods"].get(payment_id)
    if method is None:
        return None, "Error: payment method not found"
    if method["source"] == "certificate":
        return None, "Error: certificate cannot be used to update reservation"
    if method["source"] == "gift_card" and method["amount"] < amount:
        return None, "Error: gift card balance is not enough"
    return method, None


def _debit(db: AirlineDB, reservation: dict[str, Any], payment_id: str, amount: float) -> None:
    """Apply a checked charge: debit a gift card and log the payment if money moved."""
    method = db.user(reservation["user_id"])["payment_methods"][payment_id]
    if method["source"] == "gift_card":
        db.user_w(reservation["user_id"])["payment_methods"][payment_id]["amount"] -= amount
    if amount != 0:
        reservation["payment_history"].append({"payment_id": payment_id, "amount": amount})


@tool(
    "Replace a reservation's flights and/or cabin. Give the full new list of segments, including "
    "unchanged ones; the price difference is charged or refunded to the given payment method.",
    {
        "reservation_id": RESERVATION_ID,
        "cabin": string("Cabin class after the change (for all segments).", CABINS),
        "flights": FLIGHTS_PARAM,
        "payment_id": PAYMENT_ID,
    },
    write=True,
)
def update_reservation_flights(
    db: AirlineDB, reservation_id: str, cabin: str, flights: list[dict[str, Any]], payment_id: str
) -> str:
    current = db.reservation(reservation_id)
    if current is None:
        return "Error: reservation not found"
    n = len(current["passengers"])
    segments: list[dict[str, Any]] = []
    total = 0
    for seg in flights:
        kept = [
            f for f in current["flights"]
            if f["flight_number"] == seg["flight_number"] and f["date"] == seg["date"] and cabin == current["cabin"]
        ]
        if kept:  # an unchanged segment keeps the price it was bought at
            new = dict(seg, price=kept[0]["price"], origin=kept[0]["origin"], destination=kept[0]["destination"])
        else:
            priced, err = price_segments(db, [seg], cabin, n)
            if err:
                return err
            new = priced[0]
        total += new["price"] * n
        segments.append(new)
    total -= sum(f["price"] for f in current["flights"]) * n

    _, err = _charge(db, current, payment_id, total)
    if err:
        return err
    reservation = db.reservation_w(reservation_id)
    _debit(db, reservation, payment_id, total)
    reservation["flights"] = segments
    if not db.taubench_compat:
        # tau-bench never writes the new cabin back (its recorded hashes depend on that); our own
        # domains do, so that a cabin change is visible in the reservation.
        reservation["cabin"] = cabin
    return json.dumps(reservation)


@tool(
    "Set a reservation's checked bag counts; each additional non-free bag costs 50, charged to the "
    "given payment method.",
    {
        "reservation_id": RESERVATION_ID,
        "total_baggages": integer("Checked bags in total after the update."),
        "nonfree_baggages": integer("Paid checked bags in total after the update."),
        "payment_id": PAYMENT_ID,
    },
    write=True,
)
def update_reservation_baggages(
    db: AirlineDB, reservation_id: str, total_baggages: int, nonfree_baggages: int, payment_id: str
) -> str:
    current = db.reservation(reservation_id)
    if current is None:
        return "Error: reservation not found"
    total = BAG_FEE * max(0, nonfree_baggages - current["nonfree_baggages"])
    _, err = _charge(db, current, payment_id, total)
    if err:
        return err
    reservation = db.reservation_w(reservation_id)
    reservation["total_baggages"] = total_baggages
    reservation["nonfree_baggages"] = nonfree_baggages
    _debit(db, reservation, payment_id, total)
    return json.dumps(reservation)


@tool(
    "Replace the passenger details of a reservation; the number of passengers cannot change.",
    {"reservation_id": RESERVATION_ID, "passengers": PASSENGERS_PARAM},
    write=True,
)
def update_reservation_passengers(db: AirlineDB, reservation_id: str, passengers: list[dict[str, Any]]) -> str:
    current = db.reservation(reservation_id)
    if current is None:
        return "Error: reservation not found"
    if len(passengers) != len(current["passengers"]):
        return "Error: number of passengers does not match"
    reservation = db.reservation_w(reservation_id)
    reservation["passengers"] = [dict(p) for p in passengers]
    return json.dumps(reservation)
