"""Reward spec: round trip, and every bad spec gives a SpecError that names the field."""

from __future__ import annotations

import math
import re

import pytest
import yaml

from calib.errors import SpecError
from calib.signals import BUILTIN_SIGNALS
from calib.spec import AdvantageSpec, Provenance, RewardSpec, TurnReward, load_spec, save_spec

GOOD = """
version: 1
name: airline-iter2
advantage: {mode: gtpo_hybrid, gamma: 0.9, lambda: 0.3, turn_norm: index}
outcome: {weight: 1.0}
turn_rewards:
  - {signal: gold_match, weight: 0.3}
  - {signal: read_only, weight: 0.0}
  - {signal: state_change, weight: -0.1}
provenance: {runs: [r1], created: "2025-01-01T00:00:00", metrics: {gold_match: {group_auc: 0.71, ci: [0.66, 0.76]}}}
"""


def _write(tmp_path, text: str):
    p = tmp_path / "spec.yaml"
    p.write_text(text)
    return p


def test_design_example_loads(tmp_path):
    spec = load_spec(_write(tmp_path, GOOD))
    assert spec.name == "airline-iter2"
    assert spec.advantage.mode == "gtpo_hybrid" and spec.lam == 0.3
    assert spec.turn_weights() == {"gold_match": 0.3, "read_only": 0.0, "state_change": -0.1}
    assert spec.active_signals() == ["gold_match", "state_change"]
    assert spec.provenance.metrics["gold_match"]["ci"] == [0.66, 0.76]


def test_round_trip(tmp_path):
    spec = RewardSpec(
        name="x",
        advantage=AdvantageSpec(mode="mt_grpo", gamma=1.0, lam=1.0, turn_norm="pooled"),
        turn_rewards=[TurnReward(signal="gold_match", weight=0.25), TurnReward(signal="tool_error", weight=-0.1)],
        provenance=Provenance(runs=["a", "b"], store="/s", metrics={"gold_match": {"ci": [0.6, float("nan")]}}),
    )
    p = save_spec(spec, tmp_path / "out" / "spec.yaml")
    back = load_spec(p)
    assert back.model_dump(exclude={"provenance"}) == spec.model_dump(exclude={"provenance"})
    assert back.provenance.runs == ["a", "b"] and back.provenance.store == "/s"
    assert math.isnan(back.provenance.metrics["gold_match"]["ci"][1])
    text = p.read_text()
    assert "lambda: 1.0" in text and "- {signal: gold_match, weight: 0.25}" in text
    assert yaml.safe_load(text)["version"] == 1


def test_defaults():
    spec = RewardSpec.from_dict({"turn_rewards": []})
    assert spec.advantage.mode == "gtpo_hybrid" and spec.advantage.gamma == 0.9 and spec.lam is None
    assert spec.outcome.weight == 1.0


@pytest.mark.parametrize(
    "patch, field, message",
    [
        ("turn_rewards: [{signal: gold_mtach, weight: 0.3}]", r"turn_rewards\[0\]\.signal", "unknown signal 'gold_mtach'"),
        ("turn_rewards: [{signal: gold_match, weight: .nan}]", r"turn_rewards\[0\]\.weight", "finite"),
        ("turn_rewards: [{signal: gold_match, weight: .inf}]", r"turn_rewards\[0\]\.weight", "finite"),
        ("turn_rewards: [{signal: gold_match, weight: high}]", r"turn_rewards\[0\]\.weight", "number"),
        ("turn_rewards: [{signal: gold_match}]", r"turn_rewards\[0\]\.weight", "required"),
        ("advantage: {mode: ppo}", r"advantage\.mode", "unknown advantage mode 'ppo'"),
        # one range for every reader of a gamma (calib.advantages.GAMMA_RANGE, issue 25): [0, 1]
        ("advantage: {gamma: -0.1}", r"advantage\.gamma", r"\[0, 1\]"),
        ("advantage: {gamma: 1.5}", r"advantage\.gamma", r"\[0, 1\]"),
        ("advantage: {gama: 0.5}", r"advantage\.gama", "unknown field"),
        ("advantage: {lambda: .nan}", r"advantage\.lambda", "finite"),
        ("advantage: {turn_norm: global}", r"advantage\.turn_norm", "index, pooled"),
        ("outcome: {weight: .inf}", r"outcome\.weight", "finite"),
        ("version: 2", "version", "not supported"),
        ("extra_key: 1", "extra_key", "unknown field"),
        (
            "turn_rewards: [{signal: gold_match, weight: 0.1}, {signal: gold_match, weight: 0.2}]",
            r"turn_rewards\[1\]\.signal",
            "listed twice",
        ),
    ],
)
def test_bad_specs_name_the_field(tmp_path, patch, field, message):
    base = {"version": 1, "name": "x", "turn_rewards": [{"signal": "gold_match", "weight": 0.1}]}
    data = {**base, **yaml.safe_load(patch)}
    p = _write(tmp_path, yaml.safe_dump(data))
    with pytest.raises(SpecError) as e:
        load_spec(p)
    msg = str(e.value)
    assert str(p) in msg
    assert re.search(field, msg), msg
    assert re.search(message, msg), msg
    assert e.value.exit_code == 2


def test_not_yaml_not_mapping_missing(tmp_path):
    with pytest.raises(SpecError, match="not valid YAML at line 1"):
        load_spec(_write(tmp_path, "turn_rewards: [unclosed"))
    with pytest.raises(SpecError, match="expected a mapping"):
        load_spec(_write(tmp_path, "- a\n- b\n"))
    with pytest.raises(SpecError, match="no such file"):
        load_spec(tmp_path / "missing.yaml")


def test_yaml_is_loaded_safely(tmp_path):
    p = _write(tmp_path, "name: !!python/object/apply:os.system ['echo pwned']\n")
    with pytest.raises(SpecError, match="not valid YAML"):
        load_spec(p)


def test_custom_signal_names_are_accepted_and_known_signals_checked(tmp_path):
    p = _write(tmp_path, "turn_rewards: [{signal: 'my_pkg.signals:polite', weight: 0.1}]\n")
    assert load_spec(p).turn_weights() == {"my_pkg.signals:polite": 0.1}
    p = _write(tmp_path, "turn_rewards: [{signal: polite, weight: 0.1}]\n")
    assert load_spec(p, known_signals=["polite"]).turn_weights() == {"polite": 0.1}
    with pytest.raises(SpecError, match="unknown signal 'polite'"):
        load_spec(p, known_signals=list(BUILTIN_SIGNALS))


@pytest.mark.parametrize("name", ["paper-v5-naive", "paper-v6-calibrated"])
def test_presets_load_and_validate(name):
    from calib.spec import list_presets, preset_names

    spec = load_spec(f"preset:{name}")
    assert spec.name == name and name in preset_names()
    w = spec.turn_weights()
    assert w["gold_match"] == 1.0 and w["soft_match_score"] == 1.0 and w["message_only"] == 0.0
    assert w["tool_error"] == -0.1 and w["redundant_call"] == -0.2
    if name == "paper-v5-naive":
        assert spec.advantage.mode == "mt_grpo" and w["read_only"] == 0.3 and w["state_change"] == 0.1
    else:
        assert spec.advantage.mode == "gtpo_hybrid" and (spec.advantage.gamma, spec.lam) == (0.9, 0.3)
        assert w["read_only"] == 0.0 and w["state_change"] == -0.1
    assert any(p["ref"] == f"preset:{name}" for p in list_presets())


def test_unknown_preset_names_the_known_ones():
    with pytest.raises(SpecError, match="no such preset.*paper-v5-naive"):
        load_spec("preset:paper-v9")


def test_spec_list_cli():
    import json

    from typer.testing import CliRunner

    from calib.cli import app

    res = CliRunner().invoke(app, ["spec", "list", "--json"])
    assert res.exit_code == 0, res.output
    refs = [p["ref"] for p in json.loads(res.stdout)]
    assert refs == ["preset:paper-v5-naive", "preset:paper-v6-calibrated"]
    res = CliRunner().invoke(app, ["spec", "list"])
    assert res.exit_code == 0 and "preset:paper-v6-calibrated" in res.output
