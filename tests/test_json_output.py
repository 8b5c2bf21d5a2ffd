"""``--json`` output is exact JSON: floats round-trip bit for bit, NaN/inf are null (issue 23, item 9).

pandas' ``to_json`` kept 10 significant digits, so ``store query --json "SELECT 1e-12 AS t"`` printed
0.0 and ``store info --json`` printed a 1/3 success rate as 0.3333333333. Every command's ``--json``
now goes through :func:`calib.jsonutil.dumps`.
"""

from __future__ import annotations

import json
from decimal import Decimal

import numpy as np
import pandas as pd
from hypothesis import given, settings
from hypothesis import strategies as st

from calib.jsonutil import dumps, exact, frame_records


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
