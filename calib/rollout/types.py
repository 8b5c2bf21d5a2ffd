"""The types that cross the rollout boundary: what the runner hands its caller (the store, the trainer).

Like tau2-bench's data model, the boundary objects have declared fields instead of free dicts.
``TypedDict`` rather than dataclasses because these records are JSON: they are written to the store,
exported, re-ingested and compared as plain dicts, and the types only name what is in them.

Persisted or not: :class:`EpisodeRecord` is exactly what the store keeps (``PERSISTED_FIELDS``, the
native record of docs/architecture.md section 2); :class:`Episode` adds the runner-private
``_turn_meta`` (per assistant turn, what the policy reported about its generation: the trainer's
token ids and log-probabilities), which ``strip_private`` removes before the store sees the record.
"""

from __future__ import annotations

from typing import Any, TypedDict


class ToolCall(TypedDict):
    """One tool call of an assistant message (canonical form; ``arguments`` parsed)."""

    id: str
    name: str
    arguments: dict[str, Any]


class Message(TypedDict, total=False):
    """One message: ``role`` is system | user | assistant | tool. Persisted (inside ``messages``)."""

    role: str
    content: str
    tool_calls: list[ToolCall]
    tool_call_id: str
    name: str
    invalid: bool  # an assistant turn whose tool call could not be parsed (its raw text in content)


class TurnMeta(TypedDict, total=False):
    """What a policy reports about one generation (``_meta`` of its reply). Not persisted as such: the
    trainer copies what it needs to rebuild a training sequence into ``info`` (raw texts, stop flags,
    generated ids)."""

    text: str
    prompt_ids: list[int]
    completion_ids: list[int]
    logprobs: list[float]


class EpisodeRecord(TypedDict):
    """One episode as the store keeps it (the native record)."""

    episode_id: str
    run_id: str
    iteration: int
    task_id: str
    group_id: str
    policy: str
    outcome: float
    success: bool
    status: str  # ok | error
    messages: list[Message]
    expected_actions: list[dict[str, Any]]
    info: dict[str, Any]  # reward details, progress, termination, seed, sample; the trainer adds step


class Episode(EpisodeRecord, total=False):
    """What :func:`calib.rollout.play_episode` returns: the record plus runner-private per-turn data."""

    _turn_meta: list[TurnMeta | None]  # one entry per assistant turn; None where the policy reported nothing


PERSISTED_FIELDS: tuple[str, ...] = tuple(EpisodeRecord.__annotations__)
PRIVATE_FIELDS: tuple[str, ...] = ("_turn_meta",)
