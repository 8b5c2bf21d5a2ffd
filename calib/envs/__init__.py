"""Environments: the airline domain (tau-bench compatible), its data loaders and user simulators.

Import the interface from here: ``from calib.envs import Task, Env, Domain, RewardInfo, UserSimulator,
STOP, load_domain``.
"""

from calib.envs.base import STOP, Domain, Env, RewardInfo, Task, UserSimulator
from calib.envs.registry import load_domain

__all__ = ["STOP", "Domain", "Env", "RewardInfo", "Task", "UserSimulator", "load_domain"]
