"""tau2-bench's domains as calib environments: tau2's tools, tau2's evaluator, tau2's splits.

``load_tau2_domain("airline")`` gives a :class:`~calib.envs.base.Domain` whose environments run tau2's
own ``Environment`` and score with tau2's own ``evaluate_simulation``, so calib's rewards are tau2's
rewards by construction. Needs the ``tau2`` package (``pip install 'calib[tau2]'``).
"""

from calib.envs.tau2.domain import JudgeConfig, Tau2Domain, Tau2Env, load_tau2_domain
from calib.envs.tau2.loader import INSTALL_HINT, import_tau2

__all__ = ["INSTALL_HINT", "JudgeConfig", "Tau2Domain", "Tau2Env", "import_tau2", "load_tau2_domain"]
