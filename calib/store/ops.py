"""Read-side operations behind ``calib store info|query|export`` (the CLI only prints)."""

from __future__ import annotations

import json
import os
import re
import shutil
from pathlib import Path
from typing import Any

import duckdb
import pandas as pd
import pyarrow as pa
import pyarrow.parquet as pq

from calib.errors import CalibError, UsageError
from calib.jsonutil import exact, frame_records
from calib.store.selection import Selection
from calib.store.store import Store


def info(store: Store) -> dict[str, Any]:
    """Counts per table and per run, success rates (``error`` episodes excluded), quarantine size."""
    con = store.connect()
    try:
        totals = con.execute(
            """SELECT count(*) AS episodes, count(DISTINCT group_id) AS groups,
                      count(DISTINCT task_id) AS tasks, count(DISTINCT run_id) AS runs,
                      coalesce(sum(n_turns), 0) AS turns,
                      avg(CASE WHEN status = 'ok' THEN success::INT END) AS success_rate,
                      count(*) FILTER (WHERE status = 'error') AS errors
               FROM episodes"""
        ).df().iloc[0].to_dict()
        per_run = con.execute(
            """SELECT run_id, count(*) AS episodes, count(DISTINCT group_id) AS groups, sum(n_turns)::BIGINT AS turns,
                      avg(CASE WHEN status = 'ok' THEN success::INT END) AS success_rate,
                      count(*) FILTER (WHERE status = 'error') AS errors
               FROM episodes GROUP BY run_id ORDER BY run_id"""
        ).df()
        signals = con.execute("SELECT signal, count(*) AS turns FROM signals GROUP BY 1 ORDER BY 1").df()
        ingests = int(con.execute("SELECT count(*) FROM ingest_log").fetchone()[0])
    finally:
        con.close()
    quarantined = 0
    for q in (store.path / "quarantine").glob("*.jsonl"):
        with open(q, "rb") as f:
            quarantined += sum(1 for _ in f)
    return {
        "store": str(store.path),
        "episodes": int(totals["episodes"]),
        "turns": int(totals["turns"]),
        "groups": int(totals["groups"]),
        "tasks": int(totals["tasks"]),
        "runs": int(totals["runs"]),
        "errors": int(totals["errors"]),
        "success_rate": None if pd.isna(totals["success_rate"]) else float(totals["success_rate"]),
        "ingests": ingests,
        "quarantined": quarantined,
        "per_run": _records(per_run),
        "signals": {r["signal"]: int(r["turns"]) for r in _records(signals)},
        "signal_versions": store.signal_versions(),
    }


def _records(df: pd.DataFrame) -> list[dict[str, Any]]:
    """Rows as JSON-ready dicts with every digit kept (``to_json`` rounded a 1/3 success rate)."""
    return exact(frame_records(df))


def _one_line(e: BaseException) -> str:
    return " ".join(str(e).split())


_EXPLAIN = re.compile(r"\s*EXPLAIN\s+(?:ANALYZE\s+|ANALYSE\s+)?(?:\([^)]*\)\s*)?", re.IGNORECASE)
_PIVOT = re.compile(r"\s*(?:PIVOT|UNPIVOT|PIVOT_WIDER|PIVOT_LONGER)\b", re.IGNORECASE)


def _strip_comments(sql: str) -> str:
    """``sql`` without leading ``--`` and ``/* */`` comments (what DuckDB skips before the first keyword)."""
    while True:
        s = sql.lstrip()
        if s.startswith("--"):
            sql = s.split("\n", 1)[1] if "\n" in s else ""
        elif s.startswith("/*") and "*/" in s:
            sql = s.split("*/", 1)[1]
        else:
            return s


def _is_read(st: duckdb.Statement) -> bool:
    """Whether one statement only reads: a SELECT (which covers ``SUMMARIZE``, ``DESCRIBE``, ``SHOW``,
    ``FROM ...``), a ``PIVOT``/``UNPIVOT`` (DuckDB parses those as MULTI: a type then a SELECT), or an
    ``EXPLAIN [ANALYZE]`` of a read. ``EXPLAIN ANALYZE`` runs its statement, so an EXPLAIN of anything else
    (``EXPLAIN ANALYZE COPY ... TO``) is not a read."""
    text = _strip_comments(st.query)
    if st.type == duckdb.StatementType.SELECT:
        return True
    if st.type == duckdb.StatementType.MULTI:
        return bool(_PIVOT.match(text))
    if st.type == duckdb.StatementType.EXPLAIN:
        m = _EXPLAIN.match(text)
        if not m:
            return False
        try:
            inner = duckdb.extract_statements(text[m.end():])
        except duckdb.Error:
            return False
        return len(inner) == 1 and _is_read(inner[0])
    return False


def query(store: Store, sql: str) -> pd.DataFrame:
    """Run read-only SQL over the store's tables; anything else fails with one line (exit 1).

    Two fences: statements that do not only read are refused before anything runs (see :func:`_is_read`),
    and what runs runs on :meth:`Store.connect`, a connection that cannot touch the file system at all,
    not even a temp folder (a SELECT can still call ``read_csv`` or hide a ``COPY`` in a CTE; the
    sandbox refuses those).
    """
    try:
        statements = duckdb.extract_statements(sql)
    except duckdb.Error as e:
        raise CalibError(f"invalid SQL: {_one_line(e)}") from None
    if not statements:
        raise CalibError("empty SQL")
    for st in statements:
        if not _is_read(st):
            what = "EXPLAIN of a statement that writes" if st.type == duckdb.StatementType.EXPLAIN else \
                f"{st.type.name} statements are"
            raise CalibError(f"the store is read-only here: {what} not allowed (use SELECT, SUMMARIZE, DESCRIBE, "
                             "SHOW, PIVOT or EXPLAIN of one)")
    con = store.connect()  # tables registered as Arrow data, file access off, no temp folder, locked
    try:
        result = None
        for st in statements:
            # Arrow-backed columns keep DECIMAL/HUGEINT digits that a float64 frame would round
            result = con.sql(st.query).to_arrow_table().to_pandas(types_mapper=pd.ArrowDtype)
        return result
    except duckdb.Error as e:
        raise CalibError(f"query refused or failed: {_one_line(e)}") from None
    finally:
        con.close()


def _check_new_output(out: Path, *, folder: bool) -> None:
    """Refuse, before any work, an output that exists or cannot be created (one line, exit 1)."""
    if out.exists() and not (folder and out.is_dir() and not any(out.iterdir())):
        what = "folder" if out.is_dir() else "file"
        raise CalibError(f"--out {out}: a {what} of that name exists; remove it or choose another path")
    for parent in out.parents:
        if parent.exists():
            if not parent.is_dir():
                raise CalibError(f"--out {out}: {parent} is a file, so nothing can be written under it")
            break


def export(store: Store, fmt: str, out: Path, runs: list[str] | None = None) -> dict[str, Any]:
    """``jsonl``: canonical episode records, one per line (what ``calib ingest`` reads back).
    ``parquet``: a folder with episodes/turns/signals Parquet files. ``runs``: only these runs (all when
    None); a run the store does not hold is refused with the list of those it does. The output must not
    exist yet (an empty folder is fine for parquet); a failed export leaves nothing behind.

    The files are written by pyarrow from query results: the store's connection has no file access."""
    if fmt not in ("jsonl", "parquet"):
        raise UsageError(f"unknown export format {fmt!r}: use parquet or jsonl")
    out = Path(out)
    _check_new_output(out, folder=fmt == "parquet")
    if runs is not None:
        present = store.runs()
        missing = [r for r in runs if r not in present]
        if missing:
            raise UsageError(f"--runs: no run {', '.join(map(repr, missing))} in the store "
                             f"(runs: {', '.join(map(repr, present)) or 'none: the store is empty'})")
    if fmt == "jsonl":
        out.parent.mkdir(parents=True, exist_ok=True)
        n = 0
        tmp = out.with_name(f".{out.name}.{os.getpid()}.tmp")
        try:
            with open(tmp, "w", encoding="utf-8") as f:
                for rec in store.iter_episodes(runs):
                    f.write(json.dumps(rec, ensure_ascii=False) + "\n")
                    n += 1
            tmp.replace(out)
        finally:
            tmp.unlink(missing_ok=True)
        return {"format": "jsonl", "out": str(out), "episodes": n}
    created = not out.exists()
    out.mkdir(parents=True, exist_ok=True)
    con = store.connect()
    counts = {}
    sel = Selection.of(runs)
    ids_sql, _ = sel.ids_sql()
    of_selected_sql = "" if sel.everything else f" WHERE episode_id IN ({ids_sql})"  # every row: no join
    selected = {
        "episodes": f"SELECT * FROM episodes WHERE true{sel.where_sql()}",
        "turns": f"SELECT * FROM turns{of_selected_sql}",
        "signals": f"SELECT * FROM signals{of_selected_sql}",
    }
    try:
        for t, sql in selected.items():
            reader = con.sql(sql, params=sel.params()).to_arrow_reader()
            counts[t] = _write_parquet(reader, out / f"{t}.parquet")
    except BaseException:
        for t in selected:
            (out / f"{t}.parquet").unlink(missing_ok=True)
        if created:
            shutil.rmtree(out, ignore_errors=True)
        raise
    finally:
        con.close()
    return {"format": "parquet", "out": str(out), **counts}


def _write_parquet(reader: pa.RecordBatchReader, path: Path) -> int:
    """Stream ``reader`` into one zstd Parquet file; returns the row count."""
    n = 0
    with pq.ParquetWriter(path, reader.schema, compression="zstd") as w:
        for batch in reader:
            w.write_batch(batch)
            n += batch.num_rows
    return n
