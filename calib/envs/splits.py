"""One split mechanism for every domain (docs/architecture.md section 3): ``--split train|test|all``.

A domain that has a split carries ``splits = {"train": [task ids], "test": [task ids]}`` (tau2 domains
take tau2's ``split_tasks.json``); ``all`` is every task. A domain without one (tau-bench v1 airline:
50 test tasks, no train set) has every task in ``all`` and says so when asked for ``train`` or
``test``. To give a domain a split, set its ``splits`` attribute; nothing else changes.
"""

from __future__ import annotations

from collections.abc import Sequence

from calib.envs.base import Domain, Task
from calib.errors import UsageError

SPLITS = ("train", "test", "all")


def domain_splits(domain: Domain) -> dict[str, list[str]]:
    """The domain's ``{"train": ids, "test": ids}``, or ``{}`` when it has no split."""
    return dict(getattr(domain, "splits", None) or {})


def split_task_ids(domain: Domain, split: str) -> list[str]:
    """Task ids of ``split`` in domain order; UsageError for an unknown split or a domain without one."""
    if split not in SPLITS:
        raise UsageError(f"--split {split!r}: use one of {', '.join(SPLITS)}")
    ids = [t.task_id for t in domain.tasks]
    if split == "all":
        return ids
    splits = domain_splits(domain)
    if split not in splits:
        raise UsageError(f"domain {domain.name!r} has no train/test split: all its {len(ids)} tasks are in "
                         "'all' (use --split all)")
    wanted = set(splits[split])
    return [t for t in ids if t in wanted]


def filter_split(domain: Domain, tasks: Sequence[Task], split: str) -> list[Task]:
    """``tasks`` that belong to ``split`` (order kept); UsageError when none do."""
    if split == "all":
        split_task_ids(domain, split)
        return list(tasks)
    keep = set(split_task_ids(domain, split))
    out = [t for t in tasks if t.task_id in keep]
    if not out:
        raise UsageError(f"none of the selected tasks is in the {split!r} split of {domain.name!r}")
    return out
