"""The report's "Imported signals" section: reward components an imported dump carried (tau2:..., later
verifiers:/ART:), measured by ``calib analyze`` and kept out of the proposed spec.

Rows come from ``analysis.json["imported_signals"]`` (``turn`` and ``episode`` lists); nothing is
recomputed here.
"""

from __future__ import annotations

from typing import Any

# (key, header, tooltip)
IMPORTED_COLUMNS = (
    ("signal", "signal", "Name <source>:<component>"),
    ("level", "level", "turn: one value per turn; episode: one value per episode (turn_idx NULL)"),
    ("verdict", "verdict", "From the group-AUC interval (episode level: alone); 'outcome' = equals the outcome"),
    ("group_auc", "group AUC", "Within-group AUC with its 95% bootstrap interval (groups resampled)"),
    ("auc", "AUC", "Pooled AUC of the episode value against success"),
    ("pb_corr", "point-biserial r", "Correlation of the episode value with success"),
    ("n_episodes", "episodes", "Episodes where the signal has a value"),
)


def imported_rows(analysis: dict[str, Any]) -> list[dict[str, Any]]:
    """Turn-level rows first, then episode-level rows, each with a one-line reason."""
    imp = analysis.get("imported_signals") or {}
    rows = []
    for level in ("turn", "episode"):
        for r in imp.get(level) or []:
            rows.append({
                "signal": r.get("signal"), "level": level, "verdict": r.get("verdict"),
                "group_auc": r.get("group_auc"), "ci": r.get("group_auc_ci") or [None, None],
                "auc": r.get("auc"), "pb_corr": r.get("pb_corr"), "n_episodes": r.get("n_episodes"),
                "reason": r.get("reason", ""), "reproduces_outcome": bool(r.get("reproduces_outcome")),
            })
    return rows
