"""``--json`` output is exact JSON: floats round-trip bit for bit, NaN/inf are null (issue 23, item 9).

pandas' ``to_json`` kept 10 significant digits, so ``store query --json "SELECT 1e-12 AS t"`` printed
0.0 and ``store info --json`` printed a 1/3 success rate as 0.3333333333. Every command's ``--json``
now goes through :func:`calib.jsonutil.dumps`.
"""

from __future__ import annotations

import json
import math
from decimal import Decimal
from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st
from typer.testing import CliRunner

from calib.cli import app
from calib.cli.finish import finish
from calib.jsonutil import dumps, exact, frame_records
from calib.store import Store

runner = CliRunner()

EXACT_SQL = """SELECT 1e-12 AS tiny, 0.1::DOUBLE + 0.2::DOUBLE AS sum, 1 / 3 AS third,
    9007199254740993::BIGINT AS big, '-0.0'::DOUBLE AS negzero, 'nan'::DOUBLE AS nan,
    'inf'::DOUBLE AS inf, '-inf'::DOUBLE AS ninf, TIMESTAMP '2024-01-02 03:04:05.123456' AS ts,
    [1.5, 2e-300] AS l, {'a': 1e-12} AS s"""


def _strict(text: str) -> Any:
    """Parse as a strict reader would: NaN/Infinity tokens are an error, not a float."""
    def refuse(token: str) -> None:
        raise AssertionError(f"{token} is not JSON")

    return json.loads(text, parse_constant=refuse)


def _query(store: Path, sql: str) -> list[dict[str, Any]]:
    res = runner.invoke(app, ["store", "query", sql, "--store", str(store), "--json"])
    assert res.exit_code == 0, res.output
    return _strict(res.output)


@pytest.fixture
def empty_store(tmp_path: Path) -> Path:
    Store(tmp_path / "store")
    return tmp_path / "store"


def test_store_query_json_is_exact(empty_store: Path):
    [row] = _query(empty_store, EXACT_SQL)
    assert row["tiny"] == 1e-12
    assert row["sum"] == 0.1 + 0.2 and row["sum"] != 0.3
    assert row["third"] == 1 / 3
    assert row["big"] == 2**53 + 1 and isinstance(row["big"], int)
    assert row["negzero"] == 0.0 and math.copysign(1.0, row["negzero"]) == -1.0
    assert row["nan"] is None and row["inf"] is None and row["ninf"] is None
    assert row["ts"] == "2024-01-02T03:04:05.123456"
    assert row["l"] == [1.5, 2e-300]
    assert row["s"] == {"a": 1e-12}


def test_store_query_json_nulls_decimals_and_nested_values(empty_store: Path):
    sql = """SELECT * FROM (VALUES
        (9007199254740993::BIGINT, {'d': 12345678901234567890.123456789::DECIMAL(38, 9)},
         [NULL, 0.1::DOUBLE, 'nan'::DOUBLE], TIMESTAMP_NS '2024-01-02 03:04:05.123456789', 1.25::DECIMAL(10, 2)),
        (NULL, NULL, NULL, NULL, NULL)) t(big, s, l, ts, d)"""
    res = runner.invoke(app, ["store", "query", sql, "--store", str(empty_store), "--json"])
    assert res.exit_code == 0, res.output
    rows = json.loads(res.output, parse_float=Decimal)
    assert rows[0]["big"] == 2**53 + 1  # a NULL in the column must not turn it into floats
    assert rows[0]["s"] == {"d": Decimal("12345678901234567890.123456789")}
    assert rows[0]["l"] == [None, Decimal("0.1"), None]
    assert rows[0]["ts"] == "2024-01-02T03:04:05.123456789"
    assert rows[0]["d"] == Decimal("1.25")
    assert rows[1] == {"big": None, "s": None, "l": None, "ts": None, "d": None}


def _episode(i: int, success: bool, run: str = "r1") -> dict:
    return {"episode_id": f"{run}-{i}", "run_id": run, "task_id": f"t{i}", "outcome": 1.0 if success else 0.0,
            "status": "ok", "messages": [{"role": "user", "content": "hi"}, {"role": "assistant", "content": "ok"}]}


def test_store_info_json_success_rate_is_exact(tmp_path: Path):
    store = Store(tmp_path / "store")
    store.add_episodes([_episode(0, True), _episode(1, False), _episode(2, False)], source="test")
    res = runner.invoke(app, ["store", "info", "--store", str(store.path), "--json"])
    assert res.exit_code == 0, res.output
    d = _strict(res.output)
    assert d["success_rate"] == 1 / 3
    assert d["per_run"] == [{"run_id": "r1", "episodes": 3, "groups": 3, "turns": 3, "success_rate": 1 / 3,
                             "errors": 0}]
    assert isinstance(d["per_run"][0]["turns"], int)  # a sum of INTEGER was a float (HUGEINT via pandas)


def test_finish_prints_nan_as_null(capsys):
    finish(None, {"loss": float("nan"), "lr": 1e-12, "step": np.int64(3)}, "", json_out=True)
    assert _strict(capsys.readouterr().out) == {"loss": None, "lr": 1e-12, "step": 3}


def test_exact_converts_what_dataframes_and_duckdb_hold():
    df = pd.DataFrame({"i": pd.array([2**53 + 1, None], dtype="Int64"), "f": [np.nan, 1 / 3],
                       "t": [pd.Timestamp("2024-01-02 03:04:05.123456789"), pd.NaT]})
    assert exact(frame_records(df)) == [{"i": 2**53 + 1, "f": None, "t": "2024-01-02T03:04:05.123456789"},
                                        {"i": None, "f": 1 / 3, "t": None}]
    masked = np.ma.masked_array([1.5, 2.0], mask=[False, True])
    assert exact({"m": masked, "ns": np.array(["2024-01-01T00:00:00.000000001"], dtype="datetime64[ns]"),
                  "f32": np.float32(0.5), "inf": np.array([np.inf]), 1.5: b"\xffab"}) == {
        "m": [1.5, None], "ns": ["2024-01-01T00:00:00.000000001"], "f32": 0.5, "inf": [None], "1.5": "\\xffab"}
    assert dumps([Decimal("-0"), Decimal("1E-30"), Decimal("NaN")]) == "[-0, 1E-30, null]"


JSON_VALUES = st.recursive(
    st.none() | st.booleans() | st.integers() | st.floats(allow_nan=False, allow_infinity=False) | st.text(),
    lambda inner: st.lists(inner, max_size=4) | st.dictionaries(st.text(max_size=5), inner, max_size=4),
    max_leaves=20,
)


@settings(max_examples=200, deadline=None)
@given(JSON_VALUES)
def test_dumps_lays_out_like_json_dumps_and_round_trips(value):
    for indent in (None, 2):
        text = dumps(value, indent=indent)
        assert text == json.dumps(value, indent=indent)
        assert json.loads(text) == value


def test_store_query_json_keeps_top_level_decimal_and_hugeint_digits(empty_store: Path):
    """The query's rows come as Arrow-backed columns, so DECIMAL and HUGEINT never pass through a double."""
    res = runner.invoke(app, ["store", "query", "--store", str(empty_store), "--json",
                              ("SELECT 12345678901234567890.123::DECIMAL(38,3) AS d, "
                               "170141183460469231731687303715884105727::HUGEINT AS h, sum(x) AS s "
                               "FROM (VALUES (1), (2)) t(x)")])
    assert res.exit_code == 0, res.output
    row = json.loads(res.output, parse_float=Decimal)[0]
    assert row["d"] == Decimal("12345678901234567890.123")
    assert row["h"] == 2**127 - 1
    assert row["s"] == 3 and isinstance(row["s"], int)
