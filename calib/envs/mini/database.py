"""The database builder of airline-mini: flights, users and reservations from one seeded RNG."""

from __future__ import annotations

import datetime as dt
import random
import string
from collections.abc import Callable
from typing import Any

from calib.envs.mini.world import (
    AIRPORTS,
    BAG_FEE,
    CABINS,
    DATES,
    FIRST,
    FREE_BAGS,
    FUTURE,
    INSURANCE_FEE,
    LAST,
    NOW,
    STREETS,
    TODAY,
    money,
)


class DatabaseBuilder:
    """Builds the database and the tasks from one seeded RNG (order of calls is part of the format)."""

    def __init__(self, seed: int):
        self.rng = random.Random(seed)
        self.flights: dict[str, Any] = {}
        self.users: dict[str, Any] = {}
        self.reservations: dict[str, Any] = {}
        self.base_price: dict[str, dict[str, int]] = {}
        self._ids: set[str] = set()

    # ------------------------------------------------------------------------------------- flights
    def build_flights(self, n_extra: int = 12) -> None:
        rng = self.rng
        codes = sorted(AIRPORTS)
        ring = codes[:]
        rng.shuffle(ring)
        pairs = {tuple(sorted((ring[i], ring[(i + 1) % len(ring)]))) for i in range(len(ring))}
        others = [(a, b) for i, a in enumerate(codes) for b in codes[i + 1:] if (a, b) not in pairs]
        rng.shuffle(others)
        pairs |= set(others[: 14 - len(pairs)])
        directions = [d for a, b in sorted(pairs) for d in ((a, b), (b, a))]
        extra = rng.sample(directions, n_extra)
        legs = [(o, d, 0) for o, d in directions] + [(o, d, 1) for o, d in extra]
        duration = {p: rng.choice([1, 2, 2, 3, 3, 4, 5]) for p in pairs}
        for i, (origin, dest, second) in enumerate(legs):
            number = f"AM{101 + i:03d}"
            hour = rng.randint(6, 11) if not second else rng.randint(14, 20)
            dep = dt.datetime(2024, 1, 1, hour, rng.choice([0, 15, 30, 45]))
            arr = dep + dt.timedelta(hours=duration[tuple(sorted((origin, dest)))], minutes=rng.choice([0, 20, 40]))
            plus = "+1" if arr.date() > dep.date() else ""
            base = {"basic_economy": rng.randint(50, 100), "economy": rng.randint(110, 200),
                    "business": rng.randint(300, 480)}
            self.base_price[number] = base
            self.flights[number] = {
                "flight_number": number,
                "origin": origin,
                "destination": dest,
                "scheduled_departure_time_est": dep.strftime("%H:%M:%S"),
                "scheduled_arrival_time_est": arr.strftime("%H:%M:%S") + plus,
                "dates": {d: self._day(number, d, dep, arr) for d in DATES},
            }

    def _day(self, number: str, date: str, dep: dt.datetime, arr: dt.datetime) -> dict[str, Any]:
        rng = self.rng
        day = dt.date.fromisoformat(date)
        start = dt.datetime.combine(day, dep.time())
        end = start + (arr - dep)
        if start >= NOW:
            if day > TODAY and rng.random() < 0.04:
                return {"status": "cancelled"}
            if day > TODAY:
                base = self.base_price[number]
                return {
                    "status": "available",
                    "available_seats": {"basic_economy": rng.randint(5, 18), "economy": rng.randint(5, 20),
                                        "business": rng.randint(4, 12)},
                    "prices": {c: money(p * rng.uniform(0.85, 1.2)) for c, p in base.items()},
                }
            return {"status": rng.choice(["on time", "on time", "delayed"]),
                    "estimated_departure_time_est": start.isoformat(), "estimated_arrival_time_est": end.isoformat()}
        shift = dt.timedelta(minutes=rng.randint(-10, 40))
        if end + shift > NOW:
            return {"status": "flying", "actual_departure_time_est": (start + shift).isoformat(),
                    "estimated_arrival_time_est": (end + shift).isoformat()}
        return {"status": "landed", "actual_departure_time_est": (start + shift).isoformat(),
                "actual_arrival_time_est": (end + shift).isoformat()}

    def status(self, number: str, date: str) -> str:
        return self.flights[number]["dates"][date]["status"]

    def price(self, number: str, date: str, cabin: str) -> int:
        day = self.flights[number]["dates"][date]
        return day["prices"][cabin] if day["status"] == "available" else self.base_price[number][cabin]

    def direct(self, origin: str, dest: str) -> list[str]:
        return [n for n, f in self.flights.items() if f["origin"] == origin and f["destination"] == dest]

    # --------------------------------------------------------------------------------------- users
    def _uid(self, prefix: str, digits: int = 7) -> str:
        while True:
            s = f"{prefix}{self.rng.randint(10 ** (digits - 1), 10 ** digits - 1)}"
            if s not in self._ids:
                self._ids.add(s)
                return s

    def person(self) -> dict[str, str]:
        rng = self.rng
        dob = dt.date(rng.randint(1950, 2004), rng.randint(1, 12), rng.randint(1, 28))
        return {"first_name": rng.choice(FIRST), "last_name": rng.choice(LAST), "dob": dob.isoformat()}

    def build_users(self, n: int = 50) -> None:
        rng = self.rng
        tiers = ["regular", "silver", "gold"]
        for i in range(n):
            p = self.person()
            uid = self._uid(f"{p['first_name']}_{p['last_name']}_".lower(), 4)
            methods: dict[str, Any] = {}
            for _ in range(rng.choice([1, 1, 2])):
                cid = self._uid("credit_card_")
                methods[cid] = {"source": "credit_card", "brand": rng.choice(["visa", "mastercard"]),
                                "last_four": f"{rng.randint(0, 9999):04d}", "id": cid}
            if i % 2 == 0:
                for _ in range(rng.choice([1, 1, 2])):
                    gid = self._uid("gift_card_")
                    methods[gid] = {"source": "gift_card", "amount": rng.randint(60, 400), "id": gid}
            if i % 3 == 0:
                for _ in range(rng.choice([1, 2])):
                    cert = self._uid("certificate_")
                    methods[cert] = {"source": "certificate", "amount": rng.choice([100, 150, 200, 250]), "id": cert}
            self.users[uid] = {
                "user_id": uid,
                "name": {"first_name": p["first_name"], "last_name": p["last_name"]},
                "address": {"address1": f"{rng.randint(1, 999)} {rng.choice(STREETS)}", "city": rng.choice(
                    list(AIRPORTS.values())), "country": "USA", "zip": f"{rng.randint(10000, 99999)}"},
                "email": f"{p['first_name']}.{p['last_name']}{rng.randint(10, 99)}@example.com".lower(),
                "dob": p["dob"],
                "payment_methods": methods,
                "saved_passengers": [self.person() for _ in range(rng.choice([0, 1, 1, 2]))],
                "membership": tiers[i % 3],
                "reservations": [],
            }

    def pick_user(self, pred: Callable[[dict[str, Any]], bool] = lambda u: True) -> dict[str, Any]:
        users = [u for u in self.users.values() if pred(u)]
        return self.rng.choice(users)

    @staticmethod
    def methods(user: dict[str, Any], source: str) -> list[dict[str, Any]]:
        return [m for m in user["payment_methods"].values() if m["source"] == source]

    # -------------------------------------------------------------------------------- reservations
    def _rid(self) -> str:
        while True:
            rid = "".join(self.rng.choice(string.ascii_uppercase + string.digits) for _ in range(6))
            if rid not in self.reservations and not rid.startswith("HATH") and rid[0].isalpha():
                return rid

    def _bookable(self, number: str, date: str, n: int, cabin: str) -> bool:
        day = self.flights[number]["dates"].get(date)
        return bool(day) and day["status"] == "available" and day["available_seats"][cabin] >= n

    def trip(self, *, round_trip: bool, when: str, cabin: str, n: int, cancelled_leg: bool = False,
             second_flight: bool = False) -> list[tuple[str, str]]:
        """Segments ``[(flight, date), ...]`` of a direct trip that fits the constraints."""
        rng = self.rng
        numbers = sorted(self.flights)
        for _ in range(2000):
            out = rng.choice(numbers)
            f = self.flights[out]
            if second_flight and len(self.direct(f["origin"], f["destination"])) < 2:
                continue
            if when == "past":
                d1 = rng.choice(DATES[:4])
            elif when == "flown":
                d1 = rng.choice(DATES[2:5])
            else:
                d1 = rng.choice(FUTURE)
            segs = [(out, d1)]
            if round_trip:
                back = self.direct(f["destination"], f["origin"])
                if not back:
                    continue
                offset = rng.randint(2, 4) if when != "flown" else rng.randint(4, 6)
                d2 = (dt.date.fromisoformat(d1) + dt.timedelta(days=offset)).isoformat()
                if d2 not in DATES:
                    continue
                segs.append((rng.choice(back), d2))
            future = [(x, d) for x, d in segs if d > TODAY.isoformat()]
            if when == "past" and future:
                continue
            if when == "flown" and (len(future) != 1 or len(segs) != 2):
                continue
            if when == "future" or when == "flown":
                statuses = [self.status(x, d) for x, d in future]
                if cancelled_leg:
                    if "cancelled" not in statuses:
                        continue
                elif not all(self._bookable(x, d, n, cabin) for x, d in future):
                    continue
            return segs
        raise RuntimeError("airline-mini generator found no trip that fits; change the seed")

    def reservation(self, user: dict[str, Any], *, cabin: str | None = None, round_trip: bool | None = None,
                    n: int | None = None, when: str = "future", recent: bool = False, insurance: str = "no",
                    bags: int | None = None, cancelled_leg: bool = False, pay: str = "credit_card",
                    second_flight: bool = False, status: str | None = None) -> dict[str, Any]:
        rng = self.rng
        cabin = cabin or rng.choice(CABINS)
        round_trip = rng.random() < 0.5 if round_trip is None else round_trip
        n = n or rng.choice([1, 1, 2, 3])
        segs = self.trip(round_trip=round_trip, when=when, cabin=cabin, n=n, cancelled_leg=cancelled_leg,
                         second_flight=second_flight)
        flights = [{"flight_number": x, "date": d, "price": self.price(x, d, cabin),
                    "origin": self.flights[x]["origin"], "destination": self.flights[x]["destination"]}
                   for x, d in segs]
        me = {"first_name": user["name"]["first_name"], "last_name": user["name"]["last_name"], "dob": user["dob"]}
        others = list(user["saved_passengers"]) + [self.person() for _ in range(n)]
        passengers = [me] + others[: n - 1]
        allowance = FREE_BAGS[user["membership"]][cabin] * n
        total_bags = rng.randint(0, allowance + 1) if bags is None else bags
        nonfree = max(0, total_bags - allowance)
        total = sum(f["price"] for f in flights) * n + (INSURANCE_FEE * n if insurance == "yes" else 0) \
            + BAG_FEE * nonfree
        sources = [m for m in self.methods(user, pay)] or self.methods(user, "credit_card")
        if recent:
            created = NOW - dt.timedelta(hours=rng.randint(1, 20), minutes=rng.randint(0, 59))
        else:
            created = dt.datetime(2024, 5, rng.randint(1, 9), rng.randint(0, 23), rng.randint(0, 59))
        rid = self._rid()
        res = {
            "reservation_id": rid,
            "user_id": user["user_id"],
            "origin": flights[0]["origin"],
            "destination": flights[0]["destination"],
            "flight_type": "round_trip" if round_trip else "one_way",
            "cabin": cabin,
            "flights": flights,
            "passengers": passengers,
            "payment_history": [{"payment_id": rng.choice(sources)["id"], "amount": total}],
            "created_at": created.strftime("%Y-%m-%dT%H:%M:%S"),
            "total_baggages": total_bags,
            "nonfree_baggages": nonfree,
            "insurance": insurance,
        }
        if status == "cancelled":  # as the cancel tool leaves it: refunds logged as negative payments
            res["payment_history"] += [{"payment_id": p["payment_id"], "amount": -p["amount"]}
                                       for p in res["payment_history"]]
        if status:
            res["status"] = status
        self.reservations[rid] = res
        user["reservations"].append(rid)
        return res

