"""tau2 domains as environments (calib/envs/tau2), the split mechanism, and `calib replay` on tau2 results.

Needs the ``tau2`` package (``calib[tau2]``); under CI its absence fails instead of skipping.
"""

from __future__ import annotations

import json
import os
import sys
from pathlib import Path

import pytest
from typer.testing import CliRunner

from calib.cli import app
from calib.envs.splits import filter_split, split_task_ids
from calib.errors import UsageError
from calib.store import Store

runner = CliRunner()
ROOT = Path(__file__).resolve().parents[1]
SAMPLE = ROOT.parent / "shared" / "tau2" / "airline_sample_10.json"


@pytest.fixture(scope="module")
def tau2_pkg(skip_or_fail):
    """The tau2 registry (imported the way calib imports it)."""
    from calib.envs.tau2.loader import import_tau2

    try:
        return import_tau2()
    except UsageError as e:
        skip_or_fail(f"tau2 is part of the CI install (calib[tau2]): {e}")


@pytest.fixture(scope="module")
def airline(tau2_pkg):
    from calib.envs import load_domain

    return load_domain("tau2:airline")


@pytest.fixture(scope="module")
def sample(skip_or_fail) -> Path:
    if not SAMPLE.exists():
        skip_or_fail(f"missing {SAMPLE}")
    return SAMPLE


def test_catalogue_name_lists_match_tau2(tau2_pkg):
    """calib/tau2_catalogue.py (used to import results without tau2) agrees with tau2's tool tags."""
    from calib.tau2_catalogue import TAU2_DOMAINS, TAU2_READ_TOOLS, TAU2_WRITE_TOOLS

    for d in TAU2_DOMAINS:
        env = tau2_pkg.registry.get_env_constructor(d)()
        kinds = {n: env.tools.tool_type(n).value for n in env.tools.get_tools()}
        assert TAU2_WRITE_TOOLS[d] == {n for n, k in kinds.items() if k == "write"}, d
        assert TAU2_READ_TOOLS[d] == {n for n, k in kinds.items() if k != "write"}, d


@pytest.mark.parametrize("name,train,test", [("airline", 30, 20), ("retail", 74, 40), ("telecom", 74, 40)])
def test_tau2_splits(tau2_pkg, name: str, train: int, test: int):
    from calib.envs import load_domain

    dom = load_domain(f"tau2:{name}")
    tr, te, al = (split_task_ids(dom, s) for s in ("train", "test", "all"))
    assert (len(tr), len(te)) == (train, test)
    assert not set(tr) & set(te) and set(tr) | set(te) <= set(al)
    assert dom.catalogue.schemas and dom.policy


def test_domain_without_split_says_so(taubench_dir):
    from calib.envs import load_domain

    dom = load_domain(f"taubench:{taubench_dir / 'airline'}")  # tau-bench v1 airline: 50 test tasks, no split
    assert len(split_task_ids(dom, "all")) == len(dom.tasks)
    with pytest.raises(UsageError, match="has no train/test split"):
        filter_split(dom, dom.tasks, "test")
    with pytest.raises(UsageError, match="--split"):
        split_task_ids(dom, "dev")


def test_oracle_and_scripted_user_solve_the_test_split(airline, tmp_path: Path):
    """Every tau2:airline test task is solved by its expected actions + communicate_info, scored by tau2."""
    res = runner.invoke(app, ["rollout", "--domain", "tau2:airline", "--split", "test", "--policy", "oracle",
                              "--user", "scripted", "--samples", "1", "--store", str(tmp_path / "s"),
                              "--run-id", "oracle", "--json"])
    assert res.exit_code == 0, res.output
    out = json.loads(res.output)
    assert (out["tasks"], out["episodes"], out["errors"]) == (20, 20, 0)
    eps = Store(tmp_path / "s").query("SELECT task_id, outcome, info FROM episodes")
    failed = eps[eps.outcome < 1.0].task_id.tolist()
    assert failed == [], f"oracle failed tasks {failed}"
    info = json.loads(eps["info"][0])
    assert info["reward"]["details"]["tau2_reward_info"]["reward_basis"] == ["DB", "COMMUNICATE"]
    assert {"tau2:db_match", "tau2:action_match"} <= set(info["signals"])


def test_mutated_oracle_fails_every_task_with_a_write(airline, tmp_path: Path):
    """One write argument changed: tau2's DB check fails the episode."""
    from calib.tau2_catalogue import TAU2_WRITE_TOOLS

    test_ids = split_task_ids(airline, "test")
    with_write = [t for t in test_ids if any(a["name"] in TAU2_WRITE_TOOLS["airline"] for a in airline.task(t).actions)]
    chosen = with_write[:6]
    res = runner.invoke(app, ["rollout", "--domain", "tau2:airline", "--split", "test", "--tasks", ",".join(chosen),
                              "--wrong-argument", "1", "--samples", "1", "--store", str(tmp_path / "s"), "--json"])
    assert res.exit_code == 0, res.output
    eps = Store(tmp_path / "s").query("SELECT task_id, outcome, info FROM episodes")
    assert len(eps) == len(chosen)
    for _, row in eps.iterrows():
        info = json.loads(row["info"])
        assert [m["kind"] for m in info["mistakes"]] == ["wrong_argument"]
        assert row["outcome"] == 0.0, (row["task_id"], info["mistakes"])
        assert info["signals"]["tau2:db_match"] == 0.0


def test_too_many_errors_ends_and_scores_zero(airline):
    """tau2's rule: max_errors tool errors end the simulation with reward 0."""
    task = airline.task(split_task_ids(airline, "test")[0])
    env = airline.new_env(task)
    for _ in range(airline.max_errors):
        obs = env.step("get_reservation_details", {"reservation_id": "NOPE00"})
        assert obs.startswith("Error")
    assert env.done
    r = env.evaluate([])
    assert r.reward == 0.0 and r.details["termination_reason"] == "too_many_errors"


def test_a_spent_token_budget_scores_as_the_turn_limit(airline):
    """A policy that ends the episode for its token budget (EndEpisode("response_length")) did not finish
    the conversation: tau2 scores it as a run that hit its step limit (reward 0), like max_turns."""
    task = airline.task(split_task_ids(airline, "test")[0])
    for termination in ("response_length", "max_turns"):
        env = airline.new_env(task)
        msgs = [{"role": "system", "content": airline.policy}, {"role": "user", "content": "Hi."},
                {"role": "assistant", "content": "How can I help?"}]
        env.finish(msgs, termination)
        r = env.evaluate(["How can I help?"])
        assert r.reward == 0.0 and r.details["termination_reason"] == "max_steps", (termination, r.details)


def test_replay_agrees_on_every_simulation(sample: Path, tau2_pkg):
    res = runner.invoke(app, ["replay", str(sample), "--domain", "tau2:airline", "--json"])
    assert res.exit_code == 0, res.output
    out = json.loads(res.output.strip().splitlines()[-1])
    n = len(json.loads(sample.read_text())["simulations"])
    assert (out["episodes"], out["agree"], out["agreement"]) == (n, n, 1.0)


def test_replay_notices_a_wrong_recorded_reward(sample: Path, tau2_pkg, tmp_path: Path):
    """The agreement can fail: flip two recorded rewards and replay reports exactly those."""
    doc = json.loads(sample.read_text())
    for i in (1, 3):
        ri = doc["simulations"][i]["reward_info"]
        ri["reward"] = 1.0 - ri["reward"]
    f = tmp_path / "tampered.json"
    f.write_text(json.dumps(doc))
    res = runner.invoke(app, ["replay", str(f), "--domain", "tau2:airline", "--json"])
    out = json.loads(res.output.strip().splitlines()[-1])
    assert out["agree"] == len(doc["simulations"]) - 2
    assert sorted(d["index"] for d in out["disagreements"]) == [1, 3]


def test_replay_split_and_store(sample: Path, tau2_pkg, tmp_path: Path):
    res = runner.invoke(app, ["replay", str(sample), "--domain", "tau2:airline", "--split", "test", "--json",
                              "--store", str(tmp_path / "s")])
    assert res.exit_code == 0, res.output
    out = json.loads(res.output.strip().splitlines()[-1])
    test_ids = set(json.loads((Path(tau2_pkg.__file__).parent / "data" / "tau2" / "domains" / "airline"
                               / "split_tasks.json").read_text())["test"])
    want = sum(str(s["task_id"]) in test_ids for s in json.loads(sample.read_text())["simulations"])
    assert out["episodes"] == want and out["agreement"] == 1.0
    assert out["store"]["episodes"] == want


def test_nl_assertion_tasks_need_a_judge(airline):
    """A task whose reward basis has NL_ASSERTION cannot be scored without --judge-*: it says so."""
    from calib.envs.tau2.domain import needs_judge, score_trajectory
    from calib.errors import CalibError

    raw = airline.raw_tasks[split_task_ids(airline, "test")[0]].model_copy(deep=True)
    raw.evaluation_criteria.reward_basis = [*raw.evaluation_criteria.reward_basis, "NL_ASSERTION"]
    raw.evaluation_criteria.nl_assertions = ["The agent is polite."]
    assert needs_judge(raw)
    with pytest.raises(CalibError, match="cannot be scored.*--judge-base-url"):
        score_trajectory("airline", raw, [], "user_stop")
    res = runner.invoke(app, ["rollout", "--domain", "tau2:airline", "--judge-model", "m"])
    assert res.exit_code != 0 and "go together" in res.output


@pytest.mark.parametrize("argv", [
    ["rollout", "--domain", "tau2:airline"],
    ["replay", "x.json", "--domain", "tau2:airline"],
    ["train", "--spec", "s.yaml", "--model", "tiny", "--output-dir", "o", "--domain", "tau2:airline"],
])
def test_without_tau2_every_command_says_how_to_install(argv, monkeypatch, tmp_path: Path):
    monkeypatch.setitem(sys.modules, "tau2", None)  # import tau2 -> ImportError, as if not installed
    monkeypatch.setitem(sys.modules, "tau2.registry", None)
    monkeypatch.chdir(tmp_path)
    res = runner.invoke(app, argv)
    assert res.exit_code != 0
    lines = [ln for ln in res.output.strip().splitlines() if ln.strip()]
    assert len(lines) == 1 and "pip install 'calib[tau2]'" in lines[0], res.output


def test_without_tau2_loop_says_how_to_install(monkeypatch, tmp_path: Path):
    monkeypatch.setitem(sys.modules, "tau2", None)
    monkeypatch.setitem(sys.modules, "tau2.registry", None)
    cfg = tmp_path / "loop.yaml"
    cfg.write_text("family: oracle\ndomain: tau2:airline\nworkdir: w\n")
    res = runner.invoke(app, ["loop", "--config", str(cfg)])
    lines = [ln for ln in res.output.strip().splitlines() if ln.strip()]
    assert res.exit_code != 0 and len(lines) == 1 and "pip install 'calib[tau2]'" in lines[0], res.output


def test_replay_agrees_on_the_four_trial_fixture(tau2_pkg):
    """The committed fixture (scripts/make_tau2_fixture.py) replays to its recorded rewards, failures included."""
    f = ROOT / "tests" / "data" / "tau2_airline_oracle_4trials.json"
    res = runner.invoke(app, ["replay", str(f), "--domain", "tau2:airline", "--json"])
    out = json.loads(res.output.strip().splitlines()[-1])
    rewards = [s["reward_info"]["reward"] for s in json.loads(f.read_text())["simulations"]]
    assert 0 < sum(rewards) < len(rewards)
    assert (out["episodes"], out["agreement"]) == (len(rewards), 1.0)


def test_tau2_stays_quiet_and_offline_by_default(sample: Path, tau2_pkg):
    """No loguru lines from tau2 on calib's console, and LiteLLM told to use its local price list."""
    import subprocess

    env = {k: v for k, v in os.environ.items() if k not in ("CALIB_DEBUG", "LITELLM_LOCAL_MODEL_COST_MAP")}
    env["PYTHONPATH"] = str(ROOT)
    code = ("import os, sys; from calib.cli import main; sys.argv = ['calib', 'replay', sys.argv[1], '--domain', "
            "'tau2:airline', '--json']; import atexit; "
            "atexit.register(lambda: print('COSTMAP=' + os.environ.get('LITELLM_LOCAL_MODEL_COST_MAP', ''), "
            "file=sys.stderr)); main()")
    res = subprocess.run([sys.executable, "-c", code, str(sample)], capture_output=True, text=True, env=env,
                         cwd=ROOT, check=False, timeout=600)
    assert res.returncode == 0, res.stderr
    assert json.loads(res.stdout.strip().splitlines()[-1])["agreement"] == 1.0
    assert "COSTMAP=True" in res.stderr
    noise = [ln for ln in res.stderr.splitlines() if ln.strip() and not ln.startswith("COSTMAP=")]
    assert noise == [], noise
