"""Experiments on the synthetic testbed (``calib experiment``): a small torch policy trained with the
same per-turn advantages as the TRL trainer, to test reward specs in seconds on a CPU.

Only ``calib experiment`` and the synthetic family of ``calib loop`` import this package (it imports torch at
module level, which is why it lives in ``trainer/``: nothing in ``calib/`` imports torch at module level).
"""
