"""Cancellation and compensation (state-changing)."""

from __future__ import annotations

import json

from calib.envs.airline.db import AirlineDB
from calib.envs.airline.tools._registry import number, string, tool

CERTIFICATE_BASE = 3221322  # certificate ids are a fixed sequence, so agent and gold runs agree


@tool(
    "Cancel a whole reservation; every payment on it is refunded to its original method.",
    {"reservation_id": string("Six-character reservation code.")},
    write=True,
)
def cancel_reservation(db: AirlineDB, reservation_id: str) -> str:
    if db.reservation(reservation_id) is None:
        return "Error: reservation not found"
    reservation = db.reservation_w(reservation_id)
    # A refund is a negative payment on the same method; like tau-bench, we do not refuse a
    # second cancellation (it would log a second set of refunds).
    refunds = [{"payment_id": p["payment_id"], "amount": -p["amount"]} for p in reservation["payment_history"]]
    reservation["payment_history"].extend(refunds)
    reservation["status"] = "cancelled"
    return json.dumps(reservation)


@tool(
    "Issue a travel certificate (a voucher of the given amount) to a user, e.g. as compensation.",
    {"user_id": string("The user's id."), "amount": number("Certificate value.")},
    write=True,
)
def send_certificate(db: AirlineDB, user_id: str, amount: float) -> str:
    if db.user(user_id) is None:
        return "Error: user not found"
    methods = db.user(user_id)["payment_methods"]
    i = CERTIFICATE_BASE
    while f"certificate_{i}" in methods:
        i += 1
    pid = f"certificate_{i}"
    db.user_w(user_id)["payment_methods"][pid] = {"source": "certificate", "amount": amount, "id": pid}
    return f"Certificate {pid} added to user {user_id} with amount {amount}."
