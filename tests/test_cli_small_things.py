"""Small CLI defects of issue 23, item 10: a negative ``store query --limit`` is refused like other bad
options (one line, exit 2)."""

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
