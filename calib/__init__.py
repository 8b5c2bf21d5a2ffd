"""calib: Iterative Reward Calibration for multi-turn RL of tool-calling agents.

Pipeline: rollout store -> per-turn signals + discriminative analysis -> calibrated reward spec
(+ HTML report) -> TRL-based trainer -> fresh rollouts. See docs/ for the user guide.
"""

__version__ = "0.1.0"
