"""The joint rule (issue 24, item 2): a signal that only repeats another's information, or is weak,
gets (near) zero weight, where the marginal rule gives each of them the cap."""

from __future__ import annotations

import numpy as np
import pytest

from calib.analysis.run import AnalysisConfig, EpisodeData, analyze_arrays


def _groups(seed: int = 0, n_groups: int = 150, size: int = 8, turns: int = 6) -> EpisodeData:
    """Episodes of a latent quality q: success within the group follows q; ``strong`` fires with
    probability sigmoid(3q) on each turn, ``twin`` is ``strong`` with 3% of its turns flipped
    (collinear), ``weak`` fires with sigmoid(0.8q) (it separates success, but less, and says nothing
    that ``strong`` does not), ``noise`` ignores q."""
    rng = np.random.default_rng(seed)
    E = n_groups * size
    group = np.repeat(np.arange(n_groups), size)
    q = rng.normal(size=E)
    difficulty = rng.normal(scale=1.5, size=n_groups)[group]
    success = (q + 0.5 * rng.normal(size=E)) > difficulty
    lengths = np.full(E, turns)
    qt = np.repeat(q, turns)
    strong = (rng.random(E * turns) < 1 / (1 + np.exp(-3 * qt))).astype(float)
    twin = np.where(rng.random(E * turns) < 0.03, 1 - strong, strong)
    weak = (rng.random(E * turns) < 1 / (1 + np.exp(-0.8 * qt))).astype(float)
    noise = (rng.random(E * turns) < 0.5).astype(float)
    return EpisodeData(
        episode_id=np.array([f"e{i}" for i in range(E)], dtype=object),
        group=np.array([f"g{k}" for k in group], dtype=object),
        success=success,
        outcome=success.astype(float),
        lengths=lengths,
        values={"strong": strong, "twin": twin, "weak": weak, "noise": noise},
    )


def _by_name(result):
    return {r["signal"]: r for r in result.signals}


@pytest.fixture(scope="module")
def data() -> EpisodeData:
    return _groups()


def test_marginal_rule_caps_the_redundant_and_the_weak_signal(data):
    rows = _by_name(analyze_arrays(data, AnalysisConfig(n_boot=200, rule="auc")))
    for name in ("strong", "twin", "weak"):
        assert rows[name]["verdict"] == "keep", rows[name]["reason"]
        assert rows[name]["proposed_weight"] == pytest.approx(0.3)


def test_joint_rule_keeps_one_twin_and_drops_the_weak_one(data):
    rows = _by_name(analyze_arrays(data, AnalysisConfig(n_boot=200, rule="joint")))
    w = {n: rows[n]["proposed_weight"] for n in rows}
    kept, dropped = sorted(("strong", "twin"), key=lambda n: -abs(w[n]))
    assert w[kept] == pytest.approx(0.3)
    assert abs(w[dropped]) <= 0.05, w
    assert abs(w["weak"]) <= 0.05, w
    assert w["noise"] == 0.0
    if w[dropped] == 0:
        assert rows[dropped]["verdict"] == "zero" and rows[dropped]["redundant_with"] == kept
        assert f"redundant with {kept}" in rows[dropped]["reason"]
    assert rows[kept]["marginal"]["verdict"] == "keep"  # the marginal verdict stays on the row


def test_joint_rule_is_deterministic_and_bounded(data):
    a = analyze_arrays(data, AnalysisConfig(n_boot=50, rule="joint", weight_cap=0.2))
    b = analyze_arrays(data, AnalysisConfig(n_boot=50, rule="joint", weight_cap=0.2))
    wa = {r["signal"]: r["proposed_weight"] for r in a.signals}
    assert wa == {r["signal"]: r["proposed_weight"] for r in b.signals}
    assert max(abs(v) for v in wa.values()) == pytest.approx(0.2)


def test_joint_rule_without_informative_groups_gives_zero():
    d = _groups(n_groups=4)
    d.success[:] = True
    d.outcome[:] = 1.0
    rows = analyze_arrays(d, AnalysisConfig(n_boot=20, rule="joint")).signals
    assert all(r["proposed_weight"] == 0.0 for r in rows)
