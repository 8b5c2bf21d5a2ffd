"""Batched turn generation: the same airline-mini episodes played one turn at a time versus batched.

Both runs play the same 16 episodes (8 tasks x 2 samples, fixed seeds) with the same policy, the
trainer's ``TrainingPolicy`` on the tiny model (SmolLM2-135M), the scripted customer, at most 4
turns of 32 new tokens, a one-line system prompt and minimal tool schemas. Baseline: the old
behaviour, one sequence per ``generate`` call (``max_batch=1``) re-reading the whole conversation
every turn (no prefix cache). calib: the turn batcher with no cap (every episode waiting on the model
in one call) and the prefix cache (each turn runs only the conversation's new tokens). Figure:
episodes per second calib / baseline (goal >= 2.5 on 2 cores).

Sampling is greedy, so the two runs should play the same episodes; the details report how many
came out identical (a difference is a near-tie flipped by batched float rounding).

Usage: python bench/generation.py [--episodes 16] [--max-turns 4] [--max-new-tokens 32] [--threads 2]
       [--quick]   (--quick: 4 episodes, 2 turns of 16 tokens, two visible tools, 1 thread, for tests:
                    the prompt drops from ~1,000 to ~200 tokens, so tests/test_bench.py stays short)
"""

from __future__ import annotations

import argparse
import os
import sys
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))
os.environ.setdefault("HF_HUB_OFFLINE", "1")

SYSTEM = "You are an airline agent. Use the tools."
GOAL = 2.5
QUICK_TOOLS = ("get_reservation_details", "cancel_reservation")


def play(model, tok, *, max_batch, prefix_cache: bool, n_episodes: int, max_turns: int, max_new_tokens: int,
         visible_tools: tuple[str, ...] | None = None):
    """Play the bench's episodes; return (episodes, seconds, backend calls)."""
    from calib.envs import load_domain
    from calib.hf_chat import GenerationConfig, HFChatModel
    from calib.rollout.runner import run_rollouts
    from trainer.policy import PromptView, TrainingPolicy

    chat = HFChatModel(model, tok, GenerationConfig(max_new_tokens=max_new_tokens, temperature=0.0,
                                                    prefix_cache_tokens=32768 if prefix_cache else 0))
    view = PromptView(system_prompt=SYSTEM, tool_detail="minimal", visible_tools=visible_tools)
    policy = TrainingPolicy(chat, view=view, max_batch=max_batch)
    domain = load_domain("airline-mini")
    samples = 2
    tasks = [t.task_id for t in domain.tasks][: max(1, n_episodes // samples)]
    calls0 = chat.backend().calls
    t0 = time.perf_counter()
    eps = run_rollouts(domain, policy, "scripted", tasks, samples=samples, max_turns=max_turns,
                       concurrency=len(tasks) * samples, run_id="bench", seed=0)
    return eps, time.perf_counter() - t0, chat.backend().calls - calls0


def main() -> int:
    ap = argparse.ArgumentParser()
    ap.add_argument("--episodes", type=int, default=16)
    ap.add_argument("--max-turns", type=int, default=4)
    ap.add_argument("--max-new-tokens", type=int, default=32)
    ap.add_argument("--threads", type=int, default=None, help="torch threads (default 2; 1 with --quick)")
    ap.add_argument("--quick", action="store_true")
    args = ap.parse_args()
    if args.quick:
        args.episodes, args.max_turns, args.max_new_tokens = 4, 2, 16
    if args.threads is None:
        # --quick runs inside the test suite, next to other work: two OpenMP threads on a busy core
        # spend most of their time in barriers (a minute of generation became ~7).
        args.threads = 1 if args.quick else 2
    import torch
    from _common import figure_line
    from transformers import AutoModelForCausalLM, AutoTokenizer

    from calib.models import tiny_model_path

    torch.set_num_threads(args.threads)
    path = tiny_model_path()
    tok = AutoTokenizer.from_pretrained(path)
    model = AutoModelForCausalLM.from_pretrained(path, dtype=torch.float32).eval()
    kw = {"n_episodes": args.episodes, "max_turns": args.max_turns, "max_new_tokens": args.max_new_tokens,
          "visible_tools": QUICK_TOOLS if args.quick else None}
    play(model, tok, max_batch=None, prefix_cache=True, **{**kw, "n_episodes": 2, "max_turns": 1})  # warm-up
    one, t_one, calls_one = play(model, tok, max_batch=1, prefix_cache=False, **kw)
    many, t_many, calls_many = play(model, tok, max_batch=None, prefix_cache=True, **kw)

    turns = sum(e["info"]["n_turns"] for e in many)
    same = sum(a["messages"] == b["messages"] for a, b in zip(one, many))
    eps_one, eps_many = len(one) / t_one, len(many) / t_many
    ratio = eps_many / eps_one
    print(f"{len(many)} episodes, {turns} assistant turns, <= {args.max_turns} turns of <= {args.max_new_tokens} "
          f"tokens, SmolLM2-135M, {args.threads} thread(s), greedy")
    print(f"{'mode':<18}{'seconds':>10}{'episodes/s':>12}{'generate calls':>16}")
    print(f"{'batch 1, no cache':<18}{t_one:>10.1f}{eps_one:>12.3f}{calls_one:>16}")
    print(f"{'batched + cache':<18}{t_many:>10.1f}{eps_many:>12.3f}{calls_many:>16}")
    print(f"speedup: {ratio:.2f}x; identical episodes: {same}/{len(many)}")
    print(figure_line(
        "generation", "episodes_per_s_batched_vs_batch1", round(ratio, 3), f">= {GOAL}", quick=args.quick,
        details={"batch1_s": t_one, "batched_s": t_many, "episodes": len(many), "turns": turns,
                 "calls_batch1": calls_one, "calls_batched": calls_many, "identical_episodes": same,
                 "threads": args.threads, "visible_tools": list(kw["visible_tools"] or ["all"])},
    ))
    return 0


if __name__ == "__main__":
    sys.exit(main())
