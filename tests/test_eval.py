"""pass^k and success rate (calib/rollout/evaluate.py) and `calib eval`."""

from __future__ import annotations

import json
from math import comb
from pathlib import Path

import numpy as np
import pytest
from typer.testing import CliRunner

from calib.cli import app
from calib.rollout.evaluate import evaluate_run, pass_hat_k, pass_hat_k_matrix
from calib.store import Store

runner = CliRunner()


def _episode(task: str, i: int, success: bool, status: str = "ok", run: str = "r1", iteration: int = 0) -> dict:
    return {
        "episode_id": f"{run}-{iteration}-{task}-{i}",
        "run_id": run,
        "iteration": iteration,
        "task_id": task,
        "outcome": 1.0 if success else 0.0,
        "status": status,
        "messages": [{"role": "user", "content": "hi"}, {"role": "assistant", "content": f"reply {i}"}],
    }


# Task a: 4/4, task b: 2/4 (+ one error episode that must not count), task c: 0/4.
# pass^1 = (1 + 2/4 + 0)/3 = 1/2; pass^2 = (1 + C(2,2)/C(4,2) + 0)/3 = (1 + 1/6)/3 = 7/18;
# pass^3 = pass^4 = (1 + 0 + 0)/3 = 1/3.
HAND = {1: 0.5, 2: 7 / 18, 3: 1 / 3, 4: 1 / 3}


@pytest.fixture
def hand_store(store_dir: Path) -> Store:
    st = Store(store_dir)
    recs = [_episode("a", i, True) for i in range(4)]
    recs += [_episode("b", i, i < 2) for i in range(4)] + [_episode("b", 9, False, status="error")]
    recs += [_episode("c", i, False) for i in range(4)]
    recs += [_episode("a", i, False, run="other") for i in range(3)]  # another run: ignored
    st.add_episodes(recs, source="test")
    return st


def test_pass_hat_k_hand_computed():
    got = pass_hat_k(np.array([4, 4, 4]), np.array([4, 2, 0]))
    assert got.keys() == HAND.keys()
    for k, v in HAND.items():
        assert got[k] == pytest.approx(v, abs=1e-12)


def test_pass_hat_k_matrix_matches_math_comb_and_marks_short_tasks():
    n = np.array([5, 3, 8])
    c = np.array([3, 3, 1])
    m = pass_hat_k_matrix(n, c, 8)
    for t in range(3):
        for k in range(1, 9):
            if k > n[t]:
                assert np.isnan(m[t, k - 1])
            else:
                assert m[t, k - 1] == pytest.approx(comb(int(c[t]), k) / comb(int(n[t]), k))
    # a task with fewer trials than k is left out of that k's mean, not counted as 0
    assert pass_hat_k(n, c)[4] == pytest.approx(np.mean([comb(3, 4) / comb(5, 4), 0.0]))
    with pytest.raises(ValueError):
        pass_hat_k_matrix(np.array([2]), np.array([3]), 2)


def test_evaluate_run_from_store(hand_store: Store):
    r = evaluate_run(hand_store, "r1")
    for k, v in HAND.items():
        assert r.pass_hat_k[k] == pytest.approx(v)
    assert r.success_rate == pytest.approx(6 / 12)
    assert (r.episodes, r.errors) == (13, 1)
    b = r.per_task.set_index("task_id").loc["b"]
    assert (b["n"], b["successes"], b["errors"]) == (4, 2, 1)
    assert b["pass^2"] == pytest.approx(1 / 6)


def test_evaluate_unknown_run_names_existing_runs(hand_store: Store):
    from calib.errors import CalibError

    with pytest.raises(CalibError, match="runs in this store: other, r1|runs in this store: r1, other"):
        evaluate_run(hand_store, "nope")


def test_cli_eval_json_and_table(hand_store: Store):
    res = runner.invoke(app, ["eval", "--store", str(hand_store.path), "--run", "r1", "--json"])
    assert res.exit_code == 0, res.output
    out = json.loads(res.stdout)
    assert out["success_rate"] == pytest.approx(0.5)
    assert {int(k): v for k, v in out["pass_hat_k"].items()} == pytest.approx(HAND)
    per = {t["task_id"]: t for t in out["per_task"]}
    assert per["b"]["errors"] == 1 and per["b"]["pass_hat_k"]["2"] == pytest.approx(1 / 6)

    res = runner.invoke(app, ["eval", "--store", str(hand_store.path), "--run", "r1"])
    assert res.exit_code == 0, res.output
    assert "overall" in res.stdout and "pass^4" in res.stdout and "0.389" in res.stdout

    res = runner.invoke(app, ["eval", "--store", str(hand_store.path)])  # two runs: --run required
    assert res.exit_code == 2 and "--run" in res.output


def test_cli_eval_on_ingested_taubench_results(taubench_sample: Path, store_dir: Path):
    from calib.ingest import ingest_file

    ingest_file(Store(store_dir), taubench_sample, run_id="tb")
    res = runner.invoke(app, ["eval", "--store", str(store_dir), "--run", "tb", "--json"])
    assert res.exit_code == 0, res.output
    out = json.loads(res.stdout)
    rewards = [rec["reward"] for rec in json.loads(taubench_sample.read_text())]
    assert out["success_rate"] == pytest.approx(np.mean(rewards))
    assert out["pass_hat_k"] == {"1": pytest.approx(np.mean(rewards))}
    assert len(out["per_task"]) == len(rewards)
