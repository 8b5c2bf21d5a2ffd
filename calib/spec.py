"""The reward spec (docs/architecture.md section 5): a versioned YAML file that ``calib analyze`` writes and
``calib train`` reads, validated on load.

```yaml
version: 1
name: airline-iter2
advantage: {mode: gtpo_hybrid, gamma: 0.9, lambda: 0.3, turn_norm: index}
outcome: {weight: 1.0}
turn_rewards:
  - {signal: gold_match, weight: 0.3}
provenance: {runs: [r1], store: /path, created: "...", metrics: {gold_match: {group_auc: 0.71, ...}}}
```

Every error is a :class:`~calib.errors.SpecError` whose message names the file and the field
(``turn_rewards[1].weight``), so a typo never surfaces as a traceback or, worse, a silent default:
unknown keys are rejected too. YAML is read with ``yaml.safe_load`` only.

Shipped presets (``calib/presets/*.yaml``, listed by ``calib spec list``) load wherever a spec path
is accepted, as ``preset:NAME`` (e.g. ``preset:paper-v5-naive``): :func:`load_spec` resolves them.
"""

from __future__ import annotations

import datetime as _dt
import math
from collections.abc import Iterable, Sequence
from pathlib import Path
from typing import Any

import yaml
from pydantic import BaseModel, ConfigDict, Field, ValidationError, field_validator, model_validator

from calib.advantages import DEFAULT_GAMMA, GAMMA_RANGE, TURN_NORMS, mode_names
from calib.errors import SpecError
from calib.jsonutil import plain

SPEC_VERSION = 1
PRESET_PREFIX = "preset:"
PRESET_DIR = Path(__file__).parent / "presets"


def _one_of(v: Any, choices: Sequence[str], what: str) -> str:
    """``v`` if it is one of ``choices``, else a ValueError that lists them (pydantic reports it)."""
    if v not in choices:
        raise ValueError(f"unknown {what} {v!r} (expected one of {', '.join(choices)})")
    return v


def _finite(v: float, what: str) -> float:
    if v is None or isinstance(v, bool) or not isinstance(v, (int, float)):
        raise ValueError(f"{what} should be a number, got {v!r}")
    if not math.isfinite(v):
        raise ValueError(f"{what} is {v}; it must be a finite number")
    return float(v)


class _Model(BaseModel):
    model_config = ConfigDict(extra="forbid", populate_by_name=True, validate_assignment=True)


class AdvantageSpec(_Model):
    """How turn rewards and the outcome become per-turn advantages (docs/architecture.md section 6)."""

    mode: str = Field("gtpo_hybrid", description="an advantage mode of the registry (calib.advantages): grpo | "
                      "mt_grpo | gtpo_hybrid, or one a plug-in registered")
    gamma: float = Field(DEFAULT_GAMMA, description="discount of gtpo_hybrid returns, in [0, 1]")
    lam: float | None = Field(None, alias="lambda", description="weight of the second term; null = the mode's default")
    turn_norm: str = Field("index", description="index | pooled: the set each turn is normalised over")

    @field_validator("mode", mode="before")
    @classmethod
    def _mode(cls, v: Any) -> str:
        return _one_of(v, mode_names(), "advantage mode")

    @field_validator("turn_norm", mode="before")
    @classmethod
    def _turn_norm(cls, v: Any) -> str:
        return _one_of(v, TURN_NORMS, "turn_norm")

    @field_validator("gamma", mode="before")
    @classmethod
    def _gamma(cls, v: Any) -> float:
        g = _finite(v, "gamma")
        lo, hi = GAMMA_RANGE
        if not lo <= g <= hi:
            raise ValueError(f"gamma is {g}; it must be in [{lo:g}, {hi:g}]")
        return g

    @field_validator("lam", mode="before")
    @classmethod
    def _lam(cls, v: Any) -> float | None:
        return None if v is None else _finite(v, "lambda")


class OutcomeSpec(_Model):
    weight: float = 1.0

    @field_validator("weight", mode="before")
    @classmethod
    def _weight(cls, v: Any) -> float:
        return _finite(v, "weight")


class TurnReward(_Model):
    """One per-turn reward: a signal name (built-in, entry point, or ``module:function``) and its weight."""

    signal: str
    weight: float

    @field_validator("signal", mode="before")
    @classmethod
    def _signal(cls, v: Any) -> str:
        if not isinstance(v, str) or not v.strip():
            raise ValueError(f"signal should be a non-empty name, got {v!r}")
        return v.strip()

    @field_validator("weight", mode="before")
    @classmethod
    def _weight(cls, v: Any) -> float:
        return _finite(v, "weight")


class Provenance(_Model):
    """Where a spec came from: the runs and store it was measured on, when, and the metrics."""

    model_config = ConfigDict(extra="allow", populate_by_name=True)

    runs: list[str] = Field(default_factory=list)
    store: str | None = None
    created: str = Field(default_factory=lambda: _dt.datetime.now(_dt.timezone.utc).isoformat(timespec="seconds"))
    metrics: dict[str, dict[str, Any]] = Field(default_factory=dict)


class RewardSpec(_Model):
    """A validated reward spec. Build with :func:`load_spec` / :meth:`from_dict`, write with :func:`save_spec`."""

    version: int = SPEC_VERSION
    name: str = "calib"
    advantage: AdvantageSpec = Field(default_factory=AdvantageSpec)
    outcome: OutcomeSpec = Field(default_factory=OutcomeSpec)
    turn_rewards: list[TurnReward] = Field(default_factory=list)
    provenance: Provenance | None = None

    @field_validator("version", mode="before")
    @classmethod
    def _version(cls, v: Any) -> int:
        if v != SPEC_VERSION or isinstance(v, bool):
            raise ValueError(f"spec version {v!r} is not supported (this calib reads version {SPEC_VERSION})")
        return int(v)

    @model_validator(mode="after")
    def _unique_signals(self) -> RewardSpec:
        seen: set[str] = set()
        for i, tr in enumerate(self.turn_rewards):
            if tr.signal in seen:
                raise ValueError(f"turn_rewards[{i}].signal: {tr.signal!r} is listed twice")
            seen.add(tr.signal)
        return self

    # ------------------------------------------------------------------ helpers

    @property
    def lam(self) -> float | None:
        return self.advantage.lam

    def turn_weights(self) -> dict[str, float]:
        """``{signal: weight}`` in file order (zero weights included: they document a decision)."""
        return {tr.signal: tr.weight for tr in self.turn_rewards}

    def active_signals(self) -> list[str]:
        """Signals with a non-zero weight: the only ones the trainer has to compute."""
        return [tr.signal for tr in self.turn_rewards if tr.weight != 0.0]

    def to_dict(self) -> dict[str, Any]:
        return plain(self.model_dump(by_alias=True, exclude_none=True), nan_to_none=False)  # YAML has .nan

    def to_yaml(self) -> str:
        return yaml.dump(self.to_dict(), Dumper=_SpecDumper, sort_keys=False, allow_unicode=True, width=110)

    @classmethod
    def from_dict(
        cls, data: Any, *, source: str = "reward spec", known_signals: Iterable[str] | None = None
    ) -> RewardSpec:
        """Validate ``data``; ``known_signals`` (if given) lists the signal names a spec may use."""
        if not isinstance(data, dict):
            raise SpecError(f"{source}: expected a mapping at the top level, got {type(data).__name__}")
        try:
            spec = cls.model_validate(data)
        except ValidationError as e:
            raise SpecError(f"{source}: {_format_errors(e)}") from None
        if known_signals is not None:
            check_signals(spec, known_signals, source=source)
        return spec


def check_signals(spec: RewardSpec, known_signals: Iterable[str], *, source: str = "reward spec") -> None:
    """Raise SpecError naming the first turn reward whose signal is not in ``known_signals``.

    Names of the form ``module:function`` are custom signals and are accepted here; the signal
    registry imports them when they are computed (and reports an import error there).
    """
    known = set(known_signals)
    for i, tr in enumerate(spec.turn_rewards):
        if tr.signal not in known and ":" not in tr.signal:
            raise SpecError(
                f"{source}: turn_rewards[{i}].signal: unknown signal {tr.signal!r} "
                f"(known: {', '.join(sorted(known))}; or module:function for a custom one)"
            )


def _format_errors(e: ValidationError) -> str:
    """Pydantic errors as ``field.path: message``; the first three, then a count."""
    parts = []
    for err in e.errors():
        loc = "".join(f"[{p}]" if isinstance(p, int) else f".{p}" for p in err["loc"]).lstrip(".")
        msg = err["msg"].removeprefix("Value error, ")
        if err["type"] == "extra_forbidden":
            msg = "unknown field (check the spelling; see docs/reward-spec.md)"
        elif err["type"] == "missing":
            msg = "required field is missing"
        parts.append(f"{loc or 'spec'}: {msg}" if not msg.startswith(f"{loc}:") else msg)
    more = f" (and {len(parts) - 3} more)" if len(parts) > 3 else ""
    return "; ".join(parts[:3]) + more


class _SpecDumper(yaml.SafeDumper):
    """Safe YAML with short lists and turn rewards on one line (``- {signal: x, weight: 0.3}``)."""


def _represent_list(dumper: yaml.SafeDumper, data: list) -> yaml.Node:
    flow = len(data) <= 12 and all(not isinstance(x, (dict, list)) for x in data)
    return dumper.represent_sequence("tag:yaml.org,2002:seq", data, flow_style=flow)


def _represent_dict(dumper: yaml.SafeDumper, data: dict) -> yaml.Node:
    flow = set(data) == {"signal", "weight"}
    return dumper.represent_mapping("tag:yaml.org,2002:map", data.items(), flow_style=flow or None)


_SpecDumper.add_representer(list, _represent_list)
_SpecDumper.add_representer(dict, _represent_dict)


def preset_names() -> list[str]:
    """Names of the shipped presets (``calib/presets/NAME.yaml``), sorted."""
    return sorted(p.stem for p in PRESET_DIR.glob("*.yaml"))


def is_preset(ref: str | Path) -> bool:
    return str(ref).startswith(PRESET_PREFIX)


def resolve_spec_path(ref: str | Path) -> Path:
    """The file behind a spec reference: ``preset:NAME`` -> the shipped preset, anything else as given.

    An unknown preset is a SpecError that lists the known ones.
    """
    if not is_preset(ref):
        return Path(ref)
    name = str(ref)[len(PRESET_PREFIX):]
    names = preset_names()
    if name not in names:
        raise SpecError(f"reward spec {ref}: no such preset (presets: {', '.join(names) or 'none'}; see calib spec list)")
    return PRESET_DIR / f"{name}.yaml"


def list_presets() -> list[dict[str, Any]]:
    """Every preset as ``{ref, name, mode, description, turn_rewards}`` (what ``calib spec list`` shows)."""
    out = []
    for name in preset_names():
        spec = load_spec(f"{PRESET_PREFIX}{name}")
        extra = spec.provenance.model_extra or {} if spec.provenance is not None else {}
        out.append({
            "ref": f"{PRESET_PREFIX}{name}",
            "name": spec.name,
            "mode": spec.advantage.mode,
            "gamma": spec.advantage.gamma,
            "lambda": spec.lam,
            "description": str(extra.get("description", "")),
            "turn_rewards": spec.turn_weights(),
        })
    return out


def load_spec(path: str | Path, *, known_signals: Iterable[str] | None = None) -> RewardSpec:
    """Read and validate a spec file, or a shipped preset given as ``preset:NAME``.

    ``known_signals=None`` uses the signal registry (built-ins + entry points); pass an explicit
    list to check against something else."""
    p = resolve_spec_path(path)
    if not p.is_file():
        raise SpecError(f"reward spec {p}: no such file")
    try:
        data = yaml.safe_load(p.read_text(encoding="utf-8"))
    except yaml.YAMLError as e:
        mark = getattr(e, "problem_mark", None)
        where = f" at line {mark.line + 1}, column {mark.column + 1}" if mark is not None else ""
        raise SpecError(f"reward spec {p}: not valid YAML{where}: {getattr(e, 'problem', e)}") from None
    except UnicodeDecodeError:
        raise SpecError(f"reward spec {p}: not a UTF-8 text file") from None
    if known_signals is None:
        from calib.signals.registry import available_signals

        known_signals = available_signals()
    return RewardSpec.from_dict(data, source=f"reward spec {p}", known_signals=known_signals)


def save_spec(spec: RewardSpec, path: str | Path) -> Path:
    """Write ``spec`` as YAML (atomically: a reader never sees half a file)."""
    p = Path(path)
    p.parent.mkdir(parents=True, exist_ok=True)
    tmp = p.with_name(f".{p.name}.tmp")
    tmp.write_text(spec.to_yaml(), encoding="utf-8")
    tmp.replace(p)
    return p
