"""The loop config's eval section (trainer/loop_config.py, trainer/families.py): evaluate on another
domain and split, with its own trials, as the seed paper does (train tau-bench, evaluate tau2-bench)."""

from __future__ import annotations

import json
from pathlib import Path

import pytest
import yaml

from calib.errors import UsageError
from trainer.loop_config import load_loop_config

ROOT = Path(__file__).resolve().parents[1]


def test_paper_example_config_validates():
    cfg = load_loop_config(ROOT / "examples" / "loop-paper-airline.yaml")
    assert cfg.domain.startswith("taubench:") and cfg.eval_domain == "tau2:airline"
    assert (cfg.eval.split, cfg.eval_trials, cfg.eval.temperature) == ("test", 4, 0.0)


def test_eval_section_rejects_bad_values(tmp_path: Path):
    p = tmp_path / "loop.yaml"
    p.write_text(yaml.safe_dump({"eval": {"split": "dev"}}))
    with pytest.raises(UsageError, match="eval.split"):
        load_loop_config(p)
    p.write_text(yaml.safe_dump({"eval": {"trials": 0}}))
    with pytest.raises(UsageError, match="eval.trials"):
        load_loop_config(p)


def test_default_eval_is_the_training_domain(tmp_path: Path):
    p = tmp_path / "loop.yaml"
    p.write_text(yaml.safe_dump({"domain": "airline-mini", "eval_samples": 3}))
    cfg = load_loop_config(p)
    assert (cfg.eval_domain, cfg.eval_trials, cfg.eval_split, cfg.eval_tasks) == ("airline-mini", 3, "all", "all")


def test_oracle_loop_trains_on_one_domain_and_evaluates_on_tau2(tmp_path: Path, skip_or_fail):
    """rollout on airline-mini, eval on tau2:airline test tasks with 3 trials: pass^1..pass^3 recorded."""
    from calib.envs.tau2.loader import import_tau2

    try:
        import_tau2()
    except UsageError as e:
        skip_or_fail(str(e))
    from trainer.loop import run_loop

    p = tmp_path / "loop.yaml"
    p.write_text(yaml.safe_dump({
        "name": "x", "workdir": str(tmp_path / "w"), "family": "oracle", "domain": "airline-mini", "iterations": 1,
        "rollout": {"samples": 2, "tasks": ["airline-mini/0", "airline-mini/1"], "max_turns": 12},
        "analysis": {"bootstrap": 50},
        "eval": {"domain": "tau2:airline", "split": "test", "tasks": ["2", "6"], "trials": 3, "max_turns": 20},
    }))
    cfg = load_loop_config(p)
    result = run_loop(cfg, log=lambda m: None)
    row = result.history.iloc[0]
    assert sorted(json.loads(row["pass_hat_k"]), key=int) == ["1", "2", "3"]
    from calib.store import Store

    ev = Store(result.store).query("SELECT task_id, count(*) AS n FROM episodes WHERE run_id = 'x-it0-eval' GROUP BY 1")
    assert dict(zip(ev.task_id, ev.n)) == {"2": 3, "6": 3}
