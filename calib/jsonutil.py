"""JSON-ready copies of analysis results, reports, records and query rows: the NaN/inf-safe conversions.

JSON has no NaN or Infinity (Python's ``json`` writes them anyway, as tokens other readers reject),
and numpy scalars, arrays and tuples are not JSON types. Everything calib writes as JSON files (analysis
results, the report's data, stored episode info, experiment results) and the spec's YAML go through
:func:`plain`; everything a command prints with ``--json`` goes through :func:`dumps`, which also turns
query values (decimals, timestamps, DuckDB lists and structs) into exact JSON. So a missing number is
``null`` everywhere, no digit is lost, and a fix lands in one place.
"""

from __future__ import annotations

import datetime
import json
import math
import sys
from collections.abc import Callable
from decimal import Decimal
from typing import Any


def plain(obj: Any, *, default: Callable[[Any], Any] | None = None, nan_to_none: bool = True) -> Any:
    """A copy of ``obj`` made of JSON types: NaN/inf -> None, numpy scalars/arrays -> Python,
    tuples -> lists, mapping keys -> ``str``.

    ``default`` converts anything else (its result is converted in turn), as ``json.dumps``'s
    ``default`` does; without it such values are returned unchanged. ``nan_to_none=False`` keeps
    NaN/inf, for YAML (which has ``.nan``): the reward spec round-trips a NaN in its provenance.
    """
    kw: dict[str, Any] = {"default": default, "nan_to_none": nan_to_none}
    if isinstance(obj, dict):
        return {str(k): plain(v, **kw) for k, v in obj.items()}
    if isinstance(obj, (list, tuple)):
        return [plain(v, **kw) for v in obj]
    if isinstance(obj, float):  # before tolist: np.float64 is a float
        return None if nan_to_none and not math.isfinite(obj) else obj
    if isinstance(obj, (str, int, bool)) or obj is None:
        return obj
    if hasattr(obj, "tolist") and callable(obj.tolist):  # numpy array or scalar
        return plain(obj.tolist(), **kw)
    if default is not None:
        return plain(default(obj), **kw)
    return obj


class _Number(str):
    """JSON number text written as it is: a decimal's exact digits (``json`` would turn it into a float)."""


def exact(obj: Any) -> Any:
    """A JSON-ready copy of ``obj`` that loses no digit: what every ``--json`` output prints.

    Floats stay floats (``json`` writes Python's shortest round-trip form, so ``1e-12`` and ``1/3``
    read back bit for bit), NaN/inf and pandas' NA/NaT become None, integers of any size stay whole,
    decimals keep their digits, timestamps become ISO 8601 strings, durations ISO 8601 durations,
    numpy scalars/arrays (masked ones too: DuckDB lists with NULLs) and tuples Python values/lists,
    mapping keys ``str``; anything else (UUIDs, blobs) its text. Unlike :func:`plain` nothing is left
    unconverted, because this feeds :func:`dumps`, which must never fail on a query's value.
    """
    if obj is None or isinstance(obj, (bool, str)):
        return obj
    if isinstance(obj, float):  # np.float64 too
        return float(obj) if math.isfinite(obj) else None
    if isinstance(obj, int):
        return int(obj)
    if isinstance(obj, Decimal):
        return _Number(obj) if obj.is_finite() else None
    if isinstance(obj, dict):
        return {_key(k): exact(v) for k, v in obj.items()}
    if isinstance(obj, (list, tuple)):
        return [exact(v) for v in obj]
    if _is_missing(obj):
        return None
    if isinstance(obj, (datetime.date, datetime.time)):  # datetime and pd.Timestamp too (nanoseconds kept)
        return obj.isoformat()
    if isinstance(obj, datetime.timedelta):
        import pandas as pd

        return pd.Timedelta(obj).isoformat()
    if type(obj).__module__.split(".")[0] == "numpy":
        return _numpy(obj)
    if isinstance(obj, (bytes, bytearray)):
        return bytes(obj).decode("utf-8", "backslashreplace")
    return str(obj)


def _key(k: Any) -> str:
    """A mapping key (a DuckDB MAP's may be any type) as the text of its JSON value: ``1.5`` -> "1.5",
    ``None`` -> "null", a timestamp its ISO string, as ``json.dumps`` does for the types it knows."""
    if isinstance(k, str):
        return k
    v = exact(k)
    return v if isinstance(v, str) and not isinstance(v, _Number) else _text(v, None, 0)


def _is_missing(obj: Any) -> bool:
    """pandas' NA or NaT (checked only once pandas is loaded: without it there are none)."""
    pd = sys.modules.get("pandas")
    return pd is not None and (obj is pd.NA or obj is pd.NaT)


def _numpy(obj: Any) -> Any:
    """:func:`exact` of a numpy value: element by element, so that a masked element becomes None and a
    ``datetime64[ns]`` a timestamp (``tolist`` turns both into something else)."""
    import numpy as np

    if isinstance(obj, np.ma.MaskedArray):
        return [None if m else exact(v) for v, m in zip(obj.data, np.ma.getmaskarray(obj))]
    if isinstance(obj, np.ndarray):
        return [exact(v) for v in obj]
    if isinstance(obj, (np.datetime64, np.timedelta64)):
        import pandas as pd

        return exact(pd.Timestamp(obj) if isinstance(obj, np.datetime64) else pd.Timedelta(obj))
    return exact(obj.item()) if isinstance(obj, np.generic) else str(obj)


def frame_records(df: Any) -> list[dict[str, Any]]:
    """The rows of a pandas DataFrame as dicts of the values it holds, for :func:`exact`.

    Not ``DataFrame.to_json``: that keeps 10 significant digits (``1e-12`` became ``0.0``).
    """
    cols = [str(c) for c in df.columns]
    values = [df.iloc[:, i].to_numpy(dtype=object) for i in range(df.shape[1])]
    return [dict(zip(cols, row)) for row in zip(*values)]


def dumps(obj: Any, *, indent: int | None = None) -> str:
    """``obj`` as exact JSON text (see :func:`exact`), laid out as ``json.dumps(obj, indent=indent)``.

    A writer of its own because ``json`` cannot write a number it did not format itself, and a
    DECIMAL(38, 20) as a float would lose digits; the output never holds NaN or Infinity tokens.
    """
    return _text(exact(obj), indent, 0)


def _text(v: Any, indent: int | None, level: int) -> str:
    """JSON text of an :func:`exact` value nested ``level`` deep (``json``'s layout, separators and escapes)."""
    if isinstance(v, _Number):
        return str.__str__(v)
    if isinstance(v, (dict, list)) and v:
        items = ([f"{json.dumps(k)}: {_text(x, indent, level + 1)}" for k, x in v.items()] if isinstance(v, dict)
                 else [_text(x, indent, level + 1) for x in v])
        left, right = "{}" if isinstance(v, dict) else "[]"
        if indent is None:
            return left + ", ".join(items) + right
        pad, outer = "\n" + " " * (indent * (level + 1)), "\n" + " " * (indent * level)
        return left + pad + ("," + pad).join(items) + outer + right
    return json.dumps(v, allow_nan=False)
