"""Write a tau2 results file with several trials per task, for the tests (needs the ``tau2`` package).

    python scripts/make_tau2_fixture.py tests/data/tau2_airline_oracle_4trials.json

How it is made: calib's noisy oracle (mistake rate 0.3, seeded) and scripted customer play tau2:airline
tasks through calib's runner; every tool call runs in tau2's own ``Environment`` and every reward is
tau2's own ``evaluate_simulation`` (``calib.envs.tau2``). The conversations are then turned into tau2's
``SimulationRun`` models and saved with tau2's own ``Results.save``: the file has exactly the layout
``tau2 run`` writes. Only the conversation driver is calib's (tau2's orchestrator needs LLM agents).
"""

from __future__ import annotations

import argparse
import datetime as _dt
import json
import uuid
from pathlib import Path


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("out", type=Path)
    ap.add_argument("--tasks", default="2,6,18,32", help="tau2:airline task ids (default: 4 test-split tasks)")
    ap.add_argument("--trials", type=int, default=4)
    ap.add_argument("--mistake-rate", type=float, default=0.3)
    ap.add_argument("--seed", type=int, default=7)
    args = ap.parse_args()

    from calib.envs import load_domain
    from calib.envs.tau2.convert import to_tau2_messages
    from calib.envs.tau2.loader import tau2_module
    from calib.policies.oracle import OracleConfig, OraclePolicy
    from calib.rollout.runner import run_rollouts

    sim_mod = tau2_module("tau2.data_model.simulation")
    dom = load_domain("tau2:airline")
    ids = [t.strip() for t in args.tasks.split(",")]
    episodes = run_rollouts(dom, OraclePolicy(OracleConfig.uniform(args.mistake_rate)), "scripted", ids,
                            samples=args.trials, max_turns=30, seed=args.seed, run_id="fixture")
    now = _dt.datetime.now().isoformat()
    sims = []
    for e in episodes:
        details = e["info"]["reward"]["details"]
        sims.append(sim_mod.SimulationRun(
            id=str(uuid.uuid5(uuid.NAMESPACE_URL, e["episode_id"])), task_id=e["task_id"], timestamp=now,
            start_time=now, end_time=now, duration=0.0,
            termination_reason=sim_mod.TerminationReason(details["termination_reason"]),
            agent_cost=0.0, user_cost=0.0, reward_info=sim_mod.RewardInfo.model_validate(details["tau2_reward_info"]),
            messages=to_tau2_messages(e["messages"]), trial=e["info"]["sample"], seed=e["info"]["seed"]))
    info = sim_mod.Info.model_validate({
        "git_commit": "unknown", "num_trials": args.trials, "max_steps": 200, "max_errors": dom.max_errors,
        "user_info": {"implementation": "calib_scripted_user", "llm": None, "llm_args": {}},
        "agent_info": {"implementation": f"calib_oracle(mistake_rate={args.mistake_rate:g})", "llm": None,
                       "llm_args": {}},
        "environment_info": {"domain_name": "airline", "policy": dom.policy, "tool_defs": None},
        "seed": args.seed,
    })
    results = sim_mod.Results(timestamp=now, info=info, tasks=[dom.raw_tasks[i] for i in ids], simulations=sims)
    args.out.parent.mkdir(parents=True, exist_ok=True)
    results.save(args.out)
    ok = sum(s.reward_info.reward == 1.0 for s in sims)
    print(json.dumps({"file": str(args.out), "simulations": len(sims), "successes": ok}))


if __name__ == "__main__":
    main()
