"""The real-model experiment: SFT warm start, then outcome-only GRPO vs naive dense vs calibrated.

The synthetic testbed (:mod:`experiments.misalignment`) shows the mechanism without a language
model; this runs the same comparison on a real one (SmolLM2-135M by default) in airline-mini, with the
train/test task split so that success is measured on tasks no stage has seen:

1. ``demos``        oracle-with-mistakes rollouts on the train split (varied outcomes, every id
                    taken from the conversation: demonstrations a policy could have produced);
2. ``sft``          ``calib sft`` of the model on their successful episodes (shared by every arm);
3. ``calibration``  rollouts of the SFT model on the train split (sampled), then ``calib analyze``
                    of them under ``gtpo_hybrid``: the proposed spec is the calibrated arm's spec;
4. per seed, per arm, the same number of RL steps from the SFT model on the train split:
                    ``grpo`` (outcome only), ``naive_dense`` (``preset:paper-v5-naive``'s tiers under
                    ``gtpo_hybrid``), ``calibrated`` (the proposed spec, ``gtpo_hybrid``);
5. evaluation on the test split of the SFT model (per seed: its sampling differs) and of every arm:
                    ``eval_trials`` sampled episodes per task plus one greedy episode per task.

Every stage writes its result into ``state.json`` and its episodes into one store, so a killed run
resumes at the stage it was in (a stage whose episodes are stored is not played again; RL resumes
from its last checkpoint). Everything here is library code: ``calib experiment real-lm`` is the
command line around :func:`run_real_lm`.
"""

from __future__ import annotations

import dataclasses
import json
import math
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from functools import partial
from pathlib import Path
from typing import Any

import numpy as np

from calib.jsonutil import plain
from experiments.arms import Arm
from trainer.state import StageRecord

ARMS = (  # the testbed's Arm (experiments.arms): a name, an advantage mode, where the turn rewards come from
    Arm("grpo", "grpo", "none"),
    Arm("naive_dense", "gtpo_hybrid", "preset:paper-v5-naive"),
    Arm("calibrated", "gtpo_hybrid", "calibrated"),
    # the calibrated spec, recalibrated online after every step on the run's last steps (same budget)
    Arm("online", "gtpo_hybrid", "online"),
)
ARM_NAMES = tuple(a.name for a in ARMS)
DOMAIN = "airline-mini"
SHORT_PROMPT = "You are an airline agent. Use the tools."
# The task kinds of the experiment and the tools they need (a test checks that the oracle's
# successful episodes of these kinds call no other tool). Why a subset: on 2 CPU cores a 135M
# model must learn from about fifty demonstrations and a handful of RL steps; the kinds whose
# episodes are short (identify the customer, look up, then one write, a refusal or a transfer) fit
# that budget, and showing 7 tools instead of 14 takes about 600 tokens off every prompt.
KINDS = ("cancel", "forbidden", "baggage", "compensation", "transfer", "info", "cancel+baggage")
TOOLS = ("get_user_details", "get_reservation_details", "list_all_airports", "cancel_reservation",
         "update_reservation_baggages", "send_certificate", "transfer_to_human_agents")
WARM_START = Path(__file__).resolve().parents[1] / "data" / "warmstart"


@dataclass(frozen=True)
class RealLMConfig:
    """Every budget of the experiment (written into ``config.json`` next to its results).

    The defaults fit the run in about 90 minutes on 2 CPU cores with the tiny model; the prompt is a
    one-line system prompt and minimal tool schemas because a 135M model with the full airline policy
    (about 3.3k tokens) neither learns it nor fits the budget.
    """

    seeds: int = field(default=1, metadata={"help": "RL seeds (sampling, data order, LoRA init) per arm."})
    first_seed: int = 0
    model: str = field(default="tiny", metadata={"help": "Base model: tiny, a local checkpoint or a hub id."})
    system_prompt: str = SHORT_PROMPT
    tool_detail: str = "minimal"
    visible_tools: tuple[str, ...] | None = TOOLS
    kinds: tuple[str, ...] | None = field(default=KINDS, metadata={"help": "Task kinds (Task.kind) "
                                            "used on both sides of the split; None: every kind."})
    warm_start: str | None = field(default=None, metadata={"help": "Skip the demonstrations and SFT and start "
                                   "from this checkpoint or LoRA adapter (data/warmstart is the SFT stage's output)."})
    max_turns: int = 8
    max_new_tokens: int = 64
    threads: int | None = None
    train_tasks: int | None = field(default=None, metadata={"help": "At most this many train tasks (None: all), "
                                    "taken round-robin over task kinds."})
    test_tasks: int | None = field(default=None, metadata={"help": "At most this many test tasks (None: all)."})
    # 1. demonstrations
    demo_samples: int = 4  # 2 (19 successful demonstrations) left a model that succeeded only where doing nothing is right
    mistake_rate: float = 0.1
    # 2. SFT
    sft_epochs: float = 2.0
    sft_lora_r: int = 8
    sft_learning_rate: float = 1e-3  # 2e-4 for 2 epochs left a model that called a tool in 2 of 32 episodes
    # 3. calibration batch
    calib_samples: int = 4
    calib_tasks: int | None = field(default=8, metadata={"help": "Train tasks in the calibration batch "
                                    "(round-robin over kinds; None: all)."})
    # 4. RL
    rl_steps: int = 2
    rl_tasks_per_step: int = 1
    rl_samples: int = 4
    rl_learning_rate: float = 1e-3  # 5e-5 moved no weight by more than 4e-5 in two steps: no sampled token changed
    rl_informative_tasks: bool = field(default=True, metadata={"help": "RL only on the train tasks where the "
                                       "calibration batch had mixed success (all calibration tasks if none had)."})
    rl_lora_r: int = 8
    # the online arm: recalibrate after every step on all of its steps so far; one informative group is
    # enough to move a weight (a two-step run sees one or two groups), the interval rule still applies
    online_every: int = 1
    online_min_groups: int = 1
    temperature: float = 1.0
    # 5. evaluation
    eval_trials: int = 2

    def __post_init__(self) -> None:
        for name in ("seeds", "rl_steps", "rl_tasks_per_step", "eval_trials", "demo_samples", "max_turns"):
            if getattr(self, name) < 1:
                raise ValueError(f"{name}={getattr(self, name)}: expected >= 1")
        for name in ("rl_samples", "calib_samples"):
            if getattr(self, name) < 2:
                raise ValueError(f"{name}={getattr(self, name)}: a group needs at least 2 episodes")

    def to_dict(self) -> dict[str, Any]:
        return dataclasses.asdict(self)

    @property
    def view_args(self) -> dict[str, Any]:
        """The prompt options shared by SFT, RL and every rollout (one view of the conversation)."""
        return {"system_prompt": self.system_prompt, "tool_detail": self.tool_detail,
                "visible_tools": ",".join(self.visible_tools) if self.visible_tools else None}


def quick_config(seeds: int = 1) -> RealLMConfig:
    """Minutes instead of an hour (every stage runs, on a smoke-test budget): the shipped warm start
    (``data/warmstart``, when the repository has one) instead of demonstrations + SFT (an SFT of a few
    steps gives a model that never succeeds, so RL has nothing to learn from), two tasks a side, one
    RL step per arm (on a task where the calibration batch had mixed success), short episodes, one
    sampled trial and the greedy one per test task. Without a shipped warm start the two stages run
    on the quick budget."""
    shipped = (WARM_START / "adapter_config.json").is_file()
    return RealLMConfig(seeds=seeds, warm_start=str(WARM_START) if shipped else None, train_tasks=2, test_tasks=2,
                        calib_tasks=2, calib_samples=4, rl_steps=1, rl_tasks_per_step=1, rl_samples=4, max_turns=6,
                        max_new_tokens=48, eval_trials=1)


# ------------------------------------------------------------------------------------------------ state


class State:
    """``state.json``: the result of every finished stage (a :class:`trainer.state.StageRecord`, as the
    loop's), with its wall time; a finished stage is not run again."""

    def __init__(self, path: Path):
        self.record = StageRecord(path)

    @property
    def data(self) -> dict[str, Any]:
        return self.record.data

    def run(self, name: str, fn: Callable[[], dict[str, Any]], log: Callable[[str], None]) -> dict[str, Any]:
        done = self.record.get(name)
        if done is not None:
            log(f"{name}: done earlier")
            return done
        t0 = time.perf_counter()
        log(f"{name} ...")
        out = dict(fn())
        out["seconds"] = round(time.perf_counter() - t0, 1)
        self.record.put(name, value=plain(out, default=str))
        log(f"{name}: {out['seconds']:.0f} s")
        return out


# ------------------------------------------------------------------------------------------------ stages


def _split_ids(split: str, limit: int | None = None, kinds: tuple[str, ...] | None = None) -> list[str]:
    """Task ids of a split; with ``limit``, that many taken round-robin over the task kinds, so a
    small budget still sees every kind of request it can."""
    from calib.envs import load_domain
    from calib.envs.splits import split_task_ids

    dom = load_domain(DOMAIN)
    kind = {t.task_id: t.kind for t in dom.tasks}
    ids = [t for t in split_task_ids(dom, split) if kinds is None or kind[t] in kinds]
    if limit is None or limit >= len(ids):
        return ids
    rank: dict[str, int] = {}
    order = []
    for i, t in enumerate(ids):
        j = rank.get(kind[t], 0)
        rank[kind[t]] = j + 1
        order.append((j, i, t))
    return [t for _, _, t in sorted(order)[:limit]]


def _stored(store: Any, run_id: str) -> int:
    return int(store.query("SELECT count(*) AS n FROM episodes WHERE run_id = ?", [run_id]).n[0])


def demos(cfg: RealLMConfig, store: Any) -> dict[str, Any]:
    """Oracle-with-mistakes episodes on the train split (the SFT data)."""
    from calib.policies.oracle import OracleConfig, OraclePolicy
    from calib.rollout.runner import run_rollouts

    if not _stored(store, "demos"):
        policy = OraclePolicy(OracleConfig.uniform(cfg.mistake_rate))
        run_rollouts(DOMAIN, policy, "scripted", _split_ids("train", cfg.train_tasks, cfg.kinds),
                     samples=cfg.demo_samples, max_turns=30, concurrency=64, run_id="demos", store=store,
                     seed=cfg.first_seed)
    return run_stats(store, "demos")


def sft(cfg: RealLMConfig, store: Any, out: Path) -> dict[str, Any]:
    from trainer.sft import SFTJob, run_sft

    job = SFTJob(store=store.path, runs=["demos"], model=cfg.model, output_dir=out, domain=DOMAIN, split="train",
                 epochs=cfg.sft_epochs, learning_rate=cfg.sft_learning_rate, lora_r=cfg.sft_lora_r,
                 save_steps=50, seed=cfg.first_seed, threads=cfg.threads, resume=_resumable(out),
                 **cfg.view_args)
    r = run_sft(job)
    losses = [h["loss"] for h in r.log_history if "loss" in h]
    return {"model": str(r.merged_dir), "steps": r.global_step, "episodes": r.episodes, "tokens": r.tokens,
            "first_loss": losses[0] if losses else None, "final_loss": losses[-1] if losses else None}


def _resumable(out: Path) -> bool:
    from trainer.run import complete_checkpoints

    return bool(complete_checkpoints(out))


def play(cfg: RealLMConfig, store: Any, model: str, run_id: str, *, split: str, samples: int, seed: int,
         temperature: float, tasks: list[str] | None = None) -> dict[str, Any]:
    """Episodes of a local model on a split, written to the store (skipped when already there)."""
    if not _stored(store, run_id):
        from calib.hf_chat import GenerationConfig
        from calib.rollout.factories import load_chat_model
        from calib.rollout.runner import run_rollouts
        from trainer.policy import PromptView, TrainingPolicy

        if cfg.threads:
            import torch

            torch.set_num_threads(cfg.threads)
        chat = load_chat_model(model, generation=GenerationConfig(max_new_tokens=cfg.max_new_tokens,
                                                                  temperature=temperature))
        view = PromptView(system_prompt=cfg.system_prompt, tool_detail=cfg.tool_detail,
                          visible_tools=cfg.visible_tools)
        policy = TrainingPolicy(chat, view=view, name=run_id)
        limit = cfg.train_tasks if split == "train" else cfg.test_tasks
        run_rollouts(DOMAIN, policy, "scripted", tasks or _split_ids(split, limit, cfg.kinds), samples=samples,
                     max_turns=cfg.max_turns, concurrency=256, run_id=run_id, store=store, seed=seed)
    return run_stats(store, run_id)


def run_stats(store: Any, run_id: str) -> dict[str, Any]:
    """Success, per-task success, informative groups, turns and tool use of a stored run (one query each)."""
    per_task = store.query(
        "SELECT task_id, avg(success::DOUBLE) AS s, count(*) AS n, avg(n_turns) AS turns FROM episodes "
        "WHERE run_id = ? AND status <> 'error' GROUP BY task_id ORDER BY task_id", [run_id])
    groups = store.query(
        "SELECT group_id, stddev_pop(outcome) AS sd FROM episodes WHERE run_id = ? AND status <> 'error' "
        "GROUP BY group_id HAVING count(*) > 1", [run_id])
    calls = store.query(
        "SELECT count(*) FILTER (WHERE t.kind = 'tool_call') AS calls, count(*) AS turns, "
        "count(DISTINCT t.episode_id) FILTER (WHERE t.kind = 'tool_call') AS eps_with_call "
        "FROM turns t JOIN episodes e USING (episode_id) WHERE e.run_id = ?", [run_id])
    n = int(per_task.n.sum()) if len(per_task) else 0
    s = per_task.s.to_numpy(dtype=float)
    w = per_task.n.to_numpy(dtype=float)
    return {
        "run_id": run_id,
        "episodes": n,
        "success": float((s * w).sum() / n) if n else float("nan"),
        "per_task": {str(t): float(x) for t, x in zip(per_task.task_id, s)},
        "tasks_between": int(((s > 0) & (s < 1)).sum()),
        "tasks": len(per_task),
        "turns": float((per_task.turns.to_numpy(dtype=float) * w).sum() / n) if n else float("nan"),
        "informative_share": float((groups.sd.to_numpy(dtype=float) > 0).mean()) if len(groups) else float("nan"),
        "tool_call_turns": int(calls.calls[0]),
        "agent_turns": int(calls.turns[0]),
        "episodes_with_tool_call": int(calls.eps_with_call[0]),
    }


def calibrate(cfg: RealLMConfig, store: Any, out: Path) -> dict[str, Any]:
    """Signals + analysis of the SFT model's train-split rollouts, through ``calib analyze``'s entry point."""
    from calib.analysis.pipeline import analyze_and_propose
    from calib.analysis.propose import write_outputs

    o = analyze_and_propose(store, runs=["calibration"], mode="gtpo_hybrid", settings={"seed": cfg.first_seed},
                            name="real-lm-calibrated", domain=DOMAIN)
    result, spec = o.result, o.spec
    paths = write_outputs(result, spec, out)
    verdicts = {r["signal"]: {"verdict": r["verdict"], "group_auc": r["group_auc"], "weight": r["proposed_weight"]}
                for r in result.signals}
    return {"spec": str(paths["reward_spec.yaml"]), "analysis": str(paths["analysis.json"]),
            "informative_groups": result.summary.get("informative_groups"), "signals": verdicts}


def arm_spec(name: str, calibrated: Path, out: Path) -> Path:
    """The arm's spec file: written once from the preset or the proposal, with the arm's mode."""
    from calib.spec import load_spec, save_spec

    arm = next(a for a in ARMS if a.name == name)
    path = out / f"{name}.yaml"
    if path.exists():
        return path
    base = load_spec(calibrated) if arm.needs_calibration else arm.fixed_spec()
    spec = base.model_copy(update={"name": f"real-lm-{name}",
                                   "advantage": base.advantage.model_copy(update={"mode": arm.mode})})
    save_spec(spec, path)
    return path


def rl_tasks(cfg: RealLMConfig, calibration: dict[str, Any]) -> list[str]:
    """The train tasks the RL arms sample from (the same list for every arm).

    A GRPO group whose episodes all succeed or all fail has zero advantage under every arm, so a step
    spent on it teaches nothing; practitioners filter such prompts (DAPO's dynamic sampling does it
    online). The calibration batch already measured the SFT model on these tasks: keep those with
    mixed success, and fall back to every calibration task when none had."""
    per_task = calibration.get("per_task", {})
    if not cfg.rl_informative_tasks:
        return _split_ids("train", cfg.train_tasks, cfg.kinds)
    mixed = [t for t, s in per_task.items() if 0.0 < s < 1.0]
    return sorted(mixed or per_task, key=_task_number)


def _task_number(task_id: str) -> tuple[int, str]:
    tail = task_id.rsplit("/", 1)[-1]
    return (int(tail), task_id) if tail.isdigit() else (1 << 30, task_id)


def train_arm(cfg: RealLMConfig, store: Any, sft_model: str, spec: Path, out: Path, models: Path,
              name: str, seed: int, tasks: list[str]) -> dict[str, Any]:
    """``calib train`` of one arm from the SFT model; the adapter merged into ``models/<name>-s<seed>``."""
    from trainer.hf_family import merge_adapter
    from trainer.run import TrainJob, run_train

    run_id = f"train-{name}-s{seed}"
    job = TrainJob(spec=spec, model=sft_model, output_dir=out, domain=DOMAIN, user="scripted", store=store.path,
                   run_id=run_id, tasks=",".join(tasks), split="train",
                   samples_per_task=cfg.rl_samples, batch_size=cfg.rl_samples * cfg.rl_tasks_per_step,
                   max_turns=cfg.max_turns, max_new_tokens=cfg.max_new_tokens, max_steps=cfg.rl_steps,
                   save_steps=max(1, cfg.rl_steps // 2), learning_rate=cfg.rl_learning_rate, lora_r=cfg.rl_lora_r,
                   temperature=cfg.temperature, seed=seed, threads=cfg.threads, resume=_resumable(out),
                   **cfg.view_args, **(_online(cfg) if next(a for a in ARMS if a.name == name).online else {}))
    result = run_train(job)
    merged = merge_adapter(sft_model, result.adapter_dir, models / f"{name}-s{seed}")
    logs = [h for h in result.log_history if "calib/success_rate" in h]
    stats = run_stats(store, run_id)
    return {
        "model": str(merged),
        "steps": result.global_step,
        "curve": [float(h["calib/success_rate"]) for h in logs],
        "mean_abs_advantage": _mean([h.get("calib/advantage_abs_mean") for h in logs]),
        "advantage_std": _mean([h.get("calib/advantage_std") for h in logs]),
        "informative_share": stats["informative_share"],
        "turns": stats["turns"],
        "train_success": stats["success"],
    }


def _online(cfg: RealLMConfig) -> dict[str, Any]:
    """The online arm's recalibration options of ``calib train``."""
    return {"recalibrate_every": cfg.online_every, "recalibration_window": cfg.rl_steps,
            "recalibration_min_groups": cfg.online_min_groups}


def _mean(xs: list[Any]) -> float:
    v = [float(x) for x in xs if x is not None and math.isfinite(float(x))]
    return float(np.mean(v)) if v else float("nan")


def evaluate(cfg: RealLMConfig, store: Any, model: str, label: str, seed: int) -> dict[str, Any]:
    """Test-split success of a model: ``eval_trials`` sampled episodes per task, and one greedy."""
    sampled = play(cfg, store, model, f"eval-{label}-s{seed}", split="test", samples=cfg.eval_trials, seed=seed,
                   temperature=cfg.temperature)
    greedy = play(cfg, store, model, f"eval-{label}-greedy", split="test", samples=1, seed=0, temperature=0.0)
    return {"sampled": sampled, "greedy": greedy}


# ------------------------------------------------------------------------------------------------ summary


def interval(values: list[float], successes: int | None = None, n: int | None = None) -> tuple[float, float]:
    """95% interval of a success rate: a t-interval over seeds when there are two or more, else the
    Wilson interval over the episodes of the single seed (so a one-seed run still says how sure it is)."""
    from scipy import stats

    v = np.asarray([x for x in values if math.isfinite(x)], dtype=float)
    if len(v) >= 2:
        h = stats.t.ppf(0.975, len(v) - 1) * v.std(ddof=1) / math.sqrt(len(v))
        return float(max(0.0, v.mean() - h)), float(min(1.0, v.mean() + h))
    if successes is None or not n:
        return float("nan"), float("nan")
    z = 1.959963984540054
    p = successes / n
    c = (p + z * z / (2 * n)) / (1 + z * z / n)
    h = z * math.sqrt(p * (1 - p) / n + z * z / (4 * n * n)) / (1 + z * z / n)
    return float(max(0.0, c - h)), float(min(1.0, c + h))


def arm_summary(evals: list[dict[str, Any]], trains: list[dict[str, Any]] | None = None) -> dict[str, Any]:
    """Mean held-out success over seeds with its 95% interval, greedy success and training behaviour."""
    succ = [e["sampled"]["success"] for e in evals]
    n = sum(e["sampled"]["episodes"] for e in evals)
    k = round(sum(e["sampled"]["success"] * e["sampled"]["episodes"] for e in evals))
    lo, hi = interval(succ, k, n)
    out: dict[str, Any] = {
        "success": float(np.mean(succ)), "ci": [lo, hi], "ci_over": "seeds" if len(succ) > 1 else "episodes",
        "per_seed": succ, "greedy_success": _mean([e["greedy"]["success"] for e in evals]),
        "eval_turns": _mean([e["sampled"]["turns"] for e in evals]),
        "tasks_between": _mean([e["sampled"]["tasks_between"] for e in evals]),
    }
    if trains:
        out.update({
            "informative_share": _mean([t["informative_share"] for t in trains]),
            "mean_abs_advantage": _mean([t["mean_abs_advantage"] for t in trains]),
            "train_turns": _mean([t["turns"] for t in trains]),
            "train_success": _mean([t["train_success"] for t in trains]),
            "curves": [t["curve"] for t in trains],
        })
    return out


# ------------------------------------------------------------------------------------------------ run


RUNTIME_ONLY = ("threads",)  # how fast, not what: may change when a run is resumed


def same_settings(recorded: dict[str, Any], now: dict[str, Any]) -> bool:
    """Whether a resumed run keeps the recorded settings (``RUNTIME_ONLY`` fields aside)."""
    strip = lambda d: {k: v for k, v in json.loads(json.dumps(d)).items() if k not in RUNTIME_ONLY}
    return strip(recorded) == strip(now)


def run_real_lm(cfg: RealLMConfig, out: Path, *, log: Callable[[str], None] = lambda s: None,
                emit: Callable[[dict[str, Any]], None] = lambda d: None) -> dict[str, Any]:
    """Run (or resume) the whole experiment in ``out``; return the summary (also in ``results.json``)."""
    from calib.store import Store

    out.mkdir(parents=True, exist_ok=True)
    cfg_path = out / "config.json"
    if cfg_path.exists() and not same_settings(json.loads(cfg_path.read_text()), cfg.to_dict()):
        from calib.errors import UsageError

        raise UsageError(f"--out {out} holds a run with other settings ({cfg_path}); choose another directory")
    cfg_path.write_text(json.dumps(cfg.to_dict(), indent=1))
    store = Store(out / "store")
    state = State(out / "state.json")
    if cfg.warm_start:
        from calib.models import resolve_model

        d = {"success": float("nan")}
        sft_model = resolve_model(cfg.warm_start)  # an adapter is merged once into the model cache
    else:
        d = state.run("demos", lambda: demos(cfg, store), log)
        sft_model = state.run("sft", lambda: sft(cfg, store, out / "sft"), log)["model"]
    calib_ids = _split_ids("train", cfg.calib_tasks, cfg.kinds)
    c = state.run("calibration", lambda: play(cfg, store, sft_model, "calibration", split="train",
                                              samples=cfg.calib_samples, seed=cfg.first_seed,
                                              temperature=cfg.temperature, tasks=calib_ids), log)
    a = state.run("analyze", lambda: calibrate(cfg, store, out / "analysis"), log)
    specs = {name: arm_spec(name, Path(a["spec"]), out / "specs") for name in ARM_NAMES}
    tasks = rl_tasks(cfg, c)
    evals: dict[str, list[dict[str, Any]]] = {"sft": []}
    trains: dict[str, list[dict[str, Any]]] = {}
    for seed in range(cfg.first_seed, cfg.first_seed + cfg.seeds):
        evals["sft"].append(state.run(f"eval/sft/s{seed}", partial(evaluate, cfg, store, sft_model, "sft", seed), log))
        for name in ARM_NAMES:
            tr = state.run(f"train/{name}/s{seed}", partial(train_arm, cfg, store, sft_model, specs[name],
                                                            out / "checkpoints" / f"{name}-s{seed}", out / "models",
                                                            name, seed, tasks), log)
            trains.setdefault(name, []).append(tr)
            ev = state.run(f"eval/{name}/s{seed}", partial(evaluate, cfg, store, tr["model"], f"{name}-s{seed}", seed),
                           log)
            evals.setdefault(name, []).append(ev)
    arms = {name: arm_summary(evals[name], trains[name]) for name in ARM_NAMES}
    for name in ARM_NAMES:
        emit({"experiment": "real-lm", "arm": name, **{k: v for k, v in arms[name].items() if k != "curves"}})
    sft_sum = arm_summary(evals["sft"])
    summary = {
        "experiment": "real-lm",
        "sft_success": sft_sum["success"],
        "sft_ci": sft_sum["ci"],
        "sft_greedy_success": sft_sum["greedy_success"],
        "sft_tasks_between": sft_sum["tasks_between"],
        "test_tasks": len(_split_ids("test", cfg.test_tasks, cfg.kinds)),
        "sft_tool_call_episodes": _mean([e["sampled"]["episodes_with_tool_call"] / max(1, e["sampled"]["episodes"])
                                         for e in evals["sft"]]),
        "informative_share": _mean([t["informative_share"] for ts in trains.values() for t in ts]),
        "calibration_informative_share": c["informative_share"],
        "rl_tasks": tasks,
        "arms": {name: {k: v for k, v in arms[name].items() if k != "curves"} for name in ARM_NAMES},
        "seeds": cfg.seeds,
        "seconds": round(sum(v["seconds"] for v in state.data.values()), 1),  # every stage, across resumes
        "demo_success": d["success"],
    }
    result = {"summary": summary, "config": cfg.to_dict(), "stages": state.data, "arms": arms, "sft": sft_sum,
              "analysis": a}
    (out / "results.json").write_text(json.dumps(plain(result, default=str), indent=1))
    emit(summary)
    return result
