"""SQL text for values DuckDB cannot take as bound parameters (COPY targets, macro bodies, list literals).

Where a ``?`` parameter works, use it. Where it does not, the value is spliced into the SQL as a
quoted literal, and the quoting must be right everywhere (a task id or a file name may hold a
``'``), so it lives here once.
"""

from __future__ import annotations


def sql_literal(s: str | None) -> str:
    """``s`` as a SQL string literal (``'`` doubled inside single quotes); ``None`` -> ``NULL``."""
    return "NULL" if s is None else "'" + s.replace("'", "''") + "'"
