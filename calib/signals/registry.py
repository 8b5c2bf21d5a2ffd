"""Which signals exist and how to find them: built-ins, entry points, ``module:function``.

A custom signal is a callable ``(episode, turn) -> float | None``: ``episode`` is the canonical
episode dict (messages, expected_actions and info parsed), ``turn`` a row of the store's ``turns``
table as a dict (kind, tool_name, tool_args, is_write, tool_error, text, observation, user_text,
prev_user_text, ...). Register one for everybody with an entry point::

    [project.entry-points."calib.signals"]
    polite = "my_pkg.signals:polite"

or name it on the command line as ``--signal my_pkg.signals:polite``. Its version (what decides
whether stored values are stale) is ``fn.signal_version`` if set (see :func:`signal`), else a hash
of its source code, so editing the function recomputes it.
"""

from __future__ import annotations

import hashlib
import importlib
import inspect
from collections.abc import Callable
from dataclasses import dataclass
from importlib.metadata import EntryPoint, entry_points
from typing import Any

from calib.errors import UsageError
from calib.signals.builtin import BUILTIN_SIGNALS

ENTRY_POINT_GROUP = "calib.signals"

TurnSignal = Callable[[dict[str, Any], dict[str, Any]], "float | None"]


@dataclass(frozen=True)
class Signal:
    """A named signal. ``fn`` is None for built-ins (computed in SQL by ``calib.signals.sql``)."""

    name: str
    version: str
    description: str = ""
    fn: TurnSignal | None = None

    @property
    def builtin(self) -> bool:
        return self.fn is None


def signal(version: str = "1", description: str = "") -> Callable[[TurnSignal], TurnSignal]:
    """Decorator for custom signals: pin a version (bump it when the definition changes)."""

    def wrap(fn: TurnSignal) -> TurnSignal:
        fn.signal_version = str(version)  # type: ignore[attr-defined]
        fn.signal_description = description or (inspect.getdoc(fn) or "").split("\n")[0]  # type: ignore[attr-defined]
        return fn

    return wrap


def builtin_signals() -> dict[str, Signal]:
    return {name: Signal(name, version, desc) for name, (version, desc) in BUILTIN_SIGNALS.items()}


def _entry_points() -> dict[str, EntryPoint]:
    return {ep.name: ep for ep in entry_points(group=ENTRY_POINT_GROUP)}


def available_signals() -> list[str]:
    """Built-in names, then entry-point names (without importing them)."""
    names = list(BUILTIN_SIGNALS)
    names += sorted(n for n in _entry_points() if n not in BUILTIN_SIGNALS)
    return names


def _version_of(fn: Any) -> str:
    v = getattr(fn, "signal_version", None)
    if v is not None:
        return str(v)
    try:
        src = inspect.getsource(fn)
    except (OSError, TypeError):
        src = f"{getattr(fn, '__module__', '')}.{getattr(fn, '__qualname__', repr(fn))}"
    return "src-" + hashlib.sha256(src.encode()).hexdigest()[:12]


def signal_from_callable(name: str, fn: Any) -> Signal:
    if not callable(fn):
        raise UsageError(f"signal {name!r}: {fn!r} is not callable; expected a function (episode, turn) -> float")
    desc = getattr(fn, "signal_description", None) or (inspect.getdoc(fn) or "").split("\n")[0]
    return Signal(name=name, version=_version_of(fn), description=desc, fn=fn)


def _import_target(spec: str) -> Any:
    module, _, attr = spec.partition(":")
    if not module or not attr:
        raise UsageError(f"custom signal {spec!r}: expected module:function (e.g. my_pkg.signals:polite)")
    try:
        obj: Any = importlib.import_module(module)
    except ImportError as e:
        raise UsageError(f"custom signal {spec!r}: cannot import module {module!r} ({e})") from None
    for part in attr.split("."):
        if not hasattr(obj, part):
            raise UsageError(f"custom signal {spec!r}: module {module!r} has no attribute {attr!r}")
        obj = getattr(obj, part)
    return obj


def resolve_signal(name: str) -> Signal:
    """A built-in, an entry-point signal, or ``module:function``; UsageError naming the known ones."""
    builtins = builtin_signals()
    if name in builtins:
        return builtins[name]
    eps = _entry_points()
    if name in eps:
        try:
            fn = eps[name].load()
        except Exception as e:  # noqa: BLE001 - a broken third-party plugin: say which one
            raise UsageError(f"signal {name!r}: entry point {eps[name].value!r} failed to load ({e})") from None
        return signal_from_callable(name, fn)
    if ":" in name:
        return signal_from_callable(name, _import_target(name))
    raise UsageError(
        f"unknown signal {name!r}: known signals are {', '.join(available_signals())}; "
        "give a custom one as module:function"
    )
