"""calib's trainer: a TRL ``GRPOTrainer`` subclass and the calibration loop, on top of the core.

The per-turn advantages are the core's (``calib.advantages``, numpy only, the registry of modes);
they are re-exported here for code written against ``trainer``. ``trainer.grpo`` (torch,
transformers, TRL) is imported only by the command that trains.
"""

from calib.advantages import ADVANTAGE_MODES, TURN_NORMS, expand_to_tokens, turn_advantages

__all__ = ["ADVANTAGE_MODES", "TURN_NORMS", "expand_to_tokens", "turn_advantages"]
