"""The typed boundaries (issue 25, item 3): the rollout runner's episode and the trainer's rollout batch
have declared fields, and the persisted ones are exactly what the store keeps."""

from __future__ import annotations

import asyncio

from calib.envs import load_domain
from calib.policies.oracle import OraclePolicy
from calib.rollout.runner import RolloutConfig, play_episode, strip_private
from calib.rollout.types import PERSISTED_FIELDS, PRIVATE_FIELDS, Episode, EpisodeRecord
from calib.store import schema


def test_persisted_fields_are_the_stores_columns():
    stored = set(schema.EPISODES.names)
    assert set(PERSISTED_FIELDS) <= stored  # every record field has a column
    # the rest are the store's own bookkeeping, derived at ingest
    assert stored - set(PERSISTED_FIELDS) == {"n_turns", "content_hash", "source", "source_line", "ingest_id"}
    assert not set(PRIVATE_FIELDS) & stored


def test_a_played_episode_has_exactly_the_declared_fields():
    from calib.envs.users.scripted import ScriptedUser

    domain = load_domain("airline-mini")
    task = domain.tasks[0]
    ep: Episode = asyncio.run(play_episode(domain, OraclePolicy(), ScriptedUser(), task, sample=0,
                                           cfg=RolloutConfig(samples=1, max_turns=6)))
    declared = set(Episode.__annotations__)
    assert set(ep) <= declared and set(EpisodeRecord.__annotations__) <= set(ep)
    record = strip_private(ep)
    assert set(record) == set(PERSISTED_FIELDS)


def test_the_rollout_batch_declares_what_the_trainer_returns():
    import ast
    from pathlib import Path

    from trainer.types import RolloutBatch

    src = (Path(__file__).resolve().parents[1] / "trainer" / "grpo.py").read_text()
    fn = next(n for n in ast.walk(ast.parse(src)) if isinstance(n, ast.FunctionDef) and n.name == "_rollout")
    ret = next(n for n in ast.walk(fn) if isinstance(n, ast.Return))
    keys = {k.value for k in ret.value.keys}  # the dict literal the rollout returns
    assert keys == set(RolloutBatch.__annotations__)
