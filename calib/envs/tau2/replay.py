"""Replay a tau2 results file: re-execute its tool calls in fresh tau2 environments and re-score them.

Each simulation's recorded tool calls (the agent's and, in telecom, the customer's) run again, in order,
on a fresh environment of the task; their new results replace the recorded ones; tau2's evaluator
scores the rebuilt trajectory with the recorded termination reason (tau2's rule: only a conversation
the user or the agent ended scores). Agreement with the recorded rewards says that calib drives tau2's
environment and evaluator exactly as tau2 does.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

from calib.envs.replay import ReplayRow
from calib.envs.tau2.domain import Tau2Domain, score_trajectory
from calib.envs.tau2.loader import tau2_module
from calib.errors import CalibError, UsageError
from calib.tau2_format import iter_tau2


def _task(domain: Tau2Domain, header: dict[str, Any], task_id: str) -> Any:
    """The task as the results file recorded it (tau2 ``Task``), else the domain's."""
    tasks_mod = tau2_module("tau2.data_model.tasks")
    for t in header.get("tasks") or []:
        if isinstance(t, dict) and str(t.get("id")) == task_id:
            return tasks_mod.Task.model_validate(t)
    if task_id in domain.raw_tasks:
        return domain.raw_tasks[task_id]
    raise CalibError(f"task {task_id!r} is neither in the results file nor in {domain.name}")


def replay_simulation(domain: Tau2Domain, raw_task: Any, sim: dict[str, Any]) -> tuple[Any, list[Any]]:
    """(tau2 RewardInfo, rebuilt messages) for one recorded simulation."""
    msg = tau2_module("tau2.data_model.message")
    sim_mod = tau2_module("tau2.data_model.simulation")
    run = sim_mod.SimulationRun.model_validate(sim)
    env = tau2_module("tau2.registry").registry.get_env_constructor(domain.domain)(solo_mode=False)
    init = raw_task.initial_state
    if init is not None:
        env.set_state(initialization_data=init.initialization_data,
                      initialization_actions=init.initialization_actions,
                      message_history=init.message_history or [])
    fresh: dict[str, list[Any]] = {}
    rebuilt: list[Any] = []
    for m in run.messages:
        tool_msgs = m.tool_messages if isinstance(m, msg.MultiToolMessage) else [m] if isinstance(m, msg.ToolMessage) else None
        if tool_msgs is not None:
            for t in tool_msgs:
                queue = fresh.get(t.id) or []
                rebuilt.append(queue.pop(0) if queue else t)
            continue
        rebuilt.append(m)
        for call in getattr(m, "tool_calls", None) or []:
            fresh.setdefault(call.id, []).append(env.get_response(call))
    reward = score_trajectory(domain.domain, raw_task, rebuilt, run.termination_reason.value, domain.judge)
    return reward, rebuilt


def replay_results(domain: Tau2Domain, path: Path, *, task_ids: set[str] | None = None) -> tuple[list[ReplayRow], list[dict[str, Any]]]:
    """One :class:`ReplayRow` per simulation (of ``task_ids`` when given), and the simulations replayed."""
    if not Path(path).exists():
        raise UsageError(f"no such file: {path}")
    rows: list[ReplayRow] = []
    sims: list[dict[str, Any]] = []
    for i, (file, _index, sim, err, header) in enumerate(iter_tau2(Path(path))):
        if err is not None:
            if not sims and not rows and _index is None and not isinstance(sim, dict):
                raise UsageError(f"{file}: {err}")
            rows.append(ReplayRow(index=i, task_id="?", trial=None, recorded=None, ours=None, error=err))
            continue
        if not isinstance(sim, dict):
            rows.append(ReplayRow(index=i, task_id="?", trial=None, recorded=None, ours=None,
                                  error="simulation should be an object"))
            continue
        task_id = str(sim.get("task_id"))
        if task_ids is not None and task_id not in task_ids:
            continue
        ri = sim.get("reward_info") if isinstance(sim.get("reward_info"), dict) else {}
        recorded = ri.get("reward")
        row = ReplayRow(index=i, task_id=task_id, trial=sim.get("trial"),
                        recorded=float(recorded) if isinstance(recorded, (int, float)) else None, ours=None)
        try:
            reward, _ = replay_simulation(domain, _task(domain, header, task_id), sim)
        except CalibError as e:
            row.error = str(e)
        except ValueError as e:  # pydantic: a simulation tau2 cannot read
            row.error = f"not a tau2 simulation: {str(e).splitlines()[0]}"
        else:
            row.ours = float(reward.reward)
            row.db_match = None if reward.db_check is None else bool(reward.db_check.db_match)
            checks = reward.communicate_checks or []
            row.outputs_ok = all(c.met for c in checks)
            row.missing_outputs = [c.info for c in checks if not c.met]
        rows.append(row)
        sims.append(sim)
    return rows, sims
