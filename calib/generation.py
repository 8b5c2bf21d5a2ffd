"""Generation backends for the model being trained or evaluated: token ids in, token ids + logprobs out.

One interface, two engines (the trainer picks one; rollouts never know which):

- :class:`LocalBackend`: transformers ``generate`` on a real batch (left padding, attention mask,
  each row trimmed at its own end-of-turn token). CPU tests, demos, and single-GPU runs without vLLM.
- ``trainer.vllm_backend.VLLMBackend``: TRL's vLLM engine (``trainer.vllm_generation``), colocate or
  server mode. It lives in ``trainer/`` because it needs the TRL trainer object.

Sampling settings (temperature, top-p, max new tokens) are fixed when a backend is built, as TRL's
engines fix them, so a batch never mixes settings. Every completion carries the log-probability of
each sampled token under the sampling distribution (logits / temperature, as TRL's loss computes
them), so TRL's importance-sampling correction can compare the two.

torch is imported inside the methods (docs/architecture.md section 11: nothing in ``calib`` imports torch at module
level).
"""

from __future__ import annotations

import hashlib
import threading
from collections.abc import Sequence
from dataclasses import dataclass, field
from typing import Any, Protocol, runtime_checkable


@dataclass
class Completion:
    """One generated turn: the sampled token ids (ending with the end-of-turn token when the model
    stopped by itself) and one sampling log-probability per token."""

    ids: list[int]
    logprobs: list[float] = field(default_factory=list)


@runtime_checkable
class GenerationBackend(Protocol):
    """``generate(prompts) -> completions``, one per prompt, in order.

    ``seeds`` (one per prompt, optional) make sampling reproducible: a backend that cannot seed rows
    separately derives one seed from the whole batch, so the same batch gives the same tokens.
    """

    eos_token_ids: frozenset[int]

    def generate(self, prompts: Sequence[Sequence[int]], seeds: Sequence[int] | None = None) -> list[Completion]:
        ...


def batch_seed(seeds: Sequence[int] | None) -> int | None:
    """One seed for a batch, from its rows' seeds (order matters: the batch is the unit of randomness)."""
    if not seeds:
        return None
    digest = hashlib.sha256(",".join(str(int(s)) for s in seeds).encode()).digest()
    return int.from_bytes(digest[:4], "big")


@dataclass(frozen=True)
class SamplingSettings:
    """What a backend samples with; fixed when the backend is built."""

    max_new_tokens: int = 256
    temperature: float = 0.7  # 0 = greedy
    top_p: float = 1.0

    def __post_init__(self) -> None:
        if self.max_new_tokens < 1:
            raise ValueError(f"max_new_tokens={self.max_new_tokens} should be >= 1")
        if self.temperature < 0:
            raise ValueError(f"temperature={self.temperature} should be >= 0 (0 = greedy)")
        if not 0 < self.top_p <= 1:
            raise ValueError(f"top_p={self.top_p} should be in (0, 1]")


def eos_ids_of(tokenizer: Any, model: Any = None) -> frozenset[int]:
    """End-of-turn token ids: the tokenizer's eos plus the model's generation config eos (a chat model
    often ends turns with a token, e.g. ``<|im_end|>``, that only the generation config names)."""
    ids: set[int] = set()
    if getattr(tokenizer, "eos_token_id", None) is not None:
        ids.add(int(tokenizer.eos_token_id))
    gen_eos = getattr(getattr(model, "generation_config", None), "eos_token_id", None)
    if isinstance(gen_eos, int):
        ids.add(gen_eos)
    elif isinstance(gen_eos, (list, tuple)):
        ids.update(int(x) for x in gen_eos)
    return frozenset(ids)


@dataclass
class _CachedPrefix:
    """Token ids whose keys/values are kept, one ``(keys, values)`` pair per layer, each [heads, L, dim]."""

    ids: list[int]
    kv: list[tuple[Any, Any]]


def common_prefix(a: Sequence[int], b: Sequence[int]) -> int:
    n = min(len(a), len(b))
    for i in range(n):
        if a[i] != b[i]:
            return i
    return n


class LocalBackend:
    """Batched transformers generation on the model in memory (the trainer's live weights).

    Rows are left-padded so that every row's next token sits in the last column; the attention mask
    keeps padding out and transformers derives position ids from it, so a padded row decodes as it
    would alone (up to float rounding in the batched matmuls; tests/test_generation.py checks greedy
    equality token for token, near-ties aside). Generation stops when every row has emitted an
    end-of-turn token or ``max_new_tokens`` is reached; each row is then trimmed after its own first
    end-of-turn token.

    **Prefix cache** (``prefix_cache_tokens > 0``): a multi-turn episode sends the whole conversation
    again at every turn, and on a CPU re-reading it (prefill) costs more than decoding. So the keys and
    values of each finished turn (prompt + completion) are kept, and a later prompt that starts with a
    kept sequence only runs its new suffix (vLLM's prefix caching, on a small scale). Rows with cached
    prefixes of different lengths share a batch with this layout per row::

        [pad ...][cached prefix][pad ...][new suffix]  -> generated tokens

    The pads are masked out and position ids come from the attention mask's running count, so each
    row sees positions 0..L-1 as it would alone. The cache holds at most ``prefix_cache_tokens``
    tokens (least recently used entries go first). It depends on the weights: whoever changes them
    (the trainer, after an optimiser step) calls :meth:`clear_prefix_cache`.

    One lock serialises calls: one model, one batch at a time. Concurrency comes from batching
    (:class:`calib.batcher.TurnBatcher` gathers the turns of many episodes into one call), not threads.
    """

    MIN_REUSE = 8  # a shorter common prefix is not worth the padding it adds

    def __init__(self, model: Any, tokenizer: Any, settings: SamplingSettings | None = None,
                 *, prefix_cache_tokens: int = 0):
        self.model = model
        self.tokenizer = tokenizer
        self.settings = settings or SamplingSettings()
        self.eos_token_ids = eos_ids_of(tokenizer, model)
        pad = getattr(tokenizer, "pad_token_id", None)
        self.pad_token_id = int(pad) if pad is not None else min(self.eos_token_ids)
        self.prefix_cache_tokens = prefix_cache_tokens
        self._cache: list[_CachedPrefix] = []  # most recently used last
        self._lock = threading.Lock()
        self.calls = 0  # batches generated (for benches and tests)
        self.reused_tokens = 0  # prompt tokens served from the prefix cache
        self.prefilled_tokens = 0  # prompt tokens run through the model

    def clear_prefix_cache(self) -> None:
        """Forget every kept prefix (call it after the weights change)."""
        with self._lock:
            self._cache = []

    def generate(self, prompts: Sequence[Sequence[int]], seeds: Sequence[int] | None = None) -> list[Completion]:
        if not prompts:
            return []
        if any(len(p) == 0 for p in prompts):
            raise ValueError("generate: every prompt needs at least one token")
        with self._lock:
            prompts = [list(p) for p in prompts]
            hits = [self._lookup(p) for p in prompts]
            return self._generate(prompts, hits, batch_seed(seeds))

    def _lookup(self, prompt: list[int]) -> tuple[_CachedPrefix | None, int]:
        """The kept prefix sharing the most leading tokens with ``prompt`` (at least one token of the
        prompt must remain to be run), and how many tokens are reused."""
        best, best_n = None, 0
        for entry in self._cache:
            n = min(common_prefix(entry.ids, prompt), len(prompt) - 1, len(entry.ids))
            if n > best_n:
                best, best_n = entry, n
        return (best, best_n) if best_n >= self.MIN_REUSE else (None, 0)

    def _generate(self, prompts: list[list[int]], hits, seed: int | None) -> list[Completion]:
        import torch

        s = self.settings
        device = self.model.device
        B = len(prompts)
        reuse = [n for _, n in hits]  # (B,)
        C = max(reuse)  # cached columns
        S = max(len(p) - n for p, n in zip(prompts, reuse))  # new prompt columns
        input_ids = torch.full((B, C + S), self.pad_token_id, dtype=torch.long)  # (B, C+S)
        attention = torch.zeros((B, C + S), dtype=torch.long)  # (B, C+S)
        for i, (p, n) in enumerate(zip(prompts, reuse)):
            input_ids[i, C - n : C] = torch.tensor(p[:n], dtype=torch.long)
            attention[i, C - n : C] = 1
            input_ids[i, C + S - (len(p) - n) :] = torch.tensor(p[n:], dtype=torch.long)
            attention[i, C + S - (len(p) - n) :] = 1
        kw: dict[str, Any] = {
            "max_new_tokens": s.max_new_tokens,
            "attention_mask": attention.to(device),
            "pad_token_id": self.pad_token_id,
            "eos_token_id": sorted(self.eos_token_ids),
            "return_dict_in_generate": True,
            "output_logits": True,
        }
        if C > 0:
            kw["cache"] = self._past(hits, C, device)
        if s.temperature > 0:
            kw.update(do_sample=True, temperature=s.temperature, top_p=s.top_p, top_k=0)
        else:
            kw.update(do_sample=False, temperature=None, top_p=None, top_k=None)
        if seed is not None:
            torch.manual_seed(seed)
        with torch.no_grad():
            out = self.model.generate(input_ids.to(device), **kw)
        self.calls += 1
        self.reused_tokens += sum(reuse)
        self.prefilled_tokens += sum(len(p) for p in prompts) - sum(reuse)
        new = out.sequences[:, C + S :]  # (B, N)
        # Sampling log-probabilities of the chosen tokens: log_softmax(logits / T), as TRL's loss
        # computes them (T = 1 for greedy decoding).
        logits = torch.stack(out.logits, dim=1).float()  # (B, N, V)
        temp = s.temperature if s.temperature > 0 else 1.0
        logps = torch.log_softmax(logits / temp, dim=-1).gather(-1, new.unsqueeze(-1)).squeeze(-1)  # (B, N)
        completions = [self._trim(row.tolist(), lp.tolist()) for row, lp in zip(new, logps)]
        if self.prefix_cache_tokens > 0 and getattr(out, "cache", None) is not None:
            self._keep(prompts, hits, completions, out.cache, attention, C + S)
        return completions

    def _past(self, hits, C: int, device) -> Any:
        """A DynamicCache [B, heads, C, dim] per layer: each row's kept prefix right-aligned at column C."""
        import torch
        from transformers import DynamicCache

        ref = next(e for e, n in hits if e is not None).kv
        layers = []
        for layer, (k0, v0) in enumerate(ref):
            h, _, d = k0.shape
            keys = torch.zeros((len(hits), h, C, d), dtype=k0.dtype, device=device)
            values = torch.zeros_like(keys)
            for i, (entry, n) in enumerate(hits):
                if entry is not None and n:
                    k, v = entry.kv[layer]
                    keys[i, :, C - n : C] = k[:, :n]
                    values[i, :, C - n : C] = v[:, :n]
            layers.append((keys, values))
        return DynamicCache(ddp_cache_data=layers)

    def _keep(self, prompts, hits, completions, cache, attention, width: int) -> None:
        """Store each row's prompt + completion (minus its last token, which was never fed back) with
        the keys/values of its unmasked columns; the entry it extended is replaced."""
        import torch

        for i, (p, comp) in enumerate(zip(prompts, completions)):
            cols = torch.nonzero(attention[i]).squeeze(-1)  # real prompt columns
            fed = max(0, len(comp.ids) - 1)  # generated tokens whose keys/values are in the cache
            cols = torch.cat([cols, torch.arange(width, width + fed)])
            kv = [(layer.keys[i][:, cols].clone(), layer.values[i][:, cols].clone()) for layer in cache.layers]
            entry = _CachedPrefix(ids=p + comp.ids[:fed], kv=kv)
            old = hits[i][0]
            self._cache = [e for e in self._cache if e is not old]
            self._cache.append(entry)
        total = sum(len(e.ids) for e in self._cache)
        while self._cache and total > self.prefix_cache_tokens:
            total -= len(self._cache[0].ids)
            self._cache.pop(0)

    def _trim(self, ids: list[int], logps: list[float]) -> Completion:
        """Cut after the first end-of-turn token (later columns are padding of a finished row)."""
        for k, t in enumerate(ids):
            if t in self.eos_token_ids:
                return Completion(ids[: k + 1], logps[: k + 1])
        return Completion(ids, logps)
