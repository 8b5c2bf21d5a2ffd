"""The real-model experiment: airline-mini's held-out split, the experiment's pieces, the shipped warm
start, and `calib experiment real-lm --quick` end to end (a real model, real SFT'd weights, real TRL)."""

from __future__ import annotations

import json
from collections import Counter

import numpy as np
import pytest
from scipy import stats
from typer.testing import CliRunner

from calib.cli import app
from calib.envs import load_domain
from calib.envs.mini import generate, split_by_kind
from calib.envs.splits import split_task_ids
from experiments.real_lm import (
    KINDS,
    TOOLS,
    RealLMConfig,
    _split_ids,
    arm_spec,
    interval,
)

runner = CliRunner()


# --------------------------------------------------------------------------------------- the split


def test_airline_mini_split_is_deterministic_disjoint_and_keeps_kinds_on_both_sides():
    dom = load_domain("airline-mini")
    train, test = split_task_ids(dom, "train"), split_task_ids(dom, "test")
    assert (len(train), len(test)) == (27, 14)
    assert not set(train) & set(test)
    assert sorted(train + test) == sorted(t.task_id for t in dom.tasks)
    # rebuilt from scratch (no cache): the same split
    _, tasks = generate()
    assert split_by_kind(tasks) == {"train": train, "test": test}
    kinds = Counter(t.kind for t in dom.tasks)
    kind = {t.task_id: t.kind for t in dom.tasks}
    for k, n in kinds.items():
        sides = {("test" if t in test else "train") for t in kind if kind[t] == k}
        assert sides == ({"train", "test"} if n >= 2 else {"train"}), k


def test_rollout_and_sft_take_the_split(tmp_path):
    store = tmp_path / "store"
    r = runner.invoke(app, ["rollout", "--domain", "airline-mini", "--split", "test", "--policy", "oracle",
                            "--user", "scripted", "--run-id", "held-out", "--store", str(store), "--json"])
    assert r.exit_code == 0, r.output
    summary = json.loads(r.output.strip().splitlines()[-1])
    assert summary["tasks"] == 14 and summary["split"] == "test"
    # the store holds only test-split episodes, so an SFT on the train split has nothing to learn from
    r = runner.invoke(app, ["sft", "--store", str(store), "--runs", "held-out", "--split", "train", "--model", "tiny",
                            "--output-dir", str(tmp_path / "sft")])
    assert r.exit_code != 0
    assert "no successful episode" in r.output and "Traceback" not in r.output
    r = runner.invoke(app, ["sft", "--store", str(store), "--runs", "held-out", "--split", "nope", "--model", "tiny",
                            "--output-dir", str(tmp_path / "sft2")])
    assert r.exit_code != 0 and "--split" in r.output


def test_split_ids_limit_goes_round_robin_over_kinds():
    dom = load_domain("airline-mini")
    kind = {t.task_id: t.kind for t in dom.tasks}
    every = _split_ids("train", None, KINDS)
    assert {kind[t] for t in every} == set(KINDS)  # every chosen kind has train tasks
    picked = _split_ids("train", len(KINDS), KINDS)
    assert len({kind[t] for t in picked}) == len(KINDS)  # one of each before a second of any
    assert _split_ids("test", None, KINDS) and all(kind[t] in KINDS for t in _split_ids("test", None, KINDS))
    assert all(kind[t] != "cancel+baggage" for t in _split_ids("test", None, None))  # a single task: train only


def test_experiment_tools_cover_what_the_oracle_calls_on_its_kinds():
    """The tools shown to the model are exactly enough for a mistake-free oracle on the kinds."""
    from calib.policies.oracle import OraclePolicy
    from calib.rollout.runner import run_rollouts

    ids = _split_ids("train", None, KINDS) + _split_ids("test", None, KINDS)
    eps = run_rollouts("airline-mini", OraclePolicy(), "scripted", ids, samples=1, max_turns=30, concurrency=64)
    assert all(e["success"] for e in eps)
    called = {c["name"] for e in eps for m in e["messages"] for c in m.get("tool_calls") or []}
    assert called <= set(TOOLS)
    assert called >= set(TOOLS) - {"list_all_airports"}  # every write and lookup tool is needed


# --------------------------------------------------------------------------------------- pieces


def test_interval_is_a_t_interval_over_seeds_and_wilson_for_one_seed():
    xs = [0.2, 0.35, 0.5]
    lo, hi = interval(xs)
    t_lo, t_hi = stats.t.interval(0.95, len(xs) - 1, loc=np.mean(xs), scale=stats.sem(xs))
    assert (lo, hi) == pytest.approx((max(0, t_lo), min(1, t_hi)), abs=1e-12)
    w = stats.binomtest(7, 20).proportion_ci(method="wilson")
    assert interval([0.35], 7, 20) == pytest.approx((w.low, w.high), abs=1e-12)


def test_arm_specs_have_the_arm_modes_and_rewards(tmp_path):
    from calib.spec import AdvantageSpec, RewardSpec, TurnReward, load_spec, save_spec

    proposed = save_spec(RewardSpec(name="p", advantage=AdvantageSpec(mode="mt_grpo"),
                                    turn_rewards=[TurnReward(signal="gold_match", weight=0.7)]), tmp_path / "p.yaml")
    grpo = load_spec(arm_spec("grpo", proposed, tmp_path))
    naive = load_spec(arm_spec("naive_dense", proposed, tmp_path))
    cal = load_spec(arm_spec("calibrated", proposed, tmp_path))
    v5 = load_spec("preset:paper-v5-naive")
    assert grpo.advantage.mode == "grpo" and not grpo.active_signals()
    assert naive.advantage.mode == "gtpo_hybrid" and v5.advantage.mode == "mt_grpo"
    assert [(t.signal, t.weight) for t in naive.turn_rewards] == [(t.signal, t.weight) for t in v5.turn_rewards]
    assert cal.advantage.mode == "gtpo_hybrid" and [(t.signal, t.weight) for t in cal.turn_rewards] == [("gold_match", 0.7)]


def test_config_is_validated():
    with pytest.raises(ValueError, match="rl_samples"):
        RealLMConfig(rl_samples=1)
    with pytest.raises(ValueError, match="seeds"):
        RealLMConfig(seeds=0)


# --------------------------------------------------------------------------------------- warm start


def test_an_adapter_directory_loads_as_its_merged_model(tmp_path, monkeypatch, tiny_model_dir):
    """`--model ADAPTER_DIR` works anywhere a model is taken: merged once into the cache."""
    import torch
    from peft import LoraConfig, PeftModel, get_peft_model
    from transformers import AutoModelForCausalLM

    from calib.models import load_pretrained, resolve_model

    monkeypatch.setenv("CALIB_CACHE", str(tmp_path / "cache"))
    base = AutoModelForCausalLM.from_pretrained(tiny_model_dir, dtype=torch.float32)
    torch.manual_seed(0)
    peft = get_peft_model(base, LoraConfig(r=2, target_modules=["q_proj"], init_lora_weights=False))
    adapter = tmp_path / "adapter"
    peft.save_pretrained(adapter)
    cfg = json.loads((adapter / "adapter_config.json").read_text())
    cfg["base_model_name_or_path"] = "tiny"  # as shipped: portable, resolved on the user's machine
    (adapter / "adapter_config.json").write_text(json.dumps(cfg))

    merged_path = resolve_model(str(adapter))
    assert resolve_model(str(adapter)) == merged_path  # cached: merged once
    model, tok = load_pretrained(str(adapter))
    ids = tok("Hello there", return_tensors="pt").input_ids
    ref = PeftModel.from_pretrained(AutoModelForCausalLM.from_pretrained(tiny_model_dir, dtype=torch.float32),
                                    str(adapter))
    with torch.no_grad():
        assert torch.allclose(model(ids).logits, ref(ids).logits, atol=1e-4)
        plain = AutoModelForCausalLM.from_pretrained(tiny_model_dir, dtype=torch.float32)
        assert not torch.allclose(model(ids).logits, plain(ids).logits, atol=1e-3)  # the adapter did something
    # the loop's and the experiment's merge (a given output directory) writes the same model
    from trainer.hf_family import merge_adapter

    out = merge_adapter("tiny", adapter, tmp_path / "merged")
    again = AutoModelForCausalLM.from_pretrained(out, dtype=torch.float32)
    with torch.no_grad():
        assert torch.allclose(again(ids).logits, ref(ids).logits, atol=1e-4)
    assert not (tmp_path / "merged.tmp").exists()


def test_demo_trains_from_the_warm_start_with_the_experiment_view():
    """`make demo` step 5 shows the warm start the prompt it was fine-tuned on (same tools, same prompt)."""
    from pathlib import Path

    from experiments.real_lm import SHORT_PROMPT

    text = (Path(__file__).resolve().parents[1] / "scripts" / "demo.sh").read_text()
    assert f"TOOLS={','.join(TOOLS)}\n" in text
    assert "--model data/warmstart" in text and f'--system-prompt "{SHORT_PROMPT}"' in text
    assert "--tool-detail minimal" in text and '--visible-tools "$TOOLS"' in text
    task = text.split("DEMO_TASK=${DEMO_TASK:-", 1)[1].split("}", 1)[0]
    assert task in _split_ids("train", None, KINDS)  # a task the warm start was trained on, not a held-out one


# --------------------------------------------------------------------------------------- acceptance runs


def _shipped_warm_start(skip_or_fail) -> str:
    from experiments.real_lm import WARM_START

    if not (WARM_START / "adapter_config.json").is_file():
        skip_or_fail(f"no shipped warm start in {WARM_START} (scripts/make_warmstart.py builds it)")
    return str(WARM_START)


@pytest.mark.xdist_group("real_lm_held_out")  # its own group: the two minutes-long runs go to both workers
def test_shipped_warm_start_calls_tools_and_succeeds_on_some_held_out_tasks(tmp_path, monkeypatch, skip_or_fail,
                                                                             tiny_model_dir):
    """The SFT stage's model (data/warmstart, exported by scripts/make_warmstart.py from the full run),
    greedy on every held-out task of the experiment: it calls the experiment's tools (parsed calls in
    at least half the episodes) and succeeds on some tasks and fails on others.

    Why greedy and not samples per task: the issue's bar (mixed success on a quarter of the test
    tasks) is measured by the full run and recorded in docs/results.md; the shipped model succeeds
    about once in six on the tasks where it is mixed, which a few samples per task cannot resolve, and
    32 sampled episodes took 17 minutes of the suite's 30. That RL groups are informative is what
    the quick experiment's test checks (its RL stage runs on tasks with mixed success)."""
    from calib.models import resolve_model
    from calib.store import Store
    from experiments.real_lm import play

    monkeypatch.setenv("CALIB_CACHE", str(tmp_path / "cache"))
    warm = _shipped_warm_start(skip_or_fail)
    cfg = RealLMConfig(warm_start=warm, threads=1)
    store = Store(tmp_path / "store")
    s = play(cfg, store, resolve_model(warm), "held-out", split="test", samples=1, seed=0, temperature=0.0)
    assert s["tasks"] == len(_split_ids("test", None, KINDS)) == 8
    assert s["episodes_with_tool_call"] >= s["episodes"] / 2, s
    calls = store.query("SELECT DISTINCT t.tool_name FROM turns t JOIN episodes e USING (episode_id) "
                        "WHERE e.run_id = 'held-out' AND t.kind = 'tool_call'").tool_name.tolist()
    assert set(calls) & set(TOOLS), calls  # parsed calls to the experiment's tools, not just any text
    assert 0.0 < s["success"] < 1.0, s["per_task"]


@pytest.mark.xdist_group("real_lm_runs")
def test_real_lm_quick_runs_every_arm_learns_from_informative_groups_and_resumes(tmp_path, monkeypatch,
                                                                                skip_or_fail, tiny_model_dir):
    """`calib experiment real-lm --quick`: the summary line with every arm; during RL some group is
    informative and the advantages are not all zero; started again it does nothing new; other
    settings in the same --out are refused in one line."""
    monkeypatch.setenv("CALIB_CACHE", str(tmp_path / "cache"))
    _shipped_warm_start(skip_or_fail)
    out = tmp_path / "rl"
    args = ["experiment", "real-lm", "--quick", "--threads", "1", "--out", str(out), "--json"]
    r = runner.invoke(app, args)
    assert r.exit_code == 0, r.output
    lines = [json.loads(x) for x in r.stdout.splitlines() if x.startswith("{")]
    summary = lines[-1]
    assert summary["experiment"] == "real-lm"
    assert set(summary["arms"]) == {"grpo", "naive_dense", "calibrated", "online"}
    assert [x["arm"] for x in lines[:-1]] == ["grpo", "naive_dense", "calibrated", "online"]
    # the online arm recalibrated after its step (issue 24), the others did not
    assert (out / "checkpoints" / "online-s0" / "recalibration" / "spec-step000001.yaml").is_file()
    assert not (out / "checkpoints" / "calibrated-s0" / "recalibration").exists()
    for arm in summary["arms"].values():
        assert 0.0 <= arm["success"] <= 1.0 and arm["ci"][0] <= arm["success"] <= arm["ci"][1]
    assert summary["informative_share"] > 0, summary
    assert max(a["mean_abs_advantage"] for a in summary["arms"].values()) > 0, summary
    assert summary["sft_tool_call_episodes"] > 0
    for name in ("results.json", "table.md"):
        assert (out / name).is_file()
    stages = json.loads((out / "state.json").read_text())
    assert {"calibration", "analyze", "train/grpo/s0", "eval/calibrated/s0"} <= set(stages)

    again = runner.invoke(app, args)  # resumed: every stage is done, the same figures come out
    assert again.exit_code == 0, again.output
    assert "done earlier" in again.stderr and " ..." not in again.stderr.replace("done earlier", "")
    assert json.loads(again.stdout.splitlines()[-1])["arms"] == summary["arms"]

    other = runner.invoke(app, [*args[:-1], "--steps", "3"])
    assert other.exit_code != 0
    assert "other settings" in other.output and len(other.output.strip().splitlines()) == 1
