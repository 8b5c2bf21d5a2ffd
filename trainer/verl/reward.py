"""The reward side on verl: a verl trajectory's per-turn rewards from a calib reward spec.

A verl multi-turn trajectory is a prompt and a response of token ids; decoded, they are chat-template
text (``calib.ingest.chat_text.split_verl_sample`` splits it into messages, with tool calls parsed in
the hermes format that verl's ``ToolAgentLoop`` uses). From the messages, calib computes each spec
signal on each assistant turn with the functions ``calib train`` uses (``trainer.rewards``: the same
numbers ``calib analyze`` stores for the episode), weights them by the spec, and lays them out with
the outcome in verl's ``token_level_rewards`` (:mod:`trainer.verl.layout`) for the calib estimators.

The outcome is the user's: a verl reward function's score (``compute_score``), or the environment's
reward, scaled by the spec's ``outcome.weight``.
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

import numpy as np
import torch

from calib.ingest.chat_text import split_verl_sample
from calib.records import content_hash
from calib.tools import ToolCatalogue, airline_catalogue
from trainer.rewards import episode_signal_values, episode_turn_rewards
from trainer.verl import layout


def trajectory_episode(input_text: str, output_text: str, *, outcome: float = 0.0, template: str = "chatml",
                       task_id: str | None = None, group_id: str | None = None, run_id: str = "verl",
                       episode_id: str | None = None) -> dict[str, Any]:
    """A native episode record (docs/architecture.md section 2) of one decoded verl trajectory."""
    messages = split_verl_sample(input_text, output_text, template=template)
    rec: dict[str, Any] = {"run_id": run_id, "task_id": task_id or content_hash(input_text)[:16],
                           "outcome": float(outcome), "success": bool(outcome > 0), "messages": messages}
    if group_id is not None:
        rec["group_id"] = group_id
    rec["episode_id"] = episode_id or content_hash(input_text + "\x00" + output_text)[:32]
    return rec


def turn_signal_values(input_text: str, output_text: str, signals: Sequence[str], *,
                       catalogue: ToolCatalogue | None = None, template: str = "chatml") -> dict[str, np.ndarray]:
    """``{signal: values [T]}`` on the trajectory's assistant turns (NaN where a signal does not apply)."""
    ep = trajectory_episode(input_text, output_text, template=template)
    return episode_signal_values(ep, list(signals), catalogue or airline_catalogue())


def turn_rewards(input_text: str, output_text: str, spec: Any, *, catalogue: ToolCatalogue | None = None,
                 template: str = "chatml") -> np.ndarray:
    """The spec's weighted per-turn rewards [T] of one trajectory (what the estimators read)."""
    ep = trajectory_episode(input_text, output_text, template=template)
    return episode_turn_rewards(ep, spec.turn_weights(), catalogue or airline_catalogue())


def token_level_rewards(turn_reward_rows: Sequence[Sequence[float]], outcomes: Sequence[float], spec: Any,
                        response_mask: torch.Tensor) -> torch.Tensor:
    """verl's ``token_level_rewards`` [B, L] in calib's layout: each row's turn rewards on its turns'
    first tokens, ``outcome.weight * outcome`` on its last assistant token. The number of turns of a
    row must equal its runs of ``response_mask == 1`` (the decoded text and the mask describe the
    same trajectory), else :class:`trainer.verl.layout.LayoutError`."""
    w = float(spec.outcome.weight)
    return layout.pack(turn_reward_rows, [w * float(o) for o in outcomes], response_mask)
