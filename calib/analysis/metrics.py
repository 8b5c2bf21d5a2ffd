"""Discriminative metrics of a per-turn signal (docs/architecture.md section 4): pure numpy, arrays in, arrays out.

Notation. Episode i has a success label y_i, an outcome R_i, a group g_i (one task, one policy, one
iteration: what GRPO normalises over) and per-turn signal values r_{i,t}; ``s_i`` is an episode
aggregate of r_{i,.} (mean, sum, any). Turn-level data is *flat*: ``values`` [N] with the episode
index ``ep`` [N] of every turn, sorted by (episode, turn), turn t of episode i at ``offsets[i] + t``.

- ``auc``         P(s_success > s_failure) over all pairs, ties 1/2 (Mann-Whitney U / (n1 n0)),
                  with a percentile-bootstrap CI that resamples *episodes* (seeded).
- ``pb_corr``     point-biserial r between s and y (= Pearson r), two-sided p-value (t, n-2 dof).
- ``group_auc``   the same probability over (success, failure) pairs *inside one group* only, pooled
                  over pairs: sum_g U_g / sum_g n1_g n0_g. One lexsort gives group-wise average ranks
                  for every signal at once; U_g comes from ``bincount``. Its CI resamples *groups*
                  (the unit GRPO sees), so it needs only the per-group U_g and pair counts.
- ``sign_agreement`` / ``misaligned_mass``  how the signal's own turn advantage (the one it would
                  produce alone, from ``calib.advantages.turn_advantages``) points relative to the
                  outcome advantage GN(R)_i of its episode.
- ``dead_share``  share of turns of informative groups where the signal has no variance among the
                  group's episodes at that turn index (GN gives them 0: no gradient).
- ``verdict`` / ``proposed_weight``  keep / flip / zero and the weight for the reward spec.

Every threshold is a keyword argument with a documented default; nothing here reads files.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass

import numpy as np
from scipy import special

from calib.advantages import (
    DEFAULT_EPS,
    DEFAULT_GAMMA,
    group_normalize,
    signal_turn_advantages,
    varies_within,
)

# ----------------------------------------------------------------------------- ranks and AUC


def average_ranks(x: np.ndarray) -> np.ndarray:
    """Ranks 1..n of ``x`` with ties given their average rank (as ``scipy.stats.rankdata``)."""
    x = np.asarray(x, dtype=np.float64)  # (n,)
    _, inv, counts = np.unique(x, return_inverse=True, return_counts=True)  # (U,)
    first = np.cumsum(counts) - counts  # (U,) 0-based position of each value's first copy
    return (first + (counts + 1) / 2.0)[inv.reshape(-1)]  # (n,)


def auc(scores: np.ndarray, labels: np.ndarray) -> float:
    """P(score of a positive > score of a negative), ties 1/2; NaN without both classes."""
    s = np.asarray(scores, dtype=np.float64)
    y = np.asarray(labels, dtype=bool)
    n1 = int(y.sum())
    n0 = y.size - n1
    if n1 == 0 or n0 == 0:
        return float("nan")
    u = average_ranks(s)[y].sum() - n1 * (n1 + 1) / 2.0  # Mann-Whitney U of the positives
    return float(u / (n1 * n0))


def _auc_from_cells(pos: np.ndarray, neg: np.ndarray) -> np.ndarray:
    """AUC of rows of a [B, U] histogram over sorted unique scores (pos/neg counts per score)."""
    neg_below = np.cumsum(neg, axis=1) - neg  # (B, U) negatives with a strictly smaller score
    n1 = pos.sum(axis=1)  # (B,)
    n0 = neg.sum(axis=1)  # (B,)
    u = (pos * (neg_below + 0.5 * neg)).sum(axis=1)  # (B,)
    with np.errstate(invalid="ignore", divide="ignore"):
        return np.where((n1 > 0) & (n0 > 0), u / (n1 * n0), np.nan)


def auc_bootstrap(
    scores: np.ndarray, labels: np.ndarray, *, n_boot: int = 1000, seed: int = 0, max_cells: int = 20_000_000
) -> np.ndarray:
    """``n_boot`` bootstrap AUCs, each over ``n`` episodes drawn with replacement (seeded).

    The AUC depends on the data only through the count of (score, label) cells, so a resample is a
    draw of cell counts: a multinomial over the 2U cells when that is cheaper than drawing n indices
    (few distinct scores, e.g. binary or ``any`` aggregates), else n indices per resample binned with
    ``bincount``. Both draw from exactly the same distribution. Resamples without both classes are NaN.
    """
    s = np.asarray(scores, dtype=np.float64)
    y = np.asarray(labels, dtype=bool)
    n = s.size
    rng = np.random.default_rng(seed)
    if n == 0 or n_boot <= 0:
        return np.full(max(n_boot, 0), np.nan)
    uniq, u = np.unique(s, return_inverse=True)
    u = u.reshape(-1)
    n_u = uniq.size
    cell = u * 2 + y  # (n,) cell id: 2*score_rank + label
    out = np.empty(n_boot)
    if 2 * n_u < n:
        p = np.bincount(cell, minlength=2 * n_u) / n  # (2U,)
        chunk = max(1, max_cells // (2 * n_u))
        for b0 in range(0, n_boot, chunk):
            c = rng.multinomial(n, p, size=min(chunk, n_boot - b0)).reshape(-1, n_u, 2)  # (b, U, 2)
            out[b0 : b0 + c.shape[0]] = _auc_from_cells(c[:, :, 1], c[:, :, 0])
        return out
    chunk = max(1, max_cells // max(n, 2 * n_u))
    for b0 in range(0, n_boot, chunk):
        b = min(chunk, n_boot - b0)
        idx = rng.integers(0, n, size=(b, n))  # (b, n) resampled episodes
        flat = (np.arange(b)[:, None] * (2 * n_u) + cell[idx]).ravel()
        c = np.bincount(flat, minlength=b * 2 * n_u).reshape(b, n_u, 2)  # (b, U, 2)
        out[b0 : b0 + b] = _auc_from_cells(c[:, :, 1], c[:, :, 0])
    return out


def percentile_ci(boot: np.ndarray, *, alpha: float = 0.05) -> tuple[float, float]:
    """Percentile interval of bootstrap replicates (NaN replicates ignored; NaN if none are left)."""
    b = np.asarray(boot, dtype=np.float64)
    b = b[np.isfinite(b)]
    if b.size == 0:
        return (float("nan"), float("nan"))
    lo, hi = np.quantile(b, [alpha / 2.0, 1.0 - alpha / 2.0])
    return (float(lo), float(hi))


def auc_ci(
    scores: np.ndarray, labels: np.ndarray, *, n_boot: int = 1000, alpha: float = 0.05, seed: int = 0
) -> tuple[float, float]:
    """95% (``1 - alpha``) percentile-bootstrap CI of :func:`auc`, resampling episodes."""
    return percentile_ci(auc_bootstrap(scores, labels, n_boot=n_boot, seed=seed), alpha=alpha)


def pb_corr(values: np.ndarray, labels: np.ndarray) -> tuple[float, float]:
    """Point-biserial correlation (Pearson r with a 0/1 variable) and its two-sided p-value.

    Same numbers as ``scipy.stats.pointbiserialr``; NaN when either side has no variance (scipy
    warns and returns NaN there too) or fewer than 3 values.
    """
    x = np.asarray(values, dtype=np.float64)
    y = np.asarray(labels, dtype=np.float64)
    n = x.size
    if n < 3:
        return (float("nan"), float("nan"))
    dx = x - x.mean()
    dy = y - y.mean()
    denom = np.sqrt((dx * dx).sum() * (dy * dy).sum())
    if denom == 0.0 or not np.isfinite(denom):
        return (float("nan"), float("nan"))
    r = float(np.clip((dx * dy).sum() / denom, -1.0, 1.0))
    if abs(r) == 1.0:
        return (r, 0.0)
    t = r * np.sqrt((n - 2) / (1.0 - r * r))
    return (r, float(2.0 * special.stdtr(n - 2, -abs(t))))  # two-sided Student-t tail


# ----------------------------------------------------------------------------- within-group AUC


@dataclass(frozen=True)
class GroupAUC:
    """Within-group AUC of S signals: pooled values plus the per-group pieces the bootstrap needs.

    ``value`` [S]; ``u`` [G, S] concordant pairs per group (ties 1/2); ``pairs`` [G] = n1_g * n0_g
    (the same for every signal when no value is missing); ``informative_groups`` [S] groups with at
    least one (success, failure) pair; ``n_groups`` groups with at least one episode.
    """

    value: np.ndarray
    u: np.ndarray
    pairs: np.ndarray
    informative_groups: np.ndarray
    n_groups: int


def group_ranks(scores: np.ndarray, group: np.ndarray) -> np.ndarray:
    """Average ranks of each column of ``scores`` [N, S] within each group, in one lexsort.

    Sorting the flattened (column, group, score) keys puts each (column, group) block in score
    order; a tie run is a run of equal (column, group, score); its members get the mean of their
    1-based positions in the block.
    """
    x = np.asarray(scores, dtype=np.float64)
    if x.ndim == 1:
        x = x[:, None]
    n, n_sig = x.shape  # (N, S)
    g = np.asarray(group, dtype=np.int64)
    block = (np.arange(n_sig)[None, :] * (int(g.max(initial=-1)) + 1) + g[:, None]).ravel(order="F")  # (N*S,)
    vals = x.ravel(order="F")  # (N*S,) column-major: column j occupies [j*N, (j+1)*N)
    order = np.lexsort((vals, block))
    bs, vs = block[order], vals[order]
    pos = np.arange(bs.size)
    new_block = np.r_[True, bs[1:] != bs[:-1]]
    new_run = new_block | np.r_[True, vs[1:] != vs[:-1]]
    block_start = np.maximum.accumulate(np.where(new_block, pos, 0))  # first position of the block
    run_id = np.cumsum(new_run) - 1
    run_start = pos[new_run]  # (R,)
    run_len = np.diff(np.r_[run_start, bs.size])  # (R,)
    # rank of a run (1-based within its block) = start - block_start + (len + 1) / 2
    rank_sorted = run_start[run_id] - block_start + (run_len[run_id] + 1) / 2.0
    ranks = np.empty(bs.size)
    ranks[order] = rank_sorted
    return ranks.reshape(n_sig, n).T  # (N, S)


def group_auc(scores: np.ndarray, labels: np.ndarray, group: np.ndarray) -> GroupAUC:
    """Within-group AUC of every column of ``scores`` [N] or [N, S] (NaN entries are left out).

    ``group`` holds any sortable ids. U_g = sum of the within-group ranks of the group's successes
    minus n1_g (n1_g + 1) / 2; the pooled value sum_g U_g / sum_g n1_g n0_g weighs each pair equally,
    which is what a GRPO batch does.
    """
    x = np.asarray(scores, dtype=np.float64)
    one_d = x.ndim == 1
    if one_d:
        x = x[:, None]
    y = np.asarray(labels, dtype=bool)
    _, g = np.unique(np.asarray(group), return_inverse=True)
    g = g.reshape(-1).astype(np.int64)
    n_g = int(g.max(initial=-1)) + 1
    n_sig = x.shape[1]
    ok = np.isfinite(x)  # (N, S) missing values take no part
    # Missing values sort last in their block: rank them with +inf and drop them from the counts.
    # Because they sort last they do not move the ranks of present values.
    ranks = group_ranks(np.where(ok, x, np.inf), g)  # (N, S)
    pos = ok & y[:, None]
    neg = ok & ~y[:, None]
    u = np.empty((n_g, n_sig))
    n1 = np.empty((n_g, n_sig))
    n0 = np.empty((n_g, n_sig))
    for j in range(n_sig):  # S bincounts over N: the column loop is over signals, not groups
        n1[:, j] = np.bincount(g, weights=pos[:, j], minlength=n_g)
        n0[:, j] = np.bincount(g, weights=neg[:, j], minlength=n_g)
        rank_sum = np.bincount(g, weights=np.where(pos[:, j], ranks[:, j], 0.0), minlength=n_g)
        u[:, j] = rank_sum - n1[:, j] * (n1[:, j] + 1) / 2.0
    pairs = n1 * n0  # (G, S)
    tot = pairs.sum(axis=0)  # (S,)
    with np.errstate(invalid="ignore", divide="ignore"):
        value = np.where(tot > 0, u.sum(axis=0) / tot, np.nan)  # (S,)
    informative = (pairs > 0).sum(axis=0)  # (S,)
    n_groups = int(np.bincount(g, minlength=n_g).astype(bool).sum())
    return GroupAUC(value=value, u=u, pairs=pairs, informative_groups=informative, n_groups=n_groups)


def group_auc_bootstrap(u: np.ndarray, pairs: np.ndarray, *, n_boot: int = 1000, seed: int = 0) -> np.ndarray:
    """Bootstrap replicates [B, S] of the within-group AUC, resampling *groups* with replacement.

    ``u`` and ``pairs`` are the per-group [G, S] pieces of :class:`GroupAUC`. Every signal sees the
    same resampled groups (one seeded draw), so their intervals are comparable.
    """
    u = np.asarray(u, dtype=np.float64)
    pairs = np.asarray(pairs, dtype=np.float64)
    if u.ndim == 1:
        u, pairs = u[:, None], pairs.reshape(-1, 1) if pairs.ndim == 1 else pairs
    if pairs.shape != u.shape:
        pairs = np.broadcast_to(pairs.reshape(-1, 1), u.shape)
    n_g, n_sig = u.shape
    if n_g == 0 or n_boot <= 0:
        return np.full((max(n_boot, 0), n_sig), np.nan)
    rng = np.random.default_rng(seed)
    idx = rng.integers(0, n_g, size=(n_boot, n_g))  # (B, G) resampled groups
    out = np.empty((n_boot, n_sig))
    for j in range(n_sig):
        num = u[:, j][idx].sum(axis=1)  # (B,)
        den = pairs[:, j][idx].sum(axis=1)  # (B,)
        with np.errstate(invalid="ignore", divide="ignore"):
            out[:, j] = np.where(den > 0, num / den, np.nan)
    return out


# ----------------------------------------------------------------------------- turn-level metrics


def split_turns(values: np.ndarray, lengths: np.ndarray) -> list[np.ndarray]:
    """Flat per-turn values [N] -> one array per episode (views; what ``turn_advantages`` takes).

    Plain slicing: ``np.split`` costs ~10x more per piece (two ``swapaxes`` each), which shows at
    100k episodes."""
    v = np.asarray(values, dtype=np.float64)
    ends = np.cumsum(np.asarray(lengths, dtype=np.int64)).tolist()
    starts = [0, *ends[:-1]]
    return [v[a:b] for a, b in zip(starts, ends)]


@dataclass(frozen=True)
class Alignment:
    """``agreement``: share of the signal's |A_turn| mass whose sign matches GN(R) of its episode.
    ``misaligned_mass``: |A_turn| of the disagreeing turns over |GN(R)| of the same turns, summed
    over every turn considered (0 = never pushes against the outcome; 1 = the push against it is as
    large as the outcome's own push). ``turns``: turns considered (informative groups only)."""

    agreement: float
    misaligned_mass: float
    turns: int


def alignment_from_advantages(turn_adv: np.ndarray, outcome_adv: np.ndarray) -> Alignment:
    """Compare flat turn advantages [N] with the outcome advantage of each turn's episode [N].

    Turns whose episode has GN(R) = 0 (groups with one outcome) carry no outcome direction and are
    left out; turns with A_turn = 0 add no mass either way.
    """
    a = np.asarray(turn_adv, dtype=np.float64)
    o = np.asarray(outcome_adv, dtype=np.float64)
    keep = o != 0.0
    a, o = a[keep], o[keep]
    mass = np.abs(a)
    total = mass.sum()
    bad = mass[np.sign(a) == -np.sign(o)].sum()
    out_mass = np.abs(o).sum()
    agreement = float((total - bad) / total) if total > 0 else float("nan")
    misaligned = float(bad / out_mass) if out_mass > 0 else float("nan")
    return Alignment(agreement=agreement, misaligned_mass=misaligned, turns=int(keep.sum()))


def sign_agreement(
    values: np.ndarray,
    lengths: np.ndarray,
    outcome: np.ndarray,
    group: np.ndarray,
    *,
    mode: str = "gtpo_hybrid",
    gamma: float = DEFAULT_GAMMA,
    lam: float | None = None,
    turn_norm: str = "index",
    eps: float = DEFAULT_EPS,
) -> Alignment:
    """Sign agreement and misaligned mass of a signal's turn advantage under ``mode``.

    The signal's turn advantage is the trainer's ``turn_advantages`` with the outcome set to 0 and
    the signal as the only turn reward (``calib.advantages.signal_turn_advantages``): exactly what the trainer
    adds for this signal on its own, minus the outcome's share. (GN is scale-free, so a positive
    weight does not change it.) Missing values (NaN) count as 0 reward, as the trainer fills them.
    """
    v = np.nan_to_num(np.asarray(values, dtype=np.float64), nan=0.0)  # (N,)
    lengths = np.asarray(lengths, dtype=np.int64)  # (E,)
    R = np.asarray(outcome, dtype=np.float64)  # (E,)
    _, g = np.unique(np.asarray(group), return_inverse=True)
    g = g.reshape(-1)
    flat = signal_turn_advantages(v, lengths, g, mode=mode, gamma=gamma, lam=lam, turn_norm=turn_norm, eps=eps)
    outcome_adv = group_normalize(R, g, eps=eps)  # (E,) GN(R)
    return alignment_from_advantages(flat, np.repeat(outcome_adv, lengths))


def turn_positions(lengths: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """(episode index [N], turn index [N]) of flat turns from per-episode lengths [E]."""
    lengths = np.asarray(lengths, dtype=np.int64)
    ep = np.repeat(np.arange(lengths.size), lengths)  # (N,)
    starts = np.cumsum(lengths) - lengths  # (E,)
    return ep, np.arange(ep.size) - starts[ep]


def dead_share(values: np.ndarray, lengths: np.ndarray, labels: np.ndarray, group: np.ndarray) -> float:
    """Share of turns in informative groups where the signal is constant across the group at that turn.

    The set of a turn is (group, turn index): the episodes of the group that reach turn t, which is
    what index normalisation divides by. A set with one member, or with one value, gives the signal
    no within-group variance there, so it adds no gradient at those turns. Informative group =
    mixed outcomes. Missing values count as 0, as in the trainer.
    """
    v = np.nan_to_num(np.asarray(values, dtype=np.float64), nan=0.0)
    lengths = np.asarray(lengths, dtype=np.int64)
    y = np.asarray(labels, dtype=bool)
    _, g = np.unique(np.asarray(group), return_inverse=True)
    g = g.reshape(-1).astype(np.int64)
    n_g = int(g.max(initial=-1)) + 1
    n_pos = np.bincount(g, weights=y, minlength=n_g)
    n_all = np.bincount(g, minlength=n_g)
    informative = (n_pos > 0) & (n_pos < n_all)  # (G,)
    ep, t = turn_positions(lengths)
    keep = informative[g[ep]]
    if not keep.any():
        return float("nan")
    t_max = int(t.max()) + 1
    key = g[ep] * t_max + t  # (N,) set = (group, turn index)
    varies = varies_within(v, key, n_g * t_max)  # (G * T_max,) the trainer's own "no variance" test
    return float((~varies[key])[keep].mean())


def auc_by_position(
    values: np.ndarray, lengths: np.ndarray, labels: np.ndarray, *, max_positions: int = 10
) -> list[float]:
    """Pooled AUC of the value at turn t (episodes that reach t, missing values dropped), t < max_positions.

    One histogram over (position, value rank, label) cells gives every position's AUC at once
    (:func:`_auc_from_cells` with positions as rows); a position without both classes is NaN.
    """
    v = np.asarray(values, dtype=np.float64)
    y = np.asarray(labels, dtype=bool)
    ep, t = turn_positions(lengths)
    sel = (t < max_positions) & np.isfinite(v)
    if max_positions <= 0:
        return []
    if not sel.any():
        return [float("nan")] * max_positions
    uniq, u = np.unique(v[sel], return_inverse=True)
    n_u = uniq.size
    cell = (t[sel] * n_u + u.reshape(-1)) * 2 + y[ep[sel]]  # (position, value rank, label)
    c = np.bincount(cell, minlength=max_positions * n_u * 2).reshape(max_positions, n_u, 2)  # (P, U, 2)
    return [float(x) for x in _auc_from_cells(c[:, :, 1], c[:, :, 0])]


def aggregate(values: np.ndarray, lengths: np.ndarray, how: str = "mean") -> np.ndarray:
    """Episode aggregate [E] of flat turn values [N], ignoring NaN; NaN where an episode has none.

    ``mean`` (default: insensitive to episode length), ``sum``, ``any`` (1 if some value > 0),
    ``max``.
    """
    v = np.asarray(values, dtype=np.float64)
    lengths = np.asarray(lengths, dtype=np.int64)
    ep, _ = turn_positions(lengths)
    e = lengths.size
    ok = np.isfinite(v)
    n_ok = np.bincount(ep, weights=ok, minlength=e)
    vz = np.where(ok, v, 0.0)
    if how == "mean":
        with np.errstate(invalid="ignore", divide="ignore"):
            out = np.bincount(ep, weights=vz, minlength=e) / n_ok
    elif how == "sum":
        out = np.bincount(ep, weights=vz, minlength=e)
    elif how == "any":
        out = (np.bincount(ep, weights=(vz > 0), minlength=e) > 0).astype(np.float64)
    elif how == "max":
        out = np.full(e, -np.inf)
        np.maximum.at(out, ep[ok], v[ok])
    else:
        raise ValueError(f"aggregate={how!r}: expected one of mean, sum, any, max")
    return np.where(n_ok > 0, out, np.nan)


# ----------------------------------------------------------------------------- verdict and weight


def verdict(
    ci: Sequence[float],
    agreement: float,
    *,
    null: float = 0.5,
    min_agreement: float = 0.5,
) -> str:
    """``keep`` / ``flip`` / ``zero`` from the within-group AUC interval and the sign agreement.

    keep: CI entirely above ``null`` and sign agreement >= ``min_agreement`` (the signal's own turn
    advantage mostly points with the outcome). flip: CI entirely below ``null`` and the *flipped*
    signal is aligned (1 - agreement >= ``min_agreement``). zero: everything else, including a
    discriminative signal whose advantage points against the outcome (a high pooled AUC is not
    enough), and a signal without data (NaN CI). A NaN agreement (the signal never moves the
    advantage) does not block keep/flip: the AUC decides alone.
    """
    lo, hi = float(ci[0]), float(ci[1])
    if not (np.isfinite(lo) and np.isfinite(hi)):
        return "zero"
    agree = float(agreement)
    if lo > null and (not np.isfinite(agree) or agree >= min_agreement):
        return "keep"
    if hi < null and (not np.isfinite(agree) or 1.0 - agree >= min_agreement):
        return "flip"
    return "zero"


def proposed_weight(
    group_auc_value: float,
    verdict_: str,
    *,
    scale: float = 1.0,
    cap: float = 0.3,
    value_scale: float = 1.0,
) -> float:
    """Turn-reward weight: ``scale * (2 * group_auc - 1)`` clipped to [-cap, cap], 0 unless keep/flip.

    ``value_scale`` (e.g. the 95th percentile of |value|) divides the result so that a typical turn
    of a signal that is not in [0, 1] (``turn_tokens``) gets at most ``cap``.
    """
    if verdict_ not in ("keep", "flip") or not np.isfinite(group_auc_value):
        return 0.0
    w = float(np.clip(scale * (2.0 * group_auc_value - 1.0), -cap, cap))
    if verdict_ == "keep":
        w = max(w, 0.0)
    else:
        w = min(w, 0.0)
    vs = float(value_scale) if np.isfinite(value_scale) and value_scale > 0 else 1.0
    return w / max(vs, 1.0)
