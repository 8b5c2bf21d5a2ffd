"""Policy families of ``calib loop``: what "the current policy", "rollout" and "train" mean.

- ``synthetic``: the LM-free testbed (:mod:`calib.envs.testbed`) and a tabular softmax policy
  trained by policy gradient through ``calib/advantages.py``: real learning in seconds on a CPU.
- ``oracle``: the noisy oracle on a domain (airline-mini, tau-bench). It exercises the whole
  calibration pipeline on realistic tool-calling rollouts, but an oracle does not learn: its train
  stage records the spec and says so (``trained: false``), and its eval measures the same policy.
- ``hf``: a transformers causal LM trained with TRL (``trainer/grpo.py``), LoRA on CPU or GPU.

Every family writes its rollouts through the store, so analysis and evaluation are shared.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

from calib.store import Store
from trainer.family_base import Family, existing_episodes, run_summary, select_split
from trainer.loop_config import LoopConfig

__all__ = ["Family", "OracleFamily", "SyntheticFamily", "make_family", "select_split"]


# ----------------------------------------------------------------------------- synthetic


class SyntheticFamily:
    """Tabular softmax policy on the synthetic testbed; its parameters live in ``policy/it<i>.pt``."""

    def __init__(self, cfg: LoopConfig, work: Path):
        from calib.envs.testbed import SyntheticConfig, make_tasks

        self.cfg = cfg
        self.dir = work / "policy"
        self.dir.mkdir(exist_ok=True)
        self.tasks = make_tasks(SyntheticConfig(max_turns=max(8, min(cfg.rollout.max_turns, 16))), seed=cfg.seed)

    def _policy(self, it: int):
        """The policy that iteration ``it`` starts from: the one trained in ``it - 1`` (else fresh)."""
        import torch

        from trainer.tabular import TabularPolicy

        policy = TabularPolicy(self.tasks)
        prev = self.dir / f"it{it - 1}.pt"
        if it > 0 and prev.exists():
            policy.load_state_dict(torch.load(prev))
        return policy

    def _task_idx(self):
        import numpy as np

        n = self.tasks.config.n_tasks
        if self.cfg.rollout.tasks == "all":
            return np.arange(n)
        return np.array([int(str(t).split("/")[-1]) for t in self.cfg.rollout.tasks])

    def _play(self, it: int, run_id: str, store: Store, seed: int, samples: int, policy) -> dict[str, Any]:
        import numpy as np

        from calib.envs.testbed import rollout

        if existing_episodes(store, run_id) == 0:  # a resumed stage whose ingest already committed plays nothing
            rng = np.random.default_rng([seed, 11])
            batch = rollout(self.tasks, policy.probs(), np.repeat(self._task_idx(), samples), rng)
            store.add_episodes(batch.to_records(run_id=run_id, iteration=it, policy=f"tabular@it{it}"),
                               source=f"loop:{run_id}")
        return run_summary(store, run_id, it)

    def rollout(self, it: int, run_id: str, store: Store, *, seed: int) -> dict[str, Any]:
        return self._play(it, run_id, store, seed, self.cfg.rollout.samples, self._policy(it))

    def train(self, it: int, spec_path: Path, store: Store, *, seed: int) -> dict[str, Any]:
        import numpy as np
        import torch

        from calib.envs.testbed import rollout
        from calib.spec import load_spec
        from trainer.tabular import policy_step

        torch.manual_seed(seed)
        spec = load_spec(spec_path)
        policy = self._policy(it)
        opt = torch.optim.Adam(policy.parameters(), lr=self.cfg.train.learning_rate)
        rng = np.random.default_rng([seed, 12])
        tasks = self._task_idx()
        losses = []
        for _ in range(self.cfg.train.max_steps):
            chosen = rng.choice(tasks, size=min(self.cfg.train.batch_tasks, tasks.size), replace=False)
            batch = rollout(self.tasks, policy.probs(), np.repeat(chosen, self.cfg.rollout.samples), rng)
            losses.append(policy_step(policy, opt, batch, spec))
        torch.save(policy.state_dict(), self.dir / f"it{it}.pt")
        return {"trained": True, "steps": len(losses), "final_loss": losses[-1], "checkpoint": str(self.dir / f"it{it}.pt")}

    def evaluate(self, it: int, run_id: str, store: Store, *, seed: int) -> dict[str, Any]:
        return self._play(it, run_id, store, seed, self.cfg.eval_samples, self._policy(it + 1))


# ----------------------------------------------------------------------------- oracle


class OracleFamily:
    """The noisy oracle on a domain. It does not learn: ``train`` records the spec and says so."""

    def __init__(self, cfg: LoopConfig, work: Path):
        self.cfg = cfg

    def _play(self, it: int, run_id: str, store: Store, seed: int, samples: int, *, domain: str, user: str,
              tasks: str | list[str], split: str, max_turns: int) -> dict[str, Any]:
        from calib.policies.oracle import OracleConfig
        from calib.rollout.factories import make_policy
        from calib.rollout.runner import run_rollouts

        if existing_episodes(store, run_id) == 0:
            r = self.cfg.rollout
            dom, chosen = select_split(domain, tasks, split)
            policy = make_policy("oracle", oracle=OracleConfig.uniform(r.mistake_rate))
            run_rollouts(dom, policy, user, [t.task_id for t in chosen], samples=samples, max_turns=max_turns,
                         concurrency=r.concurrency, run_id=run_id, iteration=it, store=store, seed=seed)
        return run_summary(store, run_id, it)

    def rollout(self, it: int, run_id: str, store: Store, *, seed: int) -> dict[str, Any]:
        r = self.cfg.rollout
        return self._play(it, run_id, store, seed, r.samples, domain=self.cfg.domain, user=self.cfg.user,
                          tasks=r.tasks, split=r.split, max_turns=r.max_turns)

    def train(self, it: int, spec_path: Path, store: Store, *, seed: int) -> dict[str, Any]:
        return {"trained": False, "steps": 0, "reason": "the oracle family has no trainable parameters"}

    def evaluate(self, it: int, run_id: str, store: Store, *, seed: int) -> dict[str, Any]:
        e = self.cfg.eval
        return self._play(it, run_id, store, seed, self.cfg.eval_trials, domain=self.cfg.eval_domain,
                          user=e.user or self.cfg.user, tasks=self.cfg.eval_tasks, split=self.cfg.eval_split,
                          max_turns=e.max_turns or self.cfg.rollout.max_turns)


def make_family(cfg: LoopConfig, work: Path) -> Family:
    if cfg.family == "synthetic":
        return SyntheticFamily(cfg, work)
    if cfg.family == "oracle":
        return OracleFamily(cfg, work)
    from trainer.hf_family import HFFamily

    return HFFamily(cfg, work)
