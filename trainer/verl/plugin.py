"""One hook that makes calib available inside verl: ``trainer.verl.plugin.register``.

verl builds its advantage estimators in the driver (the ``TaskRunner`` Ray actor) and its agent loops
in the ``AgentLoopWorker`` Ray actors, each looking names up in a registry of its own process. Ray runs
a ``worker_process_setup_hook`` in every worker process it starts, so one override registers both
everywhere (docs/verl.md)::

    +ray_kwargs.ray_init.runtime_env.worker_process_setup_hook=trainer.verl.plugin.register
"""

from __future__ import annotations


def register() -> dict[str, list[str]]:
    """Register calib's estimators and agent loops in this process; harmless to call again.
    Returns the names newly registered, by registry."""
    from trainer.verl import agent_loop, estimators

    return {"estimators": estimators.register(), "agent_loops": agent_loop.register()}
