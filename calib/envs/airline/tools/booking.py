"""Booking a new reservation (state-changing).

Mirrors tau-bench's semantics so that recorded rewards replay: the price is the sum over segments
of the cabin price times the number of passengers, plus 30 per passenger for insurance and 50 per
non-free bag; payments must come from the user's profile and add up exactly; a certificate is
consumed whole, a gift card is debited. Reservation ids are the fixed sequence HATHAT, HATHAU,
HATHAV, ... so that an agent's booking and the replayed gold booking get the same id. The policy's
limits (passengers, payment mix, free bags) are the agent's job, not the database's, as in tau-bench.
"""

from __future__ import annotations

import copy
import json
from typing import Any

from calib.envs.airline.db import AirlineDB
from calib.envs.airline.tools._registry import (
    CABINS,
    FLIGHTS_PARAM,
    PASSENGERS_PARAM,
    array_of,
    integer,
    number,
    string,
    tool,
)

BOOKING_TIME = "2024-05-15T15:00:00"  # the domain's "now"; fixed so that data hashes are stable
INSURANCE_PER_PASSENGER = 30
BAG_FEE = 50


def reservation_ids() -> Any:
    """HATHAT, HATHAU, HATHAV, then HATHAW ... (tau-bench stops at three and would overwrite)."""
    stem = "HATHA"
    for c in "TUVWXYZ":
        yield stem + c
    for a in "ABCDEFGHIJKLMNOPQRSTUVWXYZ":
        for b in "ABCDEFGHIJKLMNOPQRSTUVWXYZ":
            yield "HATH" + a + b


def next_reservation_id(db: AirlineDB) -> str:
    for rid in reservation_ids():
        if not db.has_reservation(rid):
            return rid
    raise RuntimeError("no free reservation id")  # 700+ bookings in one episode


def price_segments(db: AirlineDB, flights: list[dict[str, Any]], cabin: str, n_passengers: int
                   ) -> tuple[list[dict[str, Any]], str | None]:
    """Copies of the requested segments with price, origin and destination filled in, or an error."""
    out = []
    for seg in flights:
        seg = copy.deepcopy(seg)
        number_, date = seg["flight_number"], seg["date"]
        flight = db.flight(number_)
        if flight is None:
            return [], f"Error: flight {number_} not found"
        day = flight["dates"].get(date)
        if day is None:
            return [], f"Error: flight {number_} not found on date {date}"
        if day.get("status") != "available":
            return [], f"Error: flight {number_} not available on date {date}"
        if day["available_seats"][cabin] < n_passengers:
            return [], f"Error: not enough seats on flight {number_}"
        seg["price"] = day["prices"][cabin]
        seg["origin"] = flight["origin"]
        seg["destination"] = flight["destination"]
        out.append(seg)
    return out, None


@tool(
    "Create a reservation for a user and charge it to payment methods from the user's profile. "
    "The payment amounts must add up to the total price.",
    {
        "user_id": string("The booking user's id."),
        "origin": string("IATA code of the trip's origin."),
        "destination": string("IATA code of the trip's destination."),
        "flight_type": string("Trip type.", ["one_way", "round_trip"]),
        "cabin": string("Cabin class for every segment and passenger.", CABINS),
        "flights": FLIGHTS_PARAM,
        "passengers": PASSENGERS_PARAM,
        "payment_methods": array_of(
            "Payments, each a payment method id from the user's profile and the amount charged to it.",
            {
                "payment_id": string("Payment method id, e.g. 'credit_card_1234567'."),
                "amount": number("Amount charged to this method."),
            },
        ),
        "total_baggages": integer("Checked bags in total."),
        "nonfree_baggages": integer("Checked bags that are paid for (beyond the free allowance)."),
        "insurance": string("Whether travel insurance is bought.", ["yes", "no"]),
    },
    write=True,
)
def book_reservation(
    db: AirlineDB,
    user_id: str,
    origin: str,
    destination: str,
    flight_type: str,
    cabin: str,
    flights: list[dict[str, Any]],
    passengers: list[dict[str, Any]],
    payment_methods: list[dict[str, Any]],
    total_baggages: int,
    nonfree_baggages: int,
    insurance: str,
) -> str:
    user = db.user(user_id)
    if user is None:
        return "Error: user not found"
    segments, err = price_segments(db, flights, cabin, len(passengers))
    if err:
        return err
    total = 0
    for seg in segments:  # same summation order as tau-bench, so float totals compare equally
        total += seg["price"] * len(passengers)
    if insurance == "yes":
        total += INSURANCE_PER_PASSENGER * len(passengers)
    total += BAG_FEE * nonfree_baggages

    methods = user["payment_methods"]
    for pay in payment_methods:
        pid, amount = pay["payment_id"], pay["amount"]
        if pid not in methods:
            return f"Error: payment method {pid} not found"
        if methods[pid]["source"] in ("gift_card", "certificate") and methods[pid]["amount"] < amount:
            return f"Error: not enough balance in payment method {pid}"
    paid = sum(p["amount"] for p in payment_methods)
    if paid != total:
        return f"Error: payment amount does not add up, total price is {total}, but paid {paid}"

    rid = next_reservation_id(db)
    user = db.user_w(user_id)
    for pay in payment_methods:
        method = user["payment_methods"][pay["payment_id"]]
        if method["source"] == "gift_card":
            method["amount"] -= pay["amount"]
        elif method["source"] == "certificate":
            del user["payment_methods"][pay["payment_id"]]  # remaining value is not refundable
    reservation = {
        "reservation_id": rid,
        "user_id": user_id,
        "origin": origin,
        "destination": destination,
        "flight_type": flight_type,
        "cabin": cabin,
        "flights": segments,
        "passengers": copy.deepcopy(passengers),
        "payment_history": copy.deepcopy(payment_methods),
        "created_at": BOOKING_TIME,
        "total_baggages": total_baggages,
        "nonfree_baggages": nonfree_baggages,
        "insurance": insurance,
    }
    db.add_reservation(reservation)
    user["reservations"].append(rid)
    return json.dumps(reservation)
