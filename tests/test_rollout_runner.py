"""The rollout runner (calib/rollout/runner.py) and `calib rollout`, on airline-mini."""

from __future__ import annotations

import json
from typing import Any

import pytest
from typer.testing import CliRunner

from calib.cli import app
from calib.envs import STOP, load_domain
from calib.errors import CalibError, UsageError
from calib.policies.base import EndEpisode, EpisodeContext, Policy, assistant_call, assistant_text
from calib.policies.oracle import OraclePolicy
from calib.records import canonical_json, normalize_episode
from calib.rollout.runner import run_rollouts, select_tasks, strip_private, write_episodes

cli = CliRunner()


@pytest.fixture(scope="module")
def mini():
    return load_domain("airline-mini")


class ScriptPolicy(Policy):
    """Plays a fixed list of replies (then text), returning per-turn _meta like the trainer's policy."""

    name = "script"

    def __init__(self, replies: list[dict[str, Any]]):
        self.replies = replies

    async def act(self, messages, tools, ctx: EpisodeContext):
        turn = sum(1 for m in messages if m["role"] == "assistant")
        msg = dict(self.replies[turn]) if turn < len(self.replies) else assistant_text("Anything else?")
        msg["_meta"] = {"turn": turn, "completion_ids": [turn, turn + 1]}
        return msg


class StopUser:
    """Stops at the first plain-text reply it gets after ``patience`` replies."""

    name = "stopper"

    def __init__(self, patience: int = 1):
        self.done, self.left, self.heard = False, patience, []

    def reset(self, task):
        return "Hello."

    def step(self, msg):
        self.heard.append(msg)
        self.left -= 1
        if self.left <= 0:
            self.done = True
            return STOP
        return "Go on."


def test_episode_record_shape_progress_and_groups(mini):
    tasks = [t.task_id for t in mini.tasks[:3]]
    eps = run_rollouts(mini, OraclePolicy(), "scripted", tasks, samples=3, run_id="r", iteration=2, seed=5,
                       info={"step": 17})
    assert [e["task_id"] for e in eps] == [t for t in tasks for _ in range(3)]
    assert len({e["episode_id"] for e in eps}) == 9
    assert {e["group_id"] for e in eps} == {f"r/2/{t}" for t in tasks}
    for e in eps:
        canon = normalize_episode(strip_private(e))  # a valid native record
        task = mini.task(e["task_id"])
        assert canonical_json(canon["expected_actions"]) == canonical_json(
            [{"name": a["name"], "arguments": a["arguments"]} for a in task.actions])
        assert e["messages"][0] == {"role": "system", "content": mini.policy}
        info = e["info"]
        assert len(info["progress"]) == info["n_turns"] == sum(m["role"] == "assistant" for m in e["messages"])
        assert all(0.0 <= p <= 1.0 for p in info["progress"])
        assert info["progress"][-1] == pytest.approx(info["reward"]["progress"])
        assert e["outcome"] == 1.0 and e["success"] and e["iteration"] == 2 and e["policy"] == "oracle"
        assert "_turn_meta" not in e  # the oracle returns no per-turn extras
        assert info["step"] == 17


def test_progress_rises_when_a_write_lands(mini):
    task = next(t for t in mini.tasks if t.kind == "cancel")
    (e,) = run_rollouts(mini, OraclePolicy(), "scripted", [task.task_id])
    prog = e["info"]["progress"]
    assert prog[0] == 0.0 and prog[-1] == 1.0 and sorted(prog) == prog
    write_turn = next(i for i, m in enumerate(m for m in e["messages"] if m["role"] == "assistant")
                      if any(c["name"] == "cancel_reservation" for c in m.get("tool_calls", [])))
    assert prog[write_turn] == 1.0 and prog[write_turn - 1] == 0.0


def test_meta_is_returned_but_not_stored_and_invalid_turns_reach_the_user(mini, store_dir):
    from calib.store import Store

    task = mini.tasks[0]
    replies = [assistant_call("get_user_details", {"user_id": task.user_id}, "x"),
               {"role": "assistant", "content": '<tool_call>{"name": "get_user_details", "argu', "invalid": True},
               assistant_text("Done.")]
    users: list[StopUser] = []

    def make_user():
        users.append(StopUser(patience=2))
        return users[-1]

    (e,) = run_rollouts(mini, ScriptPolicy(replies), make_user, [task.task_id], run_id="meta")
    assert e["_turn_meta"] == [{"turn": i, "completion_ids": [i, i + 1]} for i in range(3)]
    assert not any("_meta" in m for m in e["messages"])
    assert users[0].heard == ['<tool_call>{"name": "get_user_details", "argu', "Done."]
    assert e["messages"][2]["tool_calls"][0]["id"] == "x" and e["messages"][3]["tool_call_id"] == "x"
    assert json.loads(e["messages"][3]["content"])["user_id"] == task.user_id  # the real tool ran
    st = Store(store_dir)
    write_episodes(st, [e], domain=mini, source="t")
    kinds = st.query("SELECT kind FROM turns ORDER BY turn_idx")["kind"].tolist()
    assert kinds == ["tool_call", "invalid", "message"]
    stored = json.loads(st.query("SELECT messages FROM episodes")["messages"][0])
    assert not any("_meta" in m for m in stored)


def test_max_turns_and_missing_call_ids(mini):
    loop = [{"role": "assistant", "content": None,
             "tool_calls": [{"name": "list_all_airports", "arguments": {}}, {"name": "think", "arguments": {"thought": "hm"}}]}] * 10
    (e,) = run_rollouts(mini, ScriptPolicy(loop), lambda: StopUser(), [mini.tasks[0].task_id], max_turns=4)
    assert e["info"]["termination"] == "max_turns" and e["info"]["n_turns"] == 4
    ids = [c["id"] for m in e["messages"] if m["role"] == "assistant" for c in m["tool_calls"]]
    assert len(set(ids)) == 8  # every call got its own id, and each has its result
    assert [m["tool_call_id"] for m in e["messages"] if m["role"] == "tool"] == ids
    assert normalize_episode(strip_private(e))["status"] == "ok"


class BudgetPolicy(ScriptPolicy):
    """Plays its replies, then says it cannot play another turn (the verl agent loop's spent budget)."""

    async def act(self, messages, tools, ctx: EpisodeContext):
        if sum(1 for m in messages if m["role"] == "assistant") >= len(self.replies):
            raise EndEpisode("response_length")
        return await super().act(messages, tools, ctx)


def test_a_policy_can_end_the_episode(mini):
    """EndEpisode stops the episode without a turn; what was played is scored and kept, with the reason."""
    calls = [assistant_call("list_all_airports", {}, "c0"), assistant_text("One moment.")]
    (e,) = run_rollouts(mini, BudgetPolicy(calls), lambda: StopUser(patience=5), [mini.tasks[0].task_id],
                        max_turns=10)
    assert e["status"] == "ok" and e["info"]["termination"] == "response_length"
    assert e["info"]["n_turns"] == 2 and len(e["info"]["progress"]) == 2 and len(e["_turn_meta"]) == 2
    assert e["messages"][-1]["role"] == "user"  # the user's answer to the last turn is kept
    assert e["outcome"] == 0.0


def test_transfer_ends_the_episode(mini):
    task = next(t for t in mini.tasks if t.kind == "transfer")
    (e,) = run_rollouts(mini, OraclePolicy(), "scripted", [task.task_id])
    assert e["info"]["termination"] == "env_done" and e["success"]
    last_call = [c for m in e["messages"] if m["role"] == "assistant" for c in m.get("tool_calls", [])][-1]
    assert last_call["name"] == "transfer_to_human_agents"


def test_a_policy_bug_stops_the_rollout_with_a_clear_error(mini):
    class Broken(Policy):
        async def act(self, messages, tools, ctx):
            raise KeyError("oops")

    with pytest.raises(CalibError, match=r"task=.* sample=0 failed: KeyError"):
        run_rollouts(mini, Broken(), "scripted", [mini.tasks[0].task_id])

    class BadShape(Policy):
        async def act(self, messages, tools, ctx):
            return {"role": "user", "content": "hi"}

    with pytest.raises(CalibError, match="role='user'"):
        run_rollouts(mini, BadShape(), "scripted", [mini.tasks[0].task_id])


def test_select_tasks(mini):
    assert len(select_tasks(mini, "all")) == len(mini.tasks)
    ids = [mini.tasks[3].task_id, mini.tasks[1].task_id]
    assert [t.task_id for t in select_tasks(mini, ",".join(ids))] == ids
    with pytest.raises(UsageError, match="unknown task id"):
        select_tasks(mini, ["nope"])


def test_cli_rollout_end_to_end(store_dir):
    args = ["rollout", "--domain", "airline-mini", "--tasks", "all", "--samples", "2", "--store", str(store_dir),
            "--run-id", "cli", "--mistake-rate", "0.4", "--seed", "1", "--json"]
    res = cli.invoke(app, args)
    assert res.exit_code == 0, res.output
    out = json.loads(res.stdout)
    assert out["episodes"] == out["ingested"] and out["episodes"] >= 60 and out["errors"] == 0
    assert 0.0 < out["success_rate"] < 1.0 and set(out["mistakes"]) == {
        "wrong_argument", "extra_lookup", "skipped_confirmation", "premature_write", "early_stop"}
    assert set(out["pass_hat_k"]) == {"1", "2"} and out["pass_hat_k"]["2"] <= out["pass_hat_k"]["1"]
    again = cli.invoke(app, args)  # same run, same seed: nothing new
    assert json.loads(again.stdout)["skipped_duplicates"] == out["episodes"]
    ev = cli.invoke(app, ["eval", "--store", str(store_dir), "--run", "cli", "--json"])
    assert json.loads(ev.stdout)["success_rate"] == pytest.approx(out["success_rate"])
    table = cli.invoke(app, ["rollout", "--samples", "1", "--tasks", "airline-mini/0", "--store", str(store_dir),
                             "--run-id", "t"])
    assert table.exit_code == 0 and "success rate" in table.stdout
    bad = cli.invoke(app, ["rollout", "--policy", "nope", "--store", str(store_dir)])
    assert bad.exit_code == 2 and "unknown policy" in bad.output


def test_bench_quick_prints_its_figure():
    import subprocess
    import sys
    from pathlib import Path

    root = Path(__file__).resolve().parents[1]
    out = subprocess.run([sys.executable, str(root / "bench" / "rollout.py"), "--quick"], capture_output=True,
                         text=True, timeout=300, cwd=root, check=False)
    assert out.returncode == 0, out.stderr[-2000:]
    fig = json.loads(out.stdout.strip().splitlines()[-1])
    assert fig["bench"] == "rollout" and fig["goal"] == ">= 25" and fig["value"] > 0
    assert fig["details"]["serial"]["errors"] == 0 and fig["details"]["concurrent"]["episodes"] == 96
