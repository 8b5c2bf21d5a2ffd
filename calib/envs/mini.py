"""``airline-mini``: a small airline domain that calib generates itself from a seed.

Same tools and data layout as tau-bench's airline (so the same environment, reward and signals
apply), but our own database, policy text and tasks: 8 airports, 40 flights over 21 days, 50 users,
100 reservations and 40 tasks covering cancellation (allowed and forbidden), flight and cabin
changes, baggage, passenger edits, bookings (direct, round trip, one stop, mixed payments),
compensation, questions with required outputs, transfers to a human and two-request conversations.

Each task is built *with* a reservation made for it, so it is valid by construction, and its
expected actions are computed from the data with the policy below; ``tests/test_mini_domain.py``
replays them. Everything derives from one ``random.Random(seed)``, so a seed gives the same domain
on every machine; generating it takes a few milliseconds.
"""

from __future__ import annotations

import datetime as dt
import functools
import random
import string
from collections.abc import Callable
from typing import Any

from calib.envs.airline.env import AirlineDomain
from calib.envs.base import Task

DEFAULT_SEED = 0
NOW = dt.datetime(2024, 5, 15, 15, 0, 0)
TODAY = NOW.date()
DATES = [(dt.date(2024, 5, 10) + dt.timedelta(days=i)).isoformat() for i in range(21)]  # 05-10 .. 05-30
FUTURE = [d for d in DATES if "2024-05-17" <= d <= "2024-05-26"]  # task trips; later dates leave room to move

AIRPORTS = {
    "BOS": "Boston", "DEN": "Denver", "JFK": "New York", "LAX": "Los Angeles",
    "MIA": "Miami", "ORD": "Chicago", "SEA": "Seattle", "SFO": "San Francisco",
}
CABINS = ("basic_economy", "economy", "business")
# Free checked bags per passenger (our policy's table).
FREE_BAGS = {
    "regular": {"basic_economy": 0, "economy": 1, "business": 2},
    "silver": {"basic_economy": 1, "economy": 2, "business": 2},
    "gold": {"basic_economy": 2, "economy": 2, "business": 3},
}
BAG_FEE, INSURANCE_FEE, COMPENSATION_PER_PASSENGER = 50, 30, 100

FIRST = ["Ada", "Bruno", "Chen", "Dana", "Elif", "Farid", "Greta", "Hugo", "Ines", "Jonas", "Kemal", "Lena",
         "Mateo", "Nadia", "Oskar", "Priya", "Quinn", "Rosa", "Sami", "Tara", "Umar", "Vera", "Wen", "Ximena",
         "Yusuf", "Zoe", "Arjun", "Bea", "Cyril", "Dmitri", "Esme", "Femi"]
LAST = ["Abbott", "Bauer", "Castro", "Dubois", "Eriksen", "Fischer", "Garcia", "Haddad", "Ito", "Jensen",
        "Kowalski", "Lindqvist", "Moreau", "Novak", "Okafor", "Petrov", "Quispe", "Rossi", "Sato", "Tanaka",
        "Ueda", "Varga", "Weber", "Xu", "Yilmaz", "Zhang"]
STREETS = ["Maple Street", "Harbor Road", "Cedar Lane", "Hillside Avenue", "Station Road", "Orchard Way"]

POLICY = """# Airline-mini agent policy

The current time is 2024-05-15 15:00:00 EST. You are the customer-service agent of a small airline.
With your tools you can look up users, reservations and flights; book, change and cancel
reservations; and issue travel certificates as compensation.

## Always
- Identify the customer first: ask for their user id and look the profile up before changing anything.
- Before any action that changes data (booking, cancelling, changing flights or cabin, baggage,
  passengers, certificates), state exactly what you will do and what it costs, and ask the customer to
  confirm with an explicit "yes". Act only after that yes.
- Make one tool call at a time, and do not answer the customer in the same message as a tool call.
- Only state facts that come from the customer or from your tools; do not guess.
- Refuse requests that break this policy and say which rule applies.
- Transfer to a human agent (transfer_to_human_agents) only when the customer needs something your
  tools cannot do, such as a lost-luggage claim or special assistance at the airport.

## Booking
- Collect: trip type (one way or round trip), origin, destination, dates and flights, cabin, every
  passenger's first name, last name and date of birth (at most five passengers), checked bags, and
  whether they want travel insurance (30 per passenger).
- All passengers fly the same flights in the same cabin.
- Pay only with methods already in the profile: at most one travel certificate, one credit card and
  three gift cards per booking. A certificate's unused balance is lost.
- Free checked bags per passenger: regular members 0 in basic economy, 1 in economy, 2 in business;
  silver members 1 / 2 / 2; gold members 2 / 2 / 3. Each further bag costs 50.

## Changing a reservation
- Only reservations none of whose flights has departed can be changed.
- Flights: basic economy flights cannot be changed. Origin, destination and trip type stay the same.
- Cabin: any reservation can move to another cabin; the whole reservation changes cabin.
- The price difference of a flight or cabin change is charged to, or refunded to, one credit card or
  gift card from the profile; certificates cannot be used for changes.
- Bags: bags can be added but not removed. Count the bags beyond the free allowance as non-free;
  each new non-free bag costs 50, paid with a credit card or gift card.
- Passengers: names and dates of birth can be corrected, but the number of passengers cannot change.

## Cancelling
- A reservation can be cancelled only if none of its flights has departed and at least one holds:
  it was booked less than 24 hours ago; the airline cancelled one of its flights; the cabin is
  business; or it has travel insurance and the reason is the customer's health or the weather.
- Refunds go back to the original payment methods automatically.

## Compensation
- Only when the customer complains about a flight that the airline cancelled, and the customer is a
  silver or gold member, or has travel insurance, or flies business: after checking the facts, you may
  issue one certificate of 100 per passenger on that reservation. Never offer compensation unprompted.
"""


def _money(x: float) -> int:
    return round(x)


class _Gen:
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
                    "prices": {c: _money(p * rng.uniform(0.85, 1.2)) for c, p in base.items()},
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


def _pay_text(method: dict[str, Any]) -> str:
    if method["source"] == "credit_card":
        return f"my {method['brand']} credit card ending in {method['last_four']} ({method['id']})"
    if method["source"] == "gift_card":
        return f"my gift card {method['id']}"
    return f"my travel certificate {method['id']}"


def _pax_text(passengers: list[dict[str, str]]) -> str:
    return "; ".join(f"{p['first_name']} {p['last_name']}, born {p['dob']}" for p in passengers)


def _seg_text(segs: list[dict[str, Any]]) -> str:
    return ", ".join(f"{s['flight_number']} on {s['date']}" for s in segs)


class _Tasks:
    """The task kinds. Each method adds one task built on a reservation made for it."""

    def __init__(self, g: _Gen):
        self.g = g
        self.rng = g.rng
        self.tasks: list[Task] = []

    # -- helpers ---------------------------------------------------------------------------------
    def add(self, kind: str, user: dict[str, Any], actions: list[dict[str, Any]], stages: list[dict[str, Any]],
            instruction: str, facts: dict[str, str] | None = None, confirm: bool = True) -> None:
        outputs = [o for s in stages for o in s.get("outputs", [])]
        all_facts = {"user_id": f"My user id is {user['user_id']}."}
        all_facts.update(facts or {})
        res_ids = [a["arguments"]["reservation_id"] for a in actions if "reservation_id" in a["arguments"]]
        profile = {
            "user_id": user["user_id"],
            "reservation_ids": list(dict.fromkeys(res_ids)),
            "facts": all_facts,
            "confirm": confirm,
            "stages": stages,
            "patience": 4,
        }
        self.tasks.append(Task(
            task_id=f"airline-mini/{len(self.tasks)}", user_id=user["user_id"],
            instruction=f"Your user id is {user['user_id']}. " + instruction, actions=actions, outputs=outputs,
            profile=profile, kind=kind,
        ))

    @staticmethod
    def act(name: str, **arguments: Any) -> dict[str, Any]:
        return {"name": name, "arguments": arguments}

    @staticmethod
    def stage(say: str, actions: range | list[int], writes: int = 0, outputs: list[str] | None = None,
              refusal: bool = False, transfer: bool = False, facts: dict[str, str] | None = None) -> dict[str, Any]:
        s: dict[str, Any] = {"say": say, "actions": list(actions), "writes": writes, "outputs": outputs or [],
                             "refusal": refusal, "transfer": transfer}
        if facts:
            s["facts"] = facts
        return s

    def lookups(self, user: dict[str, Any], res: dict[str, Any] | None = None) -> list[dict[str, Any]]:
        out = [self.act("get_user_details", user_id=user["user_id"])]
        if res is not None:
            out.append(self.act("get_reservation_details", reservation_id=res["reservation_id"]))
        return out

    def opening(self, text: str, res: dict[str, Any]) -> str:
        """Half of the users name their reservation up front; the others wait to be asked."""
        if self.rng.random() < 0.5:
            return f"{text} The reservation is {res['reservation_id']}."
        return text

    def payer(self, user: dict[str, Any], amount: int, prefer_gift: bool = False) -> dict[str, Any]:
        gifts = [m for m in self.g.methods(user, "gift_card") if m["amount"] >= amount]
        if prefer_gift and gifts:
            return gifts[0]
        return self.g.methods(user, "credit_card")[0]

    # -- cancellation ----------------------------------------------------------------------------
    def cancel(self, variant: str, ask_refund: bool = False) -> None:
        g = self.g
        user = g.pick_user()
        kw: dict[str, Any] = {"business": {"cabin": "business"}, "recent": {"cabin": "economy", "recent": True},
                              "insurance": {"cabin": "economy", "insurance": "yes"},
                              "airline_cancelled": {"cabin": "economy", "cancelled_leg": True}}[variant]
        res = g.reservation(user, **kw)
        reason = {"business": "my business meeting was moved", "recent": "my plans changed",
                  "insurance": "I am ill and my doctor told me not to travel",
                  "airline_cancelled": "the airline cancelled one of my flights"}[variant]
        actions = self.lookups(user, res) + [self.act("cancel_reservation", reservation_id=res["reservation_id"])]
        refund = str(sum(p["amount"] for p in res["payment_history"]))
        outputs = [refund] if ask_refund else []
        say = self.opening("Hi, I need to cancel a reservation.", res)
        if ask_refund:
            say += " Please also tell me how much money I will get back."
        self.add("cancel", user, actions, [self.stage(say, range(len(actions)), writes=1, outputs=outputs)],
                 f"You want to cancel reservation {res['reservation_id']}. If asked for the reason, say: "
                 f"\"{reason}\". Confirm the cancellation when the agent asks."
                 + (" You also want to know the total refund." if ask_refund else ""),
                 {"reservation_id": f"It is reservation {res['reservation_id']}.", "reason": f"Because {reason}."})

    def cancel_forbidden(self, variant: str) -> None:
        g = self.g
        user = g.pick_user()
        if variant == "flown":
            res = g.reservation(user, cabin="business", round_trip=True, when="flown")
            reason = "I no longer need the return flight"
        elif variant == "insurance_wrong_reason":
            res = g.reservation(user, cabin="economy", insurance="yes")
            reason = "I found a cheaper flight elsewhere"
        else:
            res = g.reservation(user, cabin=self.rng.choice(["economy", "basic_economy"]))
            reason = "my plans changed"
        actions = self.lookups(user, res)
        say = self.opening("Hello, I want to cancel my reservation and get a refund.", res)
        self.add("forbidden", user, actions, [self.stage(say, range(len(actions)), refusal=True)],
                 f"You want to cancel reservation {res['reservation_id']}. If asked for the reason, say: "
                 f"\"{reason}\". If the agent says it cannot be cancelled, accept that and end the conversation.",
                 {"reservation_id": f"It is {res['reservation_id']}.", "reason": f"Because {reason}."})

    # -- changes ---------------------------------------------------------------------------------
    def change_forbidden_basic(self) -> None:
        g = self.g
        user = g.pick_user()
        res = g.reservation(user, cabin="basic_economy")
        seg = res["flights"][0]
        new_date = (dt.date.fromisoformat(seg["date"]) + dt.timedelta(days=1)).isoformat()
        actions = self.lookups(user, res)
        say = self.opening(f"Hi, I'd like to move my flight on {seg['date']} to {new_date}.", res)
        self.add("forbidden", user, actions, [self.stage(say, range(len(actions)), refusal=True)],
                 f"You want to move flight {seg['flight_number']} of reservation {res['reservation_id']} from "
                 f"{seg['date']} to {new_date}. If the agent refuses, accept it and end the conversation.",
                 {"reservation_id": f"It is {res['reservation_id']}.",
                  "flight": f"The {seg['flight_number']} flight, moved to {new_date}."})

    def _new_segments(self, res: dict[str, Any], i: int, new: tuple[str, str], cabin: str) -> tuple[list, int]:
        """New segment list (segment ``i`` replaced) and the price difference, as the tool computes it."""
        g, n = self.g, len(res["passengers"])
        segs, total = [], 0
        for j, f in enumerate(res["flights"]):
            number, date = new if j == i else (f["flight_number"], f["date"])
            kept = number == f["flight_number"] and date == f["date"] and cabin == res["cabin"]
            price = f["price"] if kept else g.price(number, date, cabin)
            segs.append({"flight_number": number, "date": date})
            total += price * n
        return segs, total - sum(f["price"] for f in res["flights"]) * n

    def change_flight(self, variant: str, ask_cost: bool = False) -> None:
        g = self.g
        for _ in range(200):
            user = g.pick_user()
            res = g.reservation(user, cabin=self.rng.choice(["economy", "business"]),
                                round_trip=variant == "return_date", second_flight=variant == "other_flight",
                                n=self.rng.choice([1, 2]))
            i = len(res["flights"]) - 1
            seg = res["flights"][i]
            if variant == "other_flight":
                options = [x for x in g.direct(seg["origin"], seg["destination"]) if x != seg["flight_number"]]
                new = (options[0], seg["date"])
            else:
                new = (seg["flight_number"], (dt.date.fromisoformat(seg["date"]) + dt.timedelta(days=2)).isoformat())
            if new[1] in DATES and g._bookable(new[0], new[1], len(res["passengers"]), res["cabin"]):
                break
            g.reservations.pop(res["reservation_id"])  # unusable: undo it and draw again
            user["reservations"].remove(res["reservation_id"])
        else:
            raise RuntimeError("airline-mini generator found no flight change that fits; change the seed")
        segs, diff = self._new_segments(res, i, new, res["cabin"])
        pay = self.payer(user, diff, prefer_gift=variant == "gift_card")
        actions = self.lookups(user, res) + [
            self.act("search_direct_flight", origin=seg["origin"], destination=seg["destination"], date=new[1]),
            self.act("update_reservation_flights", reservation_id=res["reservation_id"], cabin=res["cabin"],
                     flights=segs, payment_id=pay["id"]),
        ]
        want = (f"I'd like flight {new[0]} on {new[1]} instead of {seg['flight_number']} on {seg['date']}; "
                "the other flights stay as they are.")
        outputs = [str(abs(diff))] if ask_cost and diff != 0 else []
        say = self.opening(f"Hi, I need to change a flight on my reservation: {want}", res)
        if outputs:
            say += " How much will the difference be?"
        self.add("change_flight", user, actions, [self.stage(say, range(len(actions)), 1, outputs)],
                 f"On reservation {res['reservation_id']} you want flight {new[0]} on {new[1]} instead of "
                 f"{seg['flight_number']} on {seg['date']}. Pay any difference with {_pay_text(pay)}. Confirm "
                 "when asked." + (" Ask how much the difference is." if outputs else ""),
                 {"reservation_id": f"It is {res['reservation_id']}.", "flight": want,
                  "payment": f"Please use {_pay_text(pay)}.", "cabin": "Keep the same cabin."})

    def change_cabin(self, old: str, new: str) -> None:
        g = self.g
        user = g.pick_user()
        res = g.reservation(user, cabin=old, n=self.rng.choice([1, 2]))
        segs = [{"flight_number": f["flight_number"], "date": f["date"]} for f in res["flights"]]
        n = len(res["passengers"])
        diff = sum(g.price(f["flight_number"], f["date"], new) for f in res["flights"]) * n \
            - sum(f["price"] for f in res["flights"]) * n
        pay = self.payer(user, diff, prefer_gift=self.rng.random() < 0.5)
        actions = self.lookups(user, res) + [
            self.act("update_reservation_flights", reservation_id=res["reservation_id"], cabin=new, flights=segs,
                     payment_id=pay["id"]),
        ]
        label = new.replace("_", " ")
        say = self.opening(f"Hello, I would like to change my reservation to {label}.", res)
        self.add("change_cabin", user, actions, [self.stage(say, range(len(actions)), 1)],
                 f"You want reservation {res['reservation_id']} to fly {label} on all flights. Use "
                 f"{_pay_text(pay)} for the difference. Confirm when asked.",
                 {"reservation_id": f"It is {res['reservation_id']}.", "cabin": f"{label.capitalize()}, please.",
                  "payment": f"Please use {_pay_text(pay)}.", "flight": "Keep the same flights."})

    def upgrade_inquiry(self) -> None:
        """The user asks what an upgrade would cost and then declines: the answer is an output, no write."""
        g = self.g
        user = g.pick_user()
        res = g.reservation(user, cabin="economy", n=1)
        n = len(res["passengers"])
        diff = sum(g.price(f["flight_number"], f["date"], "business") for f in res["flights"]) * n \
            - sum(f["price"] for f in res["flights"]) * n
        actions = self.lookups(user, res) + [
            self.act("search_direct_flight", origin=f["origin"], destination=f["destination"], date=f["date"])
            for f in res["flights"]
        ]
        say = self.opening("Hi, how much would it cost to upgrade my reservation to business class?", res)
        self.add("inquiry", user, actions, [self.stage(say, range(len(actions)), 0, [str(diff)])],
                 f"You want to know how much upgrading reservation {res['reservation_id']} to business would "
                 "cost. You do not want to upgrade: decline if the agent offers to do it.",
                 {"reservation_id": f"It is {res['reservation_id']}.", "cabin": "Business class."}, confirm=False)

    # -- baggage and passengers ------------------------------------------------------------------
    def baggage(self, add: int, ask_fee: bool = False) -> None:
        g = self.g
        user = g.pick_user()
        cabin = self.rng.choice(CABINS)
        res = g.reservation(user, cabin=cabin, n=self.rng.choice([1, 2]), bags=0)
        allowance = FREE_BAGS[user["membership"]][cabin] * len(res["passengers"])
        total = res["total_baggages"] + add
        nonfree = max(0, total - allowance)
        fee = BAG_FEE * max(0, nonfree - res["nonfree_baggages"])
        pay = self.payer(user, fee, prefer_gift=self.rng.random() < 0.5)
        actions = self.lookups(user, res) + [
            self.act("update_reservation_baggages", reservation_id=res["reservation_id"], total_baggages=total,
                     nonfree_baggages=nonfree, payment_id=pay["id"]),
        ]
        outputs = [str(fee)] if ask_fee else []
        say = self.opening(f"Hi, I want to add {add} checked bag{'s' if add > 1 else ''} to my reservation.", res)
        if ask_fee:
            say += " What will that cost?"
        self.add("baggage", user, actions, [self.stage(say, range(len(actions)), 1, outputs)],
                 f"You want to add {add} checked bag(s) to reservation {res['reservation_id']}. Pay any fee with "
                 f"{_pay_text(pay)}. Confirm when asked." + (" Ask what it costs." if ask_fee else ""),
                 {"reservation_id": f"It is {res['reservation_id']}.",
                  "baggage": f"{add} more, so {total} checked bags in total.",
                  "payment": f"Please use {_pay_text(pay)}."})

    def passengers(self, variant: str) -> None:
        g = self.g
        user = g.pick_user()
        res = g.reservation(user, n=2)
        new = [dict(p) for p in res["passengers"]]
        old = new[1]
        if variant == "dob":
            d = dt.date.fromisoformat(old["dob"]) + dt.timedelta(days=self.rng.randint(1, 300))
            new[1] = {**old, "dob": d.isoformat()}
            want = f"{old['first_name']} {old['last_name']}'s date of birth should be {new[1]['dob']}."
        elif variant == "name":
            new[1] = {**old, "last_name": old["last_name"] + "-" + self.rng.choice(LAST)}
            want = f"{old['first_name']}'s last name should be {new[1]['last_name']}."
        else:
            p = g.person()
            new[1] = p
            want = (f"{p['first_name']} {p['last_name']}, born {p['dob']}, travels instead of "
                    f"{old['first_name']} {old['last_name']}.")
        actions = self.lookups(user, res) + [
            self.act("update_reservation_passengers", reservation_id=res["reservation_id"], passengers=new),
        ]
        say = self.opening("Hi, I need to update a passenger on my reservation.", res)
        self.add("passengers", user, actions, [self.stage(say, range(len(actions)), 1)],
                 f"On reservation {res['reservation_id']}: {want} Everything else stays. Confirm when asked.",
                 {"reservation_id": f"It is {res['reservation_id']}.", "passengers": want + " " + _pax_text(new)})

    # -- booking ---------------------------------------------------------------------------------
    def book(self, variant: str, ask_total: bool = False) -> None:
        g = self.g
        if variant == "gift_card":
            user = g.pick_user(lambda u: bool(g.methods(u, "gift_card")))
        elif variant == "certificate":
            user = g.pick_user(lambda u: bool(g.methods(u, "certificate")))
        elif variant == "round_trip_pair":
            user = g.pick_user(lambda u: bool(u["saved_passengers"]))
        else:
            user = g.pick_user()
        cabin = {"one_way": "economy", "round_trip_pair": "business", "onestop": "economy",
                 "gift_card": "basic_economy", "bags": "economy", "certificate": "economy"}[variant]
        n = 2 if variant == "round_trip_pair" else 1
        me = {"first_name": user["name"]["first_name"], "last_name": user["name"]["last_name"], "dob": user["dob"]}
        passengers = [me] + user["saved_passengers"][: n - 1]
        segs, origin, dest, searches = self._book_flights(variant, n, cabin)
        flights = [{"flight_number": x, "date": d} for x, d in segs]
        insurance = "yes" if variant == "round_trip_pair" else "no"
        allowance = FREE_BAGS[user["membership"]][cabin] * n
        total_bags = allowance + 2 if variant == "bags" else min(allowance, 1)
        nonfree = max(0, total_bags - allowance)
        total = sum(g.price(x, d, cabin) for x, d in segs) * n + (INSURANCE_FEE * n if insurance == "yes" else 0) \
            + BAG_FEE * nonfree
        payments, pay_text = self._book_payment(variant, user, total)
        flight_type = "round_trip" if len(segs) == 2 and variant != "onestop" else "one_way"
        actions = [self.act("get_user_details", user_id=user["user_id"])] + searches + [
            self.act("book_reservation", user_id=user["user_id"], origin=origin, destination=dest,
                     flight_type=flight_type, cabin=cabin, flights=flights, passengers=passengers,
                     payment_methods=payments, total_baggages=total_bags, nonfree_baggages=nonfree,
                     insurance=insurance),
        ]
        trip = f"{AIRPORTS[origin]} ({origin}) to {AIRPORTS[dest]} ({dest})"
        facts = {
            "trip_type": "Round trip." if flight_type == "round_trip" else "One way.",
            "route": f"From {trip}.",
            "flight": f"I want {_seg_text(flights)}.",
            "cabin": f"{cabin.replace('_', ' ').capitalize()}, please.",
            "passengers": _pax_text(passengers) + ".",
            "baggage": f"{total_bags} checked bag{'s' if total_bags != 1 else ''} in total.",
            "insurance": "Yes, I want travel insurance." if insurance == "yes" else "No insurance, thanks.",
            "payment": pay_text,
        }
        outputs = [str(total)] if ask_total else []
        say = f"Hi, I'd like to book a {facts['trip_type'][:-1].lower()} trip from {trip}."
        if ask_total:
            say += " Please tell me the total price."
        self.add("book", user, actions, [self.stage(say, range(len(actions)), 1, outputs)],
                 f"You want to book a {flight_type.replace('_', ' ')} trip from {trip}: {_seg_text(flights)}, "
                 f"{cabin.replace('_', ' ')}, passengers {_pax_text(passengers)}, {total_bags} checked bags, "
                 f"insurance: {insurance}. {pay_text} Confirm when asked."
                 + (" Ask for the total price." if ask_total else ""),
                 facts)

    def _book_flights(self, variant: str, n: int, cabin: str) -> tuple[list[tuple[str, str]], str, str, list[dict[str, Any]]]:
        """Segments ``(flight, date)`` that have ``n`` seats in ``cabin``, the trip's origin and
        destination, and the searches that find them (one one-stop search, or a direct search per leg)."""
        g, rng = self.g, self.rng
        for _ in range(2000):
            if variant == "onestop":
                a, b = rng.sample(sorted(g.flights), 2)
                fa, fb = g.flights[a], g.flights[b]
                date = rng.choice(FUTURE)
                if (fa["destination"] != fb["origin"] or fb["destination"] == fa["origin"]
                        or "+" in fa["scheduled_arrival_time_est"]
                        or fa["scheduled_arrival_time_est"] > fb["scheduled_departure_time_est"]
                        or not (g._bookable(a, date, n, cabin) and g._bookable(b, date, n, cabin))):
                    continue
                origin, dest = fa["origin"], fb["destination"]
                return ([(a, date), (b, date)], origin, dest,
                        [self.act("search_onestop_flight", origin=origin, destination=dest, date=date)])
            segs = g.trip(round_trip=variant in ("round_trip_pair", "bags"), when="future", cabin=cabin, n=n)
            f0 = g.flights[segs[0][0]]
            return (segs, f0["origin"], f0["destination"],
                    [self.act("search_direct_flight", origin=g.flights[x]["origin"],
                              destination=g.flights[x]["destination"], date=d) for x, d in segs])
        raise RuntimeError("airline-mini generator found no connection that fits; change the seed")

    def _book_payment(self, variant: str, user: dict[str, Any], total: int) -> tuple[list[dict[str, Any]], str]:
        """How the customer pays ``total``: a gift card that covers it, a certificate first and the card
        for the rest, or the credit card; and how they say so."""
        g = self.g
        card = g.methods(user, "credit_card")[0]
        if variant == "gift_card" and max(m["amount"] for m in g.methods(user, "gift_card")) >= total:
            gift = max(g.methods(user, "gift_card"), key=lambda m: m["amount"])
            return [{"payment_id": gift["id"], "amount": total}], f"Please use {_pay_text(gift)}."
        if variant == "certificate":
            cert = max(g.methods(user, "certificate"), key=lambda m: m["amount"])
            used = min(cert["amount"], total)
            payments = [{"payment_id": cert["id"], "amount": used}]
            if total > used:
                payments.append({"payment_id": card["id"], "amount": total - used})
            return payments, f"Please use {_pay_text(cert)} first and {_pay_text(card)} for the rest."
        return [{"payment_id": card["id"], "amount": total}], f"Please use {_pay_text(card)}."

    # -- other -----------------------------------------------------------------------------------
    def transfer(self, variant: str) -> None:
        g = self.g
        user = g.pick_user()
        res = g.reservation(user, when="past")
        need = {"lost_bag": f"my suitcase did not arrive after flight {res['flights'][0]['flight_number']} and "
                            "I want to file a lost-luggage claim",
                "assistance": "my mother needs wheelchair assistance at the airport on her next trip"}[variant]
        actions = [self.act("get_user_details", user_id=user["user_id"]),
                   self.act("transfer_to_human_agents", summary=f"User {user['user_id']}: {need}.")]
        self.add("transfer", user, actions, [self.stage(f"Hello, {need}.", range(len(actions)), transfer=True)],
                 f"You need help because {need}. You accept being transferred to a human agent.",
                 {"reservation_id": f"It is {res['reservation_id']}."})

    def compensation(self, allowed: bool) -> None:
        g = self.g
        if allowed:
            user = g.pick_user(lambda u: u["membership"] in ("silver", "gold"))
            res = g.reservation(user, cabin="economy", cancelled_leg=True, n=self.rng.choice([1, 2]))
        else:
            user = g.pick_user(lambda u: u["membership"] == "regular")
            res = g.reservation(user, cabin="economy", cancelled_leg=True, insurance="no")
        actions = self.lookups(user, res)
        n_writes = 0
        if allowed:
            actions.append(self.act("send_certificate", user_id=user["user_id"],
                                    amount=COMPENSATION_PER_PASSENGER * len(res["passengers"])))
            n_writes = 1
        say = self.opening("Hi, the airline cancelled one of my flights and I'd like some compensation.", res)
        self.add("compensation" if allowed else "forbidden", user, actions,
                 [self.stage(say, range(len(actions)), n_writes, refusal=not allowed)],
                 f"One flight of reservation {res['reservation_id']} was cancelled by the airline. You ask for "
                 "compensation. Accept a certificate if offered and confirm; if refused, accept it.",
                 {"reservation_id": f"It is {res['reservation_id']}.",
                  "reason": "Because the airline cancelled my flight."})

    def info(self, variant: str) -> None:
        g = self.g
        if variant == "gift_balance":
            user = g.pick_user(lambda u: bool(g.methods(u, "gift_card")))
            answer = str(sum(m["amount"] for m in g.methods(user, "gift_card")))
            actions = [self.act("get_user_details", user_id=user["user_id"])]
            say, instr, facts = ("Hi, what is the total balance left on my gift cards?",
                                 "You want to know the total balance of your gift cards.", {})
        else:
            user = g.pick_user()
            res = g.reservation(user)
            answer = str(sum(p["amount"] for p in res["payment_history"]))
            actions = self.lookups(user, res)
            say = self.opening("Hi, how much did I pay in total for my reservation?", res)
            instr = f"You want to know how much you paid in total for reservation {res['reservation_id']}."
            facts = {"reservation_id": f"It is {res['reservation_id']}."}
        self.add("info", user, actions, [self.stage(say, range(len(actions)), 0, [answer])], instr, facts)

    def two_requests(self) -> None:
        """Cancel one reservation (booked within a day), then add a bag to another."""
        g = self.g
        user = g.pick_user()
        r1 = g.reservation(user, cabin="economy", recent=True)
        r2 = g.reservation(user, cabin="economy", n=1, bags=0)
        allowance = FREE_BAGS[user["membership"]]["economy"]
        total, nonfree = 1, max(0, 1 - allowance)
        pay = self.payer(user, BAG_FEE * nonfree)
        first = self.lookups(user, r1) + [self.act("cancel_reservation", reservation_id=r1["reservation_id"])]
        second = [self.act("get_reservation_details", reservation_id=r2["reservation_id"]),
                  self.act("update_reservation_baggages", reservation_id=r2["reservation_id"], total_baggages=total,
                           nonfree_baggages=nonfree, payment_id=pay["id"])]
        stages = [
            self.stage(f"Hi, please cancel my reservation {r1['reservation_id']}, I booked it by mistake.",
                       range(len(first)), 1),
            self.stage(f"One more thing: please add one checked bag to reservation {r2['reservation_id']}.",
                       range(len(first), len(first) + len(second)), 1,
                       facts={"reservation_id": f"It is {r2['reservation_id']}.",
                              "payment": f"Please use {_pay_text(pay)}.",
                              "baggage": "One more bag, so 1 checked bag in total."}),
        ]
        self.add("cancel+baggage", user, first + second, stages,
                 f"First, cancel reservation {r1['reservation_id']} (booked by mistake a few hours ago). Then add "
                 f"one checked bag to reservation {r2['reservation_id']}, paying any fee with {_pay_text(pay)}. "
                 "Confirm each change when asked.",
                 {"reservation_id": f"It is {r1['reservation_id']}.", "reason": "I booked it by mistake."})


def generate(seed: int = DEFAULT_SEED, n_reservations: int = 100) -> tuple[dict[str, Any], list[Task]]:
    """The data (flights, reservations, users) and tasks of airline-mini for ``seed``."""
    g = _Gen(seed)
    g.build_flights()
    g.build_users()
    t = _Tasks(g)
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


def split_by_kind(tasks: list[Task]) -> dict[str, list[str]]:
    """The held-out split: within each task kind (``Task.kind``), in task order, every third task
    from the second on (positions 1, 4, ...) is a test task, the rest train.

    Why this shape: a held-out task must be new (other user, other reservation, other variant of the
    request) but not of a kind the model never saw, so every kind with two tasks or more has tasks
    on both sides; the kinds with a single task (``inquiry``, ``cancel+baggage``) stay in train.
    It depends on the task list only, so it is the same for every run and every machine: 27 train
    and 14 test tasks at the default seed.
    """
    seen: dict[str, int] = {}
    train: list[str] = []
    test: list[str] = []
    for t in tasks:
        j = seen.get(t.kind, 0)
        seen[t.kind] = j + 1
        (test if j % 3 == 1 else train).append(t.task_id)
    return {"train": train, "test": test}
