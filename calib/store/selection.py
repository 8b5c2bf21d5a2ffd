"""Which episodes an analysis reads: runs, and a window of training steps.

Online recalibration (``calib train --recalibrate-every``) measures the signals on the episodes of
the last few optimiser steps of one run, not on the whole run; ``calib analyze`` on the runs the user
names. One value says both, so every reader of the store (signals, analysis, imported signals)
selects the same episodes through the same SQL. The step of a training episode is ``info.step``, which
the trainer writes on every episode it stores.

The SQL text here is constant; runs and steps are bound parameters (``calib/sqlutil.py``).
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from typing import Any

# The training step of an episode, NULL for episodes that did not come from ``calib train``.
STEP_SQL = "TRY_CAST(json_extract_string(info, '$.step') AS BIGINT)"


@dataclass(frozen=True)
class Selection:
    """``runs``: run ids (None: every run). ``first_step``/``last_step``: inclusive bounds on the
    episode's training step (None: unbounded; with a bound, episodes without a step are left out)."""

    runs: tuple[str, ...] | None = None
    first_step: int | None = None
    last_step: int | None = None

    @classmethod
    def of(cls, value: SelectionLike) -> Selection:
        """A Selection from what callers pass: None (everything), a list of run ids, or a Selection."""
        if value is None:
            return cls()
        if isinstance(value, Selection):
            return value
        if isinstance(value, str):
            raise TypeError("runs: a list of run ids, not one string")
        runs = tuple(value)
        return cls(runs=runs or None)

    @property
    def run_list(self) -> list[str] | None:
        return list(self.runs) if self.runs else None

    @property
    def everything(self) -> bool:
        return not self.runs and self.first_step is None and self.last_step is None

    def where_sql(self) -> str:
        """``AND ...`` conditions on the ``episodes`` columns (empty when everything is selected)."""
        parts = []
        if self.runs:
            parts.append("list_contains(?, run_id)")
        if self.first_step is not None:
            parts.append(f"{STEP_SQL} >= ?")
        if self.last_step is not None:
            parts.append(f"{STEP_SQL} <= ?")
        return "".join(f" AND {p}" for p in parts)

    def params(self) -> list[Any]:
        """The parameters of :meth:`where_sql`, in order."""
        out: list[Any] = []
        if self.runs:
            out.append(list(self.runs))
        if self.first_step is not None:
            out.append(int(self.first_step))
        if self.last_step is not None:
            out.append(int(self.last_step))
        return out

    def ids_sql(self) -> tuple[str, list[Any]]:
        """(SQL selecting the episode ids, its parameters)."""
        return f"SELECT episode_id FROM episodes WHERE true{self.where_sql()}", self.params()

    def describe(self) -> str:
        what = f"runs {', '.join(self.runs)}" if self.runs else "every run"
        if self.first_step is not None or self.last_step is not None:
            what += f", steps {self.first_step if self.first_step is not None else '..'}-" \
                    f"{self.last_step if self.last_step is not None else '..'}"
        return what


SelectionLike = Selection | Sequence[str] | None
