"""What every policy family of ``calib loop`` shares: the ``Family`` protocol and the stage helpers
(``select_split`` itself lives in :mod:`calib.rollout.runner`, which ``calib train`` uses too).

Its own module so that the imports run one way: :mod:`trainer.families` (synthetic, oracle and the
``make_family`` switch) and :mod:`trainer.hf_family` both import these, and only ``families``
imports ``hf_family``. (When they lived in ``families``, the two modules imported each other.)
"""

from __future__ import annotations

from pathlib import Path
from typing import Any, Protocol

from calib.rollout.runner import select_split  # noqa: F401 - re-exported: the families split tasks with it
from calib.store import Store


class Family(Protocol):
    def rollout(self, it: int, run_id: str, store: Store, *, seed: int) -> dict[str, Any]: ...

    def train(self, it: int, spec_path: Path, store: Store, *, seed: int) -> dict[str, Any]: ...

    def evaluate(self, it: int, run_id: str, store: Store, *, seed: int) -> dict[str, Any]: ...


def existing_episodes(store: Store, run_id: str) -> int:
    """Episodes the store already holds for ``run_id``: a resumed stage that committed plays nothing."""
    return int(store.query("SELECT count(*) AS n FROM episodes WHERE run_id = ?", [run_id]).n[0])


def run_summary(store: Store, run_id: str, it: int) -> dict[str, Any]:
    """The result every family returns from ``rollout`` and ``evaluate``: the run's evaluation."""
    from calib.rollout.evaluate import evaluate_run

    ev = evaluate_run(store, run_id)
    return {"run_id": run_id, "iteration": it, "episodes": ev.episodes, "errors": ev.errors,
            "success_rate": ev.success_rate, "pass_hat_k": {str(k): v for k, v in ev.pass_hat_k.items()}}
