"""Rollout throughput against a fake OpenAI-compatible endpoint: concurrency 1 versus 32.

Both the policy (``openai``) and the simulated customer (``llm``) talk to a local fake server
(calib/testing/fake_openai.py, 127.0.0.1 only) that waits 50 ms before each reply, as a model server
would. An episode is six requests (the customer opens, the agent calls a tool, answers, the customer
thanks, the agent answers, the customer stops), so one episode at a time takes ~0.3 s of waiting. The
runner overlaps that waiting across episodes; the figure is the throughput ratio of 32 concurrent
episodes to one at a time (ideal: 32). The server runs in its own process so that it does not share
the client's interpreter.

Usage: python bench/rollout.py [--latency 0.05] [--episodes-serial 16] [--episodes 320] [--quick]
"""

from __future__ import annotations

import argparse
import asyncio
import subprocess
import sys
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))
sys.path.insert(0, str(Path(__file__).resolve().parent))

from _common import figure_line


def start_server(latency: float) -> tuple[subprocess.Popen, int]:
    proc = subprocess.Popen(
        [sys.executable, "-m", "calib.testing.fake_openai", "--latency", str(latency), "--max-seconds", "900"],
        stdout=subprocess.PIPE, text=True, cwd=ROOT,
    )
    line = proc.stdout.readline().strip()  # "PORT <n>"
    if not line.startswith("PORT "):
        proc.kill()
        raise RuntimeError(f"fake server did not start: {line!r}")
    return proc, int(line.split()[1])


def run(port: int, n_episodes: int, concurrency: int) -> dict:
    from calib.envs import load_domain
    from calib.http import EndpointConfig
    from calib.policies.openai import OpenAIPolicy
    from calib.rollout.factories import user_factory
    from calib.rollout.runner import RolloutConfig, arun_rollouts

    domain = load_domain("airline-mini")
    url = f"http://127.0.0.1:{port}/v1"
    policy = OpenAIPolicy(EndpointConfig(base_url=url, model="agent", timeout=10))
    users = user_factory("llm", endpoint=EndpointConfig(base_url=url, model="user", timeout=10))
    tasks = [domain.tasks[i % len(domain.tasks)] for i in range(n_episodes)]
    # one sample per listed task; repeated tasks get distinct samples through the run id
    cfg = RolloutConfig(samples=1, concurrency=concurrency, run_id=f"bench-c{concurrency}")
    t0 = time.perf_counter()
    eps = asyncio.run(arun_rollouts(domain, policy, users, tasks, cfg, progress=False))
    dt = time.perf_counter() - t0
    errors = sum(e["status"] == "error" for e in eps)
    turns = sum(e["info"]["n_turns"] for e in eps)
    return {"episodes": len(eps), "errors": errors, "seconds": dt, "episodes_per_s": len(eps) / dt,
            "requests": turns + sum(sum(m["role"] == "user" for m in e["messages"]) for e in eps)}


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--latency", type=float, default=0.05, help="seconds the fake server waits per reply")
    ap.add_argument("--episodes-serial", type=int, default=16, help="episodes at concurrency 1")
    ap.add_argument("--episodes", type=int, default=320, help="episodes at concurrency 32")
    ap.add_argument("--concurrency", type=int, default=32)
    ap.add_argument("--quick", action="store_true", help="4 and 96 episodes (for tests)")
    args = ap.parse_args()
    n1, nc = (4, 96) if args.quick else (args.episodes_serial, args.episodes)
    proc, port = start_server(args.latency)
    try:
        run(port, 2, 2)  # warm-up: imports, domain generation, connection pool
        one = run(port, n1, 1)
        many = run(port, nc, args.concurrency)
    finally:
        proc.terminate()
        proc.wait(10)
    assert one["errors"] == 0 and many["errors"] == 0, (one, many)
    ratio = many["episodes_per_s"] / one["episodes_per_s"]
    per_ep = one["requests"] / one["episodes"]
    print(f"fake endpoint: {args.latency * 1000:.0f} ms per reply, {per_ep:.1f} requests per episode")
    print(f"{'concurrency':<14}{'episodes':>10}{'seconds':>10}{'episodes/s':>12}{'requests/s':>12}")
    for c, r in ((1, one), (args.concurrency, many)):
        print(f"{c:<14}{r['episodes']:>10}{r['seconds']:>10.2f}{r['episodes_per_s']:>12.2f}"
              f"{r['requests'] / r['seconds']:>12.1f}")
    print(f"speedup at concurrency {args.concurrency}: {ratio:.1f}x (ideal {args.concurrency}x)")
    details = {"latency_s": args.latency, "concurrency": args.concurrency, "requests_per_episode": round(per_ep, 2),
               "serial": {k: round(v, 3) for k, v in one.items()},
               "concurrent": {k: round(v, 3) for k, v in many.items()}, "quick": args.quick}
    print(figure_line("rollout", f"speedup_c{args.concurrency}_vs_c1", round(ratio, 2), ">= 25", quick=args.quick,
                      details=details))


if __name__ == "__main__":
    main()
