"""calib.analysis.metrics against brute-force references (sklearn, scipy, pairwise loops) on random data."""

from __future__ import annotations

import itertools

import numpy as np
import pytest
from scipy import stats
from sklearn.metrics import roc_auc_score

from calib.analysis import metrics as M

SEEDS = [0, 1, 2, 3]


def _random_scores(rng: np.random.Generator, n: int, kind: str) -> np.ndarray:
    if kind == "continuous":
        return rng.normal(size=n)
    if kind == "ties":
        return rng.integers(0, 4, size=n).astype(float)
    return (rng.random(n) < 0.3).astype(float)  # binary


# ----------------------------------------------------------------------------- auc, pb_corr


@pytest.mark.parametrize("seed", SEEDS)
@pytest.mark.parametrize("kind", ["continuous", "ties", "binary"])
def test_auc_equals_sklearn(seed, kind):
    rng = np.random.default_rng(seed)
    n = int(rng.integers(5, 300))
    s = _random_scores(rng, n, kind)
    y = rng.random(n) < 0.4
    y[0], y[1] = True, False
    assert M.auc(s, y) == pytest.approx(roc_auc_score(y, s), abs=1e-9)


def test_auc_nan_without_both_classes():
    assert np.isnan(M.auc([1.0, 2.0], [True, True]))


def test_average_ranks_equals_scipy():
    rng = np.random.default_rng(5)
    x = rng.integers(0, 7, size=200).astype(float)
    np.testing.assert_allclose(M.average_ranks(x), stats.rankdata(x), atol=1e-12)


@pytest.mark.parametrize("seed", SEEDS)
@pytest.mark.parametrize("kind", ["continuous", "ties"])
def test_pb_corr_equals_scipy(seed, kind):
    rng = np.random.default_rng(seed)
    n = int(rng.integers(5, 400))
    y = rng.random(n) < 0.5
    y[0], y[1] = True, False
    s = _random_scores(rng, n, kind) + 0.5 * y
    r, p = M.pb_corr(s, y)
    ref = stats.pointbiserialr(y, s)
    assert r == pytest.approx(ref.statistic, abs=1e-9)
    assert p == pytest.approx(ref.pvalue, abs=1e-9)


def test_pb_corr_constant_is_nan():
    r, p = M.pb_corr(np.ones(10), np.arange(10) % 2 == 0)
    assert np.isnan(r) and np.isnan(p)


# ----------------------------------------------------------------------------- bootstrap


def _bootstrap_reference(s, y, boots, seed):
    """Plain index resampling with sklearn per replicate (the textbook bootstrap)."""
    rng = np.random.default_rng(seed)
    out = []
    for _ in range(boots):
        idx = rng.integers(0, len(s), size=len(s))
        if y[idx].all() or not y[idx].any():
            continue
        out.append(roc_auc_score(y[idx], s[idx]))
    return np.quantile(out, [0.025, 0.975])


@pytest.mark.parametrize("kind", ["continuous", "binary"])  # index path and multinomial path
def test_auc_ci_matches_textbook_bootstrap(kind):
    rng = np.random.default_rng(11)
    n = 400
    y = rng.random(n) < 0.5
    s = _random_scores(rng, n, kind) + 0.8 * y
    lo, hi = M.auc_ci(s, y, n_boot=2000, seed=3)
    ref_lo, ref_hi = _bootstrap_reference(s, y, 2000, seed=4)
    point = M.auc(s, y)
    assert lo < point < hi
    # Different random draws of the same distribution: Monte Carlo error of a 2000-replicate
    # percentile is ~0.005 here.
    assert lo == pytest.approx(ref_lo, abs=0.02) and hi == pytest.approx(ref_hi, abs=0.02)


def test_auc_bootstrap_is_seeded_and_uses_both_paths_consistently():
    rng = np.random.default_rng(2)
    y = rng.random(300) < 0.5
    s = rng.normal(size=300) + y
    a = M.auc_bootstrap(s, y, n_boot=50, seed=9)
    b = M.auc_bootstrap(s, y, n_boot=50, seed=9)
    np.testing.assert_array_equal(a, b)
    # chunking does not change the replicates
    c = M.auc_bootstrap(s, y, n_boot=50, seed=9, max_cells=1000)
    np.testing.assert_array_equal(a, c)


def test_auc_from_cells_equals_sklearn():
    rng = np.random.default_rng(4)
    for _ in range(20):
        s = rng.integers(0, 6, size=60).astype(float)
        y = rng.random(60) < 0.5
        y[:2] = [True, False]
        uniq, u = np.unique(s, return_inverse=True)
        pos = np.bincount(u[y], minlength=uniq.size)[None, :]
        neg = np.bincount(u[~y], minlength=uniq.size)[None, :]
        assert M._auc_from_cells(pos, neg)[0] == pytest.approx(roc_auc_score(y, s), abs=1e-12)


# ----------------------------------------------------------------------------- group_auc


def _group_auc_pairwise(s, y, g):
    num = den = 0.0
    informative = 0
    for gid in np.unique(g):
        idx = np.nonzero(g == gid)[0]
        pos = [i for i in idx if y[i] and np.isfinite(s[i])]
        neg = [i for i in idx if not y[i] and np.isfinite(s[i])]
        if pos and neg:
            informative += 1
        for i, j in itertools.product(pos, neg):
            num += 1.0 if s[i] > s[j] else 0.5 if s[i] == s[j] else 0.0
            den += 1.0
    return (num / den if den else float("nan")), informative


@pytest.mark.parametrize("seed", SEEDS)
@pytest.mark.parametrize("kind", ["continuous", "ties", "binary"])
def test_group_auc_equals_pairwise_loops(seed, kind):
    rng = np.random.default_rng(seed)
    n = 240
    g = rng.integers(0, 30, size=n).astype(str)  # string ids, uneven group sizes
    y = rng.random(n) < 0.5
    S = np.stack([_random_scores(rng, n, kind) + k * 0.3 * y for k in range(3)], axis=1)  # (N, 3)
    S[rng.random(n) < 0.05, 1] = np.nan  # missing values are left out of column 1
    res = M.group_auc(S, y, g)
    for j in range(3):
        ref, inf = _group_auc_pairwise(S[:, j], y, g)
        assert res.value[j] == pytest.approx(ref, abs=1e-9)
        assert res.informative_groups[j] == inf
    assert res.n_groups == len(np.unique(g))


def test_group_ranks_equal_scipy_per_group():
    rng = np.random.default_rng(8)
    g = rng.integers(0, 5, size=100)
    x = rng.integers(0, 4, size=(100, 2)).astype(float)
    r = M.group_ranks(x, g)
    for gid in range(5):
        m = g == gid
        for j in range(2):
            np.testing.assert_allclose(r[m, j], stats.rankdata(x[m, j]), atol=1e-12)


def test_group_auc_bootstrap_is_group_resampling():
    rng = np.random.default_rng(1)
    n = 400
    g = np.repeat(np.arange(50), 8)
    y = rng.random(n) < 0.5
    s = rng.normal(size=n) + 0.7 * y
    res = M.group_auc(s, y, g)
    boot = M.group_auc_bootstrap(res.u, res.pairs, n_boot=500, seed=0)
    # reference: resample group ids with the same generator, recompute with pairwise loops
    ref_rng = np.random.default_rng(0)
    idx = ref_rng.integers(0, 50, size=(500, 50))
    for b in range(5):
        num = sum(res.u[k, 0] for k in idx[b])
        den = sum(res.pairs[k, 0] for k in idx[b])
        assert boot[b, 0] == pytest.approx(num / den, abs=1e-12)
    lo, hi = M.percentile_ci(boot[:, 0])
    assert lo < res.value[0] < hi


# ----------------------------------------------------------------------------- turn-level metrics


def _gn(x, eps=1e-4):
    x = np.asarray(x, dtype=float)
    if len(x) < 2 or np.all(x == x[0]):
        return np.zeros_like(x)
    return (x - x.mean()) / (x.std(ddof=1) + eps)


def _turn_adv_reference(turns, group, mode, gamma, lam, turn_norm):
    """Signal-alone turn advantage from the docs/architecture.md section 6 formulas, with explicit loops."""
    out = [np.zeros(len(t)) for t in turns]
    for gid in np.unique(group):
        members = [i for i in range(len(turns)) if group[i] == gid]
        if mode == "mt_grpo":
            z = {i: np.zeros(len(turns[i])) for i in members}
            if turn_norm == "index":
                for t in range(max(len(turns[i]) for i in members)):
                    at = [i for i in members if len(turns[i]) > t]
                    vals = _gn([turns[i][t] for i in at])
                    for i, v in zip(at, vals):
                        z[i][t] = v
            else:
                flat = _gn(np.concatenate([turns[i] for i in members]))
                k = 0
                for i in members:
                    z[i] = flat[k : k + len(turns[i])]
                    k += len(turns[i])
            for i in members:
                out[i] = lam * np.array([z[i][t:].sum() for t in range(len(turns[i]))])
        else:
            G = {i: np.array([sum(gamma ** (k - t) * turns[i][k] for k in range(t, len(turns[i])))
                              for t in range(len(turns[i]))]) for i in members}
            if turn_norm == "index":
                for t in range(max(len(turns[i]) for i in members)):
                    at = [i for i in members if len(turns[i]) > t]
                    vals = _gn([G[i][t] for i in at])
                    for i, v in zip(at, vals):
                        out[i][t] = v
            else:
                flat = _gn(np.concatenate([G[i] for i in members]))
                k = 0
                for i in members:
                    out[i] = flat[k : k + len(turns[i])]
                    k += len(turns[i])
    return out


def _sign_agreement_reference(turns, outcome, group, mode, gamma, lam, turn_norm):
    adv = _turn_adv_reference(turns, group, mode, gamma, lam, turn_norm)
    out_adv = np.zeros(len(turns))
    for gid in np.unique(group):
        m = np.nonzero(group == gid)[0]
        out_adv[m] = _gn(outcome[m])
    agree = bad = out_mass = 0.0
    for i, a in enumerate(adv):
        if out_adv[i] == 0:
            continue
        for v in a:
            out_mass += abs(out_adv[i])
            if v * out_adv[i] > 0:
                agree += abs(v)
            elif v * out_adv[i] < 0:
                bad += abs(v)
    return agree / (agree + bad), bad / out_mass


@pytest.mark.parametrize("mode", ["mt_grpo", "gtpo_hybrid"])
@pytest.mark.parametrize("turn_norm", ["index", "pooled"])
@pytest.mark.parametrize("seed", [0, 1])
def test_sign_agreement_equals_loop_reference(mode, turn_norm, seed):
    rng = np.random.default_rng(seed)
    n_ep = 60
    group = np.repeat(np.arange(12), 5)
    lengths = rng.integers(1, 7, size=n_ep)
    outcome = (rng.random(n_ep) < 0.5).astype(float)
    turns = [rng.integers(0, 2, size=L).astype(float) for L in lengths]
    flat = np.concatenate(turns)
    res = M.sign_agreement(flat, lengths, outcome, group, mode=mode, gamma=0.9, lam=None, turn_norm=turn_norm)
    lam = 1.0 if mode == "mt_grpo" else 0.3
    ref_agree, ref_mis = _sign_agreement_reference(turns, outcome, group, mode, 0.9, lam, turn_norm)
    assert res.agreement == pytest.approx(ref_agree, abs=1e-9)
    assert res.misaligned_mass == pytest.approx(ref_mis, abs=1e-9)


def test_alignment_hand_fixture():
    # two turns agree (mass 1 + 2), one disagrees (mass 1), one in a group without outcome variance
    a = M.alignment_from_advantages(np.array([1.0, 2.0, -1.0, 5.0]), np.array([0.5, 0.5, 0.5, 0.0]))
    assert a.agreement == pytest.approx(3 / 4)
    assert a.misaligned_mass == pytest.approx(1 / 1.5)
    assert a.turns == 3


def _dead_share_reference(turns, y, group):
    dead = total = 0
    for gid in np.unique(group):
        members = [i for i in range(len(turns)) if group[i] == gid]
        ys = {bool(y[i]) for i in members}
        if len(ys) < 2:
            continue
        for i in members:
            for t, v in enumerate(turns[i]):
                peers = [turns[j][t] for j in members if len(turns[j]) > t]
                total += 1
                dead += len(set(peers)) < 2
    return dead / total


@pytest.mark.parametrize("seed", [0, 1, 2])
def test_dead_share_equals_loop_reference(seed):
    rng = np.random.default_rng(seed)
    group = np.repeat(np.arange(10), 4)
    lengths = rng.integers(1, 6, size=40)
    y = rng.random(40) < 0.5
    turns = [(rng.random(L) < 0.2).astype(float) for L in lengths]
    got = M.dead_share(np.concatenate(turns), lengths, y, group)
    assert got == pytest.approx(_dead_share_reference(turns, y, group), abs=1e-12)


def test_auc_by_position_and_aggregates():
    lengths = np.array([2, 3, 1, 2])
    v = np.array([1, 0, 0, 1, 1, 1, 0, np.nan], dtype=float)
    y = np.array([True, False, True, False])
    pos = M.auc_by_position(v, lengths, y, max_positions=4)
    assert pos[0] == pytest.approx(roc_auc_score(y, [1, 0, 1, 0]))
    assert pos[1] == pytest.approx(roc_auc_score([True, False], [0, 1]))  # episode 3's turn 1 is NaN
    assert np.isnan(pos[2]) and np.isnan(pos[3])  # one class only / nobody
    np.testing.assert_allclose(M.aggregate(v, lengths, "mean"), [0.5, 2 / 3, 1.0, 0.0])
    np.testing.assert_allclose(M.aggregate(v, lengths, "sum"), [1, 2, 1, 0])
    np.testing.assert_allclose(M.aggregate(v, lengths, "any"), [1, 1, 1, 0])
    np.testing.assert_allclose(M.aggregate(v, lengths, "max"), [1, 1, 1, 0])
    with pytest.raises(ValueError, match="aggregate"):
        M.aggregate(v, lengths, "median")


# ----------------------------------------------------------------------------- verdict, weight


@pytest.mark.parametrize(
    "ci, agree, expected",
    [
        ((0.6, 0.7), 0.9, "keep"),
        ((0.6, 0.7), 0.3, "zero"),  # discriminative but its advantage points against the outcome
        ((0.3, 0.4), 0.1, "flip"),
        ((0.3, 0.4), 0.8, "zero"),
        ((0.45, 0.6), 0.9, "zero"),
        ((float("nan"), float("nan")), 0.9, "zero"),
        ((0.6, 0.7), float("nan"), "keep"),
    ],
)
def test_verdict(ci, agree, expected):
    assert M.verdict(ci, agree) == expected


def test_proposed_weight():
    assert M.proposed_weight(0.6, "keep") == pytest.approx(0.2)
    assert M.proposed_weight(0.9, "keep") == pytest.approx(0.3)  # capped
    assert M.proposed_weight(0.2, "flip") == pytest.approx(-0.3)
    assert M.proposed_weight(0.9, "zero") == 0.0
    assert M.proposed_weight(0.6, "keep", cap=0.1) == pytest.approx(0.1)
    assert M.proposed_weight(0.6, "keep", value_scale=40.0) == pytest.approx(0.2 / 40)


@pytest.mark.parametrize("mode", ["mt_grpo", "gtpo_hybrid"])
@pytest.mark.parametrize("turn_norm", ["index", "pooled"])
@pytest.mark.parametrize("gamma, lam", [(0.9, None), (1.0, 0.5), (0.5, 2.0)])
def test_flat_signal_advantages_equal_trainer_turn_advantages(mode, turn_norm, gamma, lam):
    """The analysis's flat fast path equals calib.advantages.turn_advantages (outcome 0) exactly."""
    from calib.advantages import turn_advantages

    rng = np.random.default_rng(7)
    n_ep = 90
    group = rng.integers(0, 15, size=n_ep).astype(str)
    lengths = rng.integers(1, 9, size=n_ep)
    flat = rng.normal(size=lengths.sum()) * (rng.random(lengths.sum()) < 0.6)
    ref = turn_advantages(np.zeros(n_ep), M.split_turns(flat, lengths), group, mode=mode, gamma=gamma, lam=lam,
                          turn_norm=turn_norm)
    got = M.signal_turn_advantages(flat, lengths, group, mode=mode, gamma=gamma, lam=lam, turn_norm=turn_norm)
    np.testing.assert_allclose(got, np.concatenate(ref), rtol=0, atol=1e-12)


@pytest.mark.parametrize("seed", [0, 1])
def test_auc_by_position_equals_sklearn(seed):
    rng = np.random.default_rng(seed)
    lengths = rng.integers(1, 8, size=120)
    y = rng.random(120) < 0.5
    v = rng.integers(0, 3, size=lengths.sum()).astype(float)
    v[rng.random(v.size) < 0.1] = np.nan
    got = M.auc_by_position(v, lengths, y, max_positions=9)
    ep, t = M.turn_positions(lengths)
    for pos in range(9):
        sel = (t == pos) & np.isfinite(v)
        yy = y[ep[sel]]
        if yy.any() and not yy.all():
            assert got[pos] == pytest.approx(roc_auc_score(yy, v[sel]), abs=1e-12)
        else:
            assert np.isnan(got[pos])
