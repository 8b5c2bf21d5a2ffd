"""``calib analyze`` as one library call: choose the signals, configure, compute, analyse, propose.

The CLI parses and checks its options and prints; every decision between those steps lives here,
so that a script or a notebook runs exactly the analysis the command runs (which signals an
explicit ``--signals`` list keeps, what a base spec adds, which advantage settings it lends).
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from calib.advantages import DEFAULT_GAMMA, signal_mode_names
from calib.analysis.run import AnalysisConfig, AnalysisResult
from calib.signals.compute import ComputeReport
from calib.signals.imported import ImportedSignals
from calib.spec import RewardSpec
from calib.store.selection import Selection, SelectionLike


@dataclass
class AnalyzeOutput:
    """What one analysis produced: the result, the proposed spec, the configuration it ran with, and
    which signals were computed afresh or reused (``computed``)."""

    result: AnalysisResult
    spec: RewardSpec
    config: AnalysisConfig
    computed: ComputeReport


def choose_signals(
    signals: Sequence[str] | None, custom: Sequence[str], imported: ImportedSignals
) -> list[str]:
    """The computable signals to analyse: ``signals`` (None or empty: every available one) plus
    ``custom``, without duplicates and without the imported ones. A list (even empty: the user gave
    ``--signals``) also narrows ``imported`` (in place) to the imported signals among the names."""
    from calib.signals.registry import available_signals, resolve_signal

    names = list(dict.fromkeys([*(signals or available_signals()), *custom]))
    if signals is not None:  # an explicit --signals list may name imported signals too
        imported.turn = [n for n in imported.turn if n in names]
        imported.episode = [n for n in imported.episode if n in names]
    names = [n for n in names if n not in imported.turn and n not in imported.episode]
    for n in names:
        resolve_signal(n)  # unknown names and broken imports fail here, before any work
    return names


def load_base_spec(base_spec: Path | str | RewardSpec | None, names: list[str]) -> tuple[RewardSpec | None, list[str]]:
    """``(base spec or None, names)``: the base spec (a path, a preset, or a spec already loaded, as
    online recalibration passes the one in force) checked against the known signals, and ``names``
    extended by its active signals (its diagnostics need them)."""
    from calib.signals.registry import available_signals
    from calib.spec import check_signals, load_spec

    if base_spec is None:
        return None, names
    known = names + available_signals()
    loaded = isinstance(base_spec, RewardSpec)
    base = base_spec if loaded else load_spec(base_spec, known_signals=known)
    check_signals(base, known, source=f"reward spec {base.name if loaded else base_spec}")
    return base, list(dict.fromkeys(names + base.active_signals()))


def analysis_config(base: RewardSpec | None, *, mode: str | None = None, **settings: Any) -> AnalysisConfig:
    """The configuration: ``settings`` (AnalysisConfig fields) plus the advantage settings of ``base``
    (its mode when it is a sign mode and ``mode`` is not given, its gamma and turn_norm, and its lambda
    when the analysis runs in the base's own mode: a lambda belongs to its mode, so an mt_grpo spec's
    1.0 is not the lambda of gtpo_hybrid)."""
    adv = base.advantage if base is not None else None
    chosen = mode or (adv.mode if adv is not None and adv.mode in signal_mode_names() else "gtpo_hybrid")
    return AnalysisConfig(
        mode=chosen,
        gamma=adv.gamma if adv is not None else DEFAULT_GAMMA,
        lam=adv.lam if adv is not None and adv.mode == chosen else None,
        turn_norm=adv.turn_norm if adv is not None else "index",
        **settings,
    )


def analyze_and_propose(
    store: Any,
    *,
    runs: SelectionLike = None,
    signals: Sequence[str] | None = None,
    custom: Sequence[str] = (),
    base_spec: Path | str | RewardSpec | None = None,
    mode: str | None = None,
    settings: dict[str, Any] | None = None,
    name: str | None = None,
    domain: str = "airline",
    store_label: str | None = None,
    progress: Any = None,
    stored: Sequence[str] = (),
) -> AnalyzeOutput:
    """Import the dumps' signals, compute the rest, analyse all of them and propose a spec.

    ``store``: an open :class:`calib.store.Store`. ``runs``: run ids, or a
    :class:`calib.store.selection.Selection` (runs and a window of training steps, as online
    recalibration reads), or None (every episode). ``settings``: AnalysisConfig fields (aggregate,
    n_boot, seed, weight_cap, rule, irc_alpha, irc_delta). ``store_label``: how the outputs name
    the store (default: its path). ``progress``: a rich ``Progress`` to report on, or None.
    ``stored``: more signals to analyse as the store holds them, never computed nor resolved as code
    (names read from the store's own folders: ``calib report`` analyses every signal it finds).

    Every analysis of calib goes through here or :func:`propose_from_arrays`: ``calib analyze``, the
    loop, the report, online recalibration and the experiments (docs/architecture.md).
    """
    from calib.analysis.episode import analyze_imported
    from calib.analysis.propose import propose_spec
    from calib.analysis.run import analyze_store
    from calib.envs.registry import domain_catalogue
    from calib.signals.compute import compute_signals
    from calib.signals.imported import import_signals

    sel = Selection.of(runs)
    run_list = None if sel.everything else sel
    # what imported dumps carry (tau2:..., turn_idx NULL or per turn)
    from calib.signals.registry import available_signals

    imported = import_signals(store, run_list, exclude=available_signals())
    names = choose_signals(signals, custom, imported)
    base, names = load_base_spec(base_spec, names)
    cfg = analysis_config(base, mode=mode, **(settings or {}))
    computed = compute_signals(store, names, catalogue=domain_catalogue(domain), runs=run_list,
                               progress=progress)
    on_signal = None
    if progress is not None:
        task = progress.add_task("analysing signals", total=len(names))
        on_signal = lambda n: progress.update(task, advance=1, description=f"analysing {n}")
    extra = [n for n in stored if n not in names and n not in imported.turn and n not in imported.episode]
    result = analyze_store(store, [*names, *extra], runs=run_list, config=cfg, base=base, on_signal=on_signal)
    result.imported = analyze_imported(store, imported, runs=run_list, config=cfg)
    if store_label:
        result.summary["store"] = store_label
    spec = propose_spec(result, cfg, base=base, name=name, store=store_label or str(store.path))
    return AnalyzeOutput(result=result, spec=spec, config=cfg, computed=computed)


def propose_from_arrays(
    data: Any,
    *,
    base: RewardSpec | None = None,
    mode: str | None = None,
    settings: dict[str, Any] | None = None,
    name: str | None = None,
    store_label: str | None = None,
) -> AnalyzeOutput:
    """The same analysis and proposal as :func:`analyze_and_propose`, on arrays already in memory
    (:class:`calib.analysis.run.EpisodeData`: the testbed's batches, a notebook's frames). Same
    configuration rules (:func:`analysis_config`), same analysis, same proposal; no store, no
    signals to compute (``computed`` is empty)."""
    from calib.analysis.propose import propose_spec
    from calib.analysis.run import analyze_arrays

    cfg = analysis_config(base, mode=mode, **(settings or {}))
    result = analyze_arrays(data, cfg, base=base)
    spec = propose_spec(result, cfg, base=base, name=name, store=store_label)
    return AnalyzeOutput(result=result, spec=spec, config=cfg, computed=ComputeReport())
