"""From an analysis to a calibrated reward spec, and the files ``calib analyze`` writes.

The proposed spec lists every analysed signal with its proposed weight (zeros included: a zero is a
decision worth recording). With a base spec, only ``turn_rewards`` (and the provenance) change: the
advantage settings, the outcome weight and the name are the base's.
"""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

from calib.advantages import default_lambda
from calib.analysis.run import AnalysisConfig, AnalysisResult
from calib.jsonutil import plain
from calib.spec import AdvantageSpec, Provenance, RewardSpec, TurnReward, save_spec

ANALYSIS_FILES = ("analysis.parquet", "analysis.json", "reward_spec.yaml")


def provenance_metrics(result: AnalysisResult, mode: str) -> dict[str, dict[str, Any]]:
    """The numbers behind each weight, small enough to live in the spec file."""
    out = {}
    for r in result.signals:
        out[r["signal"]] = {
            "verdict": r["verdict"],
            "group_auc": r["group_auc"],
            "ci": r["group_auc_ci"],
            "auc": r["auc"],
            "sign_agreement": r["sign_agreement"].get(mode),
            "informative_groups": r["informative_groups"],
        }
    return out


def propose_spec(
    result: AnalysisResult,
    config: AnalysisConfig,
    *,
    base: RewardSpec | None = None,
    name: str | None = None,
    store: str | None = None,
) -> RewardSpec:
    """The calibrated spec: proposed weights as turn rewards, provenance from ``result``."""
    turn_rewards = [TurnReward(signal=r["signal"], weight=round(float(r["proposed_weight"]), 6)) for r in result.signals]
    prov_fields: dict[str, Any] = {
        "runs": list(result.summary.get("runs", [])),
        "store": store or result.summary.get("store"),
        "created": result.summary["created"],
        "metrics": plain(provenance_metrics(result, config.mode)),
    }
    if base is not None:
        prov_fields["base_spec"] = base.name  # extra provenance fields are allowed
        data = base.to_dict()
        data["turn_rewards"] = [t.model_dump() for t in turn_rewards]
        data["provenance"] = Provenance(**prov_fields).model_dump()
        if name:
            data["name"] = name
        return RewardSpec.model_validate(data)
    prov = Provenance(**prov_fields)
    return RewardSpec(
        name=name or "calibrated",
        advantage=AdvantageSpec(
            mode=config.mode,
            gamma=config.gamma,
            lam=default_lambda(config.mode) if config.lam is None else config.lam,
            turn_norm=config.turn_norm,
        ),
        turn_rewards=turn_rewards,
        provenance=prov,
    )


def write_outputs(result: AnalysisResult, spec: RewardSpec, out_dir: str | Path) -> dict[str, Path]:
    """analysis.parquet (flat table), analysis.json (everything the report needs), reward_spec.yaml."""
    out = Path(out_dir)
    out.mkdir(parents=True, exist_ok=True)
    paths = {name: out / name for name in ANALYSIS_FILES}
    tmp = out / ".analysis.parquet.tmp"
    result.table.to_parquet(tmp, index=False)
    tmp.replace(paths["analysis.parquet"])
    doc = result.to_json()
    doc["spec"] = {"path": str(paths["reward_spec.yaml"]), "name": spec.name, "advantage": spec.advantage.model_dump(by_alias=True)}
    tmp = out / ".analysis.json.tmp"
    tmp.write_text(json.dumps(doc, indent=2, allow_nan=False) + "\n", encoding="utf-8")
    tmp.replace(paths["analysis.json"])
    save_spec(spec, paths["reward_spec.yaml"])
    return paths
