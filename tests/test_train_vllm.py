"""`calib train --use-vllm` on a fake of TRL's vLLM engine (real vLLM needs a GPU; none here).

The fake follows ``trl.generation.vllm_generation.VLLMGeneration``'s interface (checked with
``inspect.signature`` against the installed TRL): it is built by TRL's ``GRPOTrainer`` with the same
arguments, holds its own copy of the weights (as a vLLM engine does), receives the trained weights
through ``sync_weights`` (LoRA merged, as TRL pushes them), and generates from token ids with the
tiny model, returning vLLM's shapes (top logprobs per token, sampled token first). The test puts it
in place by monkeypatching ``trl.trainer.grpo_trainer.VLLMGeneration`` in-process; product code has no
switch for it.
"""

from __future__ import annotations

import inspect
import os
from pathlib import Path

import numpy as np
from typer.testing import CliRunner

os.environ.setdefault("TRL_EXPERIMENTAL_SILENCE", "1")

SPEC = """\
version: 1
name: vllm-test
advantage: {mode: gtpo_hybrid, gamma: 0.9, lambda: 0.3, turn_norm: index}
outcome: {weight: 1.0}
turn_rewards:
  - {signal: valid_call, weight: 0.2}
  - {signal: tool_error, weight: -0.1}
  - {signal: turn_tokens, weight: 0.01}
"""

EVENTS: list[tuple] = []  # ("sync",), ("rollout", step), ("generate", n_prompts, step_of_last_rollout)
RETURNED: list[tuple[tuple[int, ...], tuple[float, ...]]] = []  # every (ids, logprobs) the fake returned


class FakeVLLMGeneration:
    """TRL's VLLMGeneration interface, backed by the tiny model on CPU."""

    def __init__(
        self,
        model,
        accelerator,
        processing_class,
        mode="colocate",
        structured_outputs_regex=None,
        server_base_url=None,
        server_host="0.0.0.0",
        server_port=8000,
        server_timeout=240.0,
        group_port=51216,
        tensor_parallel_size=1,
        gpu_memory_utilization=0.9,
        max_model_length=None,
        max_num_seqs=None,
        enable_sleep_mode=False,
        model_impl="auto",
        trust_remote_code=False,
        repetition_penalty=1.0,
        temperature=1.0,
        top_p=1.0,
        top_k=0,
        min_p=0.0,
        max_completion_length=16,
        logprobs=0,
        generation_kwargs=None,
    ):
        from transformers import AutoModelForCausalLM

        from calib.generation import LocalBackend, SamplingSettings

        self.model, self.mode, self.logprobs = model, mode, logprobs
        base = model.get_base_model() if hasattr(model, "get_base_model") else model
        self.engine = AutoModelForCausalLM.from_config(base.config)  # the engine's own weights
        self.engine.eval()
        # An inference engine keeps a KV cache (vLLM always does). The Trainer has set the training
        # model's config.use_cache to False (TrainingArguments.use_cache), and from_config copied it
        # into the engine's generation config: without this line every new token re-runs the whole
        # sequence (the test took ~13 min instead of ~2).
        self.engine.generation_config.use_cache = True
        self.backend = LocalBackend(
            self.engine,
            processing_class,
            SamplingSettings(max_new_tokens=max_completion_length, temperature=temperature, top_p=top_p),
        )

    def sync_weights(self):
        """Push the trained weights (LoRA merged into the base layers) into the engine."""
        EVENTS.append(("sync",))
        m = self.model
        m.merge_adapter()
        try:
            state = {}
            for name, p in m.get_base_model().state_dict().items():
                if "lora_" in name:
                    continue
                state[name.replace(".base_layer", "")] = p.detach().clone()
        finally:
            m.unmerge_adapter()
        missing, unexpected = self.engine.load_state_dict(state, strict=False)
        assert not unexpected, unexpected
        assert all("lm_head" in k for k in missing), missing  # tied to the embeddings

    def generate(self, prompts, images, num_generations, profiler=None):
        assert images is None and num_generations == 1
        last = max((e[1] for e in EVENTS if e[0] == "rollout"), default=None)
        EVENTS.append(("generate", len(prompts), last))
        outs = self.backend.generate(prompts)
        for o in outs:
            RETURNED.append((tuple(o.ids), tuple(o.logprobs)))
        logprobs = [[[lp] for lp in o.logprobs] for o in outs]
        token_ids = [[[t] for t in o.ids] for o in outs]
        return [list(p) for p in prompts], [o.ids for o in outs], logprobs, token_ids


def test_fake_vllm_follows_trl_signatures():
    from trl.generation.vllm_generation import VLLMGeneration

    for name in ("__init__", "generate", "sync_weights"):
        real = list(inspect.signature(getattr(VLLMGeneration, name)).parameters)
        fake = list(inspect.signature(getattr(FakeVLLMGeneration, name)).parameters)
        assert fake == real, f"{name}: fake {fake} != TRL {real}"


def test_train_with_vllm_two_steps(tmp_path: Path, tiny_model_dir, monkeypatch):
    import trl.trainer.grpo_trainer as grpo_module

    from calib.cli import app
    from trainer.grpo import MultiTurnGRPOTrainer

    EVENTS.clear()
    RETURNED.clear()
    monkeypatch.setattr(grpo_module, "VLLMGeneration", FakeVLLMGeneration)
    rollouts: list[dict] = []
    losses: list[dict] = []
    orig_rollout, orig_loss = MultiTurnGRPOTrainer._rollout, MultiTurnGRPOTrainer._compute_loss

    def spy_rollout(self, prompts, trainer=None):
        EVENTS.append(("rollout", self.state.global_step + 1))
        out = orig_rollout(self, prompts, trainer)
        rollouts.append(out)
        return out

    def spy_loss(self, model, inputs):
        losses.append({k: v.detach().clone() if hasattr(v, "detach") else v for k, v in inputs.items()})
        return orig_loss(self, model, inputs)

    monkeypatch.setattr(MultiTurnGRPOTrainer, "_rollout", spy_rollout)
    monkeypatch.setattr(MultiTurnGRPOTrainer, "_compute_loss", spy_loss)
    spec = tmp_path / "spec.yaml"
    spec.write_text(SPEC)
    args = [
        "train", "--spec", str(spec), "--model", "tiny", "--output-dir", str(tmp_path / "out"),
        "--store", str(tmp_path / "store"), "--tasks", "airline-mini/0,airline-mini/1",
        "--samples-per-task", "2", "--batch-size", "4", "--max-turns", "2", "--max-new-tokens", "24",
        "--max-steps", "2", "--save-steps", "2", "--learning-rate", "1e-4", "--temperature", "0.9",
        "--system-prompt", "You are an airline agent. Use the tools.", "--tool-detail", "compact",
        "--visible-tools", "get_reservation_details,cancel_reservation", "--threads", "1",
        "--use-vllm", "--vllm-mode", "colocate", "--json",
    ]
    res = CliRunner().invoke(app, args, catch_exceptions=False)
    assert res.exit_code == 0, res.output
    assert '"global_step": 2' in res.output

    # sync_weights once per step, before that step's rollouts; then that step's generation rounds.
    kinds = [e[0] for e in EVENTS]
    assert kinds.count("sync") == 2 and kinds.count("rollout") == 2
    for step in (1, 2):
        i_roll = EVENTS.index(("rollout", step))
        assert EVENTS[i_roll - 1] == ("sync",), EVENTS
        calls = [e[1] for e in EVENTS if e[0] == "generate" and e[2] == step]
        assert calls, f"step {step}: no generation"
        # The scripted user answers at once, so every live episode waits at each round: the first
        # round holds all 4 episodes, and the rounds shrink only as episodes end.
        assert calls[0] == 4 and calls == sorted(calls, reverse=True), calls
        turns = sum(1 for m in _episode_turns(rollouts[step - 1]))
        assert sum(calls) == turns, (calls, turns)

    # The ids and logprobs the engine returned are exactly the agent tokens of the loss batch.
    returned = dict(RETURNED)
    checked = 0
    for out, inputs in zip(rollouts, losses):
        by_ids = {}
        for ids, lps, spans in zip(out["completion_ids"], out["logprobs"], out["calib_spans"]):
            if spans is None:
                continue
            for s, e in spans:
                turn = tuple(ids[s:e])
                assert turn in returned, "a trained turn was not generated by the engine"
                assert tuple(lps[s:e]) == returned[turn]
                checked += 1
            by_ids[tuple(ids)] = lps
        mask = inputs["completion_mask"] * inputs["tool_mask"]
        for row_ids, row_mask, row_cmask, row_lps in zip(
            inputs["completion_ids"], mask, inputs["completion_mask"], inputs["sampling_per_token_logps"]
        ):
            key = tuple(row_ids[row_cmask.bool()].tolist())
            if key not in by_ids:
                continue  # a dropped row (all masked)
            want = np.array(by_ids[key])
            got = row_lps[: len(want)].numpy()
            agent = row_mask[: len(want)].bool().numpy()
            np.testing.assert_allclose(got[agent], want[agent], rtol=0, atol=1e-6)
    assert checked > 0, "no generated turn reached the loss: the test would prove nothing"


def _episode_turns(out: dict):
    for spans, tr in zip(out["calib_spans"], out["calib_turn_rewards"]):
        yield from range(len(tr))
