"""The turn batcher: the turns of many episodes in flight become one batched generation call.

Episodes run as asyncio tasks (``calib.rollout.runner``). When an episode needs the model it
submits its prompt and waits; the batcher collects the waiting turns and sends them to the backend
as one batch when either

- ``max_batch`` turns are waiting (``--generation-batch-size``), or
- every live episode is waiting on the model (nobody else could join the batch: the others have
  ended, or have not started because of the rollout's concurrency limit).

Generation runs in a worker thread, so user simulators (LLM endpoints), tools and the bookkeeping
of the other episodes keep running while the model works; turns that arrive meanwhile form the next
batch. One batch is in flight at a time (one model).

Episodes register with :meth:`TurnBatcher.episode` (the runner does it through
``Policy.episode_scope``), which is how the batcher knows who may still submit.

**Lockstep** (``collective``): with several training processes sharing one vLLM server (TRL's server
mode), every generate call is a collective: all ranks must call it the same number of times with
the same number of prompts. The batcher then works in rounds: a rank enters a round when every one
of its live episodes is waiting (or it has none left); the ranks exchange their counts; if nobody
has a turn waiting and nobody has a live episode, the step's generation is over; else each rank
pads its batch with placeholder prompts up to the largest count, calls the backend, and drops the
placeholders' outputs. A rank whose episodes have all ended keeps taking part (with placeholders
only) until every rank is done; :meth:`drain` runs that tail.
"""

from __future__ import annotations

import asyncio
from collections.abc import AsyncIterator, Callable, Sequence
from contextlib import asynccontextmanager
from dataclasses import dataclass
from typing import Any

from calib.generation import Completion, GenerationBackend

# gather(obj) -> [obj of rank 0, obj of rank 1, ...]; accelerate's gather_object has this shape.
Gather = Callable[[Any], list[Any]]


@dataclass
class BatchStats:
    """What the batcher did (for logs, benches and tests)."""

    calls: int = 0  # backend calls
    turns: int = 0  # real turns generated
    placeholders: int = 0  # lockstep padding rows
    max_batch_seen: int = 0


class TurnBatcher:
    """Gathers pending turns of concurrent episodes into batched backend calls (one event loop)."""

    def __init__(
        self,
        backend: GenerationBackend,
        *,
        max_batch: int | None = None,
        collective: Gather | None = None,
        placeholder: Sequence[int] | None = None,
    ):
        if max_batch is not None and max_batch < 1:
            raise ValueError(f"max_batch={max_batch}: should be >= 1 (or None for no cap)")
        if collective is not None and not placeholder:
            raise ValueError("lockstep generation needs a placeholder prompt (a few token ids)")
        self.backend = backend
        self.max_batch = max_batch
        self.collective = collective
        self.placeholder = list(placeholder or [])
        self.stats = BatchStats()
        self._pending: list[tuple[list[int], int | None, asyncio.Future]] = []
        self._live = 0
        self._changed: asyncio.Event | None = None
        self._worker: asyncio.Task | None = None
        self._closed = False

    # ------------------------------------------------------------------------------ episode side

    @asynccontextmanager
    async def episode(self) -> AsyncIterator[None]:
        """Register a live episode for the duration of the block."""
        self._ensure_worker()
        self._live += 1
        try:
            yield
        finally:
            self._live -= 1
            self._poke()

    async def generate(self, prompt_ids: Sequence[int], seed: int | None = None) -> Completion:
        """Submit one turn and wait for its completion."""
        self._ensure_worker()
        if self._closed:
            raise RuntimeError("TurnBatcher is closed")
        fut = asyncio.get_running_loop().create_future()
        self._pending.append((list(prompt_ids), seed, fut))
        self._poke()
        return await fut

    # ------------------------------------------------------------------------------- worker side

    def _ensure_worker(self) -> None:
        if self._worker is None:
            self._changed = asyncio.Event()
            self._worker = asyncio.get_running_loop().create_task(
                self._lockstep_loop() if self.collective is not None else self._loop()
            )

    def _poke(self) -> None:
        if self._changed is not None:
            self._changed.set()

    def _all_waiting(self) -> bool:
        """Every live episode has a turn pending (an unregistered caller counts as its own episode)."""
        return len(self._pending) >= self._live

    async def _settle(self) -> None:
        """Let every task that is ready run first, so turns submitted in the same instant share a batch
        (an episode that has just been let in by the rollout's semaphore registers one step later)."""
        for _ in range(3):
            await asyncio.sleep(0)

    def _take(self) -> list[tuple[list[int], int | None, asyncio.Future]]:
        n = len(self._pending) if self.max_batch is None else min(self.max_batch, len(self._pending))
        batch, self._pending = self._pending[:n], self._pending[n:]
        return batch

    async def _run_batch(self, batch, pad_to: int = 0) -> None:
        prompts = [p for p, _, _ in batch] + [self.placeholder] * max(0, pad_to - len(batch))
        seeds = [s if s is not None else 0 for _, s, _ in batch] + [0] * max(0, pad_to - len(batch))
        has_seed = any(s is not None for _, s, _ in batch)
        try:
            outs = await asyncio.to_thread(self.backend.generate, prompts, seeds if has_seed else None)
        except BaseException as e:  # every waiting episode must hear about it
            for _, _, fut in batch:
                if not fut.done():
                    fut.set_exception(e)
            if not isinstance(e, Exception):
                raise
            return
        if len(outs) != len(prompts):
            err = RuntimeError(f"generation backend returned {len(outs)} completions for {len(prompts)} prompts")
            for _, _, fut in batch:
                if not fut.done():
                    fut.set_exception(err)
            return
        self.stats.calls += 1
        self.stats.turns += len(batch)
        self.stats.placeholders += len(prompts) - len(batch)
        self.stats.max_batch_seen = max(self.stats.max_batch_seen, len(batch))
        for (_, _, fut), out in zip(batch, outs):
            if not fut.done():
                fut.set_result(out)

    async def _loop(self) -> None:
        assert self._changed is not None
        while True:
            await self._changed.wait()
            self._changed.clear()
            await self._settle()
            while self._pending and (
                self._all_waiting() or (self.max_batch is not None and len(self._pending) >= self.max_batch)
            ):
                await self._run_batch(self._take())
                await self._settle()

    async def _lockstep_loop(self) -> None:
        assert self._changed is not None and self.collective is not None
        while True:
            while not (self._all_waiting() or self._closed):
                await self._changed.wait()
                self._changed.clear()
            await self._settle()
            if not (self._all_waiting() or self._closed):
                continue
            batch = self._take()
            more = bool(self._pending) or self._live > 0
            counts = await asyncio.to_thread(self.collective, (len(batch), more))
            if not any(n or m for n, m in counts):
                return  # nobody has a turn or a live episode: this generation phase is over
            width = max(n for n, _ in counts)
            if width == 0:
                # Ranks with live episodes are waiting on users or tools; nobody generates this round.
                await asyncio.sleep(0.01)
                continue
            await self._run_batch(batch, pad_to=width)

    # ----------------------------------------------------------------------------------- closing

    async def drain(self) -> None:
        """End of this rank's episodes: in lockstep, keep joining rounds until every rank is done."""
        self._closed = True
        self._poke()
        if self._worker is not None and self.collective is not None:
            await self._worker
            self._worker = None

    async def aclose(self) -> None:
        """Stop the worker (pending turns, if any, are cancelled)."""
        self._closed = True
        if self._worker is not None:
            if self.collective is not None:
                await self.drain()
            else:
                self._worker.cancel()
                try:
                    await self._worker
                except asyncio.CancelledError:
                    pass
            self._worker = None
        for _, _, fut in self._pending:
            if not fut.done():
                fut.cancel()
        self._pending = []
