"""The learning agent of the synthetic testbed: a tabular softmax policy in torch, on top of a fixed
prior, and its policy-gradient step with calib's per-turn advantages. The loop's synthetic family
(``trainer.families``) and the experiments (``experiments``) both train it.

logits[task, stage, looked, action] = prior[done, looked, action] + theta[task, stage, looked, action]

``theta`` starts at 0 and is what training changes. The prior stands in for what a pretrained
model brings before RL: it knows the *shape* of the job (look things up, then write, reply once
the work is done, rarely emit malformed calls) but not which argument variant a task needs, so it
starts at a modest success rate (about a quarter with the default testbed) and has something to
learn. Its numbers are fixed here, chosen once for that starting point; they are the same for every
arm, so no arm is favoured.
"""

from __future__ import annotations

import numpy as np
import torch

from calib.advantages import turn_advantages
from calib.envs.testbed import SyntheticBatch, SyntheticTasks
from calib.spec import RewardSpec

# Prior logits by situation (rows) and action kind (columns: lookup, each write, reply, malformed).
PRIOR = {
    # (done, looked): (lookup, write, reply, malformed)
    (False, False): (1.0, 0.0, -1.0, -1.5),  # a stage begins: usually look things up first
    (False, True): (-0.5, 0.5, -1.0, -1.5),  # looked up: usually write
    (True, False): (-0.5, -1.0, 1.5, -1.5),  # every write done: usually reply
    (True, True): (-0.5, -1.0, 1.5, -1.5),
}


def prior_logits(tasks: SyntheticTasks) -> np.ndarray:
    """The prior as a full table of shape ``config.table_shape`` (numpy, float64)."""
    c = tasks.config
    out = np.zeros(c.table_shape)  # (n_tasks, S, 2, A)
    done = tasks.done_mask  # (n_tasks, S)
    for (is_done, looked), (lookup, write, reply, malformed) in PRIOR.items():
        row = np.array([lookup, *([write] * c.n_variants), reply, malformed])  # (A,)
        sel = done == is_done  # (n_tasks, S)
        out[:, :, int(looked), :][sel] = row
    return out


def softmax_table(logits: np.ndarray) -> np.ndarray:
    """Probabilities over the last axis (numerically stable)."""
    z = logits - logits.max(axis=-1, keepdims=True)
    e = np.exp(z)
    return e / e.sum(axis=-1, keepdims=True)


class TabularPolicy(torch.nn.Module):
    """Softmax over actions, one logit vector per (task, stage, looked); ``theta`` is trained."""

    def __init__(self, tasks: SyntheticTasks) -> None:
        super().__init__()
        self.register_buffer("prior", torch.as_tensor(prior_logits(tasks), dtype=torch.float64))
        self.theta = torch.nn.Parameter(torch.zeros(tasks.config.table_shape, dtype=torch.float64))

    def probs(self) -> np.ndarray:
        """The current table as numpy probabilities (what the environment samples from)."""
        with torch.no_grad():
            return torch.softmax(self.prior + self.theta, dim=-1).numpy()

    def log_prob(self, task: np.ndarray, stage: np.ndarray, looked: np.ndarray, action: np.ndarray) -> torch.Tensor:
        """log pi(action | task, stage, looked) for flat turns [N] (differentiable in ``theta``)."""
        idx = [torch.as_tensor(x, dtype=torch.long) for x in (task, stage, looked)]
        logits = (self.prior + self.theta)[idx[0], idx[1], idx[2]]  # (N, A)
        logp = torch.log_softmax(logits, dim=-1)  # (N, A)
        return logp.gather(1, torch.as_tensor(action, dtype=torch.long)[:, None])[:, 0]  # (N,)

    def kl_to_prior(self, task: np.ndarray, stage: np.ndarray, looked: np.ndarray) -> torch.Tensor:
        """KL(pi(.|s) || prior(.|s)) at flat turns [N], exact over the actions (differentiable)."""
        idx = [torch.as_tensor(x, dtype=torch.long) for x in (task, stage, looked)]
        logp = torch.log_softmax((self.prior + self.theta)[idx[0], idx[1], idx[2]], dim=-1)  # (N, A)
        logq = torch.log_softmax(self.prior[idx[0], idx[1], idx[2]], dim=-1)  # (N, A)
        return (logp.exp() * (logp - logq)).sum(dim=-1)  # (N,)


def batch_advantages(batch: SyntheticBatch, spec: RewardSpec) -> list[np.ndarray]:
    """Per-turn advantages of a batch under ``spec`` (weights and advantage settings)."""
    adv = spec.advantage
    return turn_advantages(
        spec.outcome.weight * batch.outcome,
        batch.turn_rewards(spec.turn_weights()),
        batch.group,
        mode=adv.mode,
        gamma=adv.gamma,
        lam=adv.lam,
        turn_norm=adv.turn_norm,
    )


def policy_step(
    policy: TabularPolicy, opt: torch.optim.Optimizer, batch: SyntheticBatch, spec: RewardSpec, kl_coef: float = 0.0
) -> float:
    """One policy-gradient step on ``batch`` (plus the KL penalty when ``kl_coef`` > 0); returns the loss."""
    adv = np.concatenate(batch_advantages(batch, spec))  # (N,) turns, episode by episode
    valid = batch.valid  # (E, T)
    task = np.broadcast_to(batch.task[:, None], valid.shape)[valid]  # (N,)
    logp = policy.log_prob(task, batch.stage[valid], batch.looked[valid], batch.actions[valid])  # (N,)
    loss = -(torch.as_tensor(adv) * logp).sum() / max(adv.size, 1)
    if kl_coef > 0 and adv.size:
        loss = loss + kl_coef * policy.kl_to_prior(task, batch.stage[valid], batch.looked[valid]).mean()
    opt.zero_grad()
    loss.backward()
    opt.step()
    return float(loss.detach())
