"""``calib store query`` cannot reach the file system: escape attempts are refused with one line and
exit 1, and nothing is written or read outside the store (issue 14, item 3).

The list below is what the report to the lead quotes; add to it, never remove from it.
"""

from __future__ import annotations

import json
from pathlib import Path

import pyarrow as pa
import pyarrow.parquet as pq
import pytest
from typer.testing import CliRunner

from calib.cli import app
from calib.sample_episodes import synthetic_records
from calib.store import Store

SECRET = "TOPSECRET-7f3a9c"

# {out} is a folder outside the store; {secret} a file there holding SECRET.
ESCAPES = [
    "EXPLAIN ANALYZE COPY (SELECT 42) TO '{out}/explain.csv'",
    "WITH c AS (COPY (SELECT 42) TO '{out}/cte.csv') SELECT 1",
    "COPY episodes TO '{out}/copy.csv'",
    "SELECT 1; COPY (SELECT 1) TO '{out}/second.csv'",
    "EXPORT DATABASE '{out}/export'",
    "SELECT * FROM read_csv('{secret}.csv')",
    "SELECT * FROM read_csv('/etc/passwd')",
    "FROM read_text('{secret}.txt')",
    "SELECT * FROM read_blob('{secret}.txt')",
    "SELECT * FROM glob('{out}/*')",
    "WITH c AS (SELECT 1) SELECT * FROM read_text('{secret}.txt')",
    "EXPLAIN ANALYZE SELECT * FROM read_text('{secret}.txt')",
    "SELECT * FROM '{secret}.csv'",
    "SELECT * FROM read_parquet('{secret}.parquet')",
    "SELECT * FROM parquet_metadata('{secret}.parquet')",
    "SELECT * FROM read_json_auto('{secret}.json')",
    "SELECT * FROM sniff_csv('{secret}.csv')",
    "ATTACH '{out}/other.duckdb' AS other",
    "INSTALL httpfs",
    "LOAD httpfs",
    "SET enable_external_access = true",
    "RESET lock_configuration",
    "IMPORT DATABASE '{out}'",
    "CREATE TABLE t AS SELECT 1",
]


@pytest.fixture
def world(tmp_path: Path):
    store = Store(tmp_path / "store")
    store.add_episodes(list(synthetic_records(1, 8, seed=1)), source="x")
    out = tmp_path / "outside"
    out.mkdir()
    secret = out / "secret"
    Path(f"{secret}.csv").write_text(f"a\n{SECRET}\n")
    Path(f"{secret}.txt").write_text(SECRET)
    Path(f"{secret}.json").write_text(json.dumps({"a": SECRET}))
    pq.write_table(pa.table({"a": [SECRET]}), f"{secret}.parquet")
    return store, out, secret


def _listing(*roots: Path) -> set[str]:
    return {str(p) for r in roots for p in r.rglob("*")}


@pytest.mark.parametrize("sql", ESCAPES)
def test_escape_is_refused_in_one_line(world, sql: str):
    store, out, secret = world
    before = _listing(out, store.path)
    res = CliRunner().invoke(app, ["store", "query", sql.format(out=out, secret=secret), "--store", str(store.path),
                                   "--json"])
    lines = [line for line in res.output.splitlines() if line.strip()]
    assert res.exit_code == 1, res.output
    assert len(lines) == 1 and lines[0].startswith("Error:"), res.output
    assert SECRET not in res.output and "root:" not in res.output
    assert "Traceback" not in res.output
    assert _listing(out, store.path) == before  # nothing written outside (or inside) the store


def test_read_only_sql_still_works(world):
    store, _, _ = world
    for sql, key in [("SELECT count(*) AS n FROM episodes", "n"),
                     ("SELECT count(*) AS n FROM turns", "n"),
                     ("SELECT count(*) AS n FROM ingest_log", "n"),
                     ("SELECT count(*) AS n FROM signals", "n"),
                     ("WITH e AS (SELECT * FROM episodes) SELECT count(DISTINCT task_id) AS n FROM e", "n"),
                     ("SELECT max(json_array_length(messages)) AS n FROM episodes", "n")]:
        res = CliRunner().invoke(app, ["store", "query", sql, "--store", str(store.path), "--json"])
        assert res.exit_code == 0, res.output
        assert isinstance(json.loads(res.output)[0][key], int)
    assert json.loads(CliRunner().invoke(app, ["store", "query", "SELECT count(*) AS n FROM episodes", "--store",
                                               str(store.path), "--json"]).output)[0]["n"] == 8
    res = CliRunner().invoke(app, ["store", "query", "EXPLAIN SELECT * FROM turns", "--store", str(store.path)])
    assert res.exit_code == 0, res.output


# Issue 23, item 2: DuckDB's default temp folder (./.tmp) stayed reachable with external access off, so
# EXPLAIN ANALYZE (which runs its statement) of a COPY overwrote a file there, and read_text read it.
TMP_ESCAPES = [
    "EXPLAIN ANALYZE COPY (SELECT 42) TO '.tmp/x'",
    "EXPLAIN ANALYZE COPY (SELECT 42) TO '.tmp/new.csv'",
    "EXPLAIN (FORMAT json) COPY (SELECT 42) TO '.tmp/x'",
    "EXPLAIN ANALYZE CREATE TABLE t AS SELECT 1",
    "SELECT * FROM read_text('.tmp/x')",
    "SELECT * FROM read_blob('.tmp/x')",
    "SELECT * FROM glob('.tmp/*')",
    "WITH c AS (COPY (SELECT 42) TO '.tmp/x') SELECT 1",
    "SELECT current_setting('temp_directory') AS d, * FROM read_text(current_setting('temp_directory') || '/x')",
    "/* hide */ EXPLAIN ANALYZE COPY (SELECT 42) TO '.tmp/x'",
]


@pytest.mark.parametrize("sql", TMP_ESCAPES)
def test_the_temp_folder_is_not_reachable(world, tmp_path: Path, monkeypatch, sql: str):
    store, _, _ = world
    cwd = tmp_path / "cwd"
    (cwd / ".tmp").mkdir(parents=True)
    (cwd / ".tmp" / "x").write_text(SECRET)
    monkeypatch.chdir(cwd)
    before = _listing(cwd, store.path)
    res = CliRunner().invoke(app, ["store", "query", sql, "--store", str(store.path), "--json"])
    assert res.exit_code == 1, res.output
    assert SECRET not in res.output and "Traceback" not in res.output
    assert (cwd / ".tmp" / "x").read_text() == SECRET  # not overwritten
    assert _listing(cwd, store.path) == before


@pytest.mark.parametrize("sql", [
    "PIVOT episodes ON status USING count(*)",
    "PIVOT (SELECT task_id, status FROM episodes) ON status USING count(*) GROUP BY task_id",
    "UNPIVOT (SELECT episode_id, outcome, n_turns::DOUBLE AS n FROM episodes) ON outcome, n INTO NAME k VALUE v",
    "SUMMARIZE episodes",
    "SUMMARIZE SELECT outcome FROM episodes",
    "DESCRIBE episodes",
    "DESCRIBE SELECT * FROM turns",
    "SHOW TABLES",
    "SHOW episodes",
    "FROM episodes SELECT count(*)",
    "EXPLAIN ANALYZE SELECT count(*) FROM episodes",
    "/* a comment first */ EXPLAIN SELECT 1",
])
def test_read_only_forms_that_users_write_run(world, sql: str):
    store, _, _ = world
    res = CliRunner().invoke(app, ["store", "query", sql, "--store", str(store.path), "--json"])
    assert res.exit_code == 0, res.output
    assert json.loads(res.output)
