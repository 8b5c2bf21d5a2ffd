"""The seed paper's diagnostics (calib.analysis.paper) and its IRC rule, on hand-computed fixtures."""

from __future__ import annotations

import json
import math

import numpy as np
import pytest

from calib.analysis import paper as P
from calib.analysis.propose import propose_spec, write_outputs
from calib.analysis.run import AnalysisConfig, EpisodeData, analyze_arrays
from calib.spec import AdvantageSpec, RewardSpec, TurnReward, load_spec

EPS = 1e-4


def gn2(d: float) -> float:
    """|GN| of each of two values that differ by d: (d/2) / (std_ddof1 + eps), std = d / sqrt(2)."""
    return (d / 2) / (d / math.sqrt(2) + EPS)


def _data(values: dict[str, list[float]], lengths, success, group) -> EpisodeData:
    n = len(lengths)
    return EpisodeData(
        episode_id=np.array([f"e{i}" for i in range(n)], dtype=object),
        group=np.array(group, dtype=object),
        success=np.array(success, dtype=bool),
        outcome=np.array(success, dtype=float),
        lengths=np.array(lengths),
        values={k: np.array(v, dtype=float) for k, v in values.items()},
        runs=["hand"],
    )


# Group g: e0 succeeds, e1 fails, two turns each. Group h: e2, e3 fail, one turn each, no signal
# fires there: every advantage of h is exactly 0 (dead turns). Flat turn order: e0t0 e0t1 e1t0 e1t1 e2t0 e3t0.
HAND = _data(
    {
        "gold_match": [1, 0, 0, 0, 0, 0],  # weight +0.5, fires in the success
        "sig_b": [0, 0, 0, 1, 0, 0],  # weight -0.5, fires in the failure's last turn
        "sig_c": [0, 1, 0, 0, 0, 0],  # weight 0: aligned is None
        "sig_d": [0, 0, 1, 0, 0, 0],  # weight +0.25, fires in the failure: misaligned
    },
    lengths=[2, 2, 1, 1],
    success=[True, False, False, False],
    group=["g", "g", "h", "h"],
)
HAND_SPEC = RewardSpec(
    name="hand",
    advantage=AdvantageSpec(mode="mt_grpo"),
    turn_rewards=[TurnReward(signal="gold_match", weight=0.5), TurnReward(signal="sig_b", weight=-0.5),
                  TurnReward(signal="sig_c", weight=0.0), TurnReward(signal="sig_d", weight=0.25)],
)
# Rewards: e0 = [0.5, 0], e1 = [0.25, -0.5]; GN(R) in g = +-gn2(1).


def _hand_advantages() -> dict[str, tuple[list[float], list[float]]]:
    """(A_total, A_I) of e0's and e1's turns per mode, by hand (group h is all zeros)."""
    k = gn2(1.0)
    # mt_grpo, lambda 1: turn 0 rewards [0.5, 0.25] -> +-gn2(0.25); turn 1 [0, -0.5] -> +-gn2(0.5).
    a, b = gn2(0.25) + gn2(0.5), gn2(0.5)
    mt = ([a + k, b + k, -a - k, -b - k], [a, b, -a, -b])
    # gtpo (gamma 0.9, lambda 0). With the outcome: e0 G = [0.5 + 0.81, 0.9], e1 G = [0.25 - 0.45, -0.5].
    # Without: e0 G = [0.5, 0], e1 G = [0.25 - 0.45, -0.5].
    ta, tb = gn2(1.31 - (-0.2)), gn2(0.9 - (-0.5))
    ia, ib = gn2(0.5 - (-0.2)), gn2(0.0 - (-0.5))
    gtpo = ([ta, tb, -ta, -tb], [ia, ib, -ia, -ib])
    hyb = ([ta + 0.3 * k, tb + 0.3 * k, -ta - 0.3 * k, -tb - 0.3 * k], [ia, ib, -ia, -ib])
    return {"mt_grpo": mt, "gtpo": gtpo, "gtpo_hybrid": hyb}


def _hand_doc() -> dict:
    result = analyze_arrays(HAND, AnalysisConfig(n_boot=20, mode="mt_grpo"), base=HAND_SPEC)
    return result.to_json()


def test_tier_alignment_hand_fixture():
    doc = _hand_doc()
    ta = doc["tier_alignment"]
    (tot, a_i) = _hand_advantages()["mt_grpo"]
    # flat positions: gold_match at e0t0 (index 0), sig_b at e1t1 (3), sig_c at e0t1 (1), sig_d at e1t0 (2)
    for name, pos, aligned in (("gold_match", 0, True), ("sig_b", 3, True), ("sig_c", 1, None), ("sig_d", 2, False)):
        t = ta[name]
        assert t["mean_A_I"] == pytest.approx(a_i[pos], abs=1e-9), name
        assert t["mean_A_total"] == pytest.approx(tot[pos], abs=1e-9), name
        assert t["aligned"] is aligned, name
    assert ta["gold_match"]["share_success"] == 1.0 and ta["gold_match"]["share_failure"] == 0.0
    assert ta["sig_d"]["share_success"] == 0.0 and ta["sig_d"]["share_failure"] == pytest.approx(1 / 3)
    assert ta["sig_d"]["gap"] == pytest.approx(-1 / 3)
    assert doc["convergence"]["mismatches"] == 1 and doc["convergence"]["mismatched_signals"] == ["sig_d"]
    # corr(mean turn reward, outcome): episode means [0.25, -0.125, 0, 0] against [1, 0, 0, 0]
    assert doc["convergence"]["corr_turn_reward_outcome"] == pytest.approx(
        np.corrcoef([0.25, -0.125, 0, 0], [1, 0, 0, 0])[0, 1], abs=1e-12)


@pytest.mark.parametrize("key", ["mt_grpo", "gtpo", "gtpo_hybrid"])
def test_advantage_diagnostics_hand_fixture(key):
    d = _hand_doc()["advantage_diagnostics"][key]
    tot, _ = _hand_advantages()[key]
    flat = np.array(tot + [0.0, 0.0])  # group h: dead
    outcome = np.array([1, 1, 0, 0, 0, 0], dtype=float)
    assert d["mismatches"] == 1  # sig_d: rewarded, but at a turn of the failing episode
    assert d["corr_adv_outcome"] == pytest.approx(np.corrcoef(flat, outcome)[0, 1], abs=1e-9)
    assert d["dead_turn_share"] == pytest.approx(2 / 6)
    assert d["gold_soft_share"] == pytest.approx(abs(tot[0]) / np.abs(flat).sum(), abs=1e-9)
    assert d["lambda"] == {"mt_grpo": 1.0, "gtpo": 0.0, "gtpo_hybrid": 0.3}[key]


def test_analysis_json_has_the_paper_keys(tmp_path):
    cfg = AnalysisConfig(n_boot=20, mode="mt_grpo")
    result = analyze_arrays(HAND, cfg, base=HAND_SPEC)
    paths = write_outputs(result, propose_spec(result, cfg, base=HAND_SPEC), tmp_path)
    doc = json.loads(paths["analysis.json"].read_text())
    for t in doc["tier_alignment"].values():
        assert {"mean_A_I", "mean_A_total", "aligned", "share_success", "share_failure"} <= set(t)
    assert set(doc["advantage_diagnostics"]) == {"mt_grpo", "gtpo", "gtpo_hybrid"}
    for d in doc["advantage_diagnostics"].values():
        assert {"mismatches", "corr_adv_outcome", "dead_turn_share", "gold_soft_share"} <= set(d)


def test_without_base_the_proposed_spec_is_diagnosed():
    result = analyze_arrays(HAND, AnalysisConfig(n_boot=20))
    assert result.convergence["source"] == "proposed"
    weights = {r["signal"]: r["proposed_weight"] for r in result.signals}
    assert {k: v["weight"] for k, v in result.tier_alignment.items()} == weights


def test_paper_worked_case_read_only_in_a_failing_episode_is_misaligned():
    """The seed paper's example: under mt_grpo a read-only call in a failing episode gets A_O ~ -0.87
    from the outcome and A_I ~ +0.05 from the turn rewards; the sum points against the +0.3 bonus.

    A group of four (two successes, two failures: GN(R) of a failure = -sqrt(3)/2 = -0.866), two
    turns each, tiers of the paper-v5-naive preset:
    S1: tool_error, gold_match;  S2: redundant_call, message_only;  F1: read_only, tool_error;  F2: read_only, read_only.
    """
    spec = load_spec("preset:paper-v5-naive")
    tiers = {"S1": ("tool_error", "gold_match"), "S2": ("redundant_call", "message_only"),
             "F1": ("read_only", "tool_error"), "F2": ("read_only", "read_only")}
    names = list(spec.turn_weights())
    values = {n: [float(t == n) for ep in tiers.values() for t in ep] for n in names}
    data = _data(values, lengths=[2, 2, 2, 2], success=[True, True, False, False], group=["g"] * 4)
    rewards = P.spec_turn_rewards(data.values, spec.turn_weights(), 8)
    settings = P.AdvantageSettings(mode="mt_grpo", lam=1.0)
    a_total, a_i = P.mode_advantages(rewards, data.lengths, data.outcome, data.group, settings)
    f1_t0 = 4
    a_o = a_total[f1_t0] - a_i[f1_t0]
    assert a_o == pytest.approx(-0.87, abs=0.005)
    assert a_i[f1_t0] == pytest.approx(0.05, abs=0.005)
    # By hand: turn 0 rewards [-0.1, -0.2, 0.3, 0.3] and turn 1 [1.0, 0.0, -0.1, 0.3]; F1's GNs.
    t0, t1 = np.array([-0.1, -0.2, 0.3, 0.3]), np.array([1.0, 0.0, -0.1, 0.3])
    by_hand = sum((x[2] - x.mean()) / (x.std(ddof=1) + EPS) for x in (t0, t1))
    assert a_i[f1_t0] == pytest.approx(by_hand, abs=1e-12)
    result = analyze_arrays(data, AnalysisConfig(n_boot=20, mode="mt_grpo"), base=spec)
    ro = result.tier_alignment["read_only"]
    assert ro["aligned"] is False and ro["mean_A_total"] < 0 < ro["weight"]
    assert "read_only" in result.advantage_diagnostics["mt_grpo"]["mismatched_signals"]


def _planted(n_groups: int = 40, size: int = 8, seed: int = 0) -> EpisodeData:
    """Tier 'good' occurs in 80 % of successes and 20 % of failures, 'bad' the reverse, 'flat' in
    half of each (exactly, per group), one turn each."""
    rng = np.random.default_rng(seed)
    success = np.tile([True, False] * (size // 2), n_groups)
    e = success.size
    good = np.where(success, rng.random(e) < 0.8, rng.random(e) < 0.2).astype(float)
    bad = np.where(success, rng.random(e) < 0.2, rng.random(e) < 0.8).astype(float)
    flat = np.tile([1.0, 1.0, 0.0, 0.0] * (size // 4), n_groups)
    group = np.repeat([f"g{i}" for i in range(n_groups)], size)
    return _data({"good": good, "bad": bad, "flat": flat}, lengths=[1] * e, success=success, group=group)


def test_irc_rule_planted_fixture_gives_positive_negative_zero():
    data = _planted()
    cfg = AnalysisConfig(n_boot=20, rule="irc", mode="gtpo_hybrid")
    result = analyze_arrays(data, cfg)
    rows = {r["signal"]: r for r in result.signals}
    assert rows["good"]["proposed_weight"] > 0 and rows["good"]["verdict"] == "keep"
    assert rows["bad"]["proposed_weight"] < 0 and rows["bad"]["verdict"] == "flip"
    assert rows["flat"]["proposed_weight"] == 0.0 and rows["flat"]["verdict"] == "zero"
    rho = rows["good"]["irc"]["rho"]
    occ, y = data.values["good"], data.success.astype(float)
    assert rho == pytest.approx(np.corrcoef(occ, y)[0, 1], abs=1e-12)  # point-biserial = Pearson with 0/1
    assert rows["good"]["proposed_weight"] == pytest.approx(cfg.irc_alpha * rho)
    assert rows["flat"]["irc"]["rho"] == pytest.approx(0.0, abs=1e-12)
    spec = propose_spec(result, cfg)
    assert spec.turn_weights()["flat"] == 0.0 and spec.turn_weights()["bad"] < 0


def test_irc_sign_check_zeroes_a_misaligned_weight():
    """A tier correlated with success overall whose turns all sit in failing episodes of mixed groups
    is positively correlated only through uninformative groups: the sign check sets it to 0."""
    # Group a: 4 successes where 'x' fires (no outcome variance: every advantage 0). Group b: mixed,
    # 'x' fires only in b's failure. Group c: 2 failures without 'x'. rho(x, outcome) > 0 (x in 4/5
    # successes, 1/3 failures), but the only non-zero advantage at its turns is b's failure's.
    values = {"x": [1, 1, 1, 1, 0, 1, 0, 0]}
    data = _data(values, lengths=[1] * 8, success=[True] * 4 + [True, False, False, False],
                 group=["a"] * 4 + ["b", "b", "c", "c"])
    rho, w = P.irc_weights(data.values, data.lengths, data.outcome, alpha=0.5, delta=0.1)["x"]
    assert rho > 0.1 and w > 0
    result = analyze_arrays(data, AnalysisConfig(n_boot=20, rule="irc", mode="mt_grpo"))
    row = result.signals[0]
    assert row["irc"]["sign_check"] is False and row["proposed_weight"] == 0.0 and "sign check" in row["reason"]


def test_irc_config_errors():
    from calib.errors import UsageError

    with pytest.raises(UsageError, match="rule"):
        AnalysisConfig(rule="paper")
    with pytest.raises(UsageError, match="irc_delta"):
        AnalysisConfig(irc_delta=1.5)
