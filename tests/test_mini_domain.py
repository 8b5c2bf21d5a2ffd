"""airline-mini: deterministic for a seed, the promised sizes and task kinds, tasks that follow
the domain's own policy, and expected actions that replay to reward 1."""

from __future__ import annotations

import pytest

from calib.envs import load_domain
from calib.envs.mini import FREE_BAGS, NOW, POLICY, generate, mini_domain
from calib.errors import UsageError
from calib.records import canonical_json
from calib.tools import AIRLINE_WRITE_TOOLS

SEEDS = [0, 1, 7]


@pytest.fixture(scope="module", params=SEEDS)
def dom(request):
    return mini_domain(request.param)


def test_same_seed_same_domain_other_seed_other_domain():
    a, b, c = generate(0), generate(0), generate(1)
    assert canonical_json(a[0]) == canonical_json(b[0])
    assert [t.__dict__ for t in a[1]] == [t.__dict__ for t in b[1]]
    assert canonical_json(a[0]) != canonical_json(c[0])


def test_sizes_and_task_kinds(dom):
    assert (len(dom.data["users"]), len(dom.data["flights"]), len(dom.data["reservations"])) == (50, 40, 100)
    assert len(dom.tasks) >= 30
    kinds = {t.kind for t in dom.tasks}
    assert {"cancel", "change_flight", "change_cabin", "baggage", "passengers", "book", "forbidden",
            "transfer"} <= kinds
    assert any(t.outputs for t in dom.tasks)
    assert len({t.task_id for t in dom.tasks}) == len(dom.tasks)
    assert dom.policy == POLICY and "###" not in POLICY


def test_load_domain_specs():
    assert load_domain("airline-mini") is mini_domain(0)
    assert load_domain("airline-mini:7") is mini_domain(7)
    for bad in ("airline-mini:x", "nope", "taubench:/definitely/not/here"):
        with pytest.raises(UsageError):
            load_domain(bad)
    assert mini_domain(0).task("3").task_id == "airline-mini/3"
    with pytest.raises(UsageError, match="unknown task"):
        mini_domain(0).task("999")


def test_every_task_replays_to_reward_one(dom):
    for task in dom.tasks:
        gold = dom.gold(task)
        assert gold.errors == [], (task.task_id, gold.errors)
        writes = [a for a in task.actions if a["name"] in AIRLINE_WRITE_TOOLS]
        assert bool(writes) == bool(gold.changes), task.task_id  # writes change data, reads do not
        env = dom.new_env(task)
        for a in task.actions:
            assert not env.step(a["name"], a["arguments"]).startswith("Error"), (task.task_id, a)
        r = env.evaluate(list(task.outputs))
        assert r.reward == 1.0 and r.progress == 1.0, task.task_id
        assert dom.new_env(task).evaluate([]).reward == (0.0 if (writes or task.outputs) else 1.0)


def test_profiles_are_complete(dom):
    for task in dom.tasks:
        p = task.profile
        assert {"user_id", "facts", "confirm", "stages", "patience", "reservation_ids"} <= set(p)
        assert p["facts"]["user_id"] == f"My user id is {task.user_id}."
        covered = [i for s in p["stages"] for i in s["actions"]]
        assert covered == list(range(len(task.actions))), task.task_id  # stages split the actions in order
        for s in p["stages"]:
            own = [task.actions[i] for i in s["actions"]]
            assert s["writes"] == sum(a["name"] in AIRLINE_WRITE_TOOLS for a in own), task.task_id
            assert s["say"]
        assert [o for s in p["stages"] for o in s["outputs"]] == task.outputs
        assert task.instruction.startswith(f"Your user id is {task.user_id}.")


def _departed(dom, res) -> bool:
    for f in res["flights"]:
        day = dom.data["flights"][f["flight_number"]]["dates"][f["date"]]
        if day["status"] in ("landed", "flying"):
            return True
    return False


def _may_cancel(dom, res, health: bool) -> bool:
    """The cancellation rule of the mini policy, written independently of the generator."""
    import datetime as dt

    if _departed(dom, res):
        return False
    recent = NOW - dt.datetime.fromisoformat(res["created_at"]) < dt.timedelta(hours=24)
    airline = any(dom.data["flights"][f["flight_number"]]["dates"][f["date"]]["status"] == "cancelled"
                  for f in res["flights"])
    return recent or airline or res["cabin"] == "business" or (res["insurance"] == "yes" and health)


def test_tasks_follow_the_policy(dom):
    for task in dom.tasks:
        names = [a["name"] for a in task.actions]
        res_ids = task.profile["reservation_ids"]
        if task.kind == "cancel":
            res = dom.data["reservations"][res_ids[0]]
            assert _may_cancel(dom, res, health="ill" in task.instruction), task.task_id
        if task.kind == "forbidden":
            assert not set(names) & AIRLINE_WRITE_TOOLS, task.task_id
            assert task.profile["stages"][0]["refusal"]
            res = dom.data["reservations"][res_ids[0]]
            if "compensation" in task.instruction:
                user = dom.data["users"][task.user_id]
                assert user["membership"] == "regular" and res["insurance"] == "no" and res["cabin"] != "business"
            elif "cancel" in task.instruction:
                assert not _may_cancel(dom, res, health=False), task.task_id
            else:
                assert res["cabin"] == "basic_economy", task.task_id
        if task.kind in ("change_flight", "change_cabin", "baggage"):
            res = dom.data["reservations"][res_ids[0]]
            assert not _departed(dom, res), task.task_id
            assert task.kind != "change_flight" or res["cabin"] != "basic_economy"
            write = task.actions[-1]["arguments"]
            assert not write["payment_id"].startswith("certificate_"), task.task_id
        if task.kind == "baggage":
            res = dom.data["reservations"][res_ids[0]]
            user = dom.data["users"][task.user_id]
            free = FREE_BAGS[user["membership"]][res["cabin"]] * len(res["passengers"])
            w = task.actions[-1]["arguments"]
            assert w["total_baggages"] > res["total_baggages"]
            assert w["nonfree_baggages"] == max(0, w["total_baggages"] - free)
        if task.kind == "book":
            book = task.actions[-1]["arguments"]
            assert 1 <= len(book["passengers"]) <= 5
            sources = [dom.data["users"][task.user_id]["payment_methods"][p["payment_id"]]["source"]
                       for p in book["payment_methods"]]
            assert sources.count("certificate") <= 1 and sources.count("credit_card") <= 1
        if task.kind == "transfer":
            assert names[-1] == "transfer_to_human_agents" and task.profile["stages"][0]["transfer"]
