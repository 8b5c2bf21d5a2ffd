"""The synthetic testbed: episode rules, signals, scripted policies, native records, planted relations."""

from __future__ import annotations

import numpy as np
import pytest

from calib.analysis import metrics as M
from calib.envs.testbed import (
    SIGNALS,
    SyntheticConfig,
    action_names,
    make_tasks,
    oracle_table,
    rollout,
    uniform_table,
)
from calib.records import normalize_episode
from calib.signals.builtin import episode_signals
from calib.tools import airline_catalogue

CFG = SyntheticConfig(n_tasks=12)


def _uniform_batch(seed: int = 0, per_task: int = 40, cfg: SyntheticConfig = CFG):
    tasks = make_tasks(cfg, seed)
    return rollout(tasks, uniform_table(cfg), np.repeat(np.arange(cfg.n_tasks), per_task), np.random.default_rng(seed))


def _reference(tasks, task: int, actions: list[int]) -> dict:
    """Plain-Python replay of one episode's actions: the rules of the module docstring, step by step."""
    c = tasks.config
    stage, broken, replied, idle, hung_up = 0, False, False, 0, False
    sig = {s: [] for s in SIGNALS}
    n = int(tasks.stages[task])
    seen = set()
    soft_score = {0: 0.875, 1: 0.75, 2: 0.5}  # arguments of the gold call repeated: 3/4, 1/2, 0/1
    for a in actions:
        name = action_names(c.n_variants)[a]
        gold = wrong = soft = redundant = False
        tool = min(stage, n - 1)
        if name.startswith("write_"):
            w = int(name.split("_")[1])
            gold = stage < n and w == tasks.gold[task, stage]
            wrong = not gold
            soft = wrong and not (stage >= n and w == tasks.gold[task, tool])
            redundant = ("write", tool, w) in seen
            seen.add(("write", tool, w))
        elif name == "lookup":
            redundant = "lookup" in seen
            seen.add("lookup")
        sig["soft_match"].append(float(soft))
        sig["soft_match_score"].append(soft_score[tool] if soft else 0.0)
        sig["redundant_call"].append(float(redundant))
        sig["message_only"].append(float(name == "reply"))
        sig["gold_match"].append(float(gold))
        sig["state_change"].append(float(wrong))
        sig["read_only"].append(float(name == "lookup"))
        sig["valid_call"].append(float(name == "lookup" or name.startswith("write_")))
        sig["tool_error"].append(float(name == "malformed"))
        stage += gold
        broken |= wrong
        if name == "reply":
            replied = True
            break
        idle = 0 if gold else idle + 1
        if c.patience and idle >= c.patience:
            hung_up = True
            break
    return {"success": replied and stage == n and not broken, "timeout": not replied and not hung_up,
            "hung_up": hung_up, "signals": sig}


def test_config_errors_name_the_field():
    with pytest.raises(ValueError, match="max_stages"):
        SyntheticConfig(max_stages=4)
    with pytest.raises(ValueError, match="n_variants"):
        SyntheticConfig(n_variants=1)
    with pytest.raises(ValueError, match="max_turns"):
        SyntheticConfig(max_turns=3, max_stages=3)


def test_tasks_are_seeded():
    a, b, c = make_tasks(CFG, 1), make_tasks(CFG, 1), make_tasks(CFG, 2)
    assert np.array_equal(a.gold, b.gold) and np.array_equal(a.stages, b.stages)
    assert not (np.array_equal(a.gold, c.gold) and np.array_equal(a.stages, c.stages))
    assert a.stages.min() >= CFG.min_stages and a.stages.max() <= CFG.max_stages
    assert a.gold.max() < CFG.n_variants


@pytest.mark.parametrize("patience", [0, 2])
def test_rollout_matches_reference_replay(patience):
    cfg = SyntheticConfig(n_tasks=12, patience=patience)
    b = _uniform_batch(seed=3, cfg=cfg)
    assert b.success.any() and (~b.success).any() and (b.timeout.any() if not patience else b.hung_up.any())
    assert b.signals["soft_match"].any() and b.signals["redundant_call"].any()
    for i in range(b.n_episodes):
        acts = [int(a) for a in b.actions[i, : b.lengths[i]]]
        assert (b.actions[i, b.lengths[i] :] == -1).all()
        ref = _reference(b.tasks, int(b.task[i]), acts)
        assert ref["success"] == bool(b.success[i]), i
        assert ref["timeout"] == bool(b.timeout[i]), i
        assert ref["hung_up"] == bool(b.hung_up[i]), i
        for s in SIGNALS:
            assert ref["signals"][s] == list(b.signals[s][i, : b.lengths[i]]), (i, s)


def test_rollout_is_deterministic_in_the_rng():
    a, b = _uniform_batch(seed=5), _uniform_batch(seed=5)
    assert np.array_equal(a.actions, b.actions) and np.array_equal(a.success, b.success)


def test_signal_identities():
    b = _uniform_batch(seed=1)
    valid = b.valid
    s = b.signals
    # Every turn is exactly one of: lookup, gold write, wrong write, malformed, reply.
    reply = (b.actions == CFG.reply) & valid
    total = s["read_only"] + s["gold_match"] + s["state_change"] + s["tool_error"] + reply
    assert np.array_equal(total[valid], np.ones(valid.sum()))
    assert np.array_equal(s["valid_call"], s["read_only"] + s["gold_match"] + s["state_change"])
    assert all((s[k][~valid] == 0).all() for k in SIGNALS)
    # A reply can only be the last turn.
    assert not (reply[:, :-1] & valid[:, 1:]).any()


def test_oracle_succeeds_and_only_gold_fires():
    tasks = make_tasks(CFG, 0)
    b = rollout(tasks, oracle_table(tasks), np.repeat(np.arange(CFG.n_tasks), 3), np.random.default_rng(0))
    assert b.success.all() and not b.timeout.any()
    assert np.array_equal(b.signals["gold_match"].sum(axis=1), tasks.stages[b.task])
    assert b.signals["state_change"].sum() == 0 and b.signals["tool_error"].sum() == 0
    assert np.array_equal(b.lengths, 2 * tasks.stages[b.task] + 1)  # lookup + write per stage, reply


def test_wrong_writes_and_timeouts_fail():
    tasks = make_tasks(CFG, 0)
    idx = np.repeat(np.arange(CFG.n_tasks), 2)
    wrong = np.zeros(CFG.table_shape)
    for k in range(CFG.n_tasks):
        for s in range(CFG.max_stages + 1):
            wrong[k, s, :, 1 + (1 - tasks.gold[k, min(s, CFG.max_stages - 1)])] = 1.0  # the other variant
    b = rollout(tasks, wrong, idx, np.random.default_rng(0))
    assert not b.success.any() and b.signals["state_change"].sum() == b.lengths.sum()
    lookups = np.zeros(CFG.table_shape)
    lookups[..., CFG.lookup] = 1.0
    b = rollout(tasks, lookups, idx, np.random.default_rng(0))
    assert b.timeout.all() and not b.success.any() and (b.lengths == CFG.max_turns).all()


def test_bad_inputs_raise_naming_the_argument():
    tasks = make_tasks(CFG, 0)
    with pytest.raises(ValueError, match="probs"):
        rollout(tasks, np.ones((2, 2)), [0], np.random.default_rng(0))
    with pytest.raises(ValueError, match="task_idx"):
        rollout(tasks, uniform_table(CFG), [CFG.n_tasks], np.random.default_rng(0))
    with pytest.raises(KeyError, match="nope"):
        _uniform_batch(per_task=2).turn_rewards({"nope": 1.0})


def test_turn_rewards_are_weighted_sums():
    b = _uniform_batch(per_task=4)
    r = b.turn_rewards({"gold_match": 0.5, "state_change": -0.25})
    assert [len(x) for x in r] == list(b.lengths)
    flat = np.concatenate(r)
    assert np.allclose(flat, 0.5 * b.flat("gold_match") - 0.25 * b.flat("state_change"))


@pytest.mark.parametrize("patience", [0, 2])
def test_records_give_the_same_signals_as_the_store_builtins(patience):
    """Native records, read back through the canonical record and the built-in signal definitions."""
    b = _uniform_batch(seed=2, per_task=6, cfg=SyntheticConfig(n_tasks=12, patience=patience))
    cat = airline_catalogue()
    recs = list(b.to_records(run_id="syn", iteration=1, step=7))
    assert len(recs) == b.n_episodes and len({r["episode_id"] for r in recs}) == b.n_episodes
    for i, rec in enumerate(recs):
        ep = normalize_episode(rec)
        assert ep["success"] == bool(b.success[i]) and ep["info"]["step"] == 7
        assert len(ep["expected_actions"]) == b.tasks.stages[b.task[i]]
        got = episode_signals(ep, cat, SIGNALS)
        for s in SIGNALS:
            assert got[s] == list(b.signals[s][i, : b.lengths[i]]), (i, s)
            assert rec["info"]["signals"][s] == got[s]
        p = np.array(rec["info"]["progress"])
        assert len(p) == b.lengths[i] and np.all(np.diff(p) >= 0)
        assert (p[-1] == 1.0) or not b.success[i]


def test_records_ingest_into_the_store(tmp_path):
    from calib.store import Store

    b = _uniform_batch(seed=4, per_task=3)
    st = Store(tmp_path / "store", create=True)
    res = st.add_episodes(b.to_records(run_id="syn"), source="synthetic", catalogue=airline_catalogue())
    assert res.episodes == b.n_episodes and res.turns == int(b.lengths.sum())
    n_success = st.query("select count(*) as n from episodes where success")["n"].iloc[0]
    assert n_success == int(b.success.sum())


def test_planted_relations_hold_at_scale():
    """What the testbed is for: gold_match aligned, state_change worse in failures, read_only frequent
    but non-discriminative, valid_call on most turns (measured on the prior policy of the experiment)."""
    from trainer.tabular import prior_logits, softmax_table

    cfg = SyntheticConfig(n_tasks=200)
    tasks = make_tasks(cfg, 0)
    b = rollout(tasks, softmax_table(prior_logits(tasks)), np.repeat(np.arange(200), 16), np.random.default_rng(0))
    scores = np.column_stack([M.aggregate(b.flat(s), b.lengths, "mean") for s in SIGNALS])
    ga = dict(zip(SIGNALS, M.group_auc(scores, b.success, b.group).value))
    assert ga["gold_match"] > 0.8
    assert ga["state_change"] < 0.2
    assert abs(ga["read_only"] - 0.5) < 0.05
    assert b.flat("read_only").mean() > 0.2 and b.flat("valid_call").mean() > 0.6
