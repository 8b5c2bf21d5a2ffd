"""Read-side operations behind ``calib store info|query|export`` (the CLI only prints)."""

from __future__ import annotations

import json
import os
import shutil
from pathlib import Path
from typing import Any

import duckdb
import pandas as pd

from calib.errors import CalibError, UsageError
from calib.jsonutil import exact, frame_records
from calib.sqlutil import sql_literal
from calib.store.store import Store

_READ_ONLY_TYPES = {duckdb.StatementType.SELECT, duckdb.StatementType.EXPLAIN}


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


def query(store: Store, sql: str) -> pd.DataFrame:
    """Run read-only SQL over the store's tables; anything else fails with one line (exit 1).

    Two fences: statements other than SELECT/EXPLAIN are refused before anything runs, and what runs
    runs on :meth:`Store.sandbox`, a connection that cannot touch the file system at all (a SELECT
    can still call ``read_csv`` or hide a ``COPY`` in a CTE; the sandbox refuses those).
    """
    try:
        statements = duckdb.extract_statements(sql)
    except duckdb.Error as e:
        raise CalibError(f"invalid SQL: {_one_line(e)}") from None
    if not statements:
        raise CalibError("empty SQL")
    for st in statements:
        if st.type not in _READ_ONLY_TYPES:
            raise CalibError(f"the store is read-only here: {st.type.name} statements are not allowed (use SELECT)")
    con = store.sandbox()
    try:
        result = None
        for st in statements:
            result = con.execute(st.query).df()
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


def export(store: Store, fmt: str, out: Path, where: str = "true") -> dict[str, Any]:
    """``jsonl``: canonical episode records, one per line (what ``calib ingest`` reads back).
    ``parquet``: a folder with episodes/turns/signals Parquet files. The output must not exist yet
    (an empty folder is fine for parquet); a failed export leaves nothing behind."""
    if fmt not in ("jsonl", "parquet"):
        raise UsageError(f"unknown export format {fmt!r}: use parquet or jsonl")
    out = Path(out)
    _check_new_output(out, folder=fmt == "parquet")
    if fmt == "jsonl":
        out.parent.mkdir(parents=True, exist_ok=True)
        n = 0
        tmp = out.with_name(f".{out.name}.{os.getpid()}.tmp")
        try:
            with open(tmp, "w", encoding="utf-8") as f:
                for rec in store.iter_episodes(where):
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
    try:
        for t in ("episodes", "turns", "signals"):
            target = out / f"{t}.parquet"
            # the path is a bound parameter's worth of quoting: any quote in it is doubled
            con.execute(f"COPY (SELECT * FROM {t}) TO {sql_literal(target.as_posix())} (FORMAT parquet, COMPRESSION zstd)")
            counts[t] = int(con.execute(f"SELECT count(*) FROM {t}").fetchone()[0])
    except BaseException:
        for t in ("episodes", "turns", "signals"):
            (out / f"{t}.parquet").unlink(missing_ok=True)
        if created:
            shutil.rmtree(out, ignore_errors=True)
        raise
    finally:
        con.close()
    return {"format": "parquet", "out": str(out), **counts}
