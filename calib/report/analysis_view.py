"""The analysis dict (``analysis.json``, docs/signals.md) as rows for the signal table and the plots.

The report never recomputes a metric: every number in the table, the forest plot and the position
plot is read from the analysis dict, so the report and ``analysis.json`` agree by construction (a
test parses the HTML to check it). This module only picks the values for the chosen advantage mode
and flattens intervals, tolerating the two shapes a signal list can take (a mapping by name or a list
of records with a ``signal`` field).
"""

from __future__ import annotations

import math
from dataclasses import dataclass, field
from typing import Any

from calib.errors import CalibError

# Table columns: (key, header, tooltip, number format). Keys are the row fields below.
COLUMNS: tuple[tuple[str, str, str, str], ...] = (
    ("signal", "signal", "Per-turn signal name", "text"),
    ("auc", "auc [95% CI]", ("P(episode aggregate of a success > that of a failure) over all pairs; "
                            "bootstrap interval over episodes"), "ci"),
    ("group_auc", "group auc [95% CI]", ("The same probability over pairs inside one group (what GRPO sees); "
                                        "bootstrap interval over groups"), "ci"),
    ("informative_groups", "informative", "Groups with both successes and failures / all groups", "int"),
    ("pb_corr", "pb r", "Point-biserial correlation of the episode aggregate with success (hover: p-value)", "f3"),
    ("sign_agreement", "agreement", ("Share of the signal's |turn advantage| whose sign matches the "
                                    "outcome advantage (chosen mode)"), "f3"),
    ("misaligned_mass", "misaligned", ("Disagreeing |turn advantage| relative to |outcome advantage| "
                                      "(chosen mode)"), "f3"),
    ("dead_share", "dead", "Share of turns in informative groups without within-group variance", "f3"),
    ("verdict", "verdict", ("keep (CI above 0.5 and aligned), flip (CI below 0.5), zero (otherwise); "
                           "hover a verdict for the reason"), "text"),
    ("proposed_weight", "weight", "Turn-reward weight in the proposed spec", "f3"),
)


def _num(v: Any) -> float | None:
    """A finite float, or None (missing, NaN, inf, or not a number)."""
    if v is None or isinstance(v, bool):
        return None
    try:
        f = float(v)
    except (TypeError, ValueError):
        return None
    return f if math.isfinite(f) else None


def _pair(v: Any) -> tuple[float | None, float | None]:
    if isinstance(v, dict):
        v = [v.get("lo", v.get("low")), v.get("hi", v.get("high"))]
    if isinstance(v, (list, tuple)) and len(v) == 2:
        return _num(v[0]), _num(v[1])
    return None, None


def _for_mode(v: Any, mode: str, key: str) -> float | None:
    """A per-mode value: ``{mode: x}`` (or ``{mode: {key: x}}``), or a bare number."""
    if isinstance(v, dict):
        if mode in v:
            v = v[mode]
        elif v:
            return None  # the analysis did not measure this mode (e.g. grpo: no turn advantage)
        else:
            return None
        if isinstance(v, dict):
            v = v.get(key, v.get("agreement") if key == "sign_agreement" else None)
    return _num(v)


@dataclass
class SignalRow:
    """One signal's numbers, as shown in the table (None = not measured)."""

    signal: str
    auc: float | None = None
    auc_ci: tuple[float | None, float | None] = (None, None)
    group_auc: float | None = None
    group_auc_ci: tuple[float | None, float | None] = (None, None)
    informative_groups: int | None = None
    n_groups: int | None = None
    pb_corr: float | None = None
    pb_p: float | None = None
    sign_agreement: float | None = None
    misaligned_mass: float | None = None
    dead_share: float | None = None
    auc_by_position: list[float | None] = field(default_factory=list)
    verdict: str = "zero"
    proposed_weight: float | None = None
    raw: dict[str, Any] = field(default_factory=dict)

    def cell(self, key: str) -> Any:
        """The table value behind column ``key`` (what ``data-value`` carries)."""
        return getattr(self, key)

    def ci(self, key: str) -> tuple[float | None, float | None]:
        """The interval shown next to ``key`` (``auc`` or ``group_auc``)."""
        return getattr(self, f"{key}_ci")

    @property
    def reason(self) -> str:
        """The analysis's one-line reason for the verdict, if it gave one."""
        return str(self.raw.get("reason") or "")


def signal_records(analysis: dict[str, Any]) -> list[tuple[str, dict[str, Any]]]:
    """``[(name, metrics dict)]`` in the analysis's order, from either shape of ``signals``."""
    sigs = analysis.get("signals")
    if isinstance(sigs, dict):
        return [(str(k), v) for k, v in sigs.items() if isinstance(v, dict)]
    if isinstance(sigs, list):
        out = []
        for i, rec in enumerate(sigs):
            if not isinstance(rec, dict) or not (rec.get("signal") or rec.get("name")):
                raise CalibError(f"analysis: signals[{i}] has no 'signal' name")
            out.append((str(rec.get("signal") or rec.get("name")), rec))
        return out
    raise CalibError("analysis: no 'signals' field (expected the output of calib analyze, see docs/signals.md)")


def signal_rows(analysis: dict[str, Any], mode: str) -> list[SignalRow]:
    """Table rows for ``mode`` (the advantage mode whose sign agreement is shown)."""
    rows = []
    for name, m in signal_records(analysis):
        informative = m.get("informative_groups")
        rows.append(
            SignalRow(
                signal=name,
                auc=_num(m.get("auc")),
                auc_ci=_pair(m.get("auc_ci")),
                group_auc=_num(m.get("group_auc")),
                group_auc_ci=_pair(m.get("group_auc_ci")),
                informative_groups=None if _num(informative) is None else int(informative),
                n_groups=None if _num(m.get("n_groups")) is None else int(m["n_groups"]),
                pb_corr=_num(m.get("pb_corr")),
                pb_p=_num(m.get("pb_p")),
                sign_agreement=_for_mode(m.get("sign_agreement"), mode, "sign_agreement"),
                misaligned_mass=_for_mode(m.get("misaligned_mass"), mode, "misaligned_mass"),
                dead_share=_num(m.get("dead_share")),
                auc_by_position=[_num(x) for x in (m.get("auc_by_position") or [])],
                verdict=str(m.get("verdict") or "zero"),
                proposed_weight=_num(m.get("proposed_weight")),
                raw=m,
            )
        )
    return rows


def analysis_mode(analysis: dict[str, Any]) -> str | None:
    """The advantage mode the analysis was parameterised with, if it says."""
    params = analysis.get("parameters") or {}
    for key in ("mode", "advantage_mode"):
        if isinstance(params.get(key), str):
            return params[key]
    adv = params.get("advantage")
    if isinstance(adv, dict) and isinstance(adv.get("mode"), str):
        return adv["mode"]
    return None


def aggregate_of(analysis: dict[str, Any]) -> str:
    """The episode aggregate behind ``auc`` (``mean`` unless the analysis says otherwise)."""
    agg = (analysis.get("parameters") or {}).get("aggregate")
    return agg if isinstance(agg, str) else "mean"


# ----------------------------------------------------------------------------- the seed paper's tables

# Tier alignment (the paper's Tables 1 and 4): (key, header, tooltip, format).
TIER_COLUMNS: tuple[tuple[str, str, str, str], ...] = (
    ("signal", "signal", "Per-turn signal (a tier of the reward)", "text"),
    ("weight", "weight", "Its weight in the diagnosed spec", "f3"),
    ("turns", "turns", "Turns where it fires", "int"),
    ("mean_A_I", "mean A_I", "Mean advantage its turns get from the turn rewards alone (every outcome set to 0)",
     "f3"),
    ("mean_A_total", "mean A_total", "Mean full advantage of its turns (turn rewards and outcome)", "f3"),
    ("aligned", "aligned", "Does mean A_total have the sign of the weight? (n/a for a weight of 0)", "bool"),
    ("share_success", "in successes", "Share of successful episodes in which it occurs", "pct"),
    ("share_failure", "in failures", "Share of failed episodes in which it occurs", "pct"),
    ("gap", "gap", "share in successes - share in failures", "pct"),
)
# Advantage diagnostics (the paper's Table 2).
DIAGNOSTIC_COLUMNS: tuple[tuple[str, str, str, str], ...] = (
    ("mode", "mode", "mt_grpo; gtpo = gtpo_hybrid with lambda 0; gtpo_hybrid", "text"),
    ("lambda", "lambda", "The mode's lambda (the spec's when it trains with this mode)", "f3"),
    ("mismatches", "mismatched signals", "Signals whose mean A_total has the other sign from their weight", "int"),
    ("corr_adv_outcome", "corr(A, outcome)", "Correlation of turn advantages with the episode outcome", "f3"),
    ("dead_turn_share", "dead turns", "Share of turns whose advantage is exactly 0 (no gradient)", "pct"),
    ("gold_soft_share", "gold/soft share", "Share of |advantage| on gold_match and soft-match turns", "pct"),
)


@dataclass
class TableRow:
    """One row of a small table: ``cells[key]`` is the value (None = not measured)."""

    key: str
    cells: dict[str, Any]
    title: str = ""


def tier_rows(analysis: dict[str, Any]) -> list[TableRow]:
    """Rows of the tier-alignment table, misaligned signals first, then by |weight|."""
    ta = analysis.get("tier_alignment") or {}
    rows = []
    for name, t in ta.items():
        if not isinstance(t, dict):
            continue
        cells: dict[str, Any] = {"signal": str(name)}
        for key, _h, _t, kind in TIER_COLUMNS[1:]:
            v = t.get(key)
            cells[key] = v if kind == "bool" and isinstance(v, bool) else (None if kind == "bool" else _num(v))
        if cells["turns"] is not None:
            cells["turns"] = int(cells["turns"])
        rows.append(TableRow(key=str(name), cells=cells))
    order = {False: 0, True: 1, None: 2}
    rows.sort(key=lambda r: (order[r.cells["aligned"]], -abs(r.cells["weight"] or 0.0), r.key))
    return rows


def diagnostic_rows(analysis: dict[str, Any]) -> list[TableRow]:
    """Rows of the advantage-diagnostics table, one per mode key, in the paper's order."""
    diag = analysis.get("advantage_diagnostics") or {}
    rows = []
    from calib.analysis.paper import DIAGNOSTIC_MODES

    for key in DIAGNOSTIC_MODES:  # the paper's three arms, in its order
        d = diag.get(key)
        if not isinstance(d, dict):
            continue
        cells: dict[str, Any] = {"mode": key}
        for col, _h, _t, kind in DIAGNOSTIC_COLUMNS[1:]:
            cells[col] = _num(d.get(col))
        if cells["mismatches"] is not None:
            cells["mismatches"] = int(cells["mismatches"])
        names = d.get("mismatched_signals") or []
        rows.append(TableRow(key=key, cells=cells, title=", ".join(map(str, names))))
    return rows


def convergence_of(analysis: dict[str, Any]) -> dict[str, Any] | None:
    """Which spec the paper's tables describe, and its convergence numbers (None for older analyses)."""
    c = analysis.get("convergence")
    return c if isinstance(c, dict) and c else None
