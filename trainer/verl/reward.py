"""The reward side on verl: a verl trajectory's per-turn rewards from a calib reward spec.

A verl multi-turn trajectory is a prompt and a response of token ids; decoded, they are chat-template
text, which ``calib.ingest.verl.sample_to_native`` (the conversion ``calib ingest --format verl``
uses) turns into an episode record: messages split by the chat template's markers, tool calls parsed
in the hermes format that verl's ``ToolAgentLoop`` uses. From the messages, calib computes each spec
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

from calib.ingest.verl import sample_to_native
from calib.tools import ToolCatalogue, airline_catalogue
from trainer.rewards import episode_signal_values, episode_turn_rewards
from trainer.verl import layout


def trajectory_episode(input_text: str, output_text: str, *, outcome: float = 0.0, template: str = "chatml",
                       run_id: str = "verl", step: int = 0) -> dict[str, Any]:
    """A native episode record (docs/architecture.md section 2) of one decoded verl trajectory: the
    record ``calib ingest --format verl`` makes of the same sample (one conversion, so the reward side
    and the analysis read the same turns)."""
    return sample_to_native({"input": input_text, "output": output_text, "score": float(outcome), "step": step},
                            run_id=run_id, template=template)


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
