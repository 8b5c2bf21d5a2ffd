"""calib loop: two iterations on the synthetic testbed and on airline-mini, resume after a kill, review."""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

import yaml
from typer.testing import CliRunner

from calib.cli import app
from calib.envs.testbed import SIGNALS
from calib.store import Store
from trainer.loop import HISTORY_TABLE, run_loop
from trainer.loop_config import load_loop_config

runner = CliRunner()
ROOT = Path(__file__).resolve().parents[1]
CRASH_WRAPPER = ROOT / "tests" / "helpers" / "crash_loop.py"

SYNTHETIC = {
    "name": "syn",
    "workdir": "work",
    "family": "synthetic",
    "iterations": 2,
    "rollout": {"samples": 4},
    # lr 0.1 and 8 steps: enough for the tabular policy to move, small enough for a unit test
    "train": {"max_steps": 8, "learning_rate": 0.1, "batch_tasks": 8},
    "analysis": {"bootstrap": 100},
    "eval_samples": 4,
}
ORACLE = {
    "name": "orc",
    "workdir": "work",
    "family": "oracle",
    "domain": "airline-mini",
    "iterations": 2,
    "rollout": {"samples": 3, "mistake_rate": 0.3, "tasks": ["airline-mini/0", "airline-mini/1", "airline-mini/2",
                                                             "airline-mini/3", "airline-mini/4", "airline-mini/5"]},
    "analysis": {"bootstrap": 100},
    "eval_samples": 2,
}


def _config(tmp_path: Path, body: dict) -> Path:
    p = tmp_path / "loop.yaml"
    p.write_text(yaml.safe_dump(body))
    return p


def test_synthetic_loop_two_iterations(tmp_path: Path):
    res = runner.invoke(app, ["loop", "--config", str(_config(tmp_path, SYNTHETIC))])
    assert res.exit_code == 0, res.output
    store = Store(tmp_path / "work" / "store")
    hist = store.read_table(HISTORY_TABLE)
    assert list(hist.iteration) == [0, 1]
    assert hist.trained.all() and (hist.train_steps == 8).all()
    for row in hist.to_dict("records"):
        assert 0.0 <= row["eval_success"] <= 1.0
        assert set(json.loads(row["weights"])) == set(SIGNALS)
        assert row["mismatches"] >= 0 and -1.0 <= row["corr_turn_reward_outcome"] <= 1.0
        assert json.loads(row["pass_hat_k"])["1"] == row["eval_success"]
    # iteration 1 starts from iteration 0's trained policy, and its spec from iteration 0's spec
    assert (tmp_path / "work" / "policy" / "it0.pt").exists() and (tmp_path / "work" / "policy" / "it1.pt").exists()
    spec1 = yaml.safe_load((tmp_path / "work" / "it1" / "spec.yaml").read_text())
    assert spec1["provenance"]["base_spec"] == "syn-it0"
    runs = set(store.runs())
    assert runs == {"syn-it0", "syn-it0-eval", "syn-it1", "syn-it1-eval"}
    assert set(store.query("SELECT DISTINCT iteration FROM episodes WHERE run_id LIKE 'syn-it1%'").iteration) == {1}


def test_stop_when_ends_the_loop_early_and_records_convergence(tmp_path: Path):
    # A threshold every iteration meets (any finite correlation > -1, any number of mismatches):
    # the loop stops after iteration 0 of 3. A threshold none meets runs every iteration.
    body = {**SYNTHETIC, "iterations": 3, "stop_when": {"max_mismatches": 99, "min_corr": -1.0},
            "train": {**SYNTHETIC["train"], "max_steps": 2}}
    cfg = load_loop_config(_config(tmp_path, body))
    logs: list[str] = []
    res = run_loop(cfg, log=logs.append)
    assert res.stopped_at == 0 and list(res.history.iteration) == [0]
    assert any("stop_when met" in m for m in logs)
    row = res.history.iloc[0]
    analysis = json.loads((tmp_path / "work" / "it0" / "analysis" / "analysis.json").read_text())
    assert row["mismatches"] == analysis["convergence"]["mismatches"]
    assert row["corr_turn_reward_outcome"] == analysis["convergence"]["corr_turn_reward_outcome"]
    body2 = {**body, "workdir": "work2", "iterations": 2, "stop_when": {"max_mismatches": 0, "min_corr": 1.0}}
    res2 = run_loop(load_loop_config(_config(tmp_path, body2)), log=lambda _m: None)
    assert res2.stopped_at is None and list(res2.history.iteration) == [0, 1]


def test_oracle_loop_on_airline_mini(tmp_path: Path):
    cfg = load_loop_config(_config(tmp_path, ORACLE))
    result = run_loop(cfg, log=lambda m: None)
    hist = result.history
    assert len(hist) == 2 and not hist.trained.any()
    store = Store(result.store)
    n = store.query("SELECT run_id, count(*) AS n FROM episodes GROUP BY 1").set_index("run_id").n.to_dict()
    assert n == {"orc-it0": 18, "orc-it0-eval": 12, "orc-it1": 18, "orc-it1-eval": 12}
    analysis = json.loads((result.workdir / "it1" / "analysis" / "analysis.json").read_text())
    assert {s["signal"] for s in analysis["signals"]} >= {"gold_match", "valid_call", "state_change"}


def test_killed_loop_resumes_without_repeating_stages(tmp_path: Path):
    cfg_path = _config(tmp_path, SYNTHETIC)
    proc = subprocess.run([sys.executable, str(CRASH_WRAPPER), "1:analyze", "loop", "--config", str(cfg_path)],
                          check=False, capture_output=True, text=True, timeout=600)
    assert proc.returncode == -9, proc.stderr[-2000:]  # SIGKILL, as a real crash
    state = json.loads((tmp_path / "work" / "loop_state.json").read_text())["stages"]
    assert set(state["0"]) == {"rollout", "analyze", "spec", "train", "eval", "record"}
    assert set(state["1"]) == {"rollout", "analyze"}
    before = {it: {k: v["at"] for k, v in s.items()} for it, s in state.items()}
    store = Store(tmp_path / "work" / "store")
    n_it1 = store.count()

    result = run_loop(load_loop_config(cfg_path), log=lambda m: None)
    assert result.ran == ["1:spec", "1:train", "1:eval", "1:record"]
    after = json.loads((tmp_path / "work" / "loop_state.json").read_text())["stages"]
    for it, stages in before.items():
        for k, at in stages.items():
            assert after[it][k]["at"] == at  # finished stages were not run again
    assert list(result.history.iteration) == [0, 1]
    # iteration 1's rollouts were not repeated: only the eval run was added
    assert Store(tmp_path / "work" / "store").count() == n_it1 + 32 * SYNTHETIC["eval_samples"]


def test_product_code_has_no_crash_switch():
    """Fault injection belongs to the tests (tests/helpers/crash_loop.py), not to trainer/ or calib/."""
    offenders = [str(p.relative_to(ROOT)) for d in ("trainer", "calib") for p in (ROOT / d).rglob("*.py")
                 if "SIGKILL" in p.read_text() or "CALIB_LOOP_CRASH" in p.read_text()]
    assert offenders == []


def test_review_pauses_and_uses_the_edited_spec(tmp_path: Path):
    cfg_path = _config(tmp_path, {**SYNTHETIC, "iterations": 1})
    res = runner.invoke(app, ["loop", "--config", str(cfg_path), "--review"])
    assert res.exit_code == 3 and "review" in res.output and "Traceback" not in res.output
    spec_file = tmp_path / "work" / "it0" / "spec.yaml"
    spec = yaml.safe_load(spec_file.read_text())
    spec["turn_rewards"] = [{"signal": "gold_match", "weight": 0.123}]
    spec_file.write_text(yaml.safe_dump(spec))
    res = runner.invoke(app, ["loop", "--config", str(cfg_path), "--review"])
    assert res.exit_code == 0, res.output
    hist = Store(tmp_path / "work" / "store").read_table(HISTORY_TABLE)
    assert json.loads(hist.weights[0]) == {"gold_match": 0.123}


def test_bad_loop_config_is_a_clear_error(tmp_path: Path):
    p = _config(tmp_path, {**SYNTHETIC, "family": "wizard", "iterations": 0})
    res = runner.invoke(app, ["loop", "--config", str(p)])
    assert res.exit_code == 2 and "family" in res.output and "iterations" in res.output
    assert "Traceback" not in res.output
    res = runner.invoke(app, ["loop", "--config", str(tmp_path / "nope.yaml")])
    assert res.exit_code == 2 and "no such loop config" in res.output
