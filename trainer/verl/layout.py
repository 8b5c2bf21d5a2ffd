"""calib's token layout in verl's ``token_level_rewards`` (docs/verl.md, "The token layout").

verl hands an advantage estimator one tensor of rewards per token and the ``response_mask`` (1 on
tokens the model generated, 0 on tool and user tokens and on padding), nothing else. A multi-turn
trajectory is one row: its **assistant turns are the runs of ``response_mask == 1``**, in order. To
carry calib's per-turn rewards and the outcome through that one tensor:

- turn t's reward sits on the **first token** of run t;
- the outcome sits on the **last assistant token** (the last token with ``response_mask == 1``);
- every other token holds 0.

The two cannot collide when the last turn has two tokens or more, which a chat model's turn has
(its text, then the end-of-turn token). A last turn of one token (an empty reply, the end-of-turn
token alone) carries the outcome only: its turn reward is 0 by the layout, and :func:`pack` refuses
a non-zero one rather than let the two share the token. Anything else (a reward on a tool token, on a
turn's middle, on trailing padding: verl's own scalar placement on a trajectory that ends with a
tool message, or a per-token KL penalty from ``algorithm.use_kl_in_reward``) is refused with one
line that names the row and the token, rather than read as something it is not.

Pure torch, no verl import: :func:`pack` builds the layout (what calib's reward side writes),
:func:`unpack` reads it back (what the estimators read), :func:`expand` spreads per-turn advantages
over each turn's tokens.
"""

from __future__ import annotations

from collections.abc import Sequence

import numpy as np
import torch

from calib.advantages import expand_to_tokens
from calib.errors import CalibError

DOC = "docs/verl.md#the-token-layout"


class LayoutError(CalibError):
    """token_level_rewards or response_mask do not follow calib's layout."""


def turn_runs(mask_row: torch.Tensor) -> list[tuple[int, int]]:
    """``[(start, end), ...]``: the runs of ``mask_row == 1`` (end exclusive), i.e. the assistant turns."""
    m = (mask_row != 0).to(torch.int8).cpu()
    edges = torch.diff(torch.cat([m.new_zeros(1), m, m.new_zeros(1)]))  # +1 at a start, -1 after an end
    starts = torch.nonzero(edges == 1).flatten().tolist()
    ends = torch.nonzero(edges == -1).flatten().tolist()
    return list(zip(starts, ends))


def pack(turn_rewards: Sequence[Sequence[float]], outcome: Sequence[float], response_mask: torch.Tensor,
         *, dtype: torch.dtype = torch.float32) -> torch.Tensor:
    """``token_level_rewards`` [B, L] in calib's layout from each row's per-turn rewards and outcome."""
    if response_mask.dim() != 2:
        raise LayoutError(f"response_mask should be [batch, tokens], got shape {tuple(response_mask.shape)}")
    if len(turn_rewards) != response_mask.shape[0] or len(outcome) != response_mask.shape[0]:
        raise LayoutError(f"{len(turn_rewards)} rows of turn rewards and {len(outcome)} outcomes for "
                          f"{response_mask.shape[0]} rows of response_mask")
    out = torch.zeros(response_mask.shape, dtype=dtype)
    for i, (rewards, runs) in enumerate(zip(turn_rewards, (turn_runs(row) for row in response_mask))):
        if not runs:
            raise LayoutError(f"row {i}: response_mask has no assistant token ({DOC})")
        if len(rewards) != len(runs):
            raise LayoutError(f"row {i}: {len(rewards)} turn rewards for {len(runs)} assistant turns "
                              f"(runs of response_mask == 1) ({DOC})")
        if runs[-1][1] - runs[-1][0] < 2 and rewards[-1] != 0:
            raise LayoutError(f"row {i}: the last assistant turn has one token, which holds the outcome; its turn "
                              f"reward ({rewards[-1]:g}) must be 0 ({DOC})")
        for (start, _), r in zip(runs, rewards):
            out[i, start] += float(r)
        out[i, runs[-1][1] - 1] += float(outcome[i])
    return out.to(response_mask.device)


def unpack(token_level_rewards: torch.Tensor, response_mask: torch.Tensor, *, turn_rewards: bool = True
           ) -> tuple[np.ndarray, list[np.ndarray], list[list[tuple[int, int]]]]:
    """``(outcome [B], per-turn rewards: B arrays, runs per row)`` from calib's layout.

    With ``turn_rewards=False`` (a mode that ignores them, ``calib_grpo``) only the outcome is read;
    turn-start values must still be 0. A one-token last turn's value is the outcome (its turn reward
    is 0 by the layout)."""
    if token_level_rewards.shape != response_mask.shape or token_level_rewards.dim() != 2:
        raise LayoutError(f"token_level_rewards {tuple(token_level_rewards.shape)} and response_mask "
                          f"{tuple(response_mask.shape)} should be the same [batch, tokens] shape")
    rewards = token_level_rewards.detach().to(torch.float64).cpu().numpy()
    if not np.isfinite(rewards).all():
        i, p = (int(x) for x in np.argwhere(~np.isfinite(rewards))[0])
        raise LayoutError(f"token_level_rewards[{i}, {p}] is {rewards[i, p]}: rewards must be finite")
    outcome = np.zeros(rewards.shape[0])
    per_turn: list[np.ndarray] = []
    all_runs: list[list[tuple[int, int]]] = []
    for i, row in enumerate(response_mask):
        runs = turn_runs(row)
        if not runs:
            raise LayoutError(f"row {i}: response_mask has no assistant token, so there is no turn to "
                              f"credit ({DOC})")
        last = runs[-1][1] - 1
        starts = [s for s, _ in runs]
        allowed = np.zeros(rewards.shape[1], dtype=bool)
        allowed[starts] = True
        allowed[last] = True
        stray = np.flatnonzero((rewards[i] != 0) & ~allowed)
        if stray.size:
            p = int(stray[0])
            where = ("after the last assistant turn (verl puts a scalar score on the last response token, "
                     "here a tool or user message or padding: use calib's reward side, which puts the outcome "
                     "on the last assistant token)" if p > last else
                     "on a tool or user token" if not bool(row[p]) else "inside an assistant turn, not on its first token")
            raise LayoutError(f"token_level_rewards[{i}, {p}] = {rewards[i, p]:g} sits {where}; calib's layout has "
                              f"each turn's reward on its first token and the outcome on the last assistant token "
                              f"(is algorithm.use_kl_in_reward on? use the KL loss instead) ({DOC})")
        outcome[i] = rewards[i, last]
        turn = rewards[i, starts].copy()
        if last == starts[-1]:
            turn[-1] = 0.0  # a one-token last turn: its value is the outcome
        if not turn_rewards and np.any(turn != 0):
            k = int(np.flatnonzero(turn != 0)[0])
            raise LayoutError(f"row {i}: turn {k} has a reward ({turn[k]:g}) but this estimator ignores turn "
                              f"rewards: use calib_mt_grpo or calib_gtpo_hybrid, or a spec without turn rewards")
        per_turn.append(turn)
        all_runs.append(runs)
    return outcome, per_turn, all_runs


def expand(turn_adv: Sequence[np.ndarray], runs: Sequence[Sequence[tuple[int, int]]], like: torch.Tensor
           ) -> torch.Tensor:
    """Token advantages shaped like ``like``: each turn's advantage on every token of its run, 0 elsewhere
    (``calib.advantages.expand_to_tokens``, what ``calib train`` uses, with the runs as the turn spans)."""
    adv, _ = expand_to_tokens(turn_adv, runs, like.shape[1])
    dtype = like.dtype if like.is_floating_point() else torch.float32
    return torch.as_tensor(adv, dtype=dtype).to(device=like.device)
