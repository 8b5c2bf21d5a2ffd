"""calib's trainer: per-turn advantages (pure numpy) and a TRL ``GRPOTrainer`` subclass.

``trainer.advantages`` is numpy only, so that ``calib.analysis`` can import it without pulling in
torch; ``trainer.grpo`` (torch, transformers, TRL) is imported only by the command that trains.
"""

from trainer.advantages import ADVANTAGE_MODES, TURN_NORMS, expand_to_tokens, turn_advantages

__all__ = ["ADVANTAGE_MODES", "TURN_NORMS", "expand_to_tokens", "turn_advantages"]
