"""The oracle policy on airline-mini with the scripted user: perfect play, and seeded mistakes."""

from __future__ import annotations

import json
import random
from collections import Counter

import pytest

from calib.envs import STOP, load_domain
from calib.policies.oracle import (
    MISTAKE_KINDS,
    OracleConfig,
    OraclePolicy,
    identifiers,
    mutate_arguments,
    unsourced_identifiers,
)
from calib.rollout.runner import run_rollouts, write_episodes
from calib.tools import AIRLINE_WRITE_TOOLS


@pytest.fixture(scope="module")
def mini():
    return load_domain("airline-mini")


def _calls(ep: dict) -> list[dict]:
    return [c for m in ep["messages"] if m["role"] == "assistant" for c in m.get("tool_calls", [])]


def test_no_mistakes_succeeds_on_every_task(mini):
    eps = run_rollouts(mini, OraclePolicy(), "scripted", "all", samples=2, concurrency=8)
    assert len(eps) == 2 * len(mini.tasks) >= 60
    failed = [(e["task_id"], e["info"]["reward"]) for e in eps if not e["success"]]
    assert not failed
    assert all(e["status"] == "ok" and e["info"]["mistakes"] == [] for e in eps)
    assert {e["info"]["termination"] for e in eps} <= {"user_stop", "env_done"}
    # a careful agent: every write is preceded by a confirmation question answered with a yes
    for e in eps:
        msgs = e["messages"]
        for i, m in enumerate(msgs):
            for c in m.get("tool_calls", []) if m["role"] == "assistant" else []:
                if c["name"] in AIRLINE_WRITE_TOOLS:
                    asked = [x for x in msgs[:i] if x["role"] == "assistant" and "confirm" in (x["content"] or "")]
                    assert asked, (e["task_id"], c["name"])


def test_half_mistakes_give_mixed_outcomes_and_every_kind_is_visible(mini, store_dir):
    from calib.store import Store

    eps = run_rollouts(mini, OraclePolicy(OracleConfig.uniform(0.5)), "scripted", "all", samples=4, seed=3,
                       run_id="m50")
    rate = sum(e["success"] for e in eps) / len(eps)
    assert 0.10 < rate < 0.90, rate
    st = Store(store_dir)
    res = write_episodes(st, eps, domain=mini, source="test")
    assert res.episodes == len(eps) and res.quarantined == 0
    # visible in the store: count mistake kinds straight from the episodes' info JSON
    kinds = st.query("""
        SELECT json_extract_string(m.value, '$.kind') AS kind, count(*) AS n
        FROM episodes, json_each(json_extract(info, '$.mistakes')) AS m
        GROUP BY kind""").set_index("kind")["n"]
    assert set(kinds.index) == set(MISTAKE_KINDS), kinds
    assert (kinds > 0).all()
    # mistakes that break the task lower the success rate; harmless ones do not matter alone
    with_harm = [e for e in eps if {m["kind"] for m in e["info"]["mistakes"]} & {"wrong_argument", "early_stop"}]
    clean = [e for e in eps if not e["info"]["mistakes"]]
    assert clean and all(e["success"] for e in clean)
    assert sum(e["success"] for e in with_harm) / len(with_harm) < 0.5


@pytest.mark.parametrize("kind", MISTAKE_KINDS)
def test_each_kind_does_what_it_says(mini, kind):
    eps = run_rollouts(mini, OraclePolicy(OracleConfig(**{kind: 1.0})), "scripted", "all", samples=1, seed=1)
    clean = {e["task_id"]: e for e in run_rollouts(mini, OraclePolicy(), "scripted", "all", samples=1, seed=1)}
    made = [e for e in eps if e["info"]["mistakes"]]
    assert len(made) >= len(eps) // 2
    for e in made:
        ms = [x for x in e["info"]["mistakes"] if x["kind"] == kind]
        assert len(ms) == len(e["info"]["mistakes"]) and (len(ms) == 1 or kind == "skipped_confirmation")
        m = ms[0]  # skipped_confirmation is recorded once per unconfirmed write
        assert 0 <= m["turn"] < e["info"]["n_turns"]
        calls, ref = _calls(e), _calls(clean[e["task_id"]])
        turn_msg = [x for x in e["messages"] if x["role"] == "assistant"][m["turn"]]
        if kind == "wrong_argument":
            assert calls != ref and turn_msg["tool_calls"][0]["name"] == m["tool"]
        elif kind == "extra_lookup":
            assert len(calls) == len(ref) + 1 and m["tool"] not in AIRLINE_WRITE_TOOLS
        elif kind == "skipped_confirmation":
            assert not any("confirm" in (x.get("content") or "") for x in e["messages"] if x["role"] == "assistant")
            assert turn_msg["tool_calls"][0]["name"] in AIRLINE_WRITE_TOOLS
        elif kind == "premature_write":
            assert calls[0]["name"] in AIRLINE_WRITE_TOOLS or calls[1]["name"] == "cancel_reservation"
            assert m["turn"] <= 1
        elif kind == "early_stop":
            assert len(calls) < len(ref) or not e["success"]
            assert "goodbye" in turn_msg["content"].lower()
    if kind in {"extra_lookup", "skipped_confirmation"}:
        assert all(e["success"] for e in eps)  # harmless to the outcome: what calibration must notice
    if kind in {"wrong_argument", "early_stop"}:
        assert sum(e["success"] for e in made) < len(made) / 2


def test_rates_are_independent_and_seeded(mini):
    a = run_rollouts(mini, OraclePolicy(OracleConfig.uniform(0.3)), "scripted", "all", samples=2, seed=7,
                     concurrency=1)
    b = run_rollouts(mini, OraclePolicy(OracleConfig.uniform(0.3)), "scripted", "all", samples=2, seed=7,
                     concurrency=16)
    assert [e["messages"] for e in a] == [e["messages"] for e in b]  # concurrency changes nothing
    c = run_rollouts(mini, OraclePolicy(OracleConfig.uniform(0.3)), "scripted", "all", samples=2, seed=8)
    assert [e["info"]["mistakes"] for e in a] != [e["info"]["mistakes"] for e in c]


def test_declined_confirmation_skips_the_write(mini):
    class NoUser:
        name, done = "no", False

        def reset(self, task):
            self.task = task
            return "Hi."

        def step(self, msg):
            if "confirm" in msg:
                return "No, do not do that."
            if "user id" in msg:  # the oracle asks who the customer is and which reservation they mean
                return f"My user id is {self.task.user_id}."
            if "reservation id" in msg:
                return "It is " + " and ".join(self.task.profile["reservation_ids"]) + "."
            self.done = True
            return STOP

    task = next(t for t in mini.tasks if t.kind == "cancel")
    (e,) = run_rollouts(mini, OraclePolicy(), NoUser, [task.task_id])
    assert not any(c["name"] in AIRLINE_WRITE_TOOLS for c in _calls(e))
    assert e["info"]["declined"] and not e["success"]


def test_mutate_arguments_is_plausible():
    schemas = {"update_reservation_flights": {"parameters": {"properties": {
        "reservation_id": {"type": "string"}, "cabin": {"type": "string", "enum": ["basic_economy", "economy", "business"]},
        "flights": {"type": "array", "items": {"type": "object"}}}}}}
    args = {"reservation_id": "ABC123", "cabin": "economy", "flights": [{"flight_number": "HAT001", "date": "2024-05-20"}]}
    seen = Counter()
    for s in range(200):
        new, what = mutate_arguments("update_reservation_flights", args, random.Random(s), schemas)
        assert new != args and args["cabin"] == "economy"  # the input is not modified
        seen[what["path"]] += 1
        if what["path"] == "cabin":
            assert new["cabin"] in {"basic_economy", "business"}
        elif what["path"] == "reservation_id":
            assert len(new["reservation_id"]) == 6 and sum(a != b for a, b in zip(new["reservation_id"], "ABC123")) == 1
    assert set(seen) == {"reservation_id", "cabin", "flights.0.flight_number", "flights.0.date"}
    assert mutate_arguments("x", {}, random.Random(0)) is None


def test_config_validates_rates():
    with pytest.raises(ValueError, match="early_stop=1.5"):
        OracleConfig(early_stop=1.5)
    cfg = OracleConfig.uniform(0.2, extra_lookup=0.0)
    assert cfg.rates()["extra_lookup"] == 0.0 and cfg.rates()["wrong_argument"] == 0.2
    assert json.dumps(cfg.rates())


def test_no_mistakes_succeeds_on_the_taubench_tasks(taubench_dir):
    domain = load_domain(f"taubench:{taubench_dir / 'airline'}")
    eps = run_rollouts(domain, OraclePolicy(), "scripted", "all", samples=1, concurrency=8)
    assert len(eps) == 50
    assert [e["task_id"] for e in eps if not e["success"]] == []


def test_unsourced_identifiers_flags_invented_ids():
    msgs = [{"role": "system", "content": "You serve user ann_1."},
            {"role": "user", "content": "Hi, my user id is ann_1. Cancel ABC123."},
            {"role": "assistant", "content": None, "tool_calls": [
                {"id": "c0", "name": "get_user_details", "arguments": {"user_id": "ann_1"}}]},
            {"role": "tool", "name": "get_user_details", "content": '{"payment_methods": {"gift_card_7": {}}}'},
            {"role": "assistant", "content": "I will use gift_card_9 and HAT0012.", "tool_calls": [
                {"id": "c1", "name": "book_reservation", "arguments": {
                    "user_id": "ann_1", "flights": [{"flight_number": "HAT001", "date": "2024-05-01"}],
                    "payment_methods": [{"payment_id": "gift_card_7", "amount": 10}, {"payment_id": "gift_card_9"}]}}]}]
    bad = unsourced_identifiers(msgs)
    # neither the system prompt nor the agent's own words are a source; HAT001 is not HAT0012
    assert [(b["argument"], b["value"]) for b in bad] == [("flight_number", "HAT001"), ("payment_id", "gift_card_9")]
    assert identifiers({"reservation_id": "X", "amount": 5, "n": {"payment_id": "p"}}) == [
        ("reservation_id", "X"), ("payment_id", "p")]


def test_identifiers_come_from_the_customer_or_tool_results(mini):
    """Demonstrations a policy could have produced: no id is taken from the task's hidden data."""
    eps = run_rollouts(mini, OraclePolicy(), "scripted", "all", samples=1, concurrency=8)
    assert all(e["success"] for e in eps)
    assert [(e["task_id"], b) for e in eps for b in unsourced_identifiers(e["messages"])] == []
    assert all("unsourced" not in e["info"] for e in eps)
    # the customer is asked who they are before their profile is read
    users = {t.task_id: t.user_id for t in mini.tasks}
    for e in eps:
        first = next(m for m in e["messages"] if m["role"] == "assistant")
        assert first["content"] == "Could you please tell me your user id?", (e["task_id"], first)
        assert users[e["task_id"]] not in next(m for m in e["messages"] if m["role"] == "user")["content"]


def test_identifiers_are_sourced_on_the_taubench_tasks(taubench_dir):
    domain = load_domain(f"taubench:{taubench_dir / 'airline'}")
    eps = run_rollouts(domain, OraclePolicy(), "scripted", "all", samples=1, concurrency=8)
    assert len(eps) == 50 and all(e["success"] for e in eps)
    bad = [(e["task_id"], b) for e in eps for b in unsourced_identifiers(e["messages"])]
    assert bad == []
    n_ids = sum(len(identifiers(c["arguments"])) for e in eps for m in e["messages"] if m["role"] == "assistant"
                for c in m.get("tool_calls") or [])
    assert n_ids > 100  # the check had something to check
