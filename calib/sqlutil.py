"""The one place where a value becomes SQL text, and the one way to open a DuckDB connection that
cannot reach the file system.

**Rule: data never runs as code.** A value that comes from a dump, a store or a user (a signal name,
a run id, a task id, a file name, a regex from a config) reaches DuckDB as a bound ``?`` parameter or
as rows of a registered table, never as SQL text. Where DuckDB cannot take a parameter (a macro body,
a ``CREATE TABLE AS`` with a list literal), the value goes through :func:`sql_literal` (or
:func:`sql_list`), and an identifier through :func:`sql_ident`.

``tests/test_sql_safety.py`` walks every SQL string that ``calib/`` and ``trainer/`` build with an
f-string, ``%``, ``.format`` or a ``.replace("$name", ...)`` template and accepts only these
interpolated values:

1. a constant: a literal, or a module constant in UPPER_CASE (e.g. ``MAX_LINE_BYTES``);
2. the output of a helper of this module: ``sql_literal(...)``, ``sql_list(...)``, ``sql_ident(...)``;
3. a number: ``int(...)``, ``float(...)``, ``len(...)``, or a numeric format spec (``{x:.1f}``, ``{n:d}``);
4. an internal identifier: a loop variable over a constant tuple or an UPPER_CASE constant
   (``for t in TABLE_VIEWS: f"SELECT count(*) FROM {t}"``);
5. a SQL fragment held in a name ending in ``_sql`` (or named ``where``), which is itself built under
   these rules by code the same test walks (e.g. ``episode_filter`` returns ``(sel_sql, params)``).

Anything else fails the test with its file and line.

**Connections.** :func:`locked_connection` gives an in-memory DuckDB whose tables the caller registers
as Arrow data (files opened by pyarrow, not by SQL); :func:`lock` then turns external access off,
removes the temp folder and locks the configuration, so that no statement, even one a bug lets
through, can read, write, attach, install or load anything, nor undo that.
"""

from __future__ import annotations

from collections.abc import Iterable

import duckdb


def sql_literal(s: str | None) -> str:
    """``s`` as a SQL string literal; ``None`` -> ``NULL``.

    ``'`` is doubled inside single quotes; a NUL character, which a C string would end at, is spliced
    in as ``chr(0)``; everything else (backslashes, ``;``, ``--``, ``/*``, newlines, non-ASCII) is
    inert inside a standard SQL string literal, where DuckDB has no escape sequences.
    """
    if s is None:
        return "NULL"
    if not isinstance(s, str):
        raise TypeError(f"sql_literal takes a str, not {type(s).__name__}")
    parts = ["'" + p.replace("'", "''") + "'" for p in s.split("\0")]
    return parts[0] if len(parts) == 1 else "(" + " || chr(0) || ".join(parts) + ")"


def sql_list(values: Iterable[str]) -> str:
    """A ``VARCHAR[]`` list literal of ``values``, each quoted by :func:`sql_literal`."""
    items = [sql_literal(v) for v in values]
    return "[" + ", ".join(items) + "]::VARCHAR[]" if not items else "[" + ", ".join(items) + "]"


def sql_ident(name: str) -> str:
    """``name`` as a quoted SQL identifier (``"`` doubled); refuses NUL and the empty name."""
    if not isinstance(name, str) or not name or "\0" in name:
        raise ValueError(f"not a usable SQL identifier: {name!r}")
    return '"' + name.replace('"', '""') + '"'


def locked_connection(*, threads: int | None = None) -> duckdb.DuckDBPyConnection:
    """An in-memory DuckDB connection with no temp folder (nothing spills to disk, so no folder is
    reachable through it). Register the tables on it, then call :func:`lock`."""
    config: dict[str, str | int] = {"temp_directory": ""}
    if threads is not None:
        config["threads"] = threads
    return duckdb.connect(":memory:", config=config)


def lock(con: duckdb.DuckDBPyConnection) -> duckdb.DuckDBPyConnection:
    """No file access from here on, and no way back: ``enable_external_access`` off, configuration locked.

    Registered Arrow tables and in-memory temp tables keep working; ``read_*``, ``COPY``, ``ATTACH``,
    ``INSTALL``/``LOAD``, ``glob`` and ``SET`` of any option fail with a permission error.
    """
    con.execute("SET temp_directory = ''")
    con.execute("SET enable_external_access = false")
    con.execute("SET lock_configuration = true")
    return con
