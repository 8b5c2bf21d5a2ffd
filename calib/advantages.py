"""Per-turn advantages for multi-turn GRPO, and the registry of advantage modes (docs/architecture.md).

Pure numpy, no torch and no I/O, at the bottom of the core: the spec, the analysis (sign agreement),
the report and the trainer all read the modes, their defaults and their valid ranges from here, so
they never disagree on a formula or a name. The trainer turns the output into tensors.

**The registry** (after verl's ``register_adv_est`` in ``verl/trainer/ppo/core_algos.py``): a name ->
:class:`AdvantageMode` table that users extend with :func:`register_mode`. Unlike verl, dispatch goes
only through it: :func:`turn_advantages` and :func:`signal_turn_advantages` look the mode up, and a
mode has

- its **full form** ``full(R, r, valid, lengths, g, *, gamma, lam, turn_norm, eps) -> A [E, T_max]``,
  on padded per-turn rewards (``r`` [E, T_max], ``valid`` its mask, ``g`` the dense group index [E]);
- its **signal-only form** (the advantage one turn signal alone produces, outcome 0, same arguments
  without ``R``), which the analysis uses for sign agreement; None for a mode that ignores turn
  rewards (``grpo``);
- its **default lambda**; gamma's valid range (:data:`GAMMA_RANGE`) and the turn norms
  (:data:`TURN_NORMS`) are shared by every mode.

Notation (names from the papers). A group g is the set of episodes of one task sampled from one
policy; episode i has outcome R_i, per-turn rewards r_{i,t} (already weighted by the reward spec) and
T_i turns, t = 0..T_i-1. ``GN`` normalises within a set of values::

    GN(x) = (x - mean(x)) / (std(x, ddof=1) + eps)      # sample std, as TRL's GRPOTrainer does

and is 0 when the set has fewer than two values or no variance (never NaN).

- ``grpo``:        A_{i,t} = GN(R)_i                                      (one value per episode)
- ``mt_grpo``:     A_{i,t} = GN(R)_i + lam * sum_{k>=t} GN_k(r_{.,k})_i    (normalise, then sum)
- ``gtpo_hybrid``: G_{i,t} = sum_{k=t}^{T_i-1} gamma^(k-t) r_{i,k} + gamma^(T_i-t) R_i
                   A_{i,t} = GN_t(G_{.,t})_i + lam * GN(R)_i              (sum, then normalise)
                   (the seed paper's Eq. 2: the outcome arrives one step after the last turn, so
                   the last turn sees gamma * R_i)

``turn_norm`` picks the set behind GN_k / GN_t: ``index`` = the group's episodes that reach turn t;
``pooled`` = every turn of every episode in the group. The two orders (normalise-then-sum vs
sum-then-normalise) do not commute; docs/advantages.md works through an example where they give a
turn advantages of opposite sign.

Implementation: episodes are ragged, so values live in a padded matrix ``[E, T_max]`` with a
validity mask; group statistics are ``bincount`` reductions over integer set keys, so there is no
Python loop over episodes or groups (only over turn positions for the discounted return).
"""

from __future__ import annotations

from collections.abc import Callable, Sequence
from dataclasses import dataclass

import numpy as np

TURN_NORMS = ("index", "pooled")
DEFAULT_GAMMA = 0.9  # the seed paper's discount for gtpo_hybrid
GAMMA_RANGE = (0.0, 1.0)  # inclusive: 0 leaves each turn its own reward (the outcome only through lambda)
DEFAULT_EPS = 1e-4  # TRL's GRPOTrainer adds 1e-4 to the std

FullForm = Callable[..., np.ndarray]
SignalForm = Callable[..., np.ndarray]


@dataclass(frozen=True)
class AdvantageMode:
    """One advantage mode of the registry (see the module docstring for the two forms' signatures)."""

    name: str
    full: FullForm
    signal_only: SignalForm | None
    default_lambda: float
    description: str = ""

    @property
    def uses_turn_rewards(self) -> bool:
        return self.signal_only is not None


_MODES: dict[str, AdvantageMode] = {}


def register_mode(name: str, *, default_lambda: float, signal_only: SignalForm | None = None,
                  description: str = "", replace: bool = False) -> Callable[[FullForm], FullForm]:
    """Decorator: register ``fn`` as the full form of advantage mode ``name``.

    ``signal_only``: the mode's advantage of one turn signal alone (None: the mode ignores turn
    rewards). Registering a taken name raises unless ``replace`` (a plug-in must not shadow a built-in
    by accident)."""
    if not name or not isinstance(name, str):
        raise ValueError(f"advantage mode name {name!r}: expected a non-empty string")
    if not np.isfinite(default_lambda):
        raise ValueError(f"default_lambda={default_lambda}: expected a finite number")

    def deco(fn: FullForm) -> FullForm:
        if name in _MODES and not replace:
            raise ValueError(f"advantage mode {name!r} is already registered (pass replace=True to override it)")
        _MODES[name] = AdvantageMode(name, fn, signal_only, float(default_lambda), description)
        return fn

    return deco


def unregister_mode(name: str) -> None:
    """Remove a registered mode (for plug-ins and tests; the built-ins are needed by calib itself)."""
    _MODES.pop(name, None)


def get_mode(name: str) -> AdvantageMode:
    """The registered mode ``name``, or a ValueError that lists the registered ones."""
    try:
        return _MODES[name]
    except (KeyError, TypeError):
        raise ValueError(f"mode={name!r}: expected one of {', '.join(mode_names())}") from None


def mode_names() -> tuple[str, ...]:
    """Every registered advantage mode, in registration order (the built-ins first)."""
    return tuple(_MODES)


def signal_mode_names() -> tuple[str, ...]:
    """The modes in which turn rewards reach the advantage (those with a signal-only form)."""
    return tuple(n for n, m in _MODES.items() if m.uses_turn_rewards)


def default_lambda(mode: str) -> float:
    """The mode's lambda when a spec or a call gives none."""
    return get_mode(mode).default_lambda


def check_gamma(gamma: float) -> float:
    """``gamma`` if it is a discount in :data:`GAMMA_RANGE`, else a ValueError saying the range."""
    lo, hi = GAMMA_RANGE
    if not (isinstance(gamma, (int, float)) and np.isfinite(gamma) and lo <= gamma <= hi):
        raise ValueError(f"gamma={gamma}: expected a discount in [{lo:g}, {hi:g}]")
    return float(gamma)


def check_turn_norm(turn_norm: str) -> str:
    if turn_norm not in TURN_NORMS:
        raise ValueError(f"turn_norm={turn_norm!r}: expected one of {', '.join(TURN_NORMS)}")
    return turn_norm


def group_normalize(x: np.ndarray, keys: np.ndarray, *, eps: float = DEFAULT_EPS) -> np.ndarray:
    """GN over the sets that ``keys`` defines: ``(x - mean) / (std_ddof1 + eps)`` within each key.

    ``x`` and ``keys`` are flat arrays of the same length; ``keys`` are integers >= 0. A set with fewer
    than two values, or whose values are all equal, gives 0: such a set carries no preference, and a
    0 instead of 0/eps keeps float noise in the mean from turning into a large advantage.
    """
    x = np.asarray(x, dtype=np.float64)  # (N,)
    keys = np.asarray(keys, dtype=np.int64)  # (N,)
    if x.size == 0:
        return np.zeros(0)
    n_keys = int(keys.max()) + 1
    count = np.bincount(keys, minlength=n_keys)  # (K,)
    mean = np.bincount(keys, weights=x, minlength=n_keys) / np.maximum(count, 1)  # (K,)
    dev = x - mean[keys]  # (N,)  two-pass variance: stable where sum-of-squares is not
    var = np.bincount(keys, weights=dev * dev, minlength=n_keys) / np.maximum(count - 1, 1)  # (K,)
    std = np.sqrt(var)  # (K,)
    informative = (count >= 2) & varies_within(x, keys, n_keys)  # (K,)
    denom = np.where(informative, std + eps, 1.0)  # (K,)  never divide by 0 (eps may be 0)
    return np.where(informative[keys], dev / denom[keys], 0.0)  # (N,)


def varies_within(x: np.ndarray, keys: np.ndarray, n_keys: int) -> np.ndarray:
    """Per key [n_keys]: does any value of that set differ from another one of the same set?

    The "no variance" test behind :func:`group_normalize`, decided exactly (not ``std > tol``), so
    that float noise never makes a constant set informative. Public because the analysis asks the
    same question (``dead_share``) and must answer it as the trainer does. ``x`` and ``keys`` are
    flat arrays of one length; keys are integers in ``[0, n_keys)``; a key with no value is False.
    """
    x = np.asarray(x, dtype=np.float64)  # (N,)
    keys = np.asarray(keys, dtype=np.int64)  # (N,)
    # Fancy assignment with repeated keys stores one of the set's values; any member will do.
    ref = np.empty(n_keys)
    ref[keys] = x
    return np.bincount(keys, weights=(x != ref[keys]).astype(np.float64), minlength=n_keys) > 0  # (K,)


def _pad(turn_rewards: Sequence[Sequence[float]]) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """Ragged per-episode rewards -> (rewards [E, T_max], valid [E, T_max] bool, lengths [E])."""
    lengths = np.fromiter((len(r) for r in turn_rewards), dtype=np.int64, count=len(turn_rewards))  # (E,)
    t_max = int(lengths.max()) if lengths.size else 0
    valid = np.arange(t_max)[None, :] < lengths[:, None]  # (E, T_max): each row is a prefix
    padded = np.zeros(valid.shape)  # (E, T_max)
    if lengths.sum():
        # Boolean assignment fills row-major, i.e. episode by episode: the concatenation's order.
        padded[valid] = np.concatenate([np.asarray(r, dtype=np.float64).ravel() for r in turn_rewards])
    return padded, valid, lengths


def _normalize_turns(
    x: np.ndarray, valid: np.ndarray, g: np.ndarray, turn_norm: str, eps: float
) -> np.ndarray:
    """GN of a padded [E, T_max] matrix: per (group, turn index) or per group (pooled); 0 off ``valid``."""
    t_max = x.shape[1]
    rows, cols = np.nonzero(valid)  # (N,) each: one entry per real turn
    if turn_norm == "index":
        keys = g[rows] * t_max + cols  # set = (group, turn index): episodes that reach turn t
    else:
        keys = g[rows]  # set = every turn of the group
    out = np.zeros_like(x)  # (E, T_max)
    out[rows, cols] = group_normalize(x[rows, cols], keys, eps=eps)
    return out


def _discounted_return(rewards: np.ndarray, gamma: float) -> np.ndarray:
    """G_t = r_t + gamma * G_{t+1} along axis 1 of a zero-padded [E, T_max] matrix.

    Loops over turn positions (T_max is tens), vectorised over episodes; padding is 0, so an
    episode's return starts at its own last turn.
    """
    returns = np.zeros_like(rewards)  # (E, T_max)
    running = np.zeros(rewards.shape[0])  # (E,)
    for t in range(rewards.shape[1] - 1, -1, -1):
        running = rewards[:, t] + gamma * running
        returns[:, t] = running
    return returns


def _check(outcome, turn_rewards, group, mode, gamma, lam, turn_norm, eps) -> None:
    """Raise ValueError naming the argument that is wrong."""
    get_mode(mode)
    check_turn_norm(turn_norm)
    check_gamma(gamma)
    if lam is not None and not np.isfinite(lam):
        raise ValueError(f"lam={lam}: expected a finite number (or None for the mode's default)")
    if not eps >= 0.0:
        raise ValueError(f"eps={eps}: expected a number >= 0")
    if outcome.ndim != 1:
        raise ValueError(f"outcome: expected a 1-D array [E], got shape {outcome.shape}")
    if not (len(turn_rewards) == outcome.shape[0] == len(group)):
        raise ValueError(
            f"outcome, turn_rewards and group must have one entry per episode; got "
            f"{outcome.shape[0]}, {len(turn_rewards)} and {len(group)}"
        )
    if not np.isfinite(outcome).all():
        raise ValueError("outcome: contains NaN or inf; every episode needs a finite outcome")


def turn_advantages(
    outcome,
    turn_rewards,
    group,
    *,
    mode: str = "gtpo_hybrid",
    gamma: float = DEFAULT_GAMMA,
    lam: float | None = None,
    turn_norm: str = "index",
    eps: float = DEFAULT_EPS,
) -> list[np.ndarray]:
    """Each turn's advantage, for every episode of a batch of groups.

    outcome: float array [E]; turn_rewards: E float arrays, one value per turn (length T_i);
    group: array [E] of group ids (any hashable, sortable ids); lam=None means the mode's default
    (mt_grpo 1.0, gtpo_hybrid 0.3; grpo ignores it). Returns E float arrays of length T_i.
    """
    R = np.asarray(outcome, dtype=np.float64)  # (E,)
    _check(R, turn_rewards, group, mode, gamma, lam, turn_norm, eps)
    spec = get_mode(mode)
    lam = spec.default_lambda if lam is None else float(lam)
    r, valid, lengths = _pad(turn_rewards)  # (E, T_max), (E, T_max), (E,)
    if not np.isfinite(r).all():
        raise ValueError("turn_rewards: contains NaN or inf; fill missing signal values (e.g. with 0) first")
    _, g = np.unique(np.asarray(group), return_inverse=True)  # (E,) dense group index
    g = g.reshape(-1).astype(np.int64)
    adv = spec.full(R, r, valid, lengths, g, gamma=gamma, lam=lam, turn_norm=turn_norm, eps=eps)  # (E, T_max)
    flat = np.asarray(adv, dtype=np.float64)[valid]  # (sum T_i,)  row-major = episode order
    ends = np.cumsum(lengths).tolist()  # slicing, not np.split: ~10x less per episode at 100k episodes
    return [flat[a:b].copy() for a, b in zip([0, *ends[:-1]], ends)]


def signal_turn_advantages(
    values,
    lengths,
    group,
    *,
    mode: str = "gtpo_hybrid",
    gamma: float = DEFAULT_GAMMA,
    lam: float | None = None,
    turn_norm: str = "index",
    eps: float = DEFAULT_EPS,
) -> np.ndarray:
    """Flat [N] turn advantages that one signal alone (outcome 0) produces, from flat data.

    values: [N] per-turn rewards sorted by (episode, turn); lengths: [E] turns per episode; group:
    [E] group ids. Same result as ``np.concatenate(turn_advantages(zeros, ragged values, group, ...))``
    (a test checks it to 1e-12), without the 2 x E small arrays the list-of-arrays interface costs at
    100k episodes; it lives here, next to :func:`turn_advantages`, so the analysis's view of a signal
    cannot drift from the trainer's formula. With R = 0 the outcome terms vanish:
    mt_grpo: A = lam * sum_{k>=t} GN_k(r);  gtpo_hybrid: A = GN_t(sum_{k>=t} gamma^(k-t) r_k).
    ``grpo`` ignores turn rewards, so it is not accepted.
    """
    spec = get_mode(mode)
    if spec.signal_only is None:
        raise ValueError(f"mode={mode!r}: expected one of {', '.join(signal_mode_names())} (it ignores turn rewards)")
    lam = spec.default_lambda if lam is None else float(lam)
    v = np.asarray(values, dtype=np.float64)  # (N,)
    lengths = np.asarray(lengths, dtype=np.int64)  # (E,)
    _, g = np.unique(np.asarray(group), return_inverse=True)
    g = g.reshape(-1).astype(np.int64)  # (E,)
    ep = np.repeat(np.arange(lengths.size), lengths)  # (N,) episode of each flat turn
    t = np.arange(ep.size) - (np.cumsum(lengths) - lengths)[ep]  # (N,) turn index within its episode
    t_max = int(lengths.max()) if lengths.size else 0
    r = np.zeros((lengths.size, t_max))  # (E, T_max)
    r[ep, t] = v
    valid = np.zeros(r.shape, dtype=bool)
    valid[ep, t] = True
    adv = spec.signal_only(r, valid, g, gamma=gamma, lam=lam, turn_norm=turn_norm, eps=eps)  # (E, T_max)
    return adv[ep, t]  # (N,)


# ------------------------------------------------------------------------------- the built-in modes
# lambda defaults: mt_grpo adds the summed normalised turn rewards at full weight (Zeng et al. 2025,
# as the seed describes it); gtpo_hybrid adds 0.3 x the GRPO outcome advantage (the seed paper's hybrid).


def _outcome_advantage(R: np.ndarray, g: np.ndarray, eps: float) -> np.ndarray:
    return group_normalize(R, g, eps=eps) if R.size else np.zeros(0)  # (E,)  GN(R)


def _mt_grpo_signal(r, valid, g, *, gamma, lam, turn_norm, eps) -> np.ndarray:
    """mt_grpo with R = 0: lam * sum_{k>=t} GN_k(r_{.,k})."""
    z = _normalize_turns(r, valid, g, turn_norm, eps)  # (E, T_max)  GN_k(r_{.,k})
    return lam * np.cumsum(z[:, ::-1], axis=1)[:, ::-1]  # (E, T_max)  sum_{k>=t}; padding adds 0


def _gtpo_hybrid_signal(r, valid, g, *, gamma, lam, turn_norm, eps) -> np.ndarray:
    """gtpo_hybrid with R = 0: GN_t(sum_{k>=t} gamma^(k-t) r_k)."""
    return _normalize_turns(_discounted_return(r, gamma), valid, g, turn_norm, eps)


@register_mode("grpo", default_lambda=0.0, description="GN(R) on every turn: the outcome only")
def _grpo(R, r, valid, lengths, g, *, gamma, lam, turn_norm, eps) -> np.ndarray:
    return np.broadcast_to(_outcome_advantage(R, g, eps)[:, None], r.shape)  # (E, T_max)


@register_mode("mt_grpo", default_lambda=1.0, signal_only=_mt_grpo_signal,
               description="GN(R) + lam * sum_{k>=t} GN_k(r): normalise, then sum")
def _mt_grpo(R, r, valid, lengths, g, *, gamma, lam, turn_norm, eps) -> np.ndarray:
    to_go = _mt_grpo_signal(r, valid, g, gamma=gamma, lam=1.0, turn_norm=turn_norm, eps=eps)
    return _outcome_advantage(R, g, eps)[:, None] + lam * to_go  # (E, T_max)


@register_mode("gtpo_hybrid", default_lambda=0.3, signal_only=_gtpo_hybrid_signal,
               description="GN_t(discounted return incl. gamma^(T-t) R) + lam * GN(R): sum, then normalise "
                           "(the seed paper's Eq. 2)")
def _gtpo_hybrid(R, r, valid, lengths, g, *, gamma, lam, turn_norm, eps) -> np.ndarray:
    r_out = r.copy()  # (E, T_max)
    has_turns = lengths > 0
    # The outcome arrives one step after the last turn (the paper's Eq. 2): add gamma * R_i to
    # r_{i,T_i-1}, then discount backwards, which gives gamma^(T_i-t) R_i at turn t.
    r_out[np.nonzero(has_turns)[0], lengths[has_turns] - 1] += gamma * R[has_turns]
    return _gtpo_hybrid_signal(r_out, valid, g, gamma=gamma, lam=lam, turn_norm=turn_norm, eps=eps) \
        + lam * _outcome_advantage(R, g, eps)[:, None]  # (E, T_max)


# Back-compatible names (read the registry for anything a user may have added).
ADVANTAGE_MODES = ("grpo", "mt_grpo", "gtpo_hybrid")  # the built-ins
SIGNAL_MODES = ("mt_grpo", "gtpo_hybrid")
DEFAULT_LAMBDA = {m: _MODES[m].default_lambda for m in ADVANTAGE_MODES}


def expand_to_tokens(
    turn_adv: Sequence[Sequence[float]],
    spans: Sequence[Sequence[tuple[int, int]]],
    length: int,
) -> tuple[np.ndarray, np.ndarray]:
    """Spread each turn's advantage over that turn's tokens: (advantages [B, T], mask [B, T]).

    turn_adv: B arrays, one advantage per turn; spans: B lists with one ``(start, end)`` (end
    exclusive) per turn, indices into the completion tokens; length: T. Agent tokens inside a span
    get their turn's advantage and mask 1; everything else (system, user and tool tokens, padding)
    gets 0 and mask 0, so the environment's text never enters the loss. Spans past ``length``
    (truncated completions) are clipped. Spans of one row must not overlap.
    """
    if len(turn_adv) != len(spans):
        raise ValueError(
            f"turn_adv and spans: expected one entry per row, got {len(turn_adv)} and {len(spans)}"
        )
    if length < 0:
        raise ValueError(f"length={length}: expected >= 0")
    n_rows = len(spans)
    counts = np.fromiter((len(s) for s in spans), dtype=np.int64, count=n_rows)  # (B,)
    adv_counts = np.fromiter((len(a) for a in turn_adv), dtype=np.int64, count=n_rows)  # (B,)
    bad = np.nonzero(counts != adv_counts)[0]
    if bad.size:
        b = int(bad[0])
        raise ValueError(
            f"row {b}: {adv_counts[b]} turn advantages but {counts[b]} spans; expected one span per turn"
        )
    advantages = np.zeros((n_rows, length))  # (B, T)
    mask = np.zeros((n_rows, length), dtype=bool)  # (B, T)
    if counts.sum() == 0:
        return advantages, mask

    flat_spans = np.asarray([se for s in spans for se in s], dtype=np.int64).reshape(-1, 2)  # (S, 2)
    values = np.concatenate([np.asarray(a, dtype=np.float64).ravel() for a in turn_adv])  # (S,)
    rows = np.repeat(np.arange(n_rows), counts)  # (S,)
    start, end = flat_spans[:, 0], flat_spans[:, 1]
    if (start > end).any() or (start < 0).any():
        k = int(np.nonzero((start > end) | (start < 0))[0][0])
        raise ValueError(f"spans: span ({start[k]}, {end[k]}) of row {rows[k]} is not a valid [start, end)")
    order = np.lexsort((start, rows))  # sort spans by (row, start) to check overlaps
    same_row = rows[order][1:] == rows[order][:-1]
    if (same_row & (start[order][1:] < end[order][:-1])).any():
        raise ValueError("spans: two spans of one row overlap; each token belongs to at most one turn")

    start, end = np.clip(start, 0, length), np.clip(end, 0, length)
    # Mark each token with (its span's index + 1) via a difference array: +id at start, -id at end,
    # then a cumulative sum; integer arithmetic, so values are exact (no float residue off-span).
    span_id = np.arange(1, len(values) + 1)  # (S,)
    marks = np.zeros((n_rows, length + 1), dtype=np.int64)  # (B, T+1)
    np.add.at(marks, (rows, start), span_id)
    np.add.at(marks, (rows, end), -span_id)
    token_span = np.cumsum(marks, axis=1)[:, :length]  # (B, T)  0 = no agent turn
    mask = token_span > 0
    advantages[mask] = values[token_span[mask] - 1]
    return advantages, mask
