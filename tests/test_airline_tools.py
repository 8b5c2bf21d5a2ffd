"""The 14 airline tools: schemas match tau-bench's, behaviour on a tiny hand-made database, and no
call (however malformed) ever raises."""

from __future__ import annotations

import copy
import json

import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from calib.envs.airline import TOOLS, AirlineDB, AirlineDomain
from calib.envs.airline.schemas import AIRLINE_TOOL_SCHEMAS
from calib.envs.base import Task
from calib.tools import AIRLINE_WRITE_TOOLS, airline_catalogue


def _avail(be: int, eco: int, bus: int, seats: int = 9) -> dict:
    return {"status": "available", "available_seats": {"basic_economy": seats, "economy": seats, "business": seats},
            "prices": {"basic_economy": be, "economy": eco, "business": bus}}


def tiny_data() -> dict:
    """Two airports, three flights, one user with every kind of payment method, one reservation."""
    flights = {
        "AA1": {"flight_number": "AA1", "origin": "AAA", "destination": "BBB",
                "scheduled_departure_time_est": "08:00:00", "scheduled_arrival_time_est": "10:00:00",
                "dates": {"2024-05-20": _avail(50, 100, 300), "2024-05-21": _avail(60, 120, 320),
                          "2024-05-22": {"status": "cancelled"}, "2024-05-23": _avail(50, 100, 300, seats=1)}},
        "AA2": {"flight_number": "AA2", "origin": "BBB", "destination": "CCC",
                "scheduled_departure_time_est": "11:00:00", "scheduled_arrival_time_est": "12:00:00",
                "dates": {"2024-05-20": _avail(40, 80, 200), "2024-05-21": _avail(40, 80, 200)}},
        "AA3": {"flight_number": "AA3", "origin": "AAA", "destination": "BBB",
                "scheduled_departure_time_est": "22:00:00", "scheduled_arrival_time_est": "01:00:00+1",
                "dates": {"2024-05-20": _avail(70, 140, 350)}},
        "AA4": {"flight_number": "AA4", "origin": "BBB", "destination": "CCC",
                "scheduled_departure_time_est": "09:00:00", "scheduled_arrival_time_est": "10:00:00",
                "dates": {"2024-05-21": _avail(45, 90, 210)}},
    }
    user = {
        "user_id": "u1", "name": {"first_name": "Ann", "last_name": "Lee"}, "dob": "1990-01-01",
        "membership": "gold", "saved_passengers": [], "reservations": ["R1"],
        "payment_methods": {
            "credit_card_1": {"source": "credit_card", "brand": "visa", "last_four": "1111", "id": "credit_card_1"},
            "gift_card_1": {"source": "gift_card", "amount": 150, "id": "gift_card_1"},
            "certificate_1": {"source": "certificate", "amount": 100, "id": "certificate_1"},
        },
    }
    res = {
        "reservation_id": "R1", "user_id": "u1", "origin": "AAA", "destination": "BBB", "flight_type": "one_way",
        "cabin": "economy",
        "flights": [{"flight_number": "AA1", "date": "2024-05-20", "price": 100, "origin": "AAA", "destination": "BBB"}],
        "passengers": [{"first_name": "Ann", "last_name": "Lee", "dob": "1990-01-01"},
                       {"first_name": "Bo", "last_name": "Lee", "dob": "1992-02-02"}],
        "payment_history": [{"payment_id": "credit_card_1", "amount": 200}],
        "created_at": "2024-05-10T10:00:00", "total_baggages": 1, "nonfree_baggages": 0, "insurance": "no",
    }
    return {"flights": flights, "users": {"u1": user}, "reservations": {"R1": res}}


@pytest.fixture
def domain() -> AirlineDomain:
    return AirlineDomain(name="tiny", policy="", tasks=[], data=tiny_data())


@pytest.fixture
def env(domain):
    return domain.new_env(Task(task_id="tiny/0", user_id="u1", instruction=""))


def call(env, name, **kw) -> str:
    return env.step(name, kw)


BOOK = {"user_id": "u1", "origin": "AAA", "destination": "BBB", "flight_type": "one_way", "cabin": "economy",
            "flights": [{"flight_number": "AA1", "date": "2024-05-20"}],
            "passengers": [{"first_name": "Ann", "last_name": "Lee", "dob": "1990-01-01"}],
            "total_baggages": 0, "nonfree_baggages": 0, "insurance": "no"}


# ------------------------------------------------------------------------------------------ schemas


def _shape(schema):
    """Everything but descriptions: names, types, enums, required, nesting."""
    if isinstance(schema, dict):
        return {k: _shape(v) for k, v in schema.items() if k != "description"}
    if isinstance(schema, list):
        return [_shape(v) for v in schema]
    return schema


def test_schemas_match_taubench_names_params_enums_required(taubench_dir):
    theirs = {t["function"]["name"]: t["function"] for t in json.loads((taubench_dir / "airline" / "tools.json").read_text())}
    ours = {t["function"]["name"]: t["function"] for t in AIRLINE_TOOL_SCHEMAS}
    assert sorted(ours) == sorted(theirs) and len(ours) == 14
    for name in ours:
        assert _shape(ours[name]["parameters"]) == _shape(theirs[name]["parameters"]), name
        assert ours[name]["description"] != theirs[name]["description"], f"{name}: write our own description"


def test_write_classification_matches_catalogue():
    cat = airline_catalogue()
    assert cat.write_tools == AIRLINE_WRITE_TOOLS
    assert set(TOOLS) == set(cat.tool_names)


# ------------------------------------------------------------------------------------------ booking


def test_book_prices_debits_and_ids(env):
    pay = [{"payment_id": "gift_card_1", "amount": 100}, {"payment_id": "credit_card_1", "amount": 130}]
    args = dict(BOOK, insurance="yes", total_baggages=4, nonfree_baggages=1, payment_methods=pay)
    # 100 (economy) + 30 insurance + 50 one paid bag = 180 -> 230 does not add up
    obs = call(env, "book_reservation", **args)
    assert obs == "Error: payment amount does not add up, total price is 180, but paid 230"
    pay[1]["amount"] = 80
    res = json.loads(call(env, "book_reservation", **args))
    assert res["reservation_id"] == "HATHAT" and res["created_at"] == "2024-05-15T15:00:00"
    assert res["flights"] == [{"flight_number": "AA1", "date": "2024-05-20", "price": 100, "origin": "AAA",
                               "destination": "BBB"}]
    assert env.db.user("u1")["payment_methods"]["gift_card_1"]["amount"] == 50
    assert env.db.user("u1")["reservations"] == ["R1", "HATHAT"]
    # a certificate is consumed whole; the second booking gets the next id
    obs = call(env, "book_reservation", **dict(BOOK, payment_methods=[{"payment_id": "certificate_1", "amount": 100}]))
    assert json.loads(obs)["reservation_id"] == "HATHAU"
    assert "certificate_1" not in env.db.user("u1")["payment_methods"]


@pytest.mark.parametrize(
    "change, error",
    [
        ({"user_id": "nobody"}, "Error: user not found"),
        ({"flights": [{"flight_number": "ZZ9", "date": "2024-05-20"}]}, "Error: flight ZZ9 not found"),
        ({"flights": [{"flight_number": "AA1", "date": "2024-06-01"}]}, "Error: flight AA1 not found on date 2024-06-01"),
        ({"flights": [{"flight_number": "AA1", "date": "2024-05-22"}]}, "Error: flight AA1 not available on date 2024-05-22"),
        ({"flights": [{"flight_number": "AA1", "date": "2024-05-23"}],
          "passengers": [{"first_name": "A", "last_name": "B", "dob": "2000-01-01"}] * 2}, "Error: not enough seats on flight AA1"),
        ({"payment_methods": [{"payment_id": "gift_card_9", "amount": 100}]}, "Error: payment method gift_card_9 not found"),
        ({"payment_methods": [{"payment_id": "certificate_1", "amount": 100}], "cabin": "business"},
         "Error: not enough balance in payment method certificate_1"),
    ],
)
def test_book_errors_leave_data_unchanged(env, change, error):
    args = dict(BOOK, payment_methods=[{"payment_id": "credit_card_1", "amount": 100}])
    args.update(change)
    if change.get("cabin") == "business":
        args["payment_methods"] = [{"payment_id": "certificate_1", "amount": 300}]
    assert call(env, "book_reservation", **args) == error
    assert env.db.diff() == {}


# ------------------------------------------------------------------------------------------ cancel


def test_cancel_refunds_every_payment(env, domain):
    res = json.loads(call(env, "cancel_reservation", reservation_id="R1"))
    assert res["status"] == "cancelled"
    assert res["payment_history"] == [{"payment_id": "credit_card_1", "amount": 200},
                                      {"payment_id": "credit_card_1", "amount": -200}]
    assert "status" not in domain.data["reservations"]["R1"], "the shared base must never change"
    assert call(env, "cancel_reservation", reservation_id="NOPE") == "Error: reservation not found"


# ------------------------------------------------------------------------------------------ modify


def test_update_flights_charges_difference_and_keeps_old_prices(env):
    # keep AA1 on 05-20 (bought at 100, now still 100) and move nothing: no charge, no payment entry
    same = [{"flight_number": "AA1", "date": "2024-05-20"}]
    res = json.loads(call(env, "update_reservation_flights", reservation_id="R1", cabin="economy", flights=same,
                          payment_id="credit_card_1"))
    assert res["payment_history"] == [{"payment_id": "credit_card_1", "amount": 200}]
    # move to 05-21 (120 each, 2 passengers): +40 on the gift card
    res = json.loads(call(env, "update_reservation_flights", reservation_id="R1", cabin="economy",
                          flights=[{"flight_number": "AA1", "date": "2024-05-21"}], payment_id="gift_card_1"))
    assert res["flights"][0]["price"] == 120 and res["payment_history"][-1] == {"payment_id": "gift_card_1", "amount": 40}
    assert env.db.user("u1")["payment_methods"]["gift_card_1"]["amount"] == 110
    # business costs 2 * (320 - 120) = 400 more: more than the gift card holds
    assert call(env, "update_reservation_flights", reservation_id="R1", cabin="business",
                flights=[{"flight_number": "AA1", "date": "2024-05-21"}], payment_id="gift_card_1") == \
        "Error: gift card balance is not enough"
    assert call(env, "update_reservation_flights", reservation_id="R1", cabin="business",
                flights=[{"flight_number": "AA1", "date": "2024-05-21"}], payment_id="certificate_1") == \
        "Error: certificate cannot be used to update reservation"
    res = json.loads(call(env, "update_reservation_flights", reservation_id="R1", cabin="business",
                          flights=[{"flight_number": "AA1", "date": "2024-05-21"}], payment_id="credit_card_1"))
    assert res["cabin"] == "business" and res["payment_history"][-1]["amount"] == 400


def test_update_flights_cabin_quirk_in_taubench_mode():
    """tau-bench never writes the new cabin back; taubench domains reproduce that for hash parity."""
    dom = AirlineDomain(name="tb", policy="", tasks=[], data=tiny_data(), taubench_compat=True)
    env = dom.new_env(Task(task_id="tb/0", user_id="u1", instruction=""))
    res = json.loads(call(env, "update_reservation_flights", reservation_id="R1", cabin="business",
                          flights=[{"flight_number": "AA1", "date": "2024-05-20"}], payment_id="credit_card_1"))
    assert res["cabin"] == "economy" and res["flights"][0]["price"] == 300


def test_update_baggages_and_passengers(env):
    res = json.loads(call(env, "update_reservation_baggages", reservation_id="R1", total_baggages=3,
                          nonfree_baggages=2, payment_id="gift_card_1"))
    assert (res["total_baggages"], res["nonfree_baggages"]) == (3, 2)
    assert res["payment_history"][-1] == {"payment_id": "gift_card_1", "amount": 100}
    assert env.db.user("u1")["payment_methods"]["gift_card_1"]["amount"] == 50
    assert call(env, "update_reservation_baggages", reservation_id="R1", total_baggages=4, nonfree_baggages=3,
                payment_id="certificate_1") == "Error: certificate cannot be used to update reservation"
    assert call(env, "update_reservation_passengers", reservation_id="R1",
                passengers=[{"first_name": "X", "last_name": "Y", "dob": "2000-01-01"}]) == \
        "Error: number of passengers does not match"
    new = [{"first_name": "Ann", "last_name": "Lee", "dob": "1990-01-01"},
           {"first_name": "Cy", "last_name": "Lee", "dob": "1993-03-03"}]
    assert json.loads(call(env, "update_reservation_passengers", reservation_id="R1", passengers=new))["passengers"] == new


def test_send_certificate_uses_a_fixed_id_sequence(env):
    assert call(env, "send_certificate", user_id="u1", amount=100) == \
        "Certificate certificate_3221322 added to user u1 with amount 100."
    assert "certificate_3221323" in call(env, "send_certificate", user_id="u1", amount=50)
    assert env.db.user("u1")["payment_methods"]["certificate_3221323"] == \
        {"source": "certificate", "amount": 50, "id": "certificate_3221323"}
    assert call(env, "send_certificate", user_id="ghost", amount=5) == "Error: user not found"


# ------------------------------------------------------------------------------------------ reads


def test_searches(env):
    direct = json.loads(call(env, "search_direct_flight", origin="AAA", destination="BBB", date="2024-05-20"))
    assert [f["flight_number"] for f in direct] == ["AA1", "AA3"]
    assert direct[0]["prices"]["economy"] == 100 and "dates" not in direct[0]
    assert json.loads(call(env, "search_direct_flight", origin="AAA", destination="BBB", date="2024-05-22")) == []
    pairs = json.loads(call(env, "search_onestop_flight", origin="AAA", destination="CCC", date="2024-05-20"))
    legs = [(a["flight_number"], a["date"], b["flight_number"], b["date"]) for a, b in pairs]
    # AA1 lands 10:00, AA2 leaves 11:00 the same day; AA3 lands 01:00 the next day, so its connections
    # (AA2 at 11:00, AA4 at 09:00) are on 05-21; AA1 -> AA4 is not offered: AA4 does not fly on 05-20.
    assert sorted(legs) == [("AA1", "2024-05-20", "AA2", "2024-05-20"), ("AA3", "2024-05-20", "AA2", "2024-05-21"),
                            ("AA3", "2024-05-20", "AA4", "2024-05-21")]


def test_lookups_and_misc(env):
    assert json.loads(call(env, "get_user_details", user_id="u1"))["membership"] == "gold"
    assert call(env, "get_user_details", user_id="x") == "Error: user not found"
    assert json.loads(call(env, "get_reservation_details", reservation_id="R1"))["cabin"] == "economy"
    assert call(env, "get_reservation_details", reservation_id="x") == "Error: reservation not found"
    assert json.loads(call(env, "list_all_airports")) == {"AAA": "AAA", "BBB": "BBB", "CCC": "CCC"}
    assert call(env, "calculate", expression="2 * (100 + 35) / 3") == "90.0"
    assert call(env, "calculate", expression="1/0") == "Error: division by zero"
    assert call(env, "calculate", expression="__import__('os')").startswith("Error: invalid characters")
    assert call(env, "calculate", expression="2 **").startswith("Error:")
    assert call(env, "think", thought="plan") == ""
    assert not env.done
    assert call(env, "transfer_to_human_agents", summary="help") == "Transfer successful"
    assert env.done


# ------------------------------------------------------------------------------------------ validation


@pytest.mark.parametrize(
    "name, args, expect",
    [
        ("no_such_tool", {}, "Error: unknown tool 'no_such_tool'"),
        ("get_user_details", {}, "missing required field 'user_id'"),
        ("get_user_details", {"user_id": 5}, "should be string"),
        ("get_user_details", {"user_id": "u1", "extra": 1}, "unexpected field"),
        ("book_reservation", dict(BOOK, cabin="first", payment_methods=[]), "must be one of"),
        ("update_reservation_baggages", {"reservation_id": "R1", "total_baggages": "2", "nonfree_baggages": 0,
                                         "payment_id": "credit_card_1"}, "should be integer"),
        ("get_user_details", "{not json", "Error: arguments are not valid JSON"),
        ("get_user_details", "[1, 2]", "should be object"),
    ],
)
def test_bad_calls_are_error_observations(env, name, args, expect):
    obs = env.step(name, args)
    assert obs.startswith("Error") and expect in obs
    assert env.db.diff() == {}


def test_json_string_arguments_are_accepted(env):
    assert json.loads(env.step("get_user_details", '{"user_id": "u1"}'))["user_id"] == "u1"


json_values = st.recursive(
    st.none() | st.booleans() | st.integers(-5, 500) | st.floats(allow_nan=True) | st.text(max_size=8),
    lambda inner: st.lists(inner, max_size=3) | st.dictionaries(st.text(max_size=6), inner, max_size=3),
    max_leaves=8,
)


@settings(max_examples=150, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture])
@given(name=st.sampled_from(sorted(TOOLS)), args=st.dictionaries(
    st.sampled_from(["user_id", "reservation_id", "flights", "passengers", "payment_id", "payment_methods",
                     "cabin", "amount", "total_baggages", "nonfree_baggages", "expression", "origin",
                     "destination", "date", "insurance", "flight_type", "summary", "thought", "junk"]),
    json_values, max_size=8))
def test_no_call_ever_raises(name, args):
    dom = AirlineDomain(name="tiny", policy="", tasks=[], data=tiny_data())
    env = dom.new_env(Task(task_id="tiny/0", user_id="u1", instruction=""))
    obs = env.step(name, args)
    assert isinstance(obs, str)


def test_episodes_are_isolated(domain):
    before = copy.deepcopy(domain.data)
    a = domain.new_env(Task(task_id="tiny/0", user_id="u1", instruction=""))
    b = domain.new_env(Task(task_id="tiny/0", user_id="u1", instruction=""))
    call(a, "cancel_reservation", reservation_id="R1")
    call(a, "send_certificate", user_id="u1", amount=10)
    assert "status" not in b.db.reservation("R1")
    assert "certificate_3221322" not in b.db.user("u1")["payment_methods"]
    assert domain.data == before
    assert isinstance(a.db, AirlineDB) and a.db.changes_hash() != b.db.changes_hash()


def test_the_write_flag_is_declared_on_each_tool():
    """Issue 25, item 5: one declaration (``@tool(..., write=True)``), read by the catalogue, the store's
    is_write and the oracle; tau-bench airline's six database-changing tools and nothing else."""
    from calib.envs.airline.tools import TOOLS
    from calib.tools import AIRLINE_READ_TOOLS, AIRLINE_WRITE_TOOLS, airline_catalogue

    declared = {t.name for t in TOOLS.values() if t.write}
    assert declared == {"book_reservation", "cancel_reservation", "send_certificate", "update_reservation_baggages",
                        "update_reservation_flights", "update_reservation_passengers"}
    assert AIRLINE_WRITE_TOOLS == declared and AIRLINE_READ_TOOLS == set(TOOLS) - declared
    cat = airline_catalogue()
    assert all(cat.is_write(name) is (name in declared) for name in TOOLS)
