"""The advantage registry (issue 25, item 1): modes, defaults and ranges are defined once, in
``calib.advantages``, and the spec, the analysis, the report and the trainer's math read them there."""

from __future__ import annotations

import ast
from pathlib import Path

import numpy as np
import pytest

from calib.advantages import (
    GAMMA_RANGE,
    default_lambda,
    get_mode,
    group_normalize,
    mode_names,
    register_mode,
    signal_mode_names,
    signal_turn_advantages,
    turn_advantages,
    unregister_mode,
)

ROOT = Path(__file__).resolve().parents[1]


def test_the_built_ins():
    assert mode_names()[:3] == ("grpo", "mt_grpo", "gtpo_hybrid")
    assert signal_mode_names()[:2] == ("mt_grpo", "gtpo_hybrid")
    assert (default_lambda("grpo"), default_lambda("mt_grpo"), default_lambda("gtpo_hybrid")) == (0.0, 1.0, 0.3)
    assert GAMMA_RANGE == (0.0, 1.0)
    with pytest.raises(ValueError, match="already registered"):
        register_mode("grpo", default_lambda=0.0)(lambda *a, **k: None)
    with pytest.raises(ValueError, match="expected one of grpo, mt_grpo, gtpo_hybrid"):
        get_mode("ppo")


def _doubled(R, r, valid, lengths, g, *, gamma, lam, turn_norm, eps):
    """Twice the outcome advantage plus lam times the raw turn reward: easy to check by hand."""
    return 2.0 * group_normalize(R, g, eps=eps)[:, None] + lam * r


def _doubled_signal(r, valid, g, *, gamma, lam, turn_norm, eps):
    return lam * r


@pytest.fixture
def doubled():
    register_mode("doubled", default_lambda=0.5, signal_only=_doubled_signal, description="test mode")(_doubled)
    try:
        yield "doubled"
    finally:
        unregister_mode("doubled")
    assert "doubled" not in mode_names()


def test_a_registered_mode_reaches_every_reader(doubled):
    from calib.analysis.run import AnalysisConfig
    from calib.report.config import ReportConfig
    from calib.spec import RewardSpec

    # the math dispatches through the registry, with the mode's default lambda
    R = np.array([1.0, 0.0, 1.0, 0.0])
    rewards = [np.array([0.2, 0.4]), np.array([0.0]), np.array([1.0]), np.array([0.5, 0.5, 0.5])]
    adv = turn_advantages(R, rewards, ["a", "a", "b", "b"], mode=doubled)
    gn = group_normalize(R, np.array([0, 0, 1, 1]))
    for a, r, n in zip(adv, rewards, gn):
        np.testing.assert_allclose(a, 2 * n + 0.5 * r)
    flat = signal_turn_advantages(np.concatenate(rewards), [2, 1, 1, 3], ["a", "a", "b", "b"], mode=doubled)
    np.testing.assert_allclose(flat, 0.5 * np.concatenate(rewards))
    # the spec, the analysis and the report accept it by name; the spec's lambda default comes along
    spec = RewardSpec.from_dict({"advantage": {"mode": doubled}})
    assert spec.advantage.mode == doubled
    assert AnalysisConfig(mode=doubled).mode == doubled
    assert ReportConfig(mode=doubled).mode == doubled


def test_an_unknown_mode_is_refused_by_every_reader():
    from calib.analysis.run import AnalysisConfig
    from calib.errors import SpecError, UsageError
    from calib.report.config import ReportConfig
    from calib.spec import RewardSpec

    with pytest.raises(ValueError, match="mode='nosuch'"):
        turn_advantages(np.zeros(1), [np.zeros(1)], ["g"], mode="nosuch")
    with pytest.raises(SpecError, match="nosuch"):
        RewardSpec.from_dict({"advantage": {"mode": "nosuch"}})
    with pytest.raises(UsageError, match="nosuch"):
        AnalysisConfig(mode="nosuch")
    with pytest.raises(ValueError, match="nosuch"):
        ReportConfig(mode="nosuch")


def test_gamma_has_one_range_everywhere():
    from calib.analysis.run import AnalysisConfig
    from calib.errors import SpecError, UsageError
    from calib.spec import RewardSpec

    for g in (0.0, 0.5, 1.0):  # inside [0, 1]: every reader accepts it
        turn_advantages(np.ones(2), [np.ones(2), np.ones(1)], ["g", "g"], gamma=g)
        RewardSpec.from_dict({"advantage": {"gamma": g}})
        AnalysisConfig(gamma=g)
    for g in (-0.1, 1.5):
        with pytest.raises(ValueError, match=r"\[0, 1\]"):
            turn_advantages(np.ones(1), [np.ones(1)], ["g"], gamma=g)
        with pytest.raises(SpecError, match=r"\[0, 1\]"):
            RewardSpec.from_dict({"advantage": {"gamma": g}})
        with pytest.raises(UsageError, match=r"\[0, 1\]"):
            AnalysisConfig(gamma=g)


def test_mode_names_are_written_once():
    """No module outside calib/advantages.py lists the mode names itself (a tuple, list or set literal
    holding two or more of them): they read the registry."""
    modes = {"grpo", "mt_grpo", "gtpo_hybrid"}
    found = []
    for pkg in ("calib", "trainer"):
        for path in sorted((ROOT / pkg).rglob("*.py")):
            if path == ROOT / "calib" / "advantages.py":
                continue
            for node in ast.walk(ast.parse(path.read_text())):
                if isinstance(node, (ast.Tuple, ast.List, ast.Set)):
                    names = {e.value for e in node.elts if isinstance(e, ast.Constant) and isinstance(e.value, str)}
                    if len(names & modes) >= 2:
                        found.append(f"{path.relative_to(ROOT)}:{node.lineno}")
    assert not found, found
