"""``calib loop``: iterate rollout -> ingest -> analyze -> spec -> train -> eval, resumably.

Each iteration ``i`` runs these stages in order; every finished stage is recorded (atomically) in
``<workdir>/loop_state.json``, so a killed loop re-run with the same config resumes at the stage
that was interrupted and never repeats a finished one:

=========  ===============================================================================
rollout    the current policy plays ``samples`` episodes per task; written to the store as run
           ``<name>-it<i>`` with ``iteration = i`` (one atomic ingest)
analyze    signals + discriminative analysis on that run; ``it<i>/analysis/`` gets
           analysis.parquet, analysis.json and the proposed reward_spec.yaml
spec       the proposed spec becomes ``it<i>/spec.yaml`` (with ``review``, the loop stops here so
           a person can edit it; the next run validates the edited file and goes on)
train      the policy family trains with ``it<i>/spec.yaml``
eval       the trained policy plays fresh episodes (run ``<name>-it<i>-eval``): success, pass^k
record     one row of ``calibration_history`` (a store side table): iteration, spec, weights,
           success before/after, pass^k, per-signal metrics
=========  ===============================================================================

The policy families (:mod:`trainer.families`) decide what "policy", "rollout" and "train" mean.
"""

from __future__ import annotations

import datetime as _dt
import json
import shutil
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd

from calib.errors import CalibError
from calib.store import Store
from trainer.loop_config import LoopConfig
from trainer.state import StageRecord

HISTORY_TABLE = "calibration_history"


class ReviewPause(CalibError):
    """Raised when ``review`` is on and a proposed spec awaits a person (exit code 3)."""

    exit_code = 3


class LoopState:
    """What has been done: ``stages[str(i)][stage] = {"at": time, ...result}`` in ``state.json``
    (a :class:`trainer.state.StageRecord`)."""

    def __init__(self, path: Path):
        self.record = StageRecord(path, root="stages")

    @property
    def path(self) -> Path:
        return self.record.path

    @property
    def stages(self) -> dict[str, dict[str, dict[str, Any]]]:
        return self.record.data

    @classmethod
    def load(cls, path: Path) -> LoopState:
        return cls(path)

    def done(self, it: int, stage: str) -> dict[str, Any] | None:
        return self.record.get(str(it), stage)

    def mark(self, it: int, stage: str, result: dict[str, Any]) -> None:
        now = _dt.datetime.now(_dt.timezone.utc).isoformat(timespec="seconds")
        self.record.put(str(it), stage, value={"at": now, **result})


@dataclass
class LoopResult:
    workdir: Path
    store: Path
    history: pd.DataFrame
    ran: list[str]  # "i:stage" of the stages run by this call (resumed ones are not listed)
    stopped_at: int | None = None  # iteration after which stop_when held (None: ran every iteration)


def run_loop(cfg: LoopConfig, *, log: Callable[[str], None] = print) -> LoopResult:
    """Run (or resume) the loop described by ``cfg``. Returns the calibration history."""
    from trainer.families import make_family

    work = Path(cfg.workdir)
    work.mkdir(parents=True, exist_ok=True)
    (work / "loop.json").write_text(cfg.model_dump_json(indent=2))
    store = Store(work / "store")
    state = LoopState.load(work / "loop_state.json")
    family = make_family(cfg, work)
    ran: list[str] = []
    stopped_at = None

    for it in range(cfg.iterations):
        _run_iteration(cfg, it, work, store, state, family, log, ran)
        if converged(cfg, state.done(it, "analyze") or {}):
            a = state.done(it, "analyze") or {}
            log(f"[iteration {it}] stop_when met: {a.get('mismatches')} mismatched signal(s), "
                f"corr(mean turn reward, outcome) {a.get('corr_turn_reward_outcome'):+.2f}")
            stopped_at = it
            break

    history = store.read_table(HISTORY_TABLE)
    if history is None:
        history = pd.DataFrame()
    return LoopResult(workdir=work, store=store.path, history=history, ran=ran, stopped_at=stopped_at)


def converged(cfg: LoopConfig, analysis: dict[str, Any]) -> bool:
    """``stop_when`` holds for an iteration's analysis: few enough mismatches and a high enough
    correlation (an undefined correlation never counts as converged)."""
    stop = cfg.stop_when
    if stop is None:
        return False
    mism, corr = analysis.get("mismatches"), analysis.get("corr_turn_reward_outcome")
    if mism is None or corr is None or not np.isfinite(corr):
        return False
    return mism <= stop.max_mismatches and corr > stop.min_corr


def _run_iteration(cfg: LoopConfig, it: int, work: Path, store: Store, state: LoopState, family: Any,
                   log: Callable[[str], None], ran: list[str]) -> None:
    """The six stages of iteration ``it``; a stage already recorded in ``state`` is skipped."""
    it_dir = work / f"it{it}"
    it_dir.mkdir(exist_ok=True)
    run_id = cfg.run_id(it)
    seed = cfg.seed + 1000 * it

    def stage(name: str, fn: Callable[[], dict[str, Any]]) -> dict[str, Any]:
        prev = state.done(it, name)
        if prev is not None:
            return prev
        log(f"[iteration {it}] {name}")
        state.mark(it, name, fn())
        ran.append(f"{it}:{name}")
        return state.done(it, name)

    roll = stage("rollout", lambda: family.rollout(it, run_id, store, seed=seed))
    analysis = stage("analyze", lambda: _analyze(cfg, store, run_id, it_dir, _spec_path(work, it - 1)))
    spec = stage("spec", lambda: _accept_spec(cfg, it_dir, analysis, log))
    trained = stage("train", lambda: family.train(it, Path(spec["spec"]), store, seed=seed + 1))
    ev = stage("eval", lambda: family.evaluate(it, cfg.run_id(it, "eval"), store, seed=seed + 2))
    stage("record", lambda: _record(cfg, store, it, roll, analysis, spec, trained, ev))


def _spec_path(work: Path, it: int) -> Path | None:
    p = work / f"it{it}" / "spec.yaml"
    return p if it >= 0 and p.exists() else None


def _analyze(cfg: LoopConfig, store: Store, run_id: str, it_dir: Path, prev_spec: Path | None) -> dict[str, Any]:
    """Signals + analysis of this iteration's rollouts through the one entry point of ``calib analyze``
    (:func:`calib.analysis.pipeline.analyze_and_propose`); propose a spec based on the previous one."""
    from calib.analysis.pipeline import analyze_and_propose
    from calib.analysis.propose import write_outputs
    from calib.signals.registry import available_signals
    from calib.spec import load_spec

    base_path = prev_spec or (Path(cfg.base_spec) if cfg.base_spec else None)
    base = load_spec(base_path) if base_path is not None else None
    names = cfg.analysis.signals or available_signals()
    if cfg.family == "synthetic" and not cfg.analysis.signals:
        from calib.envs.testbed import SIGNALS  # the testbed's policy is trained on these arrays

        names = list(SIGNALS)
    out = analyze_and_propose(
        store, runs=[run_id], signals=list(names), base_spec=base, mode=cfg.analysis.mode,
        settings={"n_boot": cfg.analysis.bootstrap, "seed": cfg.seed, "weight_cap": cfg.analysis.weight_cap},
        name=f"{cfg.name}-it{int(it_dir.name[2:])}", domain=cfg.domain if cfg.family != "synthetic" else "airline",
    )
    result, spec = out.result, out.spec
    paths = write_outputs(result, spec, it_dir / "analysis")
    metrics = {r["signal"]: {"verdict": r["verdict"], "group_auc": r["group_auc"], "auc": r["auc"],
                             "weight": r["proposed_weight"]} for r in result.signals}
    conv = result.convergence  # tier alignment of the spec these rollouts were trained with (base)
    corr = conv["corr_turn_reward_outcome"]
    return {"proposed_spec": str(paths["reward_spec.yaml"]), "analysis": str(paths["analysis.json"]),
            "metrics": metrics, "informative_groups": result.summary.get("informative_groups"),
            "mismatches": conv["mismatches"], "mismatched_signals": conv["mismatched_signals"],
            "corr_turn_reward_outcome": float(corr) if np.isfinite(corr) else None}


def _accept_spec(cfg: LoopConfig, it_dir: Path, analysis: dict[str, Any], log: Callable[[str], None]) -> dict[str, Any]:
    """Copy the proposal to ``spec.yaml``; with ``review``, stop until a person has looked at it."""
    from calib.spec import load_spec

    target = it_dir / "spec.yaml"
    marker = it_dir / ".awaiting_review"
    if cfg.review and not marker.exists():
        shutil.copyfile(analysis["proposed_spec"], target)
        marker.write_text("edit spec.yaml, then run calib loop again\n")
        raise ReviewPause(
            f"review: the proposed spec is at {target}; edit it if you like, then run the same "
            "calib loop command again to validate it and continue"
        )
    if not cfg.review:
        shutil.copyfile(analysis["proposed_spec"], target)
    spec = load_spec(target)  # an edited spec is validated here: errors name the field
    marker.unlink(missing_ok=True)
    log(f"spec {spec.name}: " + ", ".join(f"{t.signal} {t.weight:+g}" for t in spec.turn_rewards if t.weight))
    return {"spec": str(target), "name": spec.name, "mode": spec.advantage.mode,
            "weights": {t.signal: t.weight for t in spec.turn_rewards}}


def _record(cfg: LoopConfig, store: Store, it: int, roll: dict, analysis: dict, spec: dict, trained: dict,
            ev: dict) -> dict[str, Any]:
    """One calibration_history row per iteration; rewriting the table keeps a resumed record idempotent."""
    row = {
        "iteration": it,
        "run_id": roll.get("run_id"),
        "spec_name": spec["name"],
        "spec_path": spec["spec"],
        "mode": spec["mode"],
        "weights": json.dumps(spec["weights"]),
        "rollout_success": roll.get("success_rate"),
        "eval_success": ev.get("success_rate"),
        "pass_hat_k": json.dumps(ev.get("pass_hat_k", {})),
        "trained": bool(trained.get("trained", False)),
        "train_steps": trained.get("steps", 0),
        "signal_metrics": json.dumps(analysis["metrics"]),
        "informative_groups": analysis.get("informative_groups"),
        "mismatches": analysis.get("mismatches"),
        "corr_turn_reward_outcome": analysis.get("corr_turn_reward_outcome"),
        "recorded_at": _dt.datetime.now(_dt.timezone.utc).isoformat(timespec="seconds"),
    }
    old = store.read_table(HISTORY_TABLE)
    df = pd.DataFrame([row])
    if old is not None and len(old):
        df = pd.concat([old[old.iteration != it], df], ignore_index=True).sort_values("iteration")
    store.write_table(HISTORY_TABLE, df, mode="replace")
    return {"row": {k: v for k, v in row.items() if k not in ("signal_metrics",)}}
