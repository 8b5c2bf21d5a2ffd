"""Shared set-up of the benchmarks: one way to build the synthetic 100k-episode store."""

from __future__ import annotations

import argparse
import json
import operator
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

_OPS = {"<": operator.lt, "<=": operator.le, ">": operator.gt, ">=": operator.ge}


def met(value: float, goal: str) -> bool:
    """Whether ``value`` meets ``goal`` (``"< 30"``, ``">= 20"``, ...): the one place ``met`` is decided."""
    op, _, bound = goal.strip().partition(" ")
    if op not in _OPS:
        raise ValueError(f"goal {goal!r}: expected '<op> <number>' with op in {sorted(_OPS)}")
    return bool(_OPS[op](value, float(bound)))


def figure_line(bench: str, figure: str, value: float, goal: str, *, quick: bool, details: dict[str, Any],
                also: bool = True) -> str:
    """The final JSON line of a figure (docs/architecture.md section 10). ``met`` is computed here from value and goal
    (and ``also``, a further condition the figure states in its details), for quick runs too: a quick
    run carries ``"quick": true`` so nobody reads its ``met`` as the full-size result."""
    return json.dumps({"bench": bench, "figure": figure, "value": value, "goal": goal,
                       "met": met(value, goal) and bool(also), "quick": bool(quick), "details": details})


def add_store_args(ap: argparse.ArgumentParser) -> None:
    ap.add_argument("--episodes", type=int, default=100_000)
    ap.add_argument("--group-size", type=int, default=8)
    ap.add_argument("--chatter", type=float, default=3.5, help="extra read-only lookups per episode (~10 turns)")
    ap.add_argument("--quick", action="store_true", help="2,000 episodes (for tests)")
    ap.add_argument("--keep", type=Path, default=None, help="build (or reuse) the store here and keep it")


def bench_records(n_eps: int, group_size: int = 8, chatter: float = 3.5) -> Iterator[dict[str, Any]]:
    """The benches' episodes: ``calib.sample_episodes.synthetic_records``, seed 0, groups of ``group_size``,
    ``chatter`` extra lookups per episode (about 10 turns). The ingest and analyze benches read the
    same records."""
    from calib.sample_episodes import synthetic_records

    return synthetic_records(max(1, n_eps // group_size), group_size, seed=0, chatter=chatter)


def build_store(work: Path, args: argparse.Namespace):
    """A store of the benches' episodes (``bench_records``) in ``work/store``, reused when it already
    holds episodes (``--keep``). Returns ``(store, n_episodes, seconds)``."""
    from calib.store import Store

    n_eps = 2_000 if args.quick else args.episodes
    t0 = time.perf_counter()
    store = Store(work / "store")
    if store.count("episodes") == 0:
        store.add_episodes(bench_records(n_eps, args.group_size, args.chatter), source="bench")
    return store, n_eps, time.perf_counter() - t0
