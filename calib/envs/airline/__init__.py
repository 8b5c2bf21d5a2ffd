"""Airline domain (tau-bench compatible): database, 14 tools, reward, environment."""

from calib.envs.airline.db import AirlineDB, data_hash
from calib.envs.airline.env import AirlineDomain, AirlineEnv, run_tool
from calib.envs.airline.tools import TOOLS

__all__ = ["TOOLS", "AirlineDB", "AirlineDomain", "AirlineEnv", "data_hash", "run_tool"]
