"""calib's estimators through verl's own ``compute_advantage`` (issue 26, acceptance 1 and 2).

The batch is built on CPU from calib episodes: per-turn rewards and outcomes are laid out in
``token_level_rewards`` by ``trainer.verl.layout.pack``, turns separated by tool tokens
(``response_mask == 0``) and followed by padding, and handed to
``verl.trainer.ppo.ray_trainer.compute_advantage`` as a ``DataProto`` with the group uids. The
advantages must equal ``calib.advantages.turn_advantages`` spread over each turn's tokens.
"""

from __future__ import annotations

import importlib.util

import numpy as np
import pytest
import torch
from omegaconf import OmegaConf
from verl import DataProto
from verl.trainer.ppo import core_algos
from verl.trainer.ppo.ray_trainer import compute_advantage

from calib.advantages import turn_advantages
from trainer.verl import estimators, layout
from trainer.verl.estimators import EstimatorError
from trainer.verl.layout import LayoutError

estimators.register()

MODES = {"calib_grpo": "grpo", "calib_mt_grpo": "mt_grpo", "calib_gtpo_hybrid": "gtpo_hybrid"}


def _episodes(seed: int = 0):
    """Groups with different turn counts, a group without variance and a one-turn episode."""
    rng = np.random.default_rng(seed)
    eps = []  # (group, outcome, turn rewards)
    for g, n_turns in enumerate([[3, 5, 2, 4], [1, 2, 3, 1], [2, 2, 2]]):
        for t in n_turns:
            # dyadic values (k/64): float32, verl's reward dtype, holds them exactly, so the comparison
            # below tests the math and the layout, not rounding
            eps.append((f"uid-{g}", float(rng.integers(0, 2)), np.round(rng.normal(0, 0.3, size=t) * 64) / 64))
    for _ in range(3):  # no variance: the same outcome, turn count and turn rewards
        eps.append(("uid-flat", 1.0, np.full(3, 0.125)))
    eps.append(("uid-one", 0.0, np.array([0.25])))  # a group of one episode of one turn
    return eps


def _mask(turns: list[int], rng: np.random.Generator, width: int) -> torch.Tensor:
    row = []
    for k in range(len(turns)):
        row += [1] * int(rng.integers(2, 6))  # an assistant turn: text + end-of-turn
        if k < len(turns) - 1:
            row += [0] * int(rng.integers(1, 4))  # tool / user tokens
    row += [0] * (width - len(row))
    return torch.tensor(row)


def _batch(eps, seed: int = 1, width: int = 64, turn_rewards: bool = True):
    rng = np.random.default_rng(seed)
    mask = torch.stack([_mask(list(range(len(r))), rng, width) for _, _, r in eps])
    rewards = [r if turn_rewards else np.zeros_like(r) for _, _, r in eps]
    tlr = layout.pack(rewards, [o for _, o, _ in eps], mask)
    data = DataProto.from_dict(tensors={"token_level_rewards": tlr, "response_mask": mask},
                               non_tensors={"uid": np.array([g for g, _, _ in eps], dtype=object)})
    return data, mask, rewards


def _expected(eps, mask, rewards, mode, **kw):
    adv = turn_advantages(np.array([o for _, o, _ in eps]), rewards, np.array([g for g, _, _ in eps]), mode=mode, **kw)
    out = torch.zeros(mask.shape, dtype=torch.float64)
    for i, row in enumerate(mask):
        for (s, e), a in zip(layout.turn_runs(row), adv[i]):
            out[i, s:e] = a
    return out


@pytest.mark.parametrize("name", list(MODES))
def test_compute_advantage_equals_turn_advantages_over_each_turns_tokens(name):
    eps = _episodes()
    data, mask, rewards = _batch(eps, turn_rewards=name != "calib_grpo")
    out = compute_advantage(data, adv_estimator=name, config=OmegaConf.create({}))
    adv = out.batch["advantages"].to(torch.float64)
    want = _expected(eps, mask, rewards, MODES[name])
    assert torch.allclose(adv, want, atol=1e-6, rtol=0), (adv - want).abs().max()
    assert torch.equal(out.batch["returns"], out.batch["advantages"])
    assert (adv[mask == 0] == 0).all()  # tool, user and padding tokens get 0
    flat = [i for i, (g, _, _) in enumerate(eps) if g == "uid-flat"]
    assert (adv[flat] == 0).all()  # a group without variance teaches nothing
    assert adv.abs().sum() > 0


def test_gamma_lambda_and_turn_norm_come_from_the_spec(tmp_path, monkeypatch):
    spec = tmp_path / "spec.yaml"
    spec.write_text("version: 1\nname: t\nadvantage: {mode: gtpo_hybrid, gamma: 0.5, lambda: 0.7, turn_norm: pooled}\n"
                    "outcome: {weight: 1.0}\nturn_rewards:\n  - {signal: gold_match, weight: 0.3}\n")
    eps = _episodes(3)
    data, mask, rewards = _batch(eps, seed=4)
    want = _expected(eps, mask, rewards, "gtpo_hybrid", gamma=0.5, lam=0.7, turn_norm="pooled")
    default = _expected(eps, mask, rewards, "gtpo_hybrid")
    assert not torch.allclose(want, default, atol=1e-3)  # the spec's parameters matter here
    via_config = compute_advantage(data, adv_estimator="calib_gtpo_hybrid",
                                   config=OmegaConf.create({"calib_spec": str(spec)})).batch["advantages"]
    assert torch.allclose(via_config.to(torch.float64), want, atol=1e-6, rtol=0)
    monkeypatch.setenv("CALIB_SPEC", str(spec))
    data, _, _ = _batch(eps, seed=4)
    via_env = compute_advantage(data, adv_estimator="calib_gtpo_hybrid", config=OmegaConf.create({})).batch["advantages"]
    assert torch.allclose(via_env.to(torch.float64), want, atol=1e-6, rtol=0)


def test_a_spec_for_another_mode_is_refused_in_one_line(tmp_path):
    spec = tmp_path / "mt.yaml"
    spec.write_text("version: 1\nname: t\nadvantage: {mode: mt_grpo}\noutcome: {weight: 1.0}\nturn_rewards: []\n")
    data, _, _ = _batch(_episodes())
    with pytest.raises(EstimatorError) as e:
        compute_advantage(data, adv_estimator="calib_gtpo_hybrid", config=OmegaConf.create({"calib_spec": str(spec)}))
    msg = str(e.value)
    assert "\n" not in msg and "mt_grpo" in msg and "calib_gtpo_hybrid" in msg
    with pytest.raises(EstimatorError, match="no such file|cannot read"):
        compute_advantage(data, adv_estimator="calib_grpo", config=OmegaConf.create({"calib_spec": str(tmp_path / "x")}))


def test_registering_twice_is_harmless_and_a_foreign_name_is_refused(monkeypatch):
    assert estimators.register() == []  # already there (this module registered them)
    # the module loaded a second time under another name (a Ray setup hook and the user's own import):
    # new function objects under the same names, which verl alone would refuse
    spec = importlib.util.spec_from_file_location("calib_estimators_copy", estimators.__file__)
    copy = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(copy)
    assert copy.calib_gtpo_hybrid is not estimators.calib_gtpo_hybrid
    with pytest.raises(ValueError, match="already been registered"):
        core_algos.register_adv_est("calib_gtpo_hybrid")(copy.calib_gtpo_hybrid)
    assert copy.register() == []
    for name in MODES:
        assert core_algos.get_adv_estimator_fn(name) is getattr(estimators, name)
    monkeypatch.setattr(core_algos, "ADV_ESTIMATOR_REGISTRY", dict(core_algos.ADV_ESTIMATOR_REGISTRY))
    core_algos.ADV_ESTIMATOR_REGISTRY.pop("calib_mt_grpo")
    core_algos.register_adv_est("calib_mt_grpo")(lambda **kw: None)
    with pytest.raises(EstimatorError, match="not calib's"):
        estimators.register()


def test_inputs_that_break_the_layout_are_refused_with_one_clear_error():
    eps = _episodes()
    data, mask, _ = _batch(eps)
    i = 0
    tool = int(torch.nonzero(mask[i] == 0)[0])  # the first tool token of row 0
    data.batch["token_level_rewards"][i, tool] = 0.5
    with pytest.raises(LayoutError, match=r"token_level_rewards\[0, \d+\] = 0.5 sits on a tool or user token"):
        compute_advantage(data, adv_estimator="calib_gtpo_hybrid", config=OmegaConf.create({}))
    # verl's scalar placement on a trailing tool token (the trajectory ends with a tool message)
    data, mask, _ = _batch(eps, turn_rewards=False)
    last = int(torch.nonzero(mask[1])[-1])
    data.batch["token_level_rewards"][1, last + 3] = 1.0
    with pytest.raises(LayoutError, match="after the last assistant turn"):
        compute_advantage(data, adv_estimator="calib_grpo", config=OmegaConf.create({}))
    # a per-token KL penalty (algorithm.use_kl_in_reward) puts values inside the turns
    data, mask, _ = _batch(eps)
    data.batch["token_level_rewards"] -= 0.01 * mask
    with pytest.raises(LayoutError, match="use_kl_in_reward"):
        compute_advantage(data, adv_estimator="calib_mt_grpo", config=OmegaConf.create({}))
    # turn rewards given to the estimator that ignores them
    data, _, _ = _batch(eps)
    with pytest.raises(LayoutError, match="ignores turn rewards"):
        compute_advantage(data, adv_estimator="calib_grpo", config=OmegaConf.create({}))
    # a row without any assistant token
    data, mask, _ = _batch(eps)
    data.batch["response_mask"][2] = 0
    with pytest.raises(LayoutError, match="row 2: response_mask has no assistant token"):
        compute_advantage(data, adv_estimator="calib_gtpo_hybrid", config=OmegaConf.create({}))
    # no group uid
    data, _, _ = _batch(eps)
    data.non_tensor_batch.pop("uid")
    with pytest.raises(EstimatorError, match="no group uid"):
        compute_advantage(data, adv_estimator="calib_gtpo_hybrid", config=OmegaConf.create({}))


def test_a_one_token_last_turn_carries_the_outcome_only():
    """An empty last reply (the end-of-turn token alone) holds the outcome; its turn reward is 0 by
    the layout, and a writer that gives it one is refused rather than let the two share the token."""
    mask = torch.tensor([[1, 1, 0, 1, 0], [1, 1, 1, 0, 0]])
    with pytest.raises(LayoutError, match="one token, which holds the outcome"):
        layout.pack([[0.1, 0.2], [0.3]], [1.0, 0.0], mask)
    tlr = layout.pack([[0.1, 0.0], [0.3]], [1.0, 0.0], mask)
    assert tlr[0].tolist() == pytest.approx([0.1, 0.0, 0.0, 1.0, 0.0])
    for uses_turns, first in ((True, [0.1, 0.0]), (False, None)):
        if first is None:
            with pytest.raises(LayoutError, match="ignores turn rewards"):
                layout.unpack(tlr, mask, turn_rewards=False)
            continue
        outcome, turns, _ = layout.unpack(tlr, mask, turn_rewards=uses_turns)
        assert outcome.tolist() == [1.0, 0.0]
        assert [t.tolist() for t in turns] == [pytest.approx(first), pytest.approx([0.3])]
    outcome, turns, _ = layout.unpack(layout.pack([[0.0, 0.0], [0.0]], [1.0, 0.0], mask), mask, turn_rewards=False)
    assert outcome.tolist() == [1.0, 0.0] and [t.tolist() for t in turns] == [[0.0, 0.0], [0.0]]
