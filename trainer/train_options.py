"""``calib train --config FILE``: a YAML of the same options as the flags; flags override it.

The file's keys are the flag names, with dashes or underscores (``samples-per-task`` or
``samples_per_task``); an unknown key is an error that lists the known ones (a typo must not be
silently ignored). ``trl:`` holds any other ``MultiTurnGRPOConfig`` / ``GRPOConfig`` field
(``gradient_accumulation_steps``, ``vllm_gpu_memory_utilization``, ...), passed through unchanged.
Relative paths in the file are read relative to the working directory, as on the command line.
"""

from __future__ import annotations

from collections.abc import Iterable, Mapping
from dataclasses import fields
from pathlib import Path
from typing import Any

from calib.errors import UsageError
from trainer.run import TrainJob

_PATHS = ("spec", "output_dir", "store")
REQUIRED = ("spec", "model", "output_dir")


def job_fields() -> set[str]:
    return {f.name for f in fields(TrainJob)} - {"extra"}


def load_config(path: Path) -> dict[str, Any]:
    """The options of a config file, keys normalised to field names (``trl`` kept as a mapping)."""
    import yaml

    try:
        raw = yaml.safe_load(Path(path).read_text())
    except OSError as e:
        raise UsageError(f"--config {path}: cannot read it ({e.strerror or e})") from None
    except yaml.YAMLError as e:
        raise UsageError(f"--config {path}: not valid YAML ({str(e).splitlines()[0]})") from None
    if raw is None:
        return {}
    if not isinstance(raw, Mapping):
        raise UsageError(f"--config {path}: expected a mapping of option names to values")
    known = job_fields()
    out: dict[str, Any] = {}
    for key, value in raw.items():
        name = str(key).replace("-", "_")
        if name == "trl":
            if not isinstance(value, Mapping):
                raise UsageError(f"--config {path}: 'trl' must be a mapping of TRL config fields")
            out["trl"] = dict(value)
        elif name in known:
            out[name] = Path(value) if name in _PATHS and value is not None else value
        else:
            names = ", ".join(sorted(k.replace("_", "-") for k in known))
            raise UsageError(f"--config {path}: unknown option {key!r} (known: {names}, trl)")
    return out


def job_from_options(options: Mapping[str, Any], explicit: Iterable[str], config: Path | None) -> TrainJob:
    """Merge: defaults < config file < flags given on the command line (``explicit``)."""
    known = job_fields()
    merged = {k: v for k, v in options.items() if k in known}
    extra: dict[str, Any] = {}
    if config is not None:
        from_file = load_config(config)
        extra = from_file.pop("trl", {})
        explicit = set(explicit)
        merged.update({k: v for k, v in from_file.items() if k not in explicit})
    missing = [k for k in REQUIRED if merged.get(k) is None]
    if missing:
        flags = ", ".join("--" + k.replace("_", "-") for k in missing)
        raise UsageError(f"missing option(s) {flags} (give them as flags or in --config)")
    try:
        return TrainJob(**merged, extra=extra)
    except TypeError as e:
        raise UsageError(f"training options: {e}") from None
