"""Get an analysis when the caller has none: the same functions ``calib analyze`` runs.

``calib report`` without ``--analysis`` analyses the store itself, so a report never shows numbers
that a fresh ``calib analyze`` of the same store would not: every built-in and entry-point signal
(computed and cached in the store as ``calib analyze`` does) plus any other signal already in the
store (written by the user's code with ``store.write_signals``, or by ``calib analyze --signal``),
the default :class:`~calib.analysis.run.AnalysisConfig`, and its proposed spec.

Two rules: a signal name read from the store's folders is analysed as stored and never imported
(only names the user passes, in a spec or ``--signal``, may name code to run); and a store this
process cannot write is analysed in a scratch copy (:meth:`Store.scratch`), which is said once.
"""

from __future__ import annotations

import contextlib
import os
from collections.abc import Iterator
from typing import Any

from calib.errors import CalibError


def open_store(store: Any):
    """A Store from a Store or a directory (which must already be a store)."""
    from calib.store import Store

    if isinstance(store, Store):
        return store
    if isinstance(store, (str, os.PathLike)):
        return Store(store, create=False)
    raise CalibError(f"expected a store or a store directory, got {type(store).__name__}")


@contextlib.contextmanager
def computable_store(store: Any) -> Iterator[Any]:
    """``store`` itself when it is writable, else a scratch copy (and one line on stderr saying so)."""
    if store.is_writable():
        yield store
        return
    from rich.console import Console

    Console(stderr=True).print(f"note: {store.path} is read-only: signal values are computed in a temporary "
                               "copy, not cached in the store", highlight=False, soft_wrap=True)
    with store.scratch() as scratch:
        yield scratch


def analysis_for_store(store: Any, *, runs: list[str] | None = None, mode: str | None = None,
                       origin: Any = None):
    """``(analysis dict, proposed RewardSpec)`` for ``store``, computing missing signal values first.

    ``mode`` picks the advantage mode of the proposed spec (grpo has no turn advantage to align, so
    the analysis then measures agreement under its default mode and the spec records ``grpo``).
    ``origin``: the path the spec's provenance names when ``store`` is a scratch copy.
    """
    from calib.advantages import signal_mode_names
    from calib.analysis.pipeline import analyze_and_propose
    from calib.signals.registry import available_signals

    # The signals calib itself provides are refreshed (new episodes, new versions) by the entry point;
    # every other name comes from a folder of the store and is analysed as stored: never imported.
    stored = sorted(set(store.signal_versions()) - set(available_signals()))
    out = analyze_and_propose(store, runs=runs, mode=mode if mode in signal_mode_names() else None,
                              stored=stored, store_label=str(origin or store.path))
    result, spec = out.result, out.spec
    if mode is not None and mode != spec.advantage.mode:
        spec.advantage.mode = mode
    return result.to_json(), spec
