"""Assemble the report: gather (store + analysis dict), draw, render the Jinja2 template, write.

The page is one file: CSS, SVG figures, the JSON of the sampled episodes and the script are all
inline, and its Content-Security-Policy lets nothing load (see :mod:`calib.report.safe`).
"""

from __future__ import annotations

import contextlib
import datetime as _dt
import json
import os
import time
from dataclasses import dataclass, field
from importlib import resources
from pathlib import Path
from typing import Any

import jinja2
from markupsafe import Markup

from calib import __version__
from calib.errors import CalibError, SpecError
from calib.report import data as D
from calib.report.analysis_view import (
    COLUMNS,
    DIAGNOSTIC_COLUMNS,
    TIER_COLUMNS,
    aggregate_of,
    analysis_mode,
    convergence_of,
    diagnostic_rows,
    signal_rows,
    tier_rows,
)
from calib.report.config import ReportConfig
from calib.report.safe import content_security_policy, json_for_script, plain


@dataclass
class ReportResult:
    """What :func:`write_report` produced: the file, its size, and time per stage (seconds)."""

    path: Path
    bytes: int
    episodes_embedded: int
    timings: dict[str, float] = field(default_factory=dict)


def _static(name: str) -> str:
    return resources.files("calib.report").joinpath("static", name).read_text(encoding="utf-8")


def _env() -> jinja2.Environment:
    env = jinja2.Environment(
        loader=jinja2.PackageLoader("calib.report", "templates"),
        autoescape=True,  # every {{ }} is HTML-escaped unless it is our own Markup
        undefined=jinja2.StrictUndefined,
        trim_blocks=True,
        lstrip_blocks=True,
    )

    def num(v: Any, digits: int = 3) -> str:
        return "n/a" if v is None else f"{v:.{digits}f}"

    def raw(v: Any) -> str:  # full precision for data-value attributes (repr round-trips floats)
        return "" if v is None else repr(float(v)) if isinstance(v, float) else str(v)

    env.filters["num"] = num
    env.filters["raw"] = raw
    env.filters["pct"] = lambda v: "n/a" if v is None else f"{100 * v:.1f}%"
    env.filters["ci"] = lambda v: "n/a" if v[0] is None or v[1] is None else f"[{v[0]:.2f}, {v[1]:.2f}]"
    env.filters["sci"] = lambda v: "n/a" if v is None else f"{v:.2g}"
    return env


def load_analysis(path: str | os.PathLike[str]) -> dict[str, Any]:
    """Read an ``analysis.json`` written by ``calib analyze``; errors name the file."""
    p = Path(path)
    if not p.is_file():
        raise CalibError(f"analysis file {p}: no such file (run calib analyze first, or omit --analysis)")
    try:
        doc = json.loads(p.read_text(encoding="utf-8"))
    except (ValueError, UnicodeDecodeError) as e:
        raise CalibError(f"analysis file {p}: not valid JSON ({e})") from None
    if not isinstance(doc, dict) or "signals" not in doc:
        raise CalibError(f"analysis file {p}: no 'signals' field; is it the analysis.json of calib analyze?")
    return doc


def _spec_from(spec: Any, analysis: dict[str, Any], mode: str, runs: list[str]):
    """A RewardSpec from what the caller gave (spec object, dict, YAML path) or, failing that, the
    analysis's proposed weights with the report's advantage mode."""
    from calib.spec import RewardSpec, load_spec

    if spec is None:
        path = (analysis.get("spec") or {}).get("path") if isinstance(analysis.get("spec"), dict) else None
        if path and Path(path).is_file():
            spec = path
    if isinstance(spec, RewardSpec):
        return spec
    if isinstance(spec, dict):
        return RewardSpec.from_dict(spec, source="spec")
    if isinstance(spec, (str, os.PathLike)):
        return load_spec(spec, known_signals=[n for n, _ in _names(analysis)])
    params = analysis.get("parameters") or {}
    adv: dict[str, Any] = {"mode": mode}
    for key, name in (("gamma", "gamma"), ("lam", "lambda"), ("turn_norm", "turn_norm")):
        if params.get(key) is not None:
            adv[name] = params[key]
    turn_rewards = [
        {"signal": r.signal, "weight": round(r.proposed_weight or 0.0, 6)} for r in signal_rows(analysis, mode)
    ]
    try:
        return RewardSpec.from_dict(
            {"name": "calibrated", "advantage": adv, "turn_rewards": turn_rewards, "provenance": {"runs": runs}},
            source="proposed spec",
        )
    except SpecError as e:
        raise CalibError(f"could not build the proposed spec from the analysis: {e}") from None


def _names(analysis: dict[str, Any]) -> list[tuple[str, Any]]:
    from calib.report.analysis_view import signal_records

    return signal_records(analysis)


def _descriptions() -> dict[str, str]:
    try:
        from calib.signals.builtin import BUILTIN_SIGNALS
    except ImportError:  # pragma: no cover - the signals package is part of calib
        return {}
    return {name: desc for name, (_, desc) in BUILTIN_SIGNALS.items()}


def _created() -> str | None:
    """UTC time of generation; ``SOURCE_DATE_EPOCH`` pins it (reproducible example reports)."""
    epoch = os.environ.get("SOURCE_DATE_EPOCH")
    t = _dt.datetime.fromtimestamp(int(epoch), _dt.timezone.utc) if epoch else _dt.datetime.now(_dt.timezone.utc)
    return t.strftime("%Y-%m-%d %H:%M UTC")


@dataclass
class _PageData:
    """What the page shows, read from the store in one connection (the report's data stages)."""

    summary: dict[str, Any]
    mode: str
    reward_spec: Any
    rows: list[Any]
    dists: dict[str, dict[str, Any]]
    panels: list[Any]
    n_groups: int  # informative groups sampled for the scatter
    history: dict[str, Any] | None
    episodes: list[dict[str, Any]]
    recalibration: list[dict[str, Any]] = field(default_factory=list)  # runs that recalibrated online


class _Laps:
    """Seconds per stage, for ``info["timings"]``: ``lap(name)`` closes the stage that just ran."""

    def __init__(self) -> None:
        self.timings: dict[str, float] = {}
        self._t0 = time.perf_counter()

    def __call__(self, name: str) -> None:
        now = time.perf_counter()
        self.timings[name] = round(now - self._t0, 4)
        self._t0 = now


def build_report(
    store: Any,
    analysis: dict[str, Any],
    *,
    runs: list[str] | None = None,
    spec: Any = None,
    config: ReportConfig | None = None,
    title: str | None = None,
    store_label: str | None = None,
) -> tuple[str, dict[str, Any]]:
    """Render the report of ``store`` (selected ``runs``) and ``analysis`` to HTML text.

    ``store_label``: how the header names the store (default: its path).

    Returns ``(html, info)`` where ``info`` has ``episodes_embedded`` and per-stage ``timings``.
    """
    cfg = config or ReportConfig()
    lap = _Laps()
    page = _gather(store, analysis, runs=runs, spec=spec, cfg=cfg, lap=lap)
    figures = _figures(page, analysis, cfg)
    lap("plots")
    html = _render(page, analysis, figures, cfg, title=title,
                   store_path=store_label or str(getattr(store, "path", store)))
    lap("render")
    return html, {"episodes_embedded": len(page.episodes), "timings": lap.timings, "mode": page.mode}


def _gather(store: Any, analysis: dict[str, Any], *, runs: list[str] | None, spec: Any, cfg: ReportConfig,
            lap: _Laps) -> _PageData:
    """Summary, mode and spec, signal rows, distributions, the advantage sample and the episodes."""
    from calib.report.advantage_view import scatter_panels

    con = D.scoped_connection(store, runs)
    try:
        summary = D.summary(con, pass_k=cfg.pass_k)
        spec_mode_hint = None
        if spec is not None and hasattr(spec, "advantage"):
            spec_mode_hint = spec.advantage.mode
        mode = cfg.mode or spec_mode_hint or analysis_mode(analysis) or "gtpo_hybrid"
        reward_spec = _spec_from(spec, analysis, mode, summary["runs"])
        if cfg.mode is None:
            mode = reward_spec.advantage.mode
        rows = signal_rows(analysis, mode)
        stored = {s for (s,) in con.execute("SELECT DISTINCT signal FROM signals").fetchall()}
        names = [r.signal for r in rows if r.signal in stored]
        lap("summary")
        dists = D.signal_distributions(con, names, aggregate=aggregate_of(analysis), bins=cfg.hist_bins)
        lap("distributions")
        sample = D.sample_groups(con, names, n_groups=cfg.scatter_groups, seed=cfg.seed)
        adv = reward_spec.advantage
        panels = scatter_panels(
            sample, reward_spec.turn_weights(), mode=mode, gamma=adv.gamma, lam=adv.lam, turn_norm=adv.turn_norm,
            max_points=cfg.scatter_points, seed=cfg.seed,
        )
        lap("advantages")
        history = D.iteration_history(con, store)
        recal = D.recalibration_history(con, store)
        ids = D.sample_episode_ids(con, per_task=cfg.per_task, max_episodes=cfg.max_episodes, seed=cfg.seed)
        episodes = D.episode_views(con, ids, [r.signal for r in rows], max_message_chars=cfg.max_message_chars)
        lap("episodes")
    finally:
        con.close()
    n_groups = sample.group.size and len(set(sample.group.tolist()))
    return _PageData(summary=summary, mode=mode, reward_spec=reward_spec, rows=rows, dists=dists, panels=panels,
                     n_groups=n_groups, history=history, episodes=episodes, recalibration=recal)


def _figures(page: _PageData, analysis: dict[str, Any], cfg: ReportConfig) -> dict[str, str]:
    """The page's SVG figures by name."""
    from calib.report import plots

    rows = page.rows
    return {
        "forest": plots.forest_plot(rows),
        "position": plots.position_plot(rows, max_positions=cfg.max_positions),
        "distributions": plots.distribution_plot(page.dists, [r.signal for r in rows],
                                                 aggregate=aggregate_of(analysis)),
        "scatter": plots.scatter_plot(page.panels, mode=page.mode),
        "history": plots.history_plot(page.history) if page.history else "",
    }


def _render(page: _PageData, analysis: dict[str, Any], figures: dict[str, str], cfg: ReportConfig, *,
            title: str | None, store_path: str) -> str:
    """The HTML text: the template filled, the report's data and episodes embedded as JSON."""
    from calib.report import plots as plots_mod
    from calib.report.imported_view import IMPORTED_COLUMNS, imported_rows

    js = _static("report.js")
    if "</script" in js.lower():  # would end the script element early
        raise CalibError("internal: report.js must not contain '</script'")
    summary = page.summary
    report_data = {
        "schema_version": 1,
        "mode": page.mode,
        "summary": summary,
        "columns": [c[0] for c in COLUMNS],
        "analysis": analysis,
        "spec": page.reward_spec.to_dict(),
    }
    scatter_note = (
        f"{page.n_groups} informative group(s) sampled from {summary['informative_groups']}"
        if page.n_groups
        else "no informative group (every group has a single outcome)"
    )
    return _env().get_template("report.html.j2").render(
        title=title or f"calib report: {', '.join(summary['runs'])}",
        version=__version__,
        csp=content_security_policy([js]),
        css=Markup(_static("report.css")),
        js=Markup(js),
        created=_created(),
        store_path=store_path,
        mode=page.mode,
        aggregate=aggregate_of(analysis),
        summary=summary,
        columns=COLUMNS,
        rows=page.rows,
        tier_columns=TIER_COLUMNS,
        tiers=tier_rows(analysis),
        diagnostic_columns=DIAGNOSTIC_COLUMNS,
        diagnostics=diagnostic_rows(analysis),
        convergence=convergence_of(analysis),
        imported=imported_rows(analysis),
        imported_columns=IMPORTED_COLUMNS,
        descriptions=_descriptions(),
        plots={k: Markup(v) for k, v in figures.items()},
        recalibration=[{"run": r["run"], "svg": Markup(plots_mod.recalibration_plot(r, i))}
                       for i, r in enumerate(page.recalibration)],
        history_has_weights=bool(page.history and page.history.get("weights")),
        scatter_note=scatter_note,
        spec_yaml=page.reward_spec.to_yaml(),
        n_browser=len(page.episodes),
        per_task=cfg.per_task,
        report_json=Markup(json_for_script(plain(report_data))),
        episodes_json=Markup(json_for_script(page.episodes)),
    )


def write_report(
    store: Any,
    out_path: str | os.PathLike[str],
    *,
    runs: list[str] | None = None,
    analysis: dict[str, Any] | str | os.PathLike[str] | None = None,
    spec: Any = None,
    mode: str | None = None,
    config: ReportConfig | None = None,
    title: str | None = None,
    store_label: str | None = None,
) -> ReportResult:
    """Write the HTML report of ``store`` to ``out_path`` (atomically) and return what was written.

    ``store``: a :class:`calib.store.Store` or a store directory. ``analysis``: the analysis dict
    (``AnalysisResult.to_json()``), a path to ``analysis.json``, or None to compute it now (signals
    already in the store, else the built-ins). ``spec``: a RewardSpec, a spec dict or a YAML path;
    None = the analysis's spec file if it exists, else one built from the proposed weights.
    ``mode``: advantage mode of the misalignment picture (None: the spec's). ``store_label``: how the
    header names the store (None: its path).
    """
    from calib.report.gather import analysis_for_store, computable_store, open_store

    t = time.perf_counter()
    cfg = config or ReportConfig()
    if mode is not None:
        cfg = ReportConfig(**{**cfg.__dict__, "mode": mode})
    with contextlib.ExitStack() as stack:
        st = open_store(store)
        if analysis is None:
            origin = st.path
            st = stack.enter_context(computable_store(st))  # the store, or a scratch copy if read-only
            analysis, computed_spec = analysis_for_store(st, runs=runs, mode=cfg.mode, origin=origin)
            spec = spec if spec is not None else computed_spec
        elif not isinstance(analysis, dict):
            analysis = load_analysis(analysis)
        t_analysis = time.perf_counter() - t
        html, info = build_report(st, analysis, runs=runs, spec=spec, config=cfg, title=title,
                                  store_label=store_label)
    out = Path(out_path)
    out.parent.mkdir(parents=True, exist_ok=True)
    tmp = out.with_name(f".{out.name}.tmp")
    try:
        tmp.write_text(html, encoding="utf-8")
        tmp.replace(out)
    finally:
        tmp.unlink(missing_ok=True)  # a failed write leaves no stray file
    timings = {"analysis": round(t_analysis, 4), **info["timings"]}
    return ReportResult(path=out, bytes=out.stat().st_size, episodes_embedded=info["episodes_embedded"], timings=timings)
