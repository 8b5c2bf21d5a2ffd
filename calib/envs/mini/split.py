"""The held-out split of airline-mini's tasks (train / test by task kind)."""

from __future__ import annotations

from calib.envs.base import Task


def split_by_kind(tasks: list[Task]) -> dict[str, list[str]]:
    """The held-out split: within each task kind (``Task.kind``), in task order, every third task
    from the second on (positions 1, 4, ...) is a test task, the rest train.

    Why this shape: a held-out task must be new (other user, other reservation, other variant of the
    request) but not of a kind the model never saw, so every kind with two tasks or more has tasks
    on both sides; the kinds with a single task (``inquiry``, ``cancel+baggage``) stay in train.
    It depends on the task list only, so it is the same for every run and every machine: 27 train
    and 14 test tasks at the default seed.
    """
    seen: dict[str, int] = {}
    train: list[str] = []
    test: list[str] = []
    for t in tasks:
        j = seen.get(t.kind, 0)
        seen[t.kind] = j + 1
        (test if j % 3 == 1 else train).append(t.task_id)
    return {"train": train, "test": test}
