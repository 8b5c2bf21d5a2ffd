"""Signals that an imported dump already carries (DESIGN section 3): into the ``signals`` table.

Importers put them in the episode's ``info["signals"]``, named ``<source>:<name>``
(``tau2:db_match``, later ``verifiers:...``, ``art:...``):

- a number (or null) is an **episode-level** signal: one row with ``turn_idx`` NULL;
- a list is a **per-turn** signal: one value per turn (assistant message), null where there is none.

Nothing is recomputed here: the values are copied, in SQL, for the episodes that have no rows yet
(every selected episode gets rows, NULL values where it lacks the signal, so the next call finds
nothing to do). The per-turn ones then go through the same analysis as the built-ins; the
episode-level ones through ``calib.analysis.episode``.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass, field

from calib.errors import StoreError
from calib.signals.compute import episode_filter

IMPORTED_VERSION = "imported-1"


@dataclass
class ImportedSignals:
    """Names found in ``info.signals`` of the selected episodes, and the rows written now."""

    turn: list[str] = field(default_factory=list)
    episode: list[str] = field(default_factory=list)
    written: dict[str, int] = field(default_factory=dict)


def _path(name: str) -> str:
    if '"' in name or "\\" in name:
        raise StoreError(f"imported signal name {name!r} may not contain quotes or backslashes")
    return f'$.signals."{name}"'


def imported_signal_names(con, runs: Sequence[str] | None = None) -> tuple[list[str], list[str]]:
    """(per-turn names, episode-level names) that ``info.signals`` holds in the selected episodes."""
    sel_sql, params = episode_filter(runs)
    rows = con.execute(
        "WITH k AS (SELECT e.info, unnest(json_keys(json_extract(e.info, '$.signals'))) AS name FROM episodes e "
        f"WHERE e.episode_id IN ({sel_sql}) AND json_type(e.info, '$.signals') = 'OBJECT') "
        "SELECT name, bool_or(json_type(json_extract(info, '$.signals.\"' || name || '\"')) = 'ARRAY') "
        "FROM k GROUP BY name ORDER BY name",
        params,
    ).fetchall()
    return [n for n, arr in rows if arr], [n for n, arr in rows if not arr]


def import_signals(store, runs: Sequence[str] | None = None) -> ImportedSignals:
    """Copy every ``info.signals`` entry of the selected episodes into the signals table (incrementally)."""
    sel_sql, params = episode_filter(runs)
    out = ImportedSignals()
    current = store.signal_versions()
    con = store.connect()
    try:
        out.turn, out.episode = imported_signal_names(con, runs)
        for name in out.turn + out.episode:
            todo = sel_sql
            if current.get(name) == IMPORTED_VERSION:
                todo = (f"SELECT episode_id FROM ({sel_sql}) WHERE episode_id NOT IN "
                        "(SELECT episode_id FROM signals WHERE signal = ?)")
            p = params + ([name] if todo is not sel_sql else [])
            path = _path(name)
            if name in out.turn:
                sql = (f"SELECT episode_id, i::INTEGER AS turn_idx, "
                       f"TRY_CAST(json_extract_string(arr, '$[' || i || ']') AS DOUBLE) AS value FROM ("
                       f"SELECT episode_id, json_extract(info, '{path}') AS arr, unnest(range(n_turns::BIGINT)) AS i "
                       f"FROM episodes WHERE episode_id IN ({todo}))")
            else:
                sql = (f"SELECT episode_id, NULL::INTEGER AS turn_idx, "
                       f"TRY_CAST(json_extract_string(info, '{path}') AS DOUBLE) AS value "
                       f"FROM episodes WHERE episode_id IN ({todo})")
            df = con.execute(sql, p).df()
            if len(df):
                out.written[name] = store.write_signals(df, signal=name, version=IMPORTED_VERSION)
    finally:
        con.close()
    return out
