"""Read-only lookups: users, reservations, airports."""

from __future__ import annotations

import json

from calib.envs.airline.db import AirlineDB
from calib.envs.airline.tools._registry import string, tool


@tool(
    "Look up a user's profile: name, contact details, date of birth, membership tier, saved "
    "passengers, payment methods (with gift card and certificate balances) and reservation ids.",
    {"user_id": string("The user's id, e.g. 'jane_doe_1234'.")},
)
def get_user_details(db: AirlineDB, user_id: str) -> str:
    user = db.user(user_id)
    if user is None:
        return "Error: user not found"
    return json.dumps(user)


@tool(
    "Look up one reservation: trip, cabin, flights with prices, passengers, payments, baggage and "
    "insurance.",
    {"reservation_id": string("Six-character reservation code, e.g. 'ABC123'.")},
)
def get_reservation_details(db: AirlineDB, reservation_id: str) -> str:
    reservation = db.reservation(reservation_id)
    if reservation is None:
        return "Error: reservation not found"
    return json.dumps(reservation)


@tool("List the airports the airline serves, as a map from IATA code to city.", {})
def list_all_airports(db: AirlineDB) -> str:
    return json.dumps(db.airports)
