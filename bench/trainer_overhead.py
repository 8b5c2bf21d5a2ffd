"""Trainer overhead: a stock TRL GRPO step versus calib's multi-turn step on the same batch, generation excluded.

The batch: oracle-policy episodes on airline-mini (scripted user, seeded mistakes, so outcomes and
turn rewards vary), G samples of each task. Both paths share everything TRL does after generation;
what differs is what calib adds:

- stock: ``GRPOTrainer._compute_loss`` with one advantage per sequence ([B], GRPO of the outcome)
  + backward + optimiser step;
- calib: tokenise every episode once with turn spans (``_encode``), per-turn rewards from the spec's
  signals (``batch_rewards``), ``turn_advantages`` + ``expand_to_tokens`` (``_token_advantages``),
  then the same ``_compute_loss`` (MultiTurnGRPOTrainer does not override it) with [B, T]
  advantages + backward + optimiser step.

The two are timed alternately (these machines are noisy), median of ``--reps``. Figure: calib step
time / stock step time (goal <= 1.05). Writing episodes to the store is timed separately (details):
it is I/O that a stock trainer does not do at all.

Usage: python bench/trainer_overhead.py [--tasks 2] [--samples 2] [--max-turns 2] [--reps 3] [--model tiny]
       [--tool-detail minimal] [--visible-tools a,b] [--quick]
Defaults: SmolLM2-135M + LoRA r=8, 2 tasks x 2 samples, short episodes and five tools shown (rows of
about 800 tokens), gradient checkpointing on both paths (without it: 10+ GB peak): a few minutes on
2 CPU cores. --quick: a tiny random Llama with SmolLM2's tokenizer.
"""

from __future__ import annotations

import argparse
import os
import statistics
import sys
import tempfile
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))
sys.path.insert(0, str(Path(__file__).resolve().parent))

from _common import figure_line

os.environ.setdefault("HF_HUB_OFFLINE", "1")
os.environ.setdefault("TRL_EXPERIMENTAL_SILENCE", "1")

# Activations of a 135M model without checkpointing grow fast with row length on CPU (8 turns with
# compact schemas went past 20 GB, 4 turns past 12 GB); these defaults keep rows near 800 tokens.
VISIBLE = "get_user_details,get_reservation_details,cancel_reservation,update_reservation_baggages,think"

SPEC = {
    "version": 1,
    "name": "bench",
    "advantage": {"mode": "gtpo_hybrid", "gamma": 0.9, "lambda": 0.3, "turn_norm": "index"},
    "turn_rewards": [
        {"signal": "gold_match", "weight": 0.3},
        {"signal": "state_change", "weight": -0.1},
        {"signal": "tool_error", "weight": -0.1},
        {"signal": "redundant_call", "weight": -0.05},
    ],
}


def episodes(n_tasks: int, samples: int, max_turns: int) -> list[dict]:
    from calib.policies.oracle import OracleConfig
    from calib.rollout.factories import make_policy
    from calib.rollout.runner import run_rollouts

    policy = make_policy("oracle", oracle=OracleConfig.uniform(0.3))
    tasks = [f"airline-mini/{i}" for i in range(n_tasks)]
    return run_rollouts(
        "airline-mini",
        policy,
        "scripted",
        tasks,
        samples=samples,
        max_turns=max_turns,
        run_id="bench",
        seed=0,
    )


def build_trainer(args, work: Path, n_tasks: int, samples: int):
    import torch
    from peft import LoraConfig
    from transformers import AutoModelForCausalLM, AutoTokenizer

    from calib.models import random_llama, tiny_model_path
    from calib.spec import RewardSpec
    from trainer.grpo import MultiTurnGRPOConfig, MultiTurnGRPOTrainer

    path = tiny_model_path()
    tok = AutoTokenizer.from_pretrained(path)
    torch.manual_seed(0)
    if args.quick:
        model = random_llama(tok, hidden_size=64, intermediate_size=128, num_attention_heads=4,
                             num_key_value_heads=2, max_position_embeddings=8192)
    else:
        model = AutoModelForCausalLM.from_pretrained(path if args.model == "tiny" else args.model)
    cfg = MultiTurnGRPOConfig(
        output_dir=str(work / "out"),
        tasks=",".join(f"airline-mini/{i}" for i in range(n_tasks)),
        samples_per_task=samples,
        per_device_train_batch_size=n_tasks * samples,
        max_steps=1,
        use_cpu=True,
        bf16=False,
        # Activations of every layer, attention probabilities included, are what filled 10+ GB at
        # this size; checkpointing keeps one layer's at a time (same for both paths).
        gradient_checkpointing=not args.no_checkpointing,
        report_to=[],
        disable_tqdm=True,
        save_strategy="no",
        system_prompt="You are an airline agent.",
        tool_detail=args.tool_detail,
        learning_rate=1e-6,
        visible_tools=args.visible_tools,
    )
    spec = RewardSpec.from_dict(SPEC)
    trainer = MultiTurnGRPOTrainer(
        model,
        cfg,
        processing_class=tok,
        spec=spec,
        peft_config=LoraConfig(r=8, target_modules="all-linear", task_type="CAUSAL_LM"),
    )
    trainer.create_optimizer_and_scheduler(num_training_steps=10)
    trainer.current_gradient_accumulation_steps = 1  # set by Trainer's loop, which we bypass
    return trainer, spec


def batch_tensors(trainer, rows: list[dict]) -> dict:
    """Pad prompt/completion ids as TRL does (left / right), with the env mask as tool_mask."""
    import torch
    from trl.trainer.utils import pad

    pad_id = trainer.processing_class.pad_token_id
    p = [torch.tensor(r["prompt_ids"]) for r in rows]
    c = [torch.tensor(r["completion_ids"]) for r in rows]
    out = {
        "prompt_ids": pad(p, padding_value=pad_id, padding_side="left"),
        "prompt_mask": pad([torch.ones_like(x) for x in p], padding_value=0, padding_side="left"),
        "completion_ids": pad(c, padding_value=pad_id, padding_side="right"),
        "completion_mask": pad([torch.ones_like(x) for x in c], padding_value=0, padding_side="right"),
        "tool_mask": pad([torch.tensor(r["env_mask"]) for r in rows], padding_value=1, padding_side="right"),
    }
    out["num_items_in_batch"] = (out["completion_mask"] * out["tool_mask"]).sum()  # as TRL computes it
    return out


def optimiser_step(trainer, inputs: dict) -> float:
    trainer.model.train()
    loss = trainer._compute_loss(trainer.model, inputs)
    loss.backward()
    trainer.optimizer.step()
    trainer.optimizer.zero_grad()
    return loss.item()


def main() -> int:
    ap = argparse.ArgumentParser()
    ap.add_argument("--tasks", type=int, default=2)
    ap.add_argument("--samples", type=int, default=2)
    ap.add_argument("--max-turns", type=int, default=2, help="assistant turns per oracle episode at most")
    ap.add_argument(
        "--tool-detail", default="minimal", help="tool schemas in the prompt: full | compact | minimal"
    )
    ap.add_argument("--visible-tools", default=VISIBLE, help="tools shown to the model (comma-separated)")
    ap.add_argument("--reps", type=int, default=3)
    ap.add_argument("--model", default="tiny", help="local checkpoint, or tiny (SmolLM2-135M)")
    ap.add_argument("--threads", type=int, default=1)
    ap.add_argument("--no-checkpointing", action="store_true", help="keep every activation (10+ GB at the default size)")
    ap.add_argument("--quick", action="store_true")
    args = ap.parse_args()
    if args.quick:  # about a minute: two-turn episodes
        args.tasks, args.samples, args.max_turns, args.tool_detail = 2, 2, 2, "minimal"
    import numpy as np
    import torch

    from calib.advantages import group_normalize
    from calib.rollout import write_episodes
    from calib.store import Store
    from trainer.rewards import batch_rewards

    torch.set_num_threads(args.threads)
    eps = episodes(args.tasks, args.samples, args.max_turns)
    work = Path(tempfile.mkdtemp(prefix="calib-bench-trainer-"))
    trainer, spec = build_trainer(args, work, args.tasks, args.samples)
    domain = trainer.calib_domain
    groups = [e["group_id"] for e in eps]

    def stock_step() -> float:
        rows = [trainer._encode(dict(e)) for e in eps]  # the same token rows (not timed: TRL has its own)
        inputs = batch_tensors(trainer, rows)
        R = np.array([float(e["outcome"]) for e in eps])
        _, g = np.unique(groups, return_inverse=True)
        inputs["advantages"] = torch.tensor(group_normalize(R, g.reshape(-1)), dtype=torch.float32)  # (B,)
        t0 = time.perf_counter()
        optimiser_step(trainer, inputs)
        return time.perf_counter() - t0

    def calib_step() -> tuple[float, float]:
        t0 = time.perf_counter()
        rows = [trainer._encode(dict(e)) for e in eps]
        outcome, turn_rewards = batch_rewards(eps, spec, domain.catalogue)
        inputs = batch_tensors(trainer, rows)
        fake = [
            {
                "calib_R": float(r),
                "calib_turn_rewards": t.tolist(),
                "calib_group": g,
                "calib_spans": row["spans"],
                "calib_success": float(bool(e["success"])),
                "calib_drift": row["drift"],
            }
            for r, t, g, row, e in zip(outcome, turn_rewards, groups, rows, eps)
        ]
        inputs["advantages"] = trainer._token_advantages(
            fake, inputs["completion_ids"].shape[1], "cpu"
        )  # (B, T)
        t_prep = time.perf_counter() - t0
        optimiser_step(trainer, inputs)
        return time.perf_counter() - t0, t_prep

    stock_step(), calib_step()  # warm-up (allocator, kernels)
    stock, ours, prep = [], [], []
    for _ in range(args.reps):
        stock.append(stock_step())
        t, p = calib_step()
        ours.append(t)
        prep.append(p)
    t0 = time.perf_counter()
    write_episodes(Store(work / "store"), eps, domain=domain, source="bench")
    t_store = time.perf_counter() - t0

    s, o = statistics.median(stock), statistics.median(ours)
    ratio = o / s
    n_tokens = int(batch_tensors(trainer, [trainer._encode(dict(e)) for e in eps])["completion_ids"].numel())
    print(
        f"batch: {len(eps)} episodes ({args.tasks} tasks x {args.samples}), {n_tokens} completion token slots, "
        f"model {'tiny random Llama' if args.quick else args.model}, LoRA r=8, {args.threads} thread(s)"
    )
    print(f"{'path':<8}{'median step s':>15}{'runs':>30}")
    print(f"{'stock':<8}{s:>15.3f}{[round(x, 3) for x in stock]!s:>30}")
    print(f"{'calib':<8}{o:>15.3f}{[round(x, 3) for x in ours]!s:>30}")
    print(
        f"calib preprocessing (tokenise + rewards + advantages): median {statistics.median(prep) * 1000:.1f} ms; "
        f"store write of the batch: {t_store * 1000:.0f} ms (not in either step)"
    )
    import resource

    peak_gb = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 2**20  # Linux: KiB
    print(f"ratio calib / stock: {ratio:.3f}; peak RSS {peak_gb:.2f} GiB")
    print(
        figure_line(
            "trainer",
            "step_time_ratio_vs_trl",
            round(ratio, 4),
            "<= 1.05",
            quick=args.quick,
            details={
                "stock_s": stock,
                "calib_s": ours,
                "calib_prep_s": prep,
                "store_write_s": t_store,
                "episodes": len(eps),
                "completion_token_slots": n_tokens,
                "peak_rss_gib": round(peak_gb, 2),
                "gradient_checkpointing": not args.no_checkpointing,
                "model": "random-llama" if args.quick else args.model,
            },
        )
    )
    return 0


if __name__ == "__main__":
    sys.exit(main())
