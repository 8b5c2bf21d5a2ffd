"""What the trainer's rollout hands TRL: :class:`RolloutBatch` (one list entry per episode of the step).

TRL's ``rollout_func`` contract fixes the first four keys (``prompt_ids``, ``completion_ids``,
``logprobs``, ``env_mask``: token lists of equal length per row); TRL passes every other key through
to ``_generate_and_score_completions``, where calib's advantages read the ``calib_*`` keys. None of
this is persisted: the episodes themselves go to the store as
:class:`calib.rollout.types.EpisodeRecord`, with ``info.step`` and ``info.reward_spec``.
"""

from __future__ import annotations

from typing import TypedDict


class RolloutBatch(TypedDict):
    prompt_ids: list[list[int]]
    completion_ids: list[list[int]]  # agent and environment tokens of the whole conversation after the prompt
    logprobs: list[list[float]]  # sampling log-probabilities, 0 on environment tokens
    env_mask: list[list[int]]  # 1 on agent tokens (in the loss), 0 on user and tool tokens
    calib_outcome: list[float]  # the episode's outcome as the environment scored it
    calib_R: list[float]  # outcome.weight * outcome: the R of the advantage formulas
    calib_turn_rewards: list[list[float]]  # the spec's weighted turn rewards, one per assistant turn
    calib_group: list[str]  # the GRPO group; an error episode gets a group of its own
    calib_spans: list[list[list[int]] | None]  # each assistant turn's [start, end) in completion_ids
    calib_success: list[float]
    calib_drift: list[int]  # turns whose sampled ids are not the canonical tokenisation of their text
    calib_episode_id: list[str]
