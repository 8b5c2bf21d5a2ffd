"""Online recalibration: re-measure the spec's signals on the policy that is being trained.

A spec calibrated once, on rollouts of the policy before training, is gamed as the policy moves: a
signal that marked good episodes under the first policy (an early reply, say) becomes the thing the
policy learns to do, and stops marking anything or starts marking failures. ``calib train
--recalibrate-every N`` therefore re-runs the same analysis as ``calib analyze`` (the one entry point,
:func:`calib.analysis.pipeline.analyze_and_propose`) every N optimiser steps on the run's episodes of
the last W steps, and moves the weights toward what it finds:

- a signal whose evidence in the window is **thin** keeps its current weight rather than flipping on
  noise: fewer than ``min_groups`` informative groups (mixed outcomes), or a group-AUC interval that
  covers 0.5 (no effect either way);
- otherwise its weight becomes ``(1 - blend) * current + blend * proposed`` (``blend`` 1 takes the new
  weight as it is; 0.5 halves the step, which damps a window that happened to be unusual).

Every recalibration is a versioned spec (its provenance names the step, the window, and per signal
the weight before and after, the verdict and the metrics behind it), written to the run's output
folder and recorded in the store's ``calibration_history`` table. :func:`decide_weights` is the pure
rule; :func:`recalibrate` does the I/O around it.
"""

from __future__ import annotations

import math
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import pandas as pd

from calib.errors import CalibError, UsageError
from calib.spec import RewardSpec, save_spec
from calib.store.selection import Selection
from calib.textutil import cut, visible

HISTORY_TABLE = "recalibration_history"  # the loop's per-iteration table is calibration_history
SPEC_DIR = "recalibration"  # under the run's output folder: spec-step000010.yaml, ...


@dataclass
class RecalibrationConfig:
    """How often, on what and how far the weights move (``calib train --recalibrate-*``)."""

    every: int = field(default=0, metadata={"help": "Optimiser steps between recalibrations (0: never)."})
    window: int = field(default=10, metadata={"help": "Steps of episodes each recalibration reads (the last W)."})
    blend: float = field(default=0.5, metadata={"help": "Share of the new weight taken: new = (1-b) old + b proposed."})
    min_groups: int = field(default=3, metadata={"help": "Informative groups a signal needs in the window to move."})
    # joint: measured better than auc for every online arm in all three testbed settings (docs/results.md)
    rule: str = field(default="joint", metadata={"help": "Calibration rule of the analysis: joint | auc | irc."})
    n_boot: int = field(default=200, metadata={"help": "Bootstrap replicates of each recalibration's intervals."})
    seed: int = field(default=0, metadata={"help": "Seed of the bootstrap draws."})

    def __post_init__(self) -> None:
        if self.every < 0:
            raise UsageError(f"recalibrate_every={self.every}: expected >= 0 (0 turns it off)")
        if self.window < 1:
            raise UsageError(f"recalibration_window={self.window}: expected >= 1 step")
        if not (math.isfinite(self.blend) and 0.0 < self.blend <= 1.0):
            raise UsageError(f"recalibration_blend={self.blend}: expected a share in (0, 1]")
        if self.min_groups < 1:
            raise UsageError(f"recalibration_min_groups={self.min_groups}: expected >= 1")
        if self.rule not in ("auc", "joint", "irc"):
            raise UsageError(f"recalibration_rule={self.rule!r}: expected auc, joint or irc")

    def due(self, step: int) -> bool:
        return self.every > 0 and step > 0 and step % self.every == 0


@dataclass
class Recalibration:
    """One recalibration: the new spec and, per signal, what was decided and why."""

    step: int
    first_step: int
    spec: RewardSpec
    changes: list[dict[str, Any]]
    episodes: int
    informative_groups: int
    path: Path | None = None

    def changed(self) -> list[dict[str, Any]]:
        return [c for c in self.changes if c["weight_after"] != c["weight_before"]]

    def log_line(self) -> str:
        """One line for the training log: the window and what changed (or that nothing did)."""
        head = (f"recalibration at step {self.step} (steps {self.first_step}-{self.step}, {self.episodes} episodes, "
                f"{self.informative_groups} informative groups): ")
        moved = self.changed()
        if not moved:
            thin = sum(c["decision"].startswith("kept") for c in self.changes)
            return head + f"no weight changed ({thin} of {len(self.changes)} signals on thin evidence)"
        return head + ", ".join(
            f"{cut(visible(c['signal']), 60)} {c['weight_before']:+.3f} -> {c['weight_after']:+.3f} ({c['verdict']})" for c in moved
        )


def decide_weights(rows: dict[str, dict[str, Any]], current: dict[str, float], *, blend: float, min_groups: int,
                   null: float = 0.5) -> list[dict[str, Any]]:
    """Per signal of ``current`` (name -> weight in force): the weight after this recalibration.

    ``rows``: the analysis's rows by signal (``verdict``, ``proposed_weight``, ``group_auc``,
    ``group_auc_ci``, ``informative_groups``). Pure: no I/O, deterministic.
    """
    out = []
    for name, before in current.items():
        r = rows.get(name)
        entry: dict[str, Any] = {"signal": name, "weight_before": float(before)}
        if r is None:
            entry.update(weight_after=float(before), proposed=None, verdict=None,
                         decision="kept (not measured in the window)")
            out.append(entry)
            continue
        lo, hi = r["group_auc_ci"]
        n_inf = int(r["informative_groups"])
        entry.update(proposed=float(r["proposed_weight"]), verdict=r["verdict"], group_auc=r["group_auc"],
                     ci=[lo, hi], informative_groups=n_inf, redundant_with=r.get("redundant_with"))
        if n_inf < min_groups:
            entry.update(weight_after=float(before), decision=f"kept (thin: {n_inf} informative groups < {min_groups})")
        elif not (_finite(lo) and _finite(hi)) or lo <= null <= hi:
            entry.update(weight_after=float(before), decision="kept (thin: the interval covers no effect)")
        else:
            after = (1.0 - blend) * float(before) + blend * float(r["proposed_weight"])
            entry.update(weight_after=round(after, 6), decision="updated")
        out.append(entry)
    return out


def recalibrate(store: Any, spec: RewardSpec, *, run_id: str, step: int, config: RecalibrationConfig,
                out_dir: str | Path | None = None, domain: str = "airline") -> Recalibration:
    """Analyse ``run_id``'s episodes of steps ``step - window + 1 .. step`` under ``spec`` (its mode and
    signals) and return the recalibrated spec; write it under ``out_dir/recalibration/`` and record it
    in the store when ``out_dir`` is given. Raises CalibError when the window holds no episodes."""
    from calib.analysis.pipeline import analyze_and_propose

    first = window_start(step, config)
    sel = Selection(runs=(run_id,), first_step=first, last_step=step)
    out = analyze_and_propose(
        store, runs=sel, signals=list(spec.turn_weights()), base_spec=spec, domain=domain, name=spec.name,
        settings=_settings(config),
    )
    rec = _recalibration(out, spec, run_id=run_id, step=step, first_step=first, config=config)
    if out_dir is not None:
        rec.path = record(store, rec, run_id=run_id, out_dir=out_dir)
    return rec


def recalibrate_arrays(data: Any, spec: RewardSpec, *, step: int, config: RecalibrationConfig,
                       run_id: str = "arrays") -> Recalibration:
    """:func:`recalibrate` on the window's episodes already in memory (``EpisodeData`` with the spec's
    signals as ``values``: the testbed), through the same analysis
    (:func:`calib.analysis.pipeline.propose_from_arrays`) and the same decision."""
    from calib.analysis.pipeline import propose_from_arrays

    out = propose_from_arrays(data, base=spec, name=spec.name, settings=_settings(config))
    return _recalibration(out, spec, run_id=run_id, step=step, first_step=window_start(step, config),
                          config=config)


def window_start(step: int, config: RecalibrationConfig) -> int:
    """First step of the window that a recalibration at ``step`` reads."""
    return max(1, step - config.window + 1)


def _settings(config: RecalibrationConfig) -> dict[str, Any]:
    return {"rule": config.rule, "n_boot": config.n_boot, "seed": config.seed}


def _recalibration(out: Any, spec: RewardSpec, *, run_id: str, step: int, first_step: int,
                   config: RecalibrationConfig) -> Recalibration:
    rows = {r["signal"]: r for r in out.result.signals}
    changes = decide_weights(rows, spec.turn_weights(), blend=config.blend, min_groups=config.min_groups,
                             null=out.config.null_auc)
    new = versioned_spec(spec, changes, run_id=run_id, step=step, first_step=first_step, config=config,
                         created=out.result.summary["created"])
    return Recalibration(step=step, first_step=first_step, spec=new, changes=changes,
                         episodes=int(out.result.summary["episodes"]),
                         informative_groups=int(out.result.summary["informative_groups"]))


def versioned_spec(spec: RewardSpec, changes: list[dict[str, Any]], *, run_id: str, step: int, first_step: int,
                   config: RecalibrationConfig, created: str) -> RewardSpec:
    """``spec`` with the new weights and a provenance that says which recalibration made them."""
    data = spec.to_dict()
    after = {c["signal"]: c["weight_after"] for c in changes}
    data["turn_rewards"] = [{**t, "weight": after.get(t["signal"], t["weight"])} for t in data["turn_rewards"]]
    prev = (spec.provenance.model_dump() if spec.provenance is not None else {})
    version = int((prev.get("recalibration") or {}).get("version", 0)) + 1
    data["provenance"] = {
        "runs": [run_id],
        "created": created,
        "store": prev.get("store"),
        "metrics": {c["signal"]: {k: c.get(k) for k in ("verdict", "group_auc", "ci", "informative_groups")}
                    for c in changes if c.get("verdict") is not None},
        "recalibration": {
            "version": version, "step": step, "window": [first_step, step], "blend": config.blend,
            "rule": config.rule, "min_groups": config.min_groups,
            "changes": [{k: c.get(k) for k in ("signal", "weight_before", "proposed", "weight_after", "verdict",
                                               "decision", "redundant_with")} for c in changes],
        },
    }
    if data["provenance"]["store"] is None:
        del data["provenance"]["store"]
    return RewardSpec.from_dict(data, source=f"recalibration at step {step}")


def spec_path(out_dir: str | Path, step: int) -> Path:
    return Path(out_dir) / SPEC_DIR / f"spec-step{step:06d}.yaml"


def record(store: Any, rec: Recalibration, *, run_id: str, out_dir: str | Path) -> Path:
    """Write the versioned spec to ``out_dir/recalibration/`` and one row per signal to the store."""
    path = spec_path(out_dir, rec.step)
    path.parent.mkdir(parents=True, exist_ok=True)
    save_spec(rec.spec, path)
    if store is not None:
        rows = [{"run_id": run_id, "step": rec.step, "first_step": rec.first_step, "signal": c["signal"],
                 "weight_before": c["weight_before"], "proposed": c.get("proposed"), "weight_after": c["weight_after"],
                 "verdict": c.get("verdict"), "decision": c["decision"], "group_auc": c.get("group_auc"),
                 "ci_lo": (c.get("ci") or [None, None])[0], "ci_hi": (c.get("ci") or [None, None])[1],
                 "informative_groups": c.get("informative_groups"), "episodes": rec.episodes,
                 "spec_path": str(path)} for c in rec.changes]
        store.write_table(HISTORY_TABLE, pd.DataFrame(rows))
    return path


def history(store: Any, run_id: str | None = None) -> pd.DataFrame:
    """The recorded recalibrations (one row per signal and recalibration), by run and step."""
    df = store.read_table(HISTORY_TABLE)
    if df is None:
        return pd.DataFrame()
    if run_id is not None:
        df = df[df["run_id"] == run_id]
    return df.sort_values(["run_id", "step", "signal"]).reset_index(drop=True)


def try_recalibrate(store: Any, spec: RewardSpec, **kw: Any) -> tuple[Recalibration | None, str]:
    """:func:`recalibrate`, or (None, why) when the window cannot be analysed (no episodes in it yet):
    training goes on with the weights it has."""
    try:
        rec = recalibrate(store, spec, **kw)
    except CalibError as e:
        return None, f"recalibration at step {kw.get('step')} skipped: {e}"
    return rec, rec.log_line()


def _finite(x: Any) -> bool:
    return x is not None and isinstance(x, (int, float)) and math.isfinite(x)
