"""JSON-ready copies of analysis results, reports and records: the one NaN/inf-safe conversion.

JSON has no NaN or Infinity (Python's ``json`` writes them anyway, as tokens other readers reject),
and numpy scalars, arrays and tuples are not JSON types. Everything calib writes as JSON (analysis
results, the report's data, stored episode info, experiment results) and the spec's YAML go through
:func:`plain`, so a missing number is ``null`` everywhere and a fix lands in one place.
"""

from __future__ import annotations

import math
from collections.abc import Callable
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

