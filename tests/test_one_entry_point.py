"""One analysis entry point (issue 25, item 2): the loop and ``calib analyze`` write the same spec from
the same store, with and without a base spec of another advantage mode (they used to disagree on its
lambda)."""

from __future__ import annotations

from pathlib import Path

import pytest
import yaml
from typer.testing import CliRunner

from calib.cli import app
from calib.sample_episodes import synthetic_records
from calib.store import Store

MT_SPEC = """\
version: 1
name: base
advantage: {mode: mt_grpo, lambda: 1.0}
turn_rewards:
  - {signal: gold_match, weight: 0.3}
  - {signal: tool_error, weight: -0.1}
"""


def _turns_and_advantage(path: Path) -> tuple[list, dict]:
    doc = yaml.safe_load(path.read_text())
    return doc["turn_rewards"], doc["advantage"]


@pytest.mark.parametrize("with_base", [False, True])
def test_the_loop_and_calib_analyze_propose_the_same_spec(tmp_path: Path, with_base: bool):
    from trainer.loop import _analyze
    from trainer.loop_config import LoopConfig

    store = Store(tmp_path / "store")
    store.add_episodes(list(synthetic_records(12, 6, seed=5, run_id="r")), source="x")
    base = None
    if with_base:
        base = tmp_path / "base.yaml"
        base.write_text(MT_SPEC)
    cfg = LoopConfig.model_validate({"family": "oracle", "domain": "airline-mini", "seed": 3,
                                     "analysis": {"mode": "gtpo_hybrid", "bootstrap": 100, "weight_cap": 0.3}})
    it_dir = tmp_path / "it0"
    it_dir.mkdir()
    loop = _analyze(cfg, store, "r", it_dir, base)

    args = ["analyze", "--store", str(store.path), "--runs", "r", "--mode", "gtpo_hybrid", "--n-boot", "100",
            "--seed", "3", "--weight-cap", "0.3", "--domain", "airline-mini", "--out", str(tmp_path / "cli")]
    if base is not None:
        args += ["--base-spec", str(base)]
    res = CliRunner().invoke(app, args)
    assert res.exit_code == 0, res.output
    assert _turns_and_advantage(Path(loop["proposed_spec"])) == _turns_and_advantage(tmp_path / "cli" /
                                                                                     "reward_spec.yaml")
    if with_base:  # the base's lambda (1.0) belongs to mt_grpo; the gtpo_hybrid analysis used its own
        import json

        params = json.loads((tmp_path / "cli" / "analysis.json").read_text())["parameters"]
        assert params["mode"] == "gtpo_hybrid" and params["lam"] is None
