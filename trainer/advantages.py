"""Moved to :mod:`calib.advantages` (the advantage registry is the core's, below the spec, the analysis
and the report; docs/architecture.md). This module re-exports it for code written against the old path."""

from calib.advantages import (  # noqa: F401
    ADVANTAGE_MODES,
    DEFAULT_EPS,
    DEFAULT_GAMMA,
    DEFAULT_LAMBDA,
    SIGNAL_MODES,
    TURN_NORMS,
    expand_to_tokens,
    group_normalize,
    signal_turn_advantages,
    turn_advantages,
    varies_within,
)
