"""`calib sft`: the warm start on a store's successful episodes (TRL SFTTrainer, LoRA, SmolLM2-135M).

Budget: two short oracle episodes of airline-mini (a gift-card balance question and a transfer, ~600
tokens each with a one-line system prompt and two visible tools without descriptions), three
optimiser steps, one torch thread. The mask test needs only the tokenizer.
"""

from __future__ import annotations

import json
import shutil

import pytest
from typer.testing import CliRunner

SYSTEM = "You are an airline agent. Use the tools."
TOOLS = "get_user_details,transfer_to_human_agents"
TASKS = ["airline-mini/39", "airline-mini/33"]  # info (gift-card balance), transfer: the shortest episodes
VIEW = ["--system-prompt", SYSTEM, "--tool-detail", "minimal", "--visible-tools", TOOLS]
runner = CliRunner()


@pytest.fixture(scope="module")
def mini():
    from calib.envs import load_domain

    return load_domain("airline-mini")


@pytest.fixture(scope="module")
def oracle_store(tmp_path_factory, mini):
    """Two successful oracle episodes (run ``demo``) and two failed ones (run ``failed``)."""
    from calib.policies.oracle import OracleConfig, OraclePolicy
    from calib.rollout.runner import run_rollouts, write_episodes
    from calib.store import Store

    path = tmp_path_factory.mktemp("sft") / "store"
    st = Store(path)
    good = run_rollouts(mini, OraclePolicy(), "scripted", TASKS, samples=1, run_id="demo")
    assert all(e["success"] for e in good)
    write_episodes(st, good, domain=mini, source="test")
    bad = run_rollouts(mini, OraclePolicy(OracleConfig(early_stop=1.0)), "scripted", ["airline-mini/0"],
                       samples=2, run_id="failed")
    assert not any(e["success"] for e in bad)
    write_episodes(st, bad, domain=mini, source="test")
    return path


def _summary(res) -> dict:
    assert res.exit_code == 0, res.output
    return json.loads(res.output[res.output.rindex('{"global_step"'):].splitlines()[0])


def _one_red_line(res) -> str:
    assert res.exit_code != 0, res.output
    assert "Traceback" not in res.output
    lines = [ln for ln in res.output.splitlines() if ln.strip()]
    assert len(lines) == 1 and lines[0].startswith("Error: "), res.output
    return lines[0]


def test_assistant_mask_is_the_rl_trainers_spans(tiny_model_dir, mini, oracle_store):
    """The SFT loss sees exactly the tokens GRPO trains: the RL trainer's spans on the same episode."""
    from transformers import AutoTokenizer

    from calib.hf_chat import HFChatModel
    from calib.store import Store
    from trainer.policy import PromptView, TrainingPolicy
    from trainer.sft import encode_episodes, make_view, rl_to_template, select_episodes
    from trainer.tokenize import tokenize_episode

    tok = AutoTokenizer.from_pretrained(tiny_model_dir)
    eps = select_episodes(Store(oracle_store, create=False), ["demo"], 1.0)
    assert sorted(e["task_id"] for e in eps) == sorted(TASKS)
    view = make_view(SYSTEM, "minimal", TOOLS, mini.catalogue)
    rows, skipped = encode_episodes(tok, eps, mini.catalogue.openai_tools(), rl_to_template(tok, view))
    assert skipped == [] and len(rows) == 2
    # the RL trainer's path, built as trainer/grpo.py builds it
    policy = TrainingPolicy(HFChatModel(None, tok), view=PromptView(
        system_prompt=SYSTEM, tool_detail="minimal", visible_tools=tuple(TOOLS.split(","))))
    for ep, row in zip(eps, rows):
        et = tokenize_episode(tok, ep["messages"], tools=mini.catalogue.openai_tools(), to_template=policy.to_template)
        assert row["input_ids"] == et.prompt_ids + et.completion_ids
        n = len(et.prompt_ids)
        marked = [i for i, b in enumerate(row["assistant_masks"]) if b]
        assert marked == [n + i for s, e in et.spans for i in range(s, e)]
        # what the loss sees is the assistant turns and nothing else
        text = tok.decode([row["input_ids"][i] for i in marked])
        assert text == "".join(et.texts)
        assert "get_user_details" in text and SYSTEM not in text and '"payment_methods"' not in text
        assert SYSTEM in tok.decode(row["input_ids"])  # the view is applied


def test_bad_inputs_give_one_line(tmp_path, oracle_store):
    from calib.cli import app

    base = ["sft", "--store", str(oracle_store), "--model", "tiny", "--output-dir", str(tmp_path / "out")]
    line = _one_red_line(runner.invoke(app, [*base, "--runs", "nope"]))
    assert "'nope' not in the store" in line and "demo" in line
    line = _one_red_line(runner.invoke(app, [*base, "--runs", "failed"]))
    assert "no successful episode" in line and "outcome >= 1" in line
    line = _one_red_line(runner.invoke(app, [*base, "--runs", "demo", "--visible-tools", "fly_plane"]))
    assert "fly_plane" in line
    line = _one_red_line(runner.invoke(app, [*base, "--runs", "demo", "--resume"]))
    assert "no complete checkpoint" in line
    (tmp_path / "out" / "merged").mkdir(parents=True)
    line = _one_red_line(runner.invoke(app, [*base, "--runs", "demo"]))
    assert "already holds a finished model" in line
    line = _one_red_line(runner.invoke(app, ["sft", "--store", str(tmp_path / "nowhere"), "--runs", "demo",
                                             "--model", "tiny", "--output-dir", str(tmp_path / "o2")]))
    assert "no such store" in line


@pytest.mark.slow
def test_sft_learns_merges_and_resumes(tmp_path, tiny_model_dir, oracle_store):
    import torch
    from safetensors.torch import load_file

    from calib.cli import app
    from calib.models import load_pretrained

    out = tmp_path / "out"
    args = ["sft", "--store", str(oracle_store), "--runs", "demo", "--model", "tiny", "--output-dir", str(out),
            "--max-steps", "3", "--save-steps", "1", "--learning-rate", "1e-3", "--threads", "1", *VIEW]
    summary = _summary(runner.invoke(app, [*args, "--json"]))
    assert summary["global_step"] == 3 and summary["episodes"] == 2 and summary["skipped"] == 0
    assert 0 < summary["assistant_tokens"] < summary["tokens"] / 2
    # loss decreases
    state = json.loads((out / "checkpoint-3" / "trainer_state.json").read_text())
    losses = [h["loss"] for h in state["log_history"] if "loss" in h]
    assert len(losses) == 3 and losses[-1] < losses[0], losses
    # the adapter changed: LoRA's B matrices start at zero
    adapter = load_file(out / "adapter" / "adapter_model.safetensors")
    bs = [v for k, v in adapter.items() if "lora_B" in k]
    assert bs and all(torch.isfinite(b).all() for b in bs) and sum(b.abs().sum().item() for b in bs) > 0
    # the merged checkpoint is a plain model that differs from the base, loads and generates
    assert not (out / "merged" / "adapter_config.json").exists()
    merged, tok = load_pretrained(str(out / "merged"))
    base, _ = load_pretrained("tiny")
    name = next(n for n, _ in merged.named_parameters() if "q_proj" in n)
    assert not torch.equal(dict(merged.named_parameters())[name], dict(base.named_parameters())[name])
    ids = tok.apply_chat_template([{"role": "user", "content": "Hi, what is my gift card balance?"}],
                                  add_generation_prompt=True, return_tensors="pt", return_dict=True)
    gen = merged.generate(**ids, max_new_tokens=8, do_sample=False)
    assert gen.shape[1] > ids["input_ids"].shape[1]
    # a run killed during step 3 resumes from checkpoint-2 and finishes
    shutil.rmtree(out / "merged")
    shutil.rmtree(out / "adapter")
    shutil.rmtree(out / "checkpoint-3")
    summary = _summary(runner.invoke(app, [*args, "--resume", "--json"]))
    assert summary["resumed_from"].endswith("checkpoint-2") and summary["global_step"] == 3
    assert (out / "merged" / "config.json").exists()
    # a finished model is not overwritten
    line = _one_red_line(runner.invoke(app, args))
    assert "already holds a finished model" in line
