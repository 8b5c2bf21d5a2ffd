"""Weights by what a signal adds: the ``joint`` calibration rule (docs/signals.md, "The joint rule").

The marginal rules (``auc``, ``irc``) judge each signal alone, so two signals that carry the same
information both get the cap, and so does a weak one whose interval just clears 0.5: their turn
rewards add up and crowd out the outcome with noise. The joint rule fits all signals at once:

1. Features: each signal's **episode total** (the sum of its turn values, what the advantage sums),
   divided by its ``value_scale`` so that signals beyond [0, 1] are comparable.
2. **Within-group**: only informative groups (mixed outcomes) count, and each feature is centred on
   its group mean (a fixed effect per task group), so a signal that only marks easy tasks explains
   nothing, exactly as GRPO sees it (it normalises inside the group).
3. **Forward selection by held-out log-loss**: a logistic model of success on the standardised
   centred totals, grown one signal at a time, taking the signal that lowers the log-loss on held-out
   groups (5 folds of whole groups) most, while that gain beats both ``MIN_GAIN`` and its own
   standard error across folds. A signal that repeats a selected one saves nothing and never enters;
   a weak one enters only when the data show that it adds. (An L1 path was tried first: with two
   near-copies it splits the weight between them instead of choosing one.)
4. Weight: the selected signals' logistic coefficients, ``cap * beta_s / max |beta|`` (the strongest
   gets the cap), divided by ``value_scale``; a coefficient below ``PRUNE`` x the largest is dropped.

Verdicts stay readable: ``keep``/``flip`` by the sign of the weight; ``zero`` for a signal the
model dropped, with ``redundant_with`` naming the kept signal whose centred totals it correlates
with most when it separates success on its own (its marginal interval excludes 0.5), else "weak".
A kept signal whose sign agreement under the analysis mode points the other way is zeroed too
(``misaligned``), as in the ``auc`` rule. Pure numpy/scikit-learn; no I/O.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np

PRUNE = 0.1  # coefficients below this share of the largest are dropped: they move no turn reward visibly
MIN_GAIN = 0.002  # held-out log-loss (nats per episode) a signal must save to enter the model


@dataclass
class JointFit:
    """Per signal (in ``names`` order): the standardised coefficient, the weight, and for dropped
    signals the kept signal it is most correlated with (None when nothing was kept or it has no variance)."""

    names: list[str]
    beta: np.ndarray  # (S,) coefficients on standardised centred totals
    weight: np.ndarray  # (S,) proposed turn-reward weights
    closest_kept: list[str | None]
    order: list[str]  # the order in which forward selection took the signals in
    informative_groups: int


def episode_totals(values: dict[str, np.ndarray], lengths: np.ndarray) -> np.ndarray:
    """(E, S) sum of each signal's turn values per episode (NaN turns count 0)."""
    offsets = np.concatenate([[0], np.cumsum(lengths)[:-1]]).astype(np.int64)
    cols = []
    for v in values.values():
        filled = np.where(np.isfinite(v), v, 0.0)
        cols.append(np.add.reduceat(filled, offsets) * (lengths > 0) if filled.size else np.zeros(lengths.size))
    return np.stack(cols, axis=1) if cols else np.zeros((lengths.size, 0))


def centre_within_groups(x: np.ndarray, g: np.ndarray) -> np.ndarray:
    """``x - mean of its group`` per column: (E, S) -> (E, S)."""
    n = np.bincount(g).astype(np.float64)
    means = np.stack([np.bincount(g, weights=x[:, j]) / np.maximum(n, 1) for j in range(x.shape[1])], axis=1)
    return x - means[g]


def fit_joint(
    values: dict[str, np.ndarray],
    lengths: np.ndarray,
    success: np.ndarray,
    g: np.ndarray,
    *,
    cap: float = 0.3,
    value_scale: dict[str, float] | None = None,
    prune: float = PRUNE,
    seed: int = 0,
) -> JointFit:
    """The joint rule's fit (see the module docstring). ``g``: dense group index [E]."""
    names = list(values)
    S = len(names)
    y = np.asarray(success, dtype=bool)
    pos = np.bincount(g, weights=y.astype(float))
    cnt = np.bincount(g)
    informative = (pos > 0) & (pos < cnt)
    keep_rows = informative[g]
    zero = JointFit(names, np.zeros(S), np.zeros(S), [None] * S, [], int(informative.sum()))
    if S == 0 or informative.sum() < 2:
        return zero
    scale = np.array([_unit(value_scale.get(n, 1.0) if value_scale else 1.0) for n in names])
    x = episode_totals(values, lengths)[keep_rows] / scale  # (E', S)
    gg = np.unique(g[keep_rows], return_inverse=True)[1].reshape(-1)
    yy = y[keep_rows]
    xc = centre_within_groups(x, gg)
    sd = xc.std(axis=0)
    live = np.nonzero(sd > 1e-12)[0]
    if live.size == 0:
        return zero
    z = np.zeros_like(xc)
    z[:, live] = xc[:, live] / sd[live]
    fold = _folds(gg, seed=seed)
    selected, path = forward_select(z, yy, fold, candidates=list(live))
    beta = np.zeros(S)
    if selected:
        beta[selected] = _logistic(z[:, selected], yy)
    top = np.abs(beta).max()
    weight = np.zeros(S)
    if top > 0:
        beta[np.abs(beta) < prune * top] = 0.0
        # the strongest signal gets the cap, the others in proportion; divided by value_scale as the
        # other rules do, so a typical turn of a signal beyond [0, 1] stays within the cap
        weight = np.clip(cap * beta / top, -cap, cap) / scale
    closest = _closest_kept(xc, beta, names)
    return JointFit(names, beta, weight, closest, [names[j] for j in path], int(informative.sum()))


def _unit(v: float) -> float:
    return float(v) if np.isfinite(v) and v > 1.0 else 1.0


def _logistic(z: np.ndarray, y: np.ndarray) -> np.ndarray:
    """Coefficients of a logistic regression of ``y`` on ``z`` (intercept free, a light L2 penalty so
    that a separable window still gives finite numbers)."""
    from sklearn.linear_model import LogisticRegression

    if y.all() or not y.any():
        return np.zeros(z.shape[1])
    return LogisticRegression(C=1.0, max_iter=1000).fit(z, y).coef_.reshape(-1)


def _folds(g: np.ndarray, *, seed: int, k: int = 5) -> np.ndarray:
    """A fold index per episode: whole groups go to one fold (held-out groups, as the policy meets new
    groups), ``k`` folds or as many as there are groups."""
    n = int(g.max()) + 1
    k = int(min(k, n))
    fold_of_group = np.random.default_rng(seed).permutation(n) % max(k, 1)
    return fold_of_group[g]


def _cv_loss(z: np.ndarray, y: np.ndarray, fold: np.ndarray, cols: list[int]) -> np.ndarray:
    """Held-out log-loss per fold of the logistic model on ``cols`` (the intercept alone for [])."""
    k = int(fold.max()) + 1
    out = np.zeros(k)
    for f in range(k):
        tr, te = fold != f, fold == f
        if not te.any():
            continue
        if cols and y[tr].any() and not y[tr].all():
            from sklearn.linear_model import LogisticRegression

            p = LogisticRegression(C=1.0, max_iter=1000).fit(z[tr][:, cols], y[tr]).predict_proba(z[te][:, cols])[:, 1]
        else:
            p = np.full(int(te.sum()), y[tr].mean() if tr.any() else 0.5)
        p = np.clip(p, 1e-9, 1 - 1e-9)
        out[f] = -np.mean(np.where(y[te], np.log(p), np.log(1 - p)))
    return out


def forward_select(z: np.ndarray, y: np.ndarray, fold: np.ndarray, *, candidates: list[int],
                   min_gain: float = MIN_GAIN) -> tuple[list[int], list[int]]:
    """Greedy forward selection by held-out log-loss over groups: add the signal that lowers it most,
    while the gain exceeds both ``min_gain`` and the standard error of the paired per-fold gains.

    A signal that repeats a selected one lowers the loss by about nothing, so it never enters; a weak
    one enters only when the data show it adds. Returns (selected columns, the order they entered)."""
    selected: list[int] = []
    loss = _cv_loss(z, y, fold, selected)
    k = loss.size
    while True:
        best, best_gain, best_loss = None, 0.0, None
        for c in candidates:
            if c in selected:
                continue
            trial = _cv_loss(z, y, fold, [*selected, c])
            diff = loss - trial  # per fold, positive = better
            gain = float(diff.mean())
            se = float(diff.std(ddof=1) / np.sqrt(k)) if k > 1 else 0.0
            if gain > max(min_gain, se) and gain > best_gain:
                best, best_gain, best_loss = c, gain, trial
        if best is None:
            return selected, list(selected)
        selected.append(best)
        loss = best_loss


def _closest_kept(xc: np.ndarray, beta: np.ndarray, names: list[str]) -> list[str | None]:
    kept = np.nonzero(beta != 0)[0]
    out: list[str | None] = []
    if kept.size == 0:
        return [None] * len(names)
    with np.errstate(invalid="ignore", divide="ignore"):
        corr = np.corrcoef(xc, rowvar=False)
    corr = np.atleast_2d(corr)
    for j in range(len(names)):
        if beta[j] != 0:
            out.append(None)
            continue
        c = np.abs(np.nan_to_num(corr[j, kept], nan=0.0))
        out.append(names[int(kept[np.argmax(c)])] if c.size and c.max() > 0 else None)
    return out
