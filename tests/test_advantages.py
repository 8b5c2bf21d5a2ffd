"""Property and example tests for calib/advantages.py (docs/architecture.md section 6, docs/advantages.md)."""

from __future__ import annotations

import numpy as np
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from calib.advantages import ADVANTAGE_MODES, expand_to_tokens, group_normalize, turn_advantages

# Rewards on a 0.1 grid: distinct values stay distinct under the affine maps below, so "no variance"
# never appears or disappears through rounding.
grid = st.integers(-20, 20).map(lambda v: v / 10)


@st.composite
def batches(draw, *, equal_lengths: bool = False, zero_turn_rewards: bool = False):
    """A batch of 1-3 groups of 1-5 episodes, 0-4 turns each (or one shared length)."""
    n_groups = draw(st.integers(1, 3))
    shared_len = draw(st.integers(1, 4))
    outcome, rewards, group = [], [], []
    for g in range(n_groups):
        for _ in range(draw(st.integers(1, 5))):
            n_turns = shared_len if equal_lengths else draw(st.integers(0, 4))
            outcome.append(draw(grid))
            rewards.append(
                [0.0] * n_turns
                if zero_turn_rewards
                else draw(st.lists(grid, min_size=n_turns, max_size=n_turns))
            )
            group.append(f"task{g}")
    return np.array(outcome), rewards, np.array(group)


# --- a naive reference, written straight from docs/architecture.md section 6 with loops -------------------------


def _gn_ref(values: list[float], x: float, eps: float) -> float:
    v = np.asarray(values, dtype=float)
    if len(v) < 2 or np.all(v == v[0]):
        return 0.0
    return (x - v.mean()) / (v.std(ddof=1) + eps)


def _reference(outcome, rewards, group, mode, gamma, lam, turn_norm, eps=1e-4):
    E = len(outcome)
    members = {g: [j for j in range(E) if group[j] == g] for g in set(group)}
    out_adv = [_gn_ref([outcome[j] for j in members[group[i]]], outcome[i], eps) for i in range(E)]

    def gn_turn(values, i, t):  # values[j][k] for episodes j of i's group
        ms = members[group[i]]
        if turn_norm == "index":
            pool = [values[j][t] for j in ms if len(values[j]) > t]
        else:
            pool = [values[j][k] for j in ms for k in range(len(values[j]))]
        return _gn_ref(pool, values[i][t], eps)

    result = []
    for i in range(E):
        T = len(rewards[i])
        if mode == "grpo":
            result.append([out_adv[i]] * T)
        elif mode == "mt_grpo":
            result.append(
                [out_adv[i] + lam * sum(gn_turn(rewards, i, k) for k in range(t, T)) for t in range(T)]
            )
        else:
            G = [
                [
                    sum(gamma ** (k - t) * rewards[j][k] for k in range(t, len(rewards[j])))
                    + gamma ** (len(rewards[j]) - t) * outcome[j]
                    for t in range(len(rewards[j]))
                ]
                for j in range(E)
            ]
            result.append([gn_turn(G, i, t) + lam * out_adv[i] for t in range(T)])
    return result


@pytest.mark.parametrize("mode", ADVANTAGE_MODES)
@pytest.mark.parametrize("turn_norm", ["index", "pooled"])
@settings(max_examples=60, deadline=None)
@given(
    batch=batches(), gamma=st.sampled_from([0.0, 0.5, 0.9, 1.0]), lam=st.sampled_from([None, 0.0, 0.3, 2.0])
)
def test_matches_loop_reference(mode, turn_norm, batch, gamma, lam):
    outcome, rewards, group = batch
    got = turn_advantages(outcome, rewards, group, mode=mode, gamma=gamma, lam=lam, turn_norm=turn_norm)
    lam_eff = {"grpo": 0.0, "mt_grpo": 1.0, "gtpo_hybrid": 0.3}[mode] if lam is None else lam
    want = _reference(outcome, rewards, group, mode, gamma, lam_eff, turn_norm)
    assert [len(a) for a in got] == [len(r) for r in rewards]
    for a, w in zip(got, want):
        np.testing.assert_allclose(a, w, rtol=1e-9, atol=1e-9)
        assert np.isfinite(a).all()


# --- the properties the issue names ----------------------------------------------------------------


@settings(max_examples=100, deadline=None)
@given(batch=batches(), scale=st.sampled_from([0.1, 0.5, 2.0, 7.0]), shift=grid)
def test_grpo_invariant_to_positive_affine_transform(batch, scale, shift):
    outcome, rewards, group = batch
    # eps=0: with eps > 0 the transform changes std + eps, which is the only (intended) deviation.
    a = turn_advantages(outcome, rewards, group, mode="grpo", eps=0.0)
    b = turn_advantages(scale * outcome + shift, rewards, group, mode="grpo", eps=0.0)
    for x, y in zip(a, b):
        np.testing.assert_allclose(x, y, rtol=1e-9, atol=1e-9)
    # grpo gives every turn of an episode the same value, and ignores turn rewards.
    c = turn_advantages(outcome, [np.ones(len(r)) * 5 for r in rewards], group, mode="grpo", eps=0.0)
    for x, z in zip(a, c):
        assert np.all(x == z)
        assert len(x) == 0 or np.all(x == x[0])


@settings(max_examples=100, deadline=None)
@given(batch=batches(equal_lengths=True, zero_turn_rewards=True), lam=st.sampled_from([0.0, 0.3, 1.0, 2.5]))
def test_gtpo_hybrid_reduces_to_scaled_grpo(batch, lam):
    outcome, rewards, group = batch
    hybrid = turn_advantages(
        outcome, rewards, group, mode="gtpo_hybrid", gamma=1.0, lam=lam, turn_norm="index"
    )
    grpo = turn_advantages(outcome, rewards, group, mode="grpo")
    for h, g in zip(hybrid, grpo):
        np.testing.assert_allclose(h, (1 + lam) * g, rtol=1e-12, atol=1e-12)


def test_no_variance_group_gives_zeros_never_nan():
    # Same outcome and same turn rewards everywhere: no preference, so 0 in every mode and norm.
    outcome, rewards, group = [1.0, 1.0, 1.0], [[0.1, 0.3], [0.1, 0.3], [0.1, 0.3]], ["g", "g", "g"]
    for mode in ADVANTAGE_MODES:
        for norm in ("index", "pooled"):
            for adv in turn_advantages(outcome, rewards, group, mode=mode, turn_norm=norm):
                if norm == "pooled" and mode != "grpo":
                    continue  # the pooled set mixes turn positions (0.1 and 0.3): it has variance
                assert np.all(adv == 0.0)
    # A singleton group and an all-equal outcome group: outcome advantage exactly 0.
    adv = turn_advantages([0.7, 0.0, 0.0], [[0.0], [0.0], [0.0]], ["a", "b", "b"], mode="grpo")
    assert [a.tolist() for a in adv] == [[0.0], [0.0], [0.0]]
    # Identical outcomes but varying turn rewards: grpo is 0, turn-aware modes are not.
    outcome, rewards = [0.0, 0.0], [[0.3], [0.0]]
    assert np.all(turn_advantages(outcome, rewards, ["g", "g"], mode="grpo")[0] == 0)
    assert turn_advantages(outcome, rewards, ["g", "g"], mode="mt_grpo")[0][0] > 0
    # Values equal up to float noise in the mean (0.1 * 3 / 3 != 0.1) still count as no variance.
    assert np.all(group_normalize(np.array([0.1, 0.1, 0.1]), np.zeros(3, dtype=int)) == 0)


@settings(max_examples=50, deadline=None)
@given(batch=batches())
def test_never_nan(batch):
    outcome, rewards, group = batch
    for mode in ADVANTAGE_MODES:
        for norm in ("index", "pooled"):
            for a in turn_advantages(outcome, rewards, group, mode=mode, turn_norm=norm):
                assert np.isfinite(a).all()


def test_index_vs_pooled_on_unequal_lengths():
    """docs/advantages.md, "index vs pooled": episode A (1 turn, success), B (3 turns, failure),
    gtpo_hybrid, gamma 1, no turn rewards, so every return G_{i,t} equals R_i."""
    outcome, rewards, group = [1.0, 0.0], [[0.0], [0.0, 0.0, 0.0]], ["g", "g"]
    kw = {"mode": "gtpo_hybrid", "gamma": 1.0, "lam": 0.3, "eps": 0.0}
    index = turn_advantages(outcome, rewards, group, turn_norm="index", **kw)
    pooled = turn_advantages(outcome, rewards, group, turn_norm="pooled", **kw)
    gn_r = 1 / np.sqrt(2)  # GN([1, 0]) = +-0.707 (mean 0.5, sample std 0.707)
    # index: turn 0 compares A with B; turns 1-2 have one episode each, so GN_t = 0 and B's later
    # turns only get lambda * GN(R): B's extra turns escape the comparison.
    np.testing.assert_allclose(index[0], [1.3 * gn_r])
    np.testing.assert_allclose(index[1], [-1.3 * gn_r, -0.3 * gn_r, -0.3 * gn_r])
    # pooled: one set {1, 0, 0, 0} (mean 0.25, sample std 0.5): B counts three times in the
    # baseline, so every turn of B gets (0 - 0.25) / 0.5 = -0.5 and A gets +1.5.
    np.testing.assert_allclose(pooled[0], [1.5 + 0.3 * gn_r])
    np.testing.assert_allclose(pooled[1], [-0.5 - 0.3 * gn_r] * 3)
    # Equal lengths do not make them agree: the pooled set {1, 1, 0, 0} has 4 values, so its sample
    # std (0.577) differs from the per-index one (0.707) and |GN| is 0.866 instead of 0.707.
    eq = [[0.0, 0.0], [0.0, 0.0]]
    b = turn_advantages(outcome, eq, group, turn_norm="pooled", **kw)
    np.testing.assert_allclose(b[0], [0.5 / np.sqrt(1 / 3) + 0.3 * gn_r] * 2)


def test_seed_example_sign():
    """docs/advantages.md, "the seed's example": group of 4, two successes, two failures (outcome
    advantage of a failure -0.87); failure C makes a correct read-only call at turn 0, rewarded +0.3."""
    outcome = [1.0, 1.0, 0.0, 0.0]
    rewards = [[0.0, 0.0], [0.0, 0.0], [0.3, 0.0], [0.0, 0.0]]
    group = ["t"] * 4
    grpo = turn_advantages(outcome, rewards, group, mode="grpo")
    assert grpo[2][0] == pytest.approx(-0.866, abs=1e-3)
    mt = turn_advantages(outcome, rewards, group, mode="mt_grpo")
    hybrid = turn_advantages(outcome, rewards, group, mode="gtpo_hybrid")
    # mt_grpo normalises the lone +0.3 into +1.5 standard deviations before adding it to -0.87:
    # the read-only call of a failed episode is reinforced (positive advantage).
    assert mt[2][0] == pytest.approx(-0.866 + 1.5, abs=1e-3)
    assert mt[2][0] > 0
    # gtpo_hybrid adds +0.3 to the discounted outcome first (0.3 + 0.81 * 0 vs 0.81 for successes):
    # the call stays below the group mean, so its advantage keeps the outcome's negative sign,
    # while still ranking above the other failure's turn 0.
    assert hybrid[2][0] < 0
    assert hybrid[3][0] < hybrid[2][0]
    # The paper's Eq. 2 discounts the outcome from one step after the last turn (gamma^(T_i - t)):
    # returns at turn 0 are 0.81 (successes), 0.3 (C) and 0 (D); docs/advantages.md's table.
    assert hybrid[2][0] == pytest.approx(-0.709, abs=1e-3)
    assert hybrid[3][0] == pytest.approx(-1.459, abs=1e-3)
    assert hybrid[0][0] == pytest.approx(1.084, abs=1e-3)
    # The last turn sees gamma * R: returns {0.9, 0.9, 0, 0} (C's +0.3 was on turn 0).
    assert hybrid[0][1] == pytest.approx(0.866 + 0.3 * 0.866, abs=1e-3)
    # Print the token view (the call is 3 tokens after a 2-token tool result) for the docs.
    spans = [[(0, 3), (5, 7)]] * 4
    for name, adv in (("mt_grpo", mt), ("gtpo_hybrid", hybrid)):
        tok, mask = expand_to_tokens(adv, spans, 8)
        print(name, "failed episode C tokens:", np.round(tok[2], 3).tolist())
        assert np.sign(tok[2][:3]).tolist() == [np.sign(adv[2][0])] * 3
        assert np.all(tok[2][~mask[2]] == 0)


# --- expansion to tokens ---------------------------------------------------------------------------


@st.composite
def span_rows(draw):
    """B rows of non-overlapping, sorted spans inside [0, length + 3) (some run past the end)."""
    length = draw(st.integers(0, 20))
    rows_adv, rows_spans = [], []
    for _ in range(draw(st.integers(1, 4))):
        cuts = sorted(draw(st.lists(st.integers(0, length + 3), min_size=0, max_size=8, unique=True)))
        spans = [(cuts[k], cuts[k + 1]) for k in range(0, len(cuts) - 1, 2)]
        rows_spans.append(spans)
        rows_adv.append(draw(st.lists(grid, min_size=len(spans), max_size=len(spans))))
    return rows_adv, rows_spans, length


@settings(max_examples=150, deadline=None)
@given(data=span_rows())
def test_token_advantages_zero_off_mask(data):
    turn_adv, spans, length = data
    adv, mask = expand_to_tokens(turn_adv, spans, length)
    assert adv.shape == mask.shape == (len(spans), length)
    assert np.all(adv[~mask] == 0.0)
    want_adv, want_mask = np.zeros_like(adv), np.zeros_like(mask)
    for b, (values, row) in enumerate(zip(turn_adv, spans)):
        for v, (s, e) in zip(values, row):
            want_adv[b, s:e] = v
            want_mask[b, s:e] = True
    assert np.array_equal(mask, want_mask)
    assert np.array_equal(adv, want_adv)


def test_expand_to_tokens_rejects_bad_spans():
    with pytest.raises(ValueError, match="overlap"):
        expand_to_tokens([[1.0, 2.0]], [[(0, 4), (3, 5)]], 6)
    with pytest.raises(ValueError, match="one span per turn"):
        expand_to_tokens([[1.0, 2.0]], [[(0, 4)]], 6)
    with pytest.raises(ValueError, match="not a valid"):
        expand_to_tokens([[1.0]], [[(4, 2)]], 6)


def test_bad_arguments_name_the_field():
    with pytest.raises(ValueError, match="mode="):
        turn_advantages([1.0], [[0.0]], [0], mode="ppo")
    with pytest.raises(ValueError, match="turn_norm="):
        turn_advantages([1.0], [[0.0]], [0], turn_norm="episode")
    with pytest.raises(ValueError, match="gamma="):
        turn_advantages([1.0], [[0.0]], [0], gamma=1.5)
    with pytest.raises(ValueError, match="one entry per episode"):
        turn_advantages([1.0, 0.0], [[0.0]], [0, 0])
    with pytest.raises(ValueError, match="outcome"):
        turn_advantages([np.nan], [[0.0]], [0])
    with pytest.raises(ValueError, match="turn_rewards"):
        turn_advantages([1.0], [[np.nan]], [0])
    assert turn_advantages([], [], []) == []
