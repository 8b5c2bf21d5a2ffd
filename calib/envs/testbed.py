"""A seeded multi-turn testbed without language models, for the misalignment experiment.

An episode is a sequence of discrete decisions, one per turn, by an agent that serves one task.
A task needs ``K`` writes in order (``K`` in 1..3, drawn per task); at each stage one of
``n_variants`` argument variants is right (the *gold* write) and the others are wrong. Each turn the
agent picks one action:

==============  =====================================================================================
``lookup``      a read-only tool call; changes nothing (so it costs a turn), like the lookups that
                every agent makes whatever the outcome
``write_w``     a state-changing call with argument variant ``w``: the gold variant completes the
                current stage; any other variant, or any write once every stage is done, is a wrong
                write that breaks the database for good (the episode goes on, but cannot succeed)
``reply``       a message to the user that ends the conversation
``malformed``   a tool call whose arguments do not parse; changes nothing
==============  =====================================================================================

The episode ends at the reply or after ``max_turns`` turns (a timeout). With ``patience`` > 0 the
customer also ends it (a hang-up, a failure) after ``patience`` turns in a row that make no progress
(no gold write): the bound on farming that a real user puts on an agent that calls tools for ever,
as in the seed paper's setting. **Success** = replied, every stage done, no wrong write. So success depends on some decisions (the writes and the final
reply) and not on others (lookups, malformed calls, except that they use up turns).

Candidate per-turn signals (names and meaning as the built-in signals of docs/architecture.md section 3, so the
native records this module writes give the same values when the store computes them):

================  ==============================================  ==================================
signal            fires on                                        stands for
================  ==============================================  ==================================
``gold_match``    the gold write of the current stage             an aligned signal
``read_only``     a lookup                                        frequent and non-discriminative
``state_change``  a wrong write                                   fires more in failures
``valid_call``    every parseable call (lookup or write)          the seed paper's naive +0.3 bonus
``tool_error``    a malformed call                                an error signal
``soft_match``    a write that names an expected tool with        the paper's soft tier
                  other arguments (a wrong variant)
``soft_match_score``  0.5 + 0.5 x the share of the expected       the paper's graded soft match
                  action's arguments the wrong write matches
``redundant_call``  a lookup or write identical to an earlier     the paper's redundancy penalty
                  one of the episode
``message_only``  the reply (a message, no tool call)             the paper's message tier
================  ==============================================  ==================================

The agent is given as a probability table ``probs[task, stage, looked, action]`` (the observation
is the task, the stage reached, and whether it looked up since the stage began), so this module
needs no torch and knows nothing of training; :mod:`experiments` owns the learning policy.
:func:`rollout` simulates a whole batch at once (vectorised over episodes, a loop over turns only)
and returns per-turn signal arrays directly; :meth:`SyntheticBatch.to_records` writes the same
episodes as native records (airline tool names and schema-valid arguments) for ``calib ingest``.
"""

from __future__ import annotations

import json
from collections.abc import Iterator, Sequence
from dataclasses import dataclass, field
from typing import Any

import numpy as np

SIGNALS = ("gold_match", "read_only", "state_change", "valid_call", "tool_error",
           "soft_match", "soft_match_score", "redundant_call", "message_only")
MAX_STAGES = 3  # one distinct write tool per stage keeps a wrong write from matching a later gold one

# Airline tool names for the native records: the built-in signals read them through the airline
# catalogue (get_reservation_details is read-only, the three stage tools are writes).
LOOKUP_TOOL = "get_reservation_details"
STAGE_TOOLS = ("update_reservation_baggages", "send_certificate", "cancel_reservation")
# soft_match_score of a wrong variant of each stage tool: 0.5 + 0.5 x the share of the gold call's
# arguments it repeats (see _write_call): 3 of 4 for the baggage update, 1 of 2 for the
# certificate (same user, other amount), 0 of 1 for the cancellation (other reservation).
SOFT_SCORE = (0.5 + 0.5 * 3 / 4, 0.5 + 0.5 * 1 / 2, 0.5)


def action_names(n_variants: int) -> tuple[str, ...]:
    """Action ids in order: ``lookup``, ``write_0`` .. ``write_{W-1}``, ``reply``, ``malformed``."""
    return ("lookup", *(f"write_{w}" for w in range(n_variants)), "reply", "malformed")


@dataclass(frozen=True)
class SyntheticConfig:
    """Shape of the testbed. Defaults: small enough that a tabular policy learns it in seconds."""

    n_tasks: int = field(default=32, metadata={"help": "Tasks in the testbed (each is one GRPO group per step)."})
    min_stages: int = field(default=1, metadata={"help": "Fewest writes a task needs."})
    max_stages: int = field(default=3, metadata={"help": f"Most writes a task needs (at most {MAX_STAGES})."})
    n_variants: int = field(default=2, metadata={"help": "Argument variants per write; one of them is gold."})
    max_turns: int = field(default=8, metadata={"help": "Turns before a timeout ends the episode (a failure)."})
    patience: int = field(default=0, metadata={"help": "The customer hangs up (a failure) after this many turns "
                          "in a row without progress (no gold write); 0 = never (only max_turns ends it)."})

    def __post_init__(self) -> None:
        if self.n_tasks < 1:
            raise ValueError(f"n_tasks={self.n_tasks}: expected >= 1")
        if not 1 <= self.min_stages <= self.max_stages <= MAX_STAGES:
            raise ValueError(
                f"min_stages={self.min_stages}, max_stages={self.max_stages}: expected "
                f"1 <= min_stages <= max_stages <= {MAX_STAGES}"
            )
        if self.n_variants < 2:
            raise ValueError(f"n_variants={self.n_variants}: expected >= 2 (a gold and a wrong variant)")
        if self.patience < 0:
            raise ValueError(f"patience={self.patience}: expected >= 0 (0 = the customer never hangs up)")
        if self.max_turns < self.max_stages + 1:
            raise ValueError(
                f"max_turns={self.max_turns}: expected >= max_stages + 1 = {self.max_stages + 1} "
                "(a task needs its writes and a reply)"
            )

    @property
    def n_actions(self) -> int:
        return self.n_variants + 3

    @property
    def lookup(self) -> int:
        return 0

    @property
    def reply(self) -> int:
        return self.n_variants + 1

    @property
    def malformed(self) -> int:
        return self.n_variants + 2

    @property
    def table_shape(self) -> tuple[int, int, int, int]:
        """Shape of a policy table: (task, stage 0..max_stages, looked 0/1, action)."""
        return (self.n_tasks, self.max_stages + 1, 2, self.n_actions)


@dataclass(frozen=True)
class SyntheticTasks:
    """The tasks of one seed: ``stages[i]`` writes needed, ``gold[i, s]`` the gold variant of stage s."""

    config: SyntheticConfig
    stages: np.ndarray  # (n_tasks,) int
    gold: np.ndarray  # (n_tasks, max_stages) int; entries past stages[i] are unused
    seed: int

    @property
    def done_mask(self) -> np.ndarray:
        """(n_tasks, max_stages + 1) bool: True where stage index s means every write is done."""
        return np.arange(self.config.max_stages + 1)[None, :] >= self.stages[:, None]


def make_tasks(config: SyntheticConfig = SyntheticConfig(), seed: int = 0) -> SyntheticTasks:
    """Draw the tasks of a seed: number of stages and the gold variant of each stage."""
    rng = np.random.default_rng([seed, 0x7A5C])
    stages = rng.integers(config.min_stages, config.max_stages + 1, size=config.n_tasks)
    gold = rng.integers(0, config.n_variants, size=(config.n_tasks, config.max_stages))
    return SyntheticTasks(config=config, stages=stages.astype(np.int64), gold=gold.astype(np.int64), seed=seed)


# ----------------------------------------------------------------------------- scripted policies


def uniform_table(config: SyntheticConfig) -> np.ndarray:
    """Every action equally likely everywhere."""
    return np.full(config.table_shape, 1.0 / config.n_actions)


def oracle_table(tasks: SyntheticTasks, *, lookup_first: bool = True) -> np.ndarray:
    """A deterministic agent that succeeds: (lookup,) gold write per stage, then reply."""
    c = tasks.config
    p = np.zeros(c.table_shape)
    for s in range(c.max_stages + 1):
        done = tasks.done_mask[:, s]
        write = 1 + tasks.gold[:, min(s, c.max_stages - 1)]  # (n_tasks,)
        for looked in (0, 1):
            act = np.where(done, c.reply, c.lookup if (lookup_first and not looked) else write)
            p[np.arange(c.n_tasks), s, looked, act] = 1.0
    return p


# ----------------------------------------------------------------------------- rollouts


@dataclass
class SyntheticBatch:
    """A batch of episodes: padded per-turn arrays [E, T] (T = max_turns) plus episode arrays [E].

    Turn t of episode i is real when ``t < lengths[i]``; padding holds action -1 and signal 0.
    ``group`` is the GRPO group of each episode (one task sampled G times in one batch).
    """

    tasks: SyntheticTasks
    task: np.ndarray  # (E,) task index
    group: np.ndarray  # (E,) group index
    lengths: np.ndarray  # (E,) turns taken
    success: np.ndarray  # (E,) bool
    timeout: np.ndarray  # (E,) bool: hit max_turns without replying
    hung_up: np.ndarray  # (E,) bool: the customer ended it (patience ran out) before a reply
    actions: np.ndarray  # (E, T) int, -1 on padding
    stage: np.ndarray  # (E, T) stage observed before the turn's action
    looked: np.ndarray  # (E, T) looked-up flag observed before the turn's action
    signals: dict[str, np.ndarray]  # name -> (E, T) float

    @property
    def n_episodes(self) -> int:
        return int(self.task.size)

    @property
    def outcome(self) -> np.ndarray:
        return self.success.astype(np.float64)

    @property
    def valid(self) -> np.ndarray:
        """(E, T) bool: which entries are real turns (each row is a prefix)."""
        return np.arange(self.actions.shape[1])[None, :] < self.lengths[:, None]

    def flat(self, name: str) -> np.ndarray:
        """Signal ``name`` as a flat [N] array of real turns, episode by episode (the analysis layout)."""
        return self.signals[name][self.valid]

    def turn_rewards(self, weights: dict[str, float]) -> list[np.ndarray]:
        """Per-episode turn rewards ``sum_s w_s * signal_s`` (what ``turn_advantages`` takes)."""
        r = np.zeros(self.actions.shape)  # (E, T)
        for name, w in weights.items():
            if w != 0.0:
                if name not in self.signals:
                    raise KeyError(f"unknown signal {name!r}; the testbed has {', '.join(SIGNALS)}")
                r += w * self.signals[name]
        return np.split(r[self.valid], np.cumsum(self.lengths)[:-1])

    def to_records(
        self, *, run_id: str = "synthetic", iteration: int = 0, policy: str = "synthetic", step: int | None = None
    ) -> Iterator[dict[str, Any]]:
        """Native episode records (docs/architecture.md section 2), one per episode, in batch order.

        Tool names and arguments follow the airline catalogue, and ``expected_actions`` lists the gold
        writes, so the store's built-in signals find the same values as ``signals``; ``info`` carries
        them too (``info["signals"][name]`` = one value per turn) with ``info["progress"]``.
        """
        for i in range(self.n_episodes):
            yield self._record(i, run_id=run_id, iteration=iteration, policy=policy, step=step)

    def _record(self, i: int, *, run_id: str, iteration: int, policy: str, step: int | None) -> dict[str, Any]:
        c = self.tasks.config
        k = int(self.task[i])
        n_stages = int(self.tasks.stages[k])
        gold = [int(g) for g in self.tasks.gold[k, :n_stages]]
        msgs: list[dict[str, Any]] = [
            {"role": "system", "content": "You are an agent in the calib synthetic testbed."},
            {"role": "user", "content": f"Task {k}: please make the {n_stages} change(s) on my booking."},
        ]
        progress: list[float] = []
        for t in range(int(self.lengths[i])):
            a, s = int(self.actions[i, t]), int(self.stage[i, t])
            cid = f"call_{t}"
            if a == c.reply:
                msgs.append({"role": "assistant", "content": "All done. Anything else?"})
            elif a == c.malformed:
                msgs.append(_call_msg(cid, LOOKUP_TOOL, '{"reservation_id": '))
                msgs.append(_tool_msg(cid, LOOKUP_TOOL, "Error: the arguments are not valid JSON"))
            elif a == c.lookup:
                msgs.append(_call_msg(cid, LOOKUP_TOOL, {"reservation_id": _reservation(k)}))
                msgs.append(_tool_msg(cid, LOOKUP_TOOL, json.dumps({"reservation_id": _reservation(k),
                                                                     "stage": s, "stages": n_stages})))
            else:
                name, args = _write_call(k, min(s, n_stages - 1), a - 1)
                msgs.append(_call_msg(cid, name, args))
                msgs.append(_tool_msg(cid, name, '{"ok": true}'))
            done_after = s + int(self.signals["gold_match"][i, t])
            progress.append(done_after / n_stages)
        if self.hung_up[i]:
            msgs.append({"role": "user", "content": "This is going nowhere. Goodbye."})
        sig = {name: [float(v) for v in self.signals[name][i, : self.lengths[i]]] for name in SIGNALS}
        info: dict[str, Any] = {"progress": progress, "signals": sig, "timeout": bool(self.timeout[i]),
                                "hung_up": bool(self.hung_up[i])}
        if step is not None:
            info["step"] = int(step)
        return {
            "episode_id": f"{run_id}-{iteration}-{step if step is not None else 0}-e{i:06d}",
            "run_id": run_id,
            "iteration": int(iteration),
            "task_id": f"synthetic/{k}",
            "policy": policy,
            "outcome": float(self.success[i]),
            "success": bool(self.success[i]),
            "messages": msgs,
            "expected_actions": [dict(zip(("name", "arguments"), _write_call(k, s, gold[s]))) for s in range(n_stages)],
            "info": info,
        }


def _reservation(task: int) -> str:
    return f"SY{task:04d}"


def _write_call(task: int, stage: int, variant: int) -> tuple[str, dict[str, Any]]:
    """The write of ``stage`` with argument ``variant`` (schema-valid airline arguments)."""
    name = STAGE_TOOLS[stage]
    if name == "update_reservation_baggages":
        args: dict[str, Any] = {"reservation_id": _reservation(task), "total_baggages": variant + 1,
                                "nonfree_baggages": 0, "payment_id": f"credit_card_{task:04d}"}
    elif name == "send_certificate":
        args = {"user_id": f"synthetic_user_{task}", "amount": 50 * (variant + 1)}
    else:
        args = {"reservation_id": f"S{variant}{task:04d}"}
    return name, args


def _call_msg(cid: str, name: str, args: Any) -> dict[str, Any]:
    return {"role": "assistant", "content": "", "tool_calls": [{"id": cid, "name": name, "arguments": args}]}


def _tool_msg(cid: str, name: str, content: str) -> dict[str, Any]:
    return {"role": "tool", "tool_call_id": cid, "name": name, "content": content}


def _sample(probs: np.ndarray, rng: np.random.Generator) -> np.ndarray:
    """One action per row of ``probs`` [n, A] by inverse CDF (rows need not be exactly normalised)."""
    cdf = np.cumsum(probs, axis=1)  # (n, A)
    u = rng.random(probs.shape[0]) * cdf[:, -1]  # (n,)
    return np.minimum((cdf <= u[:, None]).sum(axis=1), probs.shape[1] - 1)


def rollout(
    tasks: SyntheticTasks,
    probs: np.ndarray,
    task_idx: Sequence[int] | np.ndarray,
    rng: np.random.Generator,
    *,
    group: Sequence[int] | np.ndarray | None = None,
) -> SyntheticBatch:
    """Play one episode per entry of ``task_idx`` with the policy table ``probs`` (seeded by ``rng``).

    ``probs`` has shape ``config.table_shape``; ``group`` defaults to the task index (every episode
    of a task in this batch is one group). Vectorised over episodes; loops over the turns only.
    """
    c = tasks.config
    probs = np.asarray(probs, dtype=np.float64)
    if probs.shape != c.table_shape:
        raise ValueError(f"probs: expected shape {c.table_shape} (task, stage, looked, action), got {probs.shape}")
    task = np.asarray(task_idx, dtype=np.int64)  # (E,)
    if task.size and (task.min() < 0 or task.max() >= c.n_tasks):
        raise ValueError(f"task_idx: expected task indices in [0, {c.n_tasks}), got {task.min()}..{task.max()}")
    e, t_max = task.size, c.max_turns
    n_stages = tasks.stages[task]  # (E,)
    stage = np.zeros(e, dtype=np.int64)
    looked = np.zeros(e, dtype=np.int64)
    broken = np.zeros(e, dtype=bool)
    alive = np.ones(e, dtype=bool)
    replied = np.zeros(e, dtype=bool)
    hung_up = np.zeros(e, dtype=bool)
    idle = np.zeros(e, dtype=np.int64)  # turns in a row without progress
    # Calls made so far, for redundant_call: key 0 = the lookup, 1 + j * W + w = stage tool j, variant w.
    n_keys = 1 + c.max_stages * c.n_variants
    seen = np.zeros((e, n_keys), dtype=bool)
    soft_score = np.asarray(SOFT_SCORE[: c.max_stages])  # (max_stages,)
    actions = np.full((e, t_max), -1, dtype=np.int64)  # (E, T)
    stage_obs = np.zeros((e, t_max), dtype=np.int64)  # (E, T)
    looked_obs = np.zeros((e, t_max), dtype=np.int64)  # (E, T)
    sig = {name: np.zeros((e, t_max)) for name in SIGNALS}  # name -> (E, T)
    for t in range(t_max):
        live = np.nonzero(alive)[0]  # (n,)
        if live.size == 0:
            break
        s, lk, k = stage[live], looked[live], task[live]
        a = _sample(probs[k, s, lk], rng)  # (n,)
        actions[live, t], stage_obs[live, t], looked_obs[live, t] = a, s, lk
        done = s >= n_stages[live]
        is_write = (a >= 1) & (a <= c.n_variants)
        gold = is_write & ~done & (a - 1 == tasks.gold[k, np.minimum(s, c.max_stages - 1)])
        wrong = is_write & ~gold
        sig["gold_match"][live, t] = gold
        sig["read_only"][live, t] = a == c.lookup
        sig["state_change"][live, t] = wrong
        sig["valid_call"][live, t] = (a == c.lookup) | is_write
        sig["tool_error"][live, t] = a == c.malformed
        sig["message_only"][live, t] = a == c.reply
        # The write's tool is the current stage's (the last stage's once every write is done), so a
        # wrong variant names an expected tool: a soft match, unless it repeats an already matched
        # gold call (a write after the last stage with the gold variant), which is only redundant.
        tool = np.minimum(s, n_stages[live] - 1)  # (n,)
        repeat_gold = is_write & done & (a - 1 == tasks.gold[k, tool])
        soft = wrong & ~repeat_gold
        sig["soft_match"][live, t] = soft
        sig["soft_match_score"][live, t] = np.where(soft, soft_score[tool], 0.0)
        key = np.where(a == c.lookup, 0, np.where(is_write, 1 + tool * c.n_variants + (a - 1), -1))  # (n,)
        call = key >= 0
        sig["redundant_call"][live[call], t] = seen[live[call], key[call]]
        seen[live[call], key[call]] = True
        stage[live] = s + gold
        looked[live] = np.where(gold, 0, np.where(a == c.lookup, 1, lk))  # the flag resets with each stage
        broken[live] |= wrong
        rep = a == c.reply
        replied[live[rep]] = True
        alive[live[rep]] = False
        if c.patience > 0:
            idle[live] = np.where(gold, 0, idle[live] + 1)
            gone = ~rep & (idle[live] >= c.patience)
            hung_up[live[gone]] = True
            alive[live[gone]] = False
    lengths = (actions >= 0).sum(axis=1)  # (E,)
    success = replied & (stage >= n_stages) & ~broken
    return SyntheticBatch(
        tasks=tasks,
        task=task,
        group=task.copy() if group is None else np.asarray(group, dtype=np.int64),
        lengths=lengths,
        success=success,
        timeout=~replied & ~hung_up,
        hung_up=hung_up,
        actions=actions,
        stage=stage_obs,
        looked=looked_obs,
        signals=sig,
    )
