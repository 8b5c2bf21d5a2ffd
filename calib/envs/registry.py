"""The domain registry: one place that reads a domain name (``--domain``) for every command.

``airline-mini[:SEED]`` (the embedded default), ``taubench:PATH`` (a tau-bench data directory) and
``tau2:DOMAIN`` (tau2-bench's own environment; needs the ``tau2`` package) are the built-in kinds.
A name is ``KIND`` or ``KIND:ARGUMENT``; each kind knows how to load its :class:`Domain` and how to
name its tool catalogue without loading anything heavy (the store and the analysis need only the
catalogue). Plug-ins add kinds through the entry-point group ``calib.domains`` (each entry point is a
:class:`DomainKind`), as signals do through ``calib.signals``.

Its own module, apart from :mod:`calib.envs.base`, so the imports run one way: the domains import the
interface from ``base``, and only this registry imports the domains, inside the loaders, so that
naming one domain does not import the others.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

from calib.envs.base import Domain
from calib.errors import UsageError
from calib.tools import ToolCatalogue

ENTRY_POINT_GROUP = "calib.domains"


@dataclass(frozen=True)
class DomainKind:
    """One kind of domain name: ``name`` (and ``aliases``) before the colon, what the argument is."""

    name: str
    load: Callable[[str | None, Any], Domain]  # (argument after the colon or None, judge) -> Domain
    catalogue: Callable[[str | None], ToolCatalogue]  # (argument) -> the domain's tool catalogue
    usage: str  # how the name is written, for error messages: "taubench:PATH"
    aliases: tuple[str, ...] = ()
    needs_argument: bool = False


_KINDS: dict[str, DomainKind] = {}
_plugins_loaded = False


def register_domain(kind: DomainKind, *, replace: bool = False) -> DomainKind:
    """Add a kind of domain (for plug-ins; the entry-point group does it for installed packages)."""
    for name in (kind.name, *kind.aliases):
        if name in _KINDS and not replace:
            raise ValueError(f"domain kind {name!r} is already registered")
        _KINDS[name] = kind
    return kind


def _load_plugins() -> None:
    global _plugins_loaded
    if _plugins_loaded:
        return
    _plugins_loaded = True
    from importlib.metadata import entry_points

    for ep in entry_points(group=ENTRY_POINT_GROUP):
        kind = ep.load()
        if not isinstance(kind, DomainKind):
            raise UsageError(f"entry point {ep.name!r} of {ENTRY_POINT_GROUP}: expected a DomainKind, got "
                             f"{type(kind).__name__}")
        if kind.name not in _KINDS:
            register_domain(kind)


def usage() -> str:
    """The domain names calib understands, for error messages."""
    _load_plugins()
    return ", ".join(dict.fromkeys(k.usage for k in _KINDS.values()))


def parse_domain(spec: str | None) -> tuple[DomainKind, str | None]:
    """(kind, argument) of a domain name; a UsageError naming the known kinds for anything else."""
    _load_plugins()
    spec = (spec or "").strip()
    name, sep, arg = spec.partition(":")
    kind = _KINDS.get(name)
    if kind is None:
        raise UsageError(f"unknown domain {spec!r}: use {usage()}")
    if kind.needs_argument and not arg:
        raise UsageError(f"domain {spec!r}: write it as {kind.usage}")
    return kind, (arg if sep else None)


def load_domain(spec: str, *, judge: Any = None) -> Domain:
    """The domain a name names. ``judge`` (a :class:`calib.envs.tau2.JudgeConfig`) is the LLM judge tau2
    domains use for natural-language assertions."""
    kind, arg = parse_domain(spec)
    return kind.load(arg, judge)


def domain_catalogue(spec: str | None) -> ToolCatalogue:
    """The tool catalogue of a domain name (None: the airline catalogue), without loading the domain."""
    if spec is None:
        return _KINDS["airline-mini"].catalogue(None)
    kind, arg = parse_domain(spec)
    return kind.catalogue(arg)


# ------------------------------------------------------------------------------------------ built-ins


def _load_mini(arg: str | None, judge: Any) -> Domain:
    from calib.envs.mini import mini_domain

    if arg is None:
        return mini_domain()
    if not arg.isdigit():
        raise UsageError(f"domain 'airline-mini:{arg}': the seed after 'airline-mini:' must be an integer")
    return mini_domain(seed=int(arg))


def _load_taubench(arg: str | None, judge: Any) -> Domain:
    from calib.envs.taubench import load_taubench

    return load_taubench(arg or "")


def _load_tau2(arg: str | None, judge: Any) -> Domain:
    from calib.envs.tau2 import load_tau2_domain

    return load_tau2_domain(arg or "", judge=judge)


def _airline_catalogue(arg: str | None) -> ToolCatalogue:
    from calib.tools import airline_catalogue

    return airline_catalogue()


def _tau2_catalogue(arg: str | None) -> ToolCatalogue:
    from calib.tau2_catalogue import TAU2_DOMAINS
    from calib.tools import tau2_catalogue

    if arg not in TAU2_DOMAINS:
        raise UsageError(f"unknown tau2 domain {arg!r}: use one of {', '.join(TAU2_DOMAINS)}")
    return tau2_catalogue(arg)


register_domain(DomainKind("airline-mini", _load_mini, _airline_catalogue, "airline-mini[:SEED]",
                           aliases=("mini", "airline")))
register_domain(DomainKind("taubench", _load_taubench, _airline_catalogue, "taubench:PATH", needs_argument=True))
register_domain(DomainKind("tau2", _load_tau2, _tau2_catalogue, "tau2:DOMAIN", needs_argument=True))
