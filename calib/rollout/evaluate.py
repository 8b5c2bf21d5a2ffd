"""Success rate and pass^k (tau-bench's definition), by task and overall.

pass^k is the chance that *all* of k i.i.d. trials of a task succeed, estimated without bias from n
trials with c successes as C(c, k) / C(n, k), then averaged over tasks (tau-bench, Yao et al. 2024).
pass^1 is the success rate averaged per task. It falls with k when a policy is inconsistent, which is
what calibrated rewards should fix.

Rules:
- ``status == "error"`` episodes (infrastructure failures) are excluded: they are neither a success nor a
  failure. They are counted per task as ``errors``.
- A task's trials are its episodes in the selected run (and iteration): the same task sampled G times
  in one rollout, or a tau-bench results file's trials of a task.
- pass^k is reported for k = 1..max n; a task with fewer than k scored trials cannot estimate pass^k and
  is left out of that k's average (``tasks_per_k`` says how many tasks each value averages).
"""

from __future__ import annotations

import shlex
from dataclasses import dataclass
from typing import Any

import numpy as np
import pandas as pd
from scipy.special import comb

from calib.errors import CalibError


def pass_hat_k_matrix(n: np.ndarray, c: np.ndarray, kmax: int) -> np.ndarray:
    """Per-task pass^k for k = 1..kmax: array (tasks, kmax), NaN where n < k.

    C(c, k) / C(n, k) computed in floating point (scipy's comb), exact enough for n in the thousands.
    """
    n = np.asarray(n, dtype=np.int64)  # (T,)
    c = np.asarray(c, dtype=np.int64)  # (T,)
    if np.any(c > n) or np.any(c < 0):
        raise ValueError("successes must lie between 0 and the number of trials")
    k = np.arange(1, kmax + 1)[None, :]  # (1, K)
    num = comb(c[:, None], k)  # (T, K); 0 where c < k
    den = comb(n[:, None], k)  # (T, K); 0 where n < k
    with np.errstate(invalid="ignore", divide="ignore"):
        out = np.where(den > 0, num / np.where(den > 0, den, 1), np.nan)
    return out


def pass_hat_k(n: np.ndarray, c: np.ndarray, kmax: int | None = None) -> dict[int, float]:
    """Mean over tasks of C(c, k) / C(n, k) for k = 1..kmax (default: max n), tasks with n >= k."""
    n = np.asarray(n)
    if n.size == 0:
        return {}
    kmax = int(n.max()) if kmax is None else kmax
    m = pass_hat_k_matrix(n, c, kmax)
    return {k + 1: float(np.nanmean(m[:, k])) for k in range(kmax) if np.isfinite(m[:, k]).any()}


@dataclass
class EvalResult:
    """Output of :func:`evaluate_run`. ``per_task`` has one row per (iteration, task)."""

    run_id: str
    success_rate: float | None
    pass_hat_k: dict[int, float]
    tasks_per_k: dict[int, int]
    per_task: pd.DataFrame
    episodes: int
    errors: int
    iterations: list[int]

    def to_dict(self) -> dict[str, Any]:
        per_task = []
        for row in self.per_task.to_dict("records"):
            r = {k: (None if isinstance(v, float) and np.isnan(v) else v) for k, v in row.items()
                 if not k.startswith("pass^")}
            r["pass_hat_k"] = {int(k[5:]): float(v) for k, v in row.items()
                               if k.startswith("pass^") and not (isinstance(v, float) and np.isnan(v))}
            per_task.append(r)
        return {
            "run_id": self.run_id,
            "success_rate": self.success_rate,
            "pass_hat_k": {str(k): v for k, v in self.pass_hat_k.items()},
            "tasks_per_k": {str(k): v for k, v in self.tasks_per_k.items()},
            "episodes": self.episodes,
            "errors": self.errors,
            "iterations": self.iterations,
            "per_task": per_task,
        }


_COUNTS_SQL = """
SELECT iteration, task_id,
       count(*) FILTER (WHERE status <> 'error')                 AS n,
       count(*) FILTER (WHERE status <> 'error' AND success)     AS successes,
       count(*) FILTER (WHERE status = 'error')                  AS errors
FROM episodes
WHERE run_id = ? {iter_sql}
GROUP BY iteration, task_id
ORDER BY iteration, task_id
"""


def task_counts(store: Any, run_id: str, iteration: int | None = None) -> pd.DataFrame:
    """(iteration, task_id, n, successes, errors) for one run, straight from DuckDB."""
    params: list[Any] = [run_id]
    iter_sql = ""
    if iteration is not None:
        iter_sql = "AND iteration = ?"
        params.append(iteration)
    return store.query(_COUNTS_SQL.format(iter_sql=iter_sql), params)


def evaluate_counts(counts: pd.DataFrame, run_id: str = "") -> EvalResult:
    """Success rate and pass^k from per-task counts (columns n, successes, errors)."""
    n = counts["n"].to_numpy(dtype=np.int64)
    c = counts["successes"].to_numpy(dtype=np.int64)
    scored = counts[counts["n"] > 0]
    kmax = int(n.max()) if len(n) else 0
    per_task = counts.copy()
    per_task["success_rate"] = np.where(n > 0, c / np.maximum(n, 1), np.nan)
    if kmax:
        m = pass_hat_k_matrix(n, c, kmax)
        for k in range(kmax):
            per_task[f"pass^{k + 1}"] = m[:, k]
        finite = np.isfinite(m)
        phk = {k + 1: float(np.nanmean(m[:, k])) for k in range(kmax) if finite[:, k].any()}
        tpk = {k + 1: int(finite[:, k].sum()) for k in range(kmax) if finite[:, k].any()}
    else:
        phk, tpk = {}, {}
    total = int(scored["n"].sum())
    return EvalResult(
        run_id=run_id,
        success_rate=(float(scored["successes"].sum()) / total) if total else None,
        pass_hat_k=phk,
        tasks_per_k=tpk,
        per_task=per_task,
        episodes=int(counts["n"].sum() + counts["errors"].sum()),
        errors=int(counts["errors"].sum()),
        iterations=sorted({int(i) for i in counts["iteration"]}) if "iteration" in counts else [],
    )


def store_runs(store: Any) -> list[str]:
    """The store's run ids; an empty store fails here, saying so and how to fill it (one line, exit 1),
    rather than later as a run name that is wrong among "(none)"."""
    runs = store.runs()
    if not runs:
        path = shlex.quote(str(store.path))
        raise CalibError(f"the store {store.path} is empty: put episodes in it first with "
                         f"calib ingest FILE --store {path} or calib rollout --store {path}")
    return runs


def evaluate_run(store: Any, run_id: str, iteration: int | None = None) -> EvalResult:
    """Evaluate one run of a store; raise CalibError naming the runs that exist when it is unknown."""
    counts = task_counts(store, run_id, iteration)
    if counts.empty:
        runs = store_runs(store)
        where = f" iteration {iteration}" if iteration is not None else ""
        raise CalibError(
            f"run {run_id!r}{where} has no episodes in {store.path}; runs in this store: "
            f"{', '.join(runs)}"
        )
    return evaluate_counts(counts, run_id)
