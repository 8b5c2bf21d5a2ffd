"""What the report shows, gathered from the store in a few DuckDB queries (aggregates, not rows).

Every function takes an open connection on which :func:`scoped_connection` has defined the view
``ep``: the episodes of the selected runs. The work is done in SQL (counts, per-episode aggregates,
window-function samples) or in vectorised numpy, so a store of 100k episodes takes seconds; only
the sampled episodes of the browser and the sampled groups of the scatter come back as rows.
"""

from __future__ import annotations

import json
from dataclasses import dataclass
from typing import Any

import duckdb
import numpy as np
import pandas as pd

from calib.errors import CalibError


def scoped_connection(store: Any, runs: list[str] | None) -> duckdb.DuckDBPyConnection:
    """``store.connect()`` plus a view ``ep`` of the selected runs' episodes (all runs if ``None``).

    Raises CalibError naming the runs that exist when a requested run is unknown or the store is empty.
    """
    con = store.connect()
    present = [r for (r,) in con.execute("SELECT DISTINCT run_id FROM episodes ORDER BY 1").fetchall()]
    if not present:
        con.close()
        raise CalibError(f"the store at {store.path} holds no episodes: ingest or roll out some first")
    if runs:
        missing = [r for r in runs if r not in present]
        if missing:
            con.close()
            raise CalibError(
                f"run(s) {', '.join(map(repr, missing))} not in the store; runs in this store: {', '.join(present)}"
            )
    selected = runs or present
    con.register("_report_runs", pd.DataFrame({"run_id": selected}))
    con.execute("CREATE TEMP VIEW ep AS SELECT * FROM episodes WHERE run_id IN (SELECT run_id FROM _report_runs)")
    return con


# ----------------------------------------------------------------------------- summary


def pass_hat_k(n: np.ndarray, c: np.ndarray, kmax: int) -> dict[int, float]:
    """tau-bench's pass^k (mean over tasks of C(c, k) / C(n, k), tasks with n >= k), k = 1..kmax.

    Uses the rollout module's estimator so that ``calib eval`` and the report never disagree.
    """
    from calib.rollout.evaluate import pass_hat_k_matrix

    n = np.asarray(n, dtype=np.int64)
    if n.size == 0:
        return {}
    kmax = min(int(n.max()), kmax)
    m = pass_hat_k_matrix(n, np.asarray(c, dtype=np.int64), kmax)  # (tasks, K)
    return {k + 1: float(np.nanmean(m[:, k])) for k in range(kmax) if np.isfinite(m[:, k]).any()}


def summary(con: duckdb.DuckDBPyConnection, *, pass_k: int = 8) -> dict[str, Any]:
    """Runs, episodes, groups (and how many are informative), tasks, success rate, pass^k.

    Episodes with ``status = 'error'`` (infrastructure failures) are counted but left out of the
    success rate, the groups and pass^k, as ``calib eval`` does. pass^k takes the trials of a task
    within one run and iteration.
    """
    row = con.execute(
        """
        SELECT count(*) AS episodes,
               count(*) FILTER (WHERE status = 'error') AS errors,
               count(DISTINCT task_id) AS tasks,
               count(DISTINCT group_id) FILTER (WHERE status <> 'error') AS groups,
               avg(success::DOUBLE) FILTER (WHERE status <> 'error') AS success_rate,
               avg(n_turns::DOUBLE) AS mean_turns,
               count(DISTINCT (run_id, iteration)) AS iterations
        FROM ep
        """
    ).df().iloc[0]
    informative = con.execute(
        """
        SELECT count(*) FROM (
            SELECT group_id FROM ep WHERE status <> 'error'
            GROUP BY group_id HAVING bool_or(success) AND NOT bool_and(success))
        """
    ).fetchone()[0]
    counts = con.execute(
        """
        SELECT count(*) AS n, count(*) FILTER (WHERE success) AS c FROM ep WHERE status <> 'error'
        GROUP BY run_id, iteration, task_id
        ORDER BY run_id, iteration, task_id  -- a fixed order: the mean over tasks must not depend on threads
        """
    ).df()
    runs = [r for (r,) in con.execute("SELECT DISTINCT run_id FROM ep ORDER BY 1").fetchall()]
    return {
        "runs": runs,
        "episodes": int(row["episodes"]),
        "errors": int(row["errors"]),
        "tasks": int(row["tasks"]),
        "groups": int(row["groups"]),
        "informative_groups": int(informative),
        "success_rate": None if pd.isna(row["success_rate"]) else float(row["success_rate"]),
        "mean_turns": None if pd.isna(row["mean_turns"]) else float(row["mean_turns"]),
        "iterations": int(row["iterations"]),
        "pass_hat_k": {str(k): v for k, v in pass_hat_k(counts["n"], counts["c"], pass_k).items()},
    }


# ----------------------------------------------------------------------------- distributions

_AGGREGATES = {"mean": "avg(value)", "sum": "sum(value)", "any": "max((value > 0)::DOUBLE)", "max": "max(value)"}


def signal_distributions(
    con: duckdb.DuckDBPyConnection, signals: list[str], *, aggregate: str = "mean", bins: int = 20
) -> dict[str, dict[str, Any]]:
    """Per signal: a histogram of its episode aggregate in successes and in failures.

    The aggregate is the one the analysis ranked episodes by (``mean`` by default), so the picture
    shows the very numbers behind ``auc``. Returns ``{signal: {edges, success, failure, mean_success,
    mean_failure}}`` with bin counts normalised to shares (the two classes differ in size).
    """
    agg_sql = _AGGREGATES.get(aggregate, _AGGREGATES["mean"])  # a constant of this module, never user text
    if not signals:
        return {}
    con.register("_report_signals", pd.DataFrame({"signal": signals}))
    df = con.execute(
        f"""
        SELECT s.signal, s.episode_id, {agg_sql} AS v, any_value(e.success) AS success
        FROM signals s JOIN ep e USING (episode_id)
        WHERE e.status <> 'error' AND s.value IS NOT NULL AND NOT isnan(s.value)
          AND s.signal IN (SELECT signal FROM _report_signals)
        GROUP BY s.signal, s.episode_id
        """
    ).df()
    out: dict[str, dict[str, Any]] = {}
    for name, part in df.groupby("signal", sort=False):
        v = part["v"].to_numpy(dtype=np.float64)
        y = part["success"].to_numpy(dtype=bool)
        lo, hi = float(v.min()), float(v.max())
        if hi <= lo:
            hi = lo + 1.0
        edges = np.linspace(lo, hi, bins + 1)
        s_cnt, _ = np.histogram(v[y], bins=edges)
        f_cnt, _ = np.histogram(v[~y], bins=edges)
        out[str(name)] = {
            "edges": edges,
            "success": s_cnt / max(int(y.sum()), 1),
            "failure": f_cnt / max(int((~y).sum()), 1),
            "n_success": int(y.sum()),
            "n_failure": int((~y).sum()),
            "mean_success": float(v[y].mean()) if y.any() else float("nan"),
            "mean_failure": float(v[~y].mean()) if (~y).any() else float("nan"),
        }
    return out


# ----------------------------------------------------------------------------- advantage scatter


@dataclass
class GroupSample:
    """Whole informative groups: episode arrays [E] and flat per-turn signal values [N] per signal."""

    group: np.ndarray
    outcome: np.ndarray
    lengths: np.ndarray
    values: dict[str, np.ndarray]

    @property
    def n_episodes(self) -> int:
        return int(self.lengths.size)


def sample_groups(
    con: duckdb.DuckDBPyConnection, signals: list[str], *, n_groups: int, seed: int = 0
) -> GroupSample:
    """Up to ``n_groups`` informative groups (mixed outcomes), chosen by a seeded hash of the id.

    Only informative groups carry an outcome advantage; sampling whole groups keeps every advantage
    exact (they are normalised within the group). Missing signal values are 0, as in the trainer.
    """
    eps_df = con.execute(
        """
        WITH g AS (
            SELECT group_id FROM ep WHERE status <> 'error'
            GROUP BY group_id HAVING bool_or(success) AND NOT bool_and(success)
            ORDER BY hash(group_id || ?::VARCHAR) LIMIT ?)
        SELECT episode_id, group_id, outcome, n_turns FROM ep
        WHERE status <> 'error' AND group_id IN (SELECT group_id FROM g)
        ORDER BY group_id, episode_id
        """,
        [str(seed), int(n_groups)],
    ).df()
    lengths = eps_df["n_turns"].to_numpy(dtype=np.int64)
    offsets = np.cumsum(lengths) - lengths
    n_flat = int(lengths.sum())
    values = {s: np.zeros(n_flat) for s in signals}
    if len(eps_df) and signals:
        con.register("_report_sample", eps_df[["episode_id"]])
        con.register("_report_signals", pd.DataFrame({"signal": signals}))
        sig = con.execute(
            """
            SELECT s.episode_id, s.turn_idx, s.signal, s.value FROM signals s
            WHERE s.episode_id IN (SELECT episode_id FROM _report_sample)
              AND s.signal IN (SELECT signal FROM _report_signals)
            """
        ).df()
        pos = pd.Series(np.arange(len(eps_df)), index=eps_df["episode_id"])
        ep_i = pos.reindex(sig["episode_id"]).to_numpy()
        t = sig["turn_idx"].to_numpy(dtype=np.int64)
        ok = (t >= 0) & (t < lengths[ep_i]) & np.isfinite(sig["value"].to_numpy(dtype=np.float64))
        flat = offsets[ep_i] + t
        for name, idx in sig[ok].groupby("signal").indices.items():
            sel = np.flatnonzero(ok)[idx]
            values[str(name)][flat[sel]] = sig["value"].to_numpy(dtype=np.float64)[sel]
    return GroupSample(
        group=eps_df["group_id"].to_numpy(dtype=object),
        outcome=eps_df["outcome"].to_numpy(dtype=np.float64),
        lengths=lengths,
        values=values,
    )


# ----------------------------------------------------------------------------- history


def _history_weights(hist: pd.DataFrame) -> dict[str, dict[str, list]]:
    """``{signal: {iteration: [...], weight: [...]}}`` from the loop's ``calibration_history``.

    The loop writes one row per iteration with ``weights`` as JSON text (``{signal: weight}``); a
    long table (iteration, signal, weight) is read as well.
    """
    rows: list[tuple[int, str, float]] = []
    if "weights" in hist.columns:
        for it, w in zip(hist["iteration"], hist["weights"]):
            if isinstance(w, str):
                try:
                    w = json.loads(w)
                except ValueError:
                    continue
            if isinstance(w, dict):
                rows += [(int(it), str(k), float(v)) for k, v in w.items() if isinstance(v, (int, float))]
    elif {"signal", "weight"} <= set(hist.columns):
        rows = [(int(i), str(s), float(w)) for i, s, w in zip(hist["iteration"], hist["signal"], hist["weight"])
                if pd.notna(i) and pd.notna(w)]
    df = pd.DataFrame(rows, columns=["iteration", "signal", "weight"])
    df = df.drop_duplicates(["iteration", "signal"], keep="last").sort_values(["signal", "iteration"])
    return {
        s: {"iteration": part["iteration"].tolist(), "weight": part["weight"].tolist()}
        for s, part in df.groupby("signal", sort=True)
    }


def iteration_history(con: duckdb.DuckDBPyConnection, store: Any) -> dict[str, Any] | None:
    """Success and turn-reward weights per iteration, or None when there is only one point.

    With the loop's ``calibration_history`` table: its rollout and eval success and the weights each
    calibration chose (the table covers the whole store). Without it: success per (run, iteration)
    of the selected episodes.
    """
    hist = store.read_table("calibration_history")
    series: list[dict[str, Any]] = []
    weights: dict[str, dict[str, list]] = {}
    if hist is not None and len(hist) and "iteration" in hist.columns:
        hist = hist.sort_values("iteration")
        weights = _history_weights(hist)
        for col, label in (("rollout_success", "rollout (policy of the iteration)"),
                           ("eval_success", "eval (after training)")):
            if col in hist.columns:
                pts = [(int(i), float(v)) for i, v in zip(hist["iteration"], hist[col]) if pd.notna(v)]
                if pts:
                    series.append({"label": label, "iteration": [p[0] for p in pts],
                                   "success_rate": [p[1] for p in pts]})
    if not series:
        success = con.execute(
            """
            SELECT run_id, iteration, avg(success::DOUBLE) AS success_rate FROM ep WHERE status <> 'error'
            GROUP BY run_id, iteration ORDER BY run_id, iteration
            """
        ).df()
        for run, part in success.groupby("run_id", sort=True):
            series.append({"label": str(run), "iteration": part["iteration"].astype(int).tolist(),
                           "success_rate": part["success_rate"].astype(float).tolist()})
    n_points = sum(len(s["iteration"]) for s in series)
    n_iters = len({i for s in series for i in s["iteration"]} | {i for w in weights.values() for i in w["iteration"]})
    if n_points < 2 or n_iters < 2:
        return None
    return {"success": series, "weights": weights}


# ----------------------------------------------------------------------------- episode browser


def sample_episode_ids(
    con: duckdb.DuckDBPyConnection, *, per_task: int, max_episodes: int, seed: int = 0
) -> list[str]:
    """A few successes and a few failures of every task, breadth first, at most ``max_episodes``.

    Ranks each (task, success) cell by a seeded hash and takes rank 1 of every task before rank 2,
    so a cap that cuts in keeps as many tasks as possible, with both outcomes side by side.
    """
    if max_episodes <= 0:
        return []
    df = con.execute(
        """
        WITH ranked AS (
            SELECT episode_id, task_id, success,
                   row_number() OVER (PARTITION BY task_id, success ORDER BY hash(episode_id || ?::VARCHAR)) AS r
            FROM ep)
        SELECT episode_id FROM ranked WHERE r <= ?
        ORDER BY r, hash(task_id || ?::VARCHAR), task_id, success DESC
        LIMIT ?
        """,
        [str(seed), int(per_task), str(seed), int(max_episodes)],
    ).df()
    return df["episode_id"].tolist()


def _cut(text: Any, limit: int) -> tuple[str, int]:
    """(text at most ``limit`` characters, characters removed). Non-strings become JSON text."""
    if text is None:
        return "", 0
    if not isinstance(text, str):
        text = json.dumps(text, ensure_ascii=False, sort_keys=True)
    if len(text) <= limit:
        return text, 0
    return text[:limit], len(text) - limit


def _message_view(msg: dict[str, Any], limit: int) -> dict[str, Any]:
    content, cut = _cut(msg.get("content"), limit)
    out: dict[str, Any] = {"role": str(msg.get("role", "")), "content": content}
    if cut:
        out["cut"] = cut
    if msg.get("name"):
        out["name"] = str(msg["name"])
    if msg.get("invalid"):
        out["invalid"] = True
    calls = []
    for c in msg.get("tool_calls") or []:
        args, acut = _cut(c.get("arguments"), limit)
        call = {"name": str(c.get("name", "")), "arguments": args}
        if acut:
            call["cut"] = acut
        if c.get("parse_error"):
            call["parse_error"] = True
        calls.append(call)
    if calls:
        out["tool_calls"] = calls
    return out


def episode_views(
    con: duckdb.DuckDBPyConnection, episode_ids: list[str], signals: list[str], *, max_message_chars: int
) -> list[dict[str, Any]]:
    """The sampled episodes as plain dicts for the browser: messages (cut to a length), tool calls
    as JSON text, and on each turn's assistant message its turn index and signal values."""
    if not episode_ids:
        return []
    con.register("_report_ids", pd.DataFrame({"episode_id": episode_ids, "ord": np.arange(len(episode_ids))}))
    eps = con.execute(
        """
        SELECT e.episode_id, e.run_id, e.iteration, e.task_id, e.group_id, e.policy, e.outcome, e.success,
               e.status, e.n_turns, e.messages
        FROM ep e JOIN _report_ids i USING (episode_id) ORDER BY i.ord
        """
    ).df()
    turns = con.execute(
        """
        SELECT episode_id, turn_idx, msg_idx, kind FROM turns
        WHERE episode_id IN (SELECT episode_id FROM _report_ids)
        """
    ).df()
    sig = con.execute(
        """
        SELECT episode_id, turn_idx, signal, value FROM signals
        WHERE episode_id IN (SELECT episode_id FROM _report_ids) AND value IS NOT NULL AND NOT isnan(value)
        """
    ).df()
    known = set(signals)
    sig_by_turn: dict[tuple[str, int], dict[str, float]] = {}
    for r in sig.itertuples(index=False):  # a few thousand rows at most: the sampled episodes only
        if not known or r.signal in known:
            sig_by_turn.setdefault((r.episode_id, int(r.turn_idx)), {})[r.signal] = float(r.value)
    turn_of_msg: dict[tuple[str, int], tuple[int, str]] = {
        (r.episode_id, int(r.msg_idx)): (int(r.turn_idx), str(r.kind)) for r in turns.itertuples(index=False)
    }
    out = []
    for e in eps.itertuples(index=False):
        try:
            msgs = json.loads(e.messages) if e.messages else []
        except (TypeError, ValueError):
            msgs = []
        views = []
        for j, m in enumerate(msgs if isinstance(msgs, list) else []):
            v = _message_view(m if isinstance(m, dict) else {"role": "?", "content": m}, max_message_chars)
            if (e.episode_id, j) in turn_of_msg:
                t, kind = turn_of_msg[(e.episode_id, j)]
                v["turn"] = t
                v["kind"] = kind
                v["signals"] = dict(sorted(sig_by_turn.get((e.episode_id, t), {}).items()))
            views.append(v)
        out.append(
            {
                "episode_id": str(e.episode_id),
                "run_id": str(e.run_id),
                "iteration": None if pd.isna(e.iteration) else int(e.iteration),
                "task_id": str(e.task_id),
                "group_id": str(e.group_id),
                "policy": None if e.policy is None else str(e.policy),
                "outcome": None if pd.isna(e.outcome) else float(e.outcome),
                "success": bool(e.success),
                "status": str(e.status),
                "n_turns": int(e.n_turns),
                "messages": views,
            }
        )
    return out


# ----------------------------------------------------------------------------- online recalibration


def recalibration_history(con: duckdb.DuckDBPyConnection, store: Any, *, max_runs: int = 3) -> list[dict[str, Any]]:
    """Per selected run that recalibrated online (``calib train --recalibrate-every``, the store's
    ``recalibration_history`` table): the weight of each signal at each recalibration, where its
    verdict changed, and the success rate of the run's episodes per training step. At most
    ``max_runs`` runs (the most recent last); empty when no selected run recalibrated."""
    from calib.analysis.online import history

    hist = history(store)
    if not len(hist):
        return []
    selected = {r for (r,) in con.execute("SELECT DISTINCT run_id FROM ep").fetchall()}
    hist = hist[hist["run_id"].isin(selected)]
    out = []
    for run, part in list(hist.groupby("run_id", sort=True))[-max_runs:]:
        part = part.sort_values(["signal", "step"])
        signals = {}
        for sig, rows in part.groupby("signal", sort=True):
            verdicts = rows["verdict"].tolist()
            changed = [i > 0 and verdicts[i] != verdicts[i - 1] for i in range(len(verdicts))]
            signals[str(sig)] = {"step": rows["step"].astype(int).tolist(),
                                 "weight": rows["weight_after"].astype(float).tolist(),
                                 "verdict": [None if pd.isna(v) else str(v) for v in verdicts],
                                 "changed": changed}
        success = con.execute(
            "SELECT TRY_CAST(json_extract_string(info, '$.step') AS BIGINT) AS step, avg(success::DOUBLE) AS rate "
            "FROM ep WHERE run_id = ? AND status <> 'error' GROUP BY 1 HAVING step IS NOT NULL ORDER BY 1",
            [run],
        ).df()
        out.append({"run": str(run), "signals": signals,
                    "success": {"step": success["step"].astype(int).tolist(),
                                "rate": success["rate"].astype(float).tolist()}})
    return out
