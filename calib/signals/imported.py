"""Signals that an imported dump already carries (docs/architecture.md section 3): into the ``signals`` table.

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

from calib.signals.compute import episode_filter
from calib.store.selection import SelectionLike

IMPORTED_VERSION = "imported-1"


@dataclass
class ImportedSignals:
    """Names found in ``info.signals`` of the selected episodes, and the rows written now."""

    turn: list[str] = field(default_factory=list)
    episode: list[str] = field(default_factory=list)
    written: dict[str, int] = field(default_factory=dict)


def imported_signal_names(con, runs: SelectionLike = None) -> tuple[list[str], list[str]]:
    """(per-turn names, episode-level names) that ``info.signals`` holds in the selected episodes.

    The names are read as data (``json_each`` yields each key as a value): a name is never spliced
    into SQL text or a JSON path, so ``'``, ``"``, ``;``, NUL or a 10 kB name cannot change a query.
    """
    sel_sql, params = episode_filter(runs)
    rows = con.execute(
        "SELECT j.key AS name, bool_or(j.type = 'ARRAY') FROM episodes e, json_each(e.info, '$.signals') j "
        f"WHERE e.episode_id IN ({sel_sql}) AND json_type(e.info, '$.signals') = 'OBJECT' "
        "GROUP BY j.key ORDER BY j.key",
        params,
    ).fetchall()
    return [n for n, arr in rows if arr], [n for n, arr in rows if not arr]


# One imported signal's values: episode-level (``turn_idx`` NULL) from a scalar, per-turn from a list (one
# value per turn, the rest NULL). The name is the first parameter, compared as a value.
_EPISODE_VALUES_SQL = """
SELECT e.episode_id, NULL::INTEGER AS turn_idx,
       (SELECT TRY_CAST(j.value ->> '$' AS DOUBLE) FROM json_each(e.info, '$.signals') j WHERE j.key = ?) AS value
FROM episodes e WHERE e.episode_id IN ({todo_sql})
"""
_TURN_VALUES_SQL = """
WITH arr AS (
    SELECT e.episode_id, e.n_turns,
           (SELECT j.value FROM json_each(e.info, '$.signals') j WHERE j.key = ?) AS arr
    FROM episodes e WHERE e.episode_id IN ({todo_sql})
)
SELECT episode_id, i::INTEGER AS turn_idx, TRY_CAST(json_extract_string(arr, '$[' || i || ']') AS DOUBLE) AS value
FROM (SELECT episode_id, arr, unnest(range(n_turns::BIGINT)) AS i FROM arr)
"""


def import_signals(store, runs: SelectionLike = None, *, exclude: Sequence[str] = ()) -> ImportedSignals:
    """Copy every ``info.signals`` entry of the selected episodes into the signals table (incrementally).

    ``exclude``: names not to import, because calib computes a signal of that name itself (a built-in:
    the synthetic testbed's records carry ``gold_match`` in ``info.signals`` with the same values; a dump
    must not shadow calib's own definition)."""
    sel_sql, params = episode_filter(runs)
    out = ImportedSignals()
    current = store.signal_versions()
    skip = set(exclude)
    con = store.connect()
    try:
        turn, episode = imported_signal_names(con, runs)
        out.turn = [n for n in turn if n not in skip]
        out.episode = [n for n in episode if n not in skip]
        for name in out.turn + out.episode:
            todo_sql, todo_params = sel_sql, list(params)
            if current.get(name) == IMPORTED_VERSION:
                todo_sql = (f"SELECT episode_id FROM ({sel_sql}) WHERE episode_id NOT IN "
                            "(SELECT episode_id FROM signals WHERE signal = ?)")
                todo_params.append(name)
            template = _TURN_VALUES_SQL if name in out.turn else _EPISODE_VALUES_SQL
            df = con.execute(template.format(todo_sql=todo_sql), [name, *todo_params]).df()
            if len(df):
                out.written[name] = store.write_signals(df, signal=name, version=IMPORTED_VERSION)
    finally:
        con.close()
    return out
