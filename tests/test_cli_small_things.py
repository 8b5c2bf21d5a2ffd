"""Small CLI defects of issue 23, item 10: a negative ``store query --limit`` is refused like other bad
options (one line, exit 2), and ``calib eval`` on an empty store says the store is empty and how to
fill it, instead of "the store has runs (none)"."""

from __future__ import annotations

from pathlib import Path

import pytest
from typer.testing import CliRunner

from calib.cli import app
from calib.store import Store

runner = CliRunner()


def _lines(output: str) -> list[str]:
    return [line for line in output.splitlines() if line.strip()]


@pytest.fixture
def empty_store(tmp_path: Path) -> Path:
    Store(tmp_path / "store")
    return tmp_path / "store"


@pytest.mark.parametrize("extra", [[], ["--json"]])
def test_store_query_refuses_a_negative_limit(empty_store: Path, extra: list[str]):
    res = runner.invoke(app, ["store", "query", "SELECT 1 AS x", "--store", str(empty_store), "--limit", "-1", *extra])
    assert res.exit_code == 2, res.output
    assert _lines(res.output) == ["Error: --limit -1: expected a number of rows >= 0"]


def test_store_query_limit_zero_is_allowed(empty_store: Path):
    res = runner.invoke(app, ["store", "query", "SELECT 1 AS x", "--store", str(empty_store), "--limit", "0"])
    assert res.exit_code == 0, res.output
    assert "Error" not in res.output


@pytest.mark.parametrize("extra", [[], ["--run", "r1"]])
def test_eval_on_an_empty_store_says_it_is_empty(empty_store: Path, extra: list[str]):
    res = runner.invoke(app, ["eval", "--store", str(empty_store), *extra])
    assert res.exit_code == 1, res.output
    [line] = _lines(res.output)
    assert line.startswith(f"Error: the store {empty_store} is empty: ") and "(none)" not in line
    assert f"calib ingest FILE --store {empty_store}" in line
