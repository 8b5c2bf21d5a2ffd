"""Per-turn candidate reward signals (docs/architecture.md section 3).

- ``builtin``: the built-in signals for one episode in plain Python (``episode_signals``), the
  readable definition and what the trainer uses online.
- ``sql``: the same built-ins for a whole store in DuckDB.
- ``registry``: built-ins, entry points (group ``calib.signals``) and ``module:function`` signals.
- ``compute``: writes signals into the store's ``signals`` table, recomputing only what is stale.
"""

from calib.signals.builtin import BUILTIN_SIGNALS, episode_signals
from calib.signals.registry import Signal, available_signals, resolve_signal, signal

__all__ = ["BUILTIN_SIGNALS", "Signal", "available_signals", "episode_signals", "resolve_signal", "signal"]
