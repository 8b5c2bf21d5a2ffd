"""calib's advantage modes as verl advantage estimators: ``calib_grpo``, ``calib_mt_grpo``, ``calib_gtpo_hybrid``.

verl picks an estimator by name (``algorithm.adv_estimator``) from its registry
(``verl.trainer.ppo.core_algos.register_adv_est``) and calls it with ``token_level_rewards``,
``response_mask``, ``index`` (the group uid) and ``config`` (the ``algorithm`` config). Each calib
estimator reads the per-turn rewards and the outcome from calib's token layout
(:mod:`trainer.verl.layout`), runs :func:`calib.advantages.turn_advantages` (the same function
``calib train`` uses: one registry, no copy of the math) and spreads each turn's advantage over that
turn's tokens; tool and user tokens get 0.

gamma, lambda and the turn baseline (``turn_norm``) come from a calib reward spec: the path in
``algorithm.calib_spec`` (a Hydra override ``+algorithm.calib_spec=/path/spec.yaml``), else in the
environment variable ``CALIB_SPEC``, else the mode's defaults (gamma 0.9, the mode's lambda,
``turn_norm: index``). verl's own ``algorithm.gamma``/``algorithm.lam`` are GAE's and are not read.
A spec whose advantage mode is not the estimator's is refused in one line.

Registration: :func:`register` (idempotent). verl computes advantages in its driver process (the
``TaskRunner`` Ray actor), so registration must happen there: pass
``+ray_kwargs.ray_init.runtime_env.worker_process_setup_hook=trainer.verl.plugin.register`` (the
estimators and calib's agent loops; ``trainer.verl.estimators.register`` alone also works), which Ray
runs in every worker process it starts (docs/verl.md).
"""

from __future__ import annotations

import functools
import os
from typing import Any

import numpy as np
import torch

from calib.advantages import DEFAULT_GAMMA, get_mode, turn_advantages
from calib.errors import CalibError
from trainer.verl.layout import LayoutError, expand, unpack

# verl estimator name -> calib advantage mode
ESTIMATORS: dict[str, str] = {
    "calib_grpo": "grpo",
    "calib_mt_grpo": "mt_grpo",
    "calib_gtpo_hybrid": "gtpo_hybrid",
}
SPEC_ENV = "CALIB_SPEC"
SPEC_KEY = "calib_spec"
_MARK = "__calib_estimator__"


class EstimatorError(CalibError):
    """A calib estimator cannot run on what verl gave it (spec, config or batch)."""


def spec_path(config: Any) -> str | None:
    """The reward spec for the estimators: ``algorithm.calib_spec``, else ``$CALIB_SPEC``, else None."""
    value = None
    if config is not None:
        getter = getattr(config, "get", None)
        value = getter(SPEC_KEY, None) if callable(getter) else getattr(config, SPEC_KEY, None)
    return str(value) if value else (os.environ.get(SPEC_ENV) or None)


@functools.lru_cache(maxsize=16)
def _read_spec(path: str, mtime: float) -> Any:
    """The spec at ``path``, read once per file version (every batch of a step uses it)."""
    from calib.spec import load_spec

    return load_spec(path)


def configured_spec(config: Any) -> Any:
    """The reward spec :func:`spec_path` names (what the estimators and calib's agent loops use), or None."""
    path = spec_path(config)
    if path is None:
        return None
    try:
        mtime = 0.0 if path.startswith("preset:") else os.stat(path).st_mtime
    except OSError as e:
        raise EstimatorError(f"cannot read the reward spec {path} ({e.strerror or e})") from None
    return _read_spec(path, mtime)


def estimator_params(estimator: str, config: Any = None) -> dict[str, Any]:
    """The ``turn_advantages`` keyword arguments an estimator runs with (mode, gamma, lam, turn_norm)."""
    if estimator not in ESTIMATORS:
        raise EstimatorError(f"unknown calib estimator {estimator!r}: one of {', '.join(ESTIMATORS)}")
    mode = ESTIMATORS[estimator]
    spec = configured_spec(config)
    if spec is None:
        return {"mode": mode, "gamma": DEFAULT_GAMMA, "lam": None, "turn_norm": "index"}
    if spec.advantage.mode != mode:
        raise EstimatorError(f"the reward spec {spec_path(config)} is for advantage mode {spec.advantage.mode!r} but "
                             f"algorithm.adv_estimator is {estimator!r} (mode {mode!r}): use "
                             f"calib_{spec.advantage.mode} or a spec with mode {mode}")
    return {"mode": mode, "gamma": spec.advantage.gamma, "lam": spec.lam, "turn_norm": spec.advantage.turn_norm}


def compute(estimator: str, token_level_rewards: torch.Tensor, response_mask: torch.Tensor, index: Any = None,
            config: Any = None) -> tuple[torch.Tensor, torch.Tensor]:
    """``(advantages, returns)`` [B, L] of one calib estimator (returns = advantages, as verl's GRPO)."""
    kw = estimator_params(estimator, config)
    if index is None:
        raise EstimatorError(f"{estimator} normalises within groups but verl passed no group uid (index): "
                             "keep non_tensor_batch['uid'] in the batch")
    group = np.asarray([str(u) for u in np.asarray(index, dtype=object).reshape(-1)])
    if group.shape[0] != token_level_rewards.shape[0]:
        raise EstimatorError(f"{group.shape[0]} group uids for {token_level_rewards.shape[0]} rows")
    uses_turns = get_mode(kw["mode"]).uses_turn_rewards
    outcome, per_turn, runs = unpack(token_level_rewards, response_mask, turn_rewards=uses_turns)
    adv = turn_advantages(outcome, per_turn, group, **kw)
    tokens = expand(adv, runs, token_level_rewards)
    return tokens, tokens.clone()


def _make(name: str):
    def estimator(token_level_rewards: torch.Tensor, response_mask: torch.Tensor, index: Any = None,
                  config: Any = None, **_: Any) -> tuple[torch.Tensor, torch.Tensor]:
        return compute(name, token_level_rewards, response_mask, index=index, config=config)

    estimator.__name__ = estimator.__qualname__ = name
    estimator.__doc__ = f"verl advantage estimator {name!r}: calib's {ESTIMATORS[name]!r} mode ({__name__})."
    setattr(estimator, _MARK, name)
    return estimator


calib_grpo = _make("calib_grpo")
calib_mt_grpo = _make("calib_mt_grpo")
calib_gtpo_hybrid = _make("calib_gtpo_hybrid")
_FUNCTIONS = {"calib_grpo": calib_grpo, "calib_mt_grpo": calib_mt_grpo, "calib_gtpo_hybrid": calib_gtpo_hybrid}


def register() -> list[str]:
    """Register the three estimators in verl's registry; returns the names newly registered.

    Harmless to call again, from a re-imported module too (verl refuses a second function under a
    name, so a name that already holds a calib estimator is left as it is). A name that holds
    someone else's estimator is an error, not silently replaced."""
    from verl.trainer.ppo import core_algos

    added = []
    for name, fn in _FUNCTIONS.items():
        existing = core_algos.ADV_ESTIMATOR_REGISTRY.get(name)
        if existing is not None:
            if getattr(existing, _MARK, None) == name:
                continue
            raise EstimatorError(f"verl already has an advantage estimator named {name!r} that is not calib's "
                                 f"({getattr(existing, '__module__', '?')}.{getattr(existing, '__name__', '?')})")
        core_algos.register_adv_est(name)(fn)
        added.append(name)
    return added


__all__ = ["ESTIMATORS", "SPEC_ENV", "SPEC_KEY", "EstimatorError", "LayoutError", "calib_grpo", "calib_gtpo_hybrid",
           "calib_mt_grpo", "compute", "configured_spec", "estimator_params", "register", "spec_path"]
