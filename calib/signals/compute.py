"""Compute signals into the store's ``signals`` table, incrementally.

Caching: each signal's values live under a version (``<signal version>-<catalogue>`` for built-ins,
whose values depend on the tool catalogue; the function's pinned version or source hash for custom
ones). When the stored version is current, only episodes without values yet are computed (new
ingests); when it is not, every selected episode is computed under the new version, which becomes
current when written. So ``calib analyze`` twice in a row computes nothing the second time.
"""

from __future__ import annotations

import json
import math
from collections.abc import Iterable
from dataclasses import dataclass, field
from typing import Any

import pandas as pd

from calib.errors import CalibError
from calib.signals.registry import Signal, resolve_signal
from calib.signals.sql import builtin_frame
from calib.store.selection import Selection, SelectionLike
from calib.tools import ToolCatalogue, airline_catalogue


@dataclass
class ComputeReport:
    """What :func:`compute_signals` did: rows written per signal and the version now current."""

    versions: dict[str, str] = field(default_factory=dict)
    written: dict[str, int] = field(default_factory=dict)
    cached: list[str] = field(default_factory=list)


def signal_version(sig: Signal, catalogue: ToolCatalogue) -> str:
    return f"{sig.version}-{catalogue.name}" if sig.builtin else sig.version


def episode_filter(runs: SelectionLike) -> tuple[str, list[Any]]:
    """SQL selecting the episode ids of ``runs`` (run ids, a :class:`Selection`, or None: all), and its
    parameters."""
    return Selection.of(runs).ids_sql()


def compute_signals(
    store,
    names: Iterable[str],
    *,
    catalogue: ToolCatalogue | None = None,
    runs: SelectionLike = None,
    progress=None,
) -> ComputeReport:
    """Make sure every named signal has current values for every episode of ``runs`` in ``store``.

    ``progress`` is an optional ``rich.progress.Progress``; a task per step is added to it.
    """
    catalogue = catalogue or airline_catalogue()
    signals = [resolve_signal(n) for n in dict.fromkeys(names)]
    report = ComputeReport()
    sel_sql, sel_params = episode_filter(runs)
    current = store.signal_versions()
    con = store.connect()
    try:
        todo: dict[str, tuple[str, list]] = {}  # signal -> (SQL selecting its episodes to compute, params)
        for sig in signals:
            version = signal_version(sig, catalogue)
            report.versions[sig.name] = version
            if current.get(sig.name) == version:
                # the signal's name is bound as the list's last parameter: never SQL text
                todo_sql = (
                    f"SELECT episode_id FROM ({sel_sql}) WHERE episode_id NOT IN "
                    "(SELECT episode_id FROM signals WHERE signal = ?)"
                )
                todo_params = [*sel_params, sig.name]
            else:
                todo_sql, todo_params = sel_sql, list(sel_params)
            n = con.execute(f"SELECT count(*) FROM ({todo_sql})", todo_params).fetchone()[0]
            if n == 0:
                report.cached.append(sig.name)
            else:
                todo[sig.name] = (todo_sql, todo_params)

        # Built-ins come out of one query; signals with the same episodes to do share it (the usual
        # case: all of them, or all new episodes).
        by_todo: dict[tuple[str, tuple], list[Signal]] = {}
        for s in signals:
            if s.builtin and s.name in todo:
                todo_sql, todo_params = todo[s.name]
                by_todo.setdefault((todo_sql, tuple(map(_hashable, todo_params))), []).append(s)
        for (todo_sql, _key), group in by_todo.items():
            todo_params = todo[group[0].name][1]
            task = progress.add_task("built-in signals", total=None) if progress is not None else None
            frame = builtin_frame(
                con,
                catalogue,
                episodes_sql=todo_sql,
                params=todo_params,
                on_step=(lambda msg, t=task: progress.update(t, description=f"built-in signals: {msg}"))
                if progress is not None
                else None,
            )
            for s in group:
                df = frame[["episode_id", "turn_idx", s.name]].rename(columns={s.name: "value"})
                report.written[s.name] = store.write_signals(df, signal=s.name, version=report.versions[s.name])
            if progress is not None:
                progress.update(task, total=1, completed=1, description="built-in signals")

        for s in signals:
            if not s.builtin and s.name in todo:
                todo_sql, todo_params = todo[s.name]
                df = _custom_frame(store, con, s, todo_sql, todo_params, progress)
                report.written[s.name] = store.write_signals(df, signal=s.name, version=report.versions[s.name])
    finally:
        con.close()
    return report


def _custom_frame(store, con, sig: Signal, todo_sql: str, params: list, progress) -> pd.DataFrame:
    """Call a custom ``(episode, turn)`` signal on every turn of the episodes ``todo_sql`` selects."""
    con.execute(f"CREATE OR REPLACE TEMP TABLE _todo AS {todo_sql}", params)
    total = con.execute("SELECT count(*) FROM _todo").fetchone()[0]
    task = progress.add_task(f"signal {sig.name}", total=total) if progress is not None else None
    cur = con.execute(
        "SELECT e.episode_id, e.run_id, e.iteration, e.task_id, e.group_id, e.policy, e.outcome, e.success, "
        "e.status, e.messages, e.expected_actions, e.info FROM episodes e JOIN _todo USING (episode_id) "
        "ORDER BY e.episode_id"
    )
    cols = [d[0] for d in cur.description]
    rows_out: list[tuple[str, int, float | None]] = []
    tcon = store.connect()
    try:
        while batch := cur.fetchmany(500):
            eps = [dict(zip(cols, r)) for r in batch]
            ids = [e["episode_id"] for e in eps]
            turns = tcon.execute(
                "SELECT * FROM turns WHERE list_contains(?, episode_id) ORDER BY episode_id, turn_idx", [ids]
            ).df()
            by_ep = {k: g.to_dict("records") for k, g in turns.groupby("episode_id", sort=False)}
            for ep in eps:
                for k in ("messages", "expected_actions", "info"):
                    ep[k] = json.loads(ep[k]) if ep[k] is not None else None
                for turn in by_ep.get(ep["episode_id"], []):
                    turn = {k: (None if _isnan(v) else v) for k, v in turn.items()}
                    rows_out.append((ep["episode_id"], int(turn["turn_idx"]), call_signal(sig, ep, turn)))
            if progress is not None:
                progress.advance(task, len(eps))
    finally:
        tcon.close()
    return pd.DataFrame(rows_out, columns=["episode_id", "turn_idx", "value"])


def call_signal(sig: Signal, episode: dict[str, Any], turn: dict[str, Any]) -> float | None:
    """One custom signal on one turn: a finite float or None, else a CalibError naming signal, episode
    and turn. The trainer's rewards call this too, so training and analysis accept the same values."""
    try:
        v = sig.fn(episode, turn)  # type: ignore[misc]
    except Exception as e:
        raise CalibError(
            f"signal {sig.name!r} failed on episode {episode['episode_id']!r} turn {turn['turn_idx']}: "
            f"{type(e).__name__}: {e}"
        ) from e
    if v is None:
        return None
    if isinstance(v, bool):
        return float(v)
    if not isinstance(v, (int, float)) or not math.isfinite(v):
        raise CalibError(
            f"signal {sig.name!r} returned {v!r} on episode {episode['episode_id']!r} turn {turn['turn_idx']}; "
            "expected a finite number or None"
        )
    return float(v)


def _hashable(v: Any) -> Any:
    return tuple(v) if isinstance(v, list) else v


def _isnan(v: Any) -> bool:
    return isinstance(v, float) and math.isnan(v)
