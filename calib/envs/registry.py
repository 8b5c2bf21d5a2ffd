"""Domain name -> loader: ``load_domain("airline-mini")``, ``"taubench:PATH"``, ``"tau2:DOMAIN"``.

Its own module, apart from :mod:`calib.envs.base`, so the imports run one way: the domains
(``mini``, ``taubench``, ``tau2``) import the interface from ``base``, and only this registry imports
the domains. (When the registry lived in ``base``, ``base`` and the domains imported each other.)
The loaders are imported inside the function so that naming one domain does not import the others
(tau2 needs an optional package).
"""

from __future__ import annotations

from typing import Any

from calib.envs.base import Domain
from calib.errors import UsageError


def load_domain(spec: str, *, judge: Any = None) -> Domain:
    """``airline-mini`` (the embedded default), ``taubench:PATH`` (a tau-bench data directory) or
    ``tau2:DOMAIN`` (tau2-bench's airline, retail, telecom or mock; needs the ``tau2`` package).

    ``judge`` (a :class:`calib.envs.tau2.JudgeConfig`) is the LLM judge tau2 domains use for NL assertions.
    """
    spec = (spec or "").strip()
    if spec.startswith("tau2:"):
        from calib.envs.tau2 import load_tau2_domain

        return load_tau2_domain(spec.split(":", 1)[1], judge=judge)
    if spec in {"airline-mini", "mini", "airline"}:
        from calib.envs.mini import mini_domain

        return mini_domain()
    if spec.startswith("airline-mini:"):
        from calib.envs.mini import mini_domain

        seed = spec.split(":", 1)[1]
        if not seed.isdigit():
            raise UsageError(f"domain {spec!r}: the seed after 'airline-mini:' must be an integer")
        return mini_domain(seed=int(seed))
    if spec.startswith("taubench:"):
        from calib.envs.taubench import load_taubench

        return load_taubench(spec.split(":", 1)[1])
    raise UsageError(f"unknown domain {spec!r}: use airline-mini, taubench:PATH or tau2:DOMAIN")
