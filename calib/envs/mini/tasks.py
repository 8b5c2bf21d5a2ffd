"""The task builder of airline-mini: each task kind, built on a reservation made for it.

A task's expected actions are computed here from the data and the policy
(``calib/envs/mini/policy.py``); ``tests/test_mini_domain.py`` replays them.
"""

from __future__ import annotations

import datetime as dt
from typing import Any

from calib.envs.base import Task
from calib.envs.mini.database import DatabaseBuilder
from calib.envs.mini.world import (
    AIRPORTS,
    BAG_FEE,
    CABINS,
    COMPENSATION_PER_PASSENGER,
    DATES,
    FREE_BAGS,
    FUTURE,
    INSURANCE_FEE,
    LAST,
)


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


class TaskBuilder:
    """The task kinds. Each method adds one task built on a reservation made for it."""

    def __init__(self, g: DatabaseBuilder):
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

