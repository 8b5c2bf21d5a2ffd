"""TRL's vLLM engine as a calib generation backend (``use_vllm=True``).

``GRPOTrainer`` builds ``trainer.vllm_generation`` (a ``trl.generation.vllm_generation.VLLMGeneration``)
for ``vllm_mode="colocate"`` (an engine inside each training process) or ``"server"`` (``trl
vllm-serve``), and syncs the trained weights into it before calling our ``rollout_func`` each step
(and, with sleep mode, inside every call). We only ask it for tokens: one call per batch of turns,
from token ids, one generation per prompt. The sampling settings are the trainer's (TRL fixed them
when it built the engine).

``VLLMGeneration.generate`` returns, per prompt, the completion ids and per token the top logprobs,
the sampled token's first (TRL asks for ``logprobs=0``: only the sampled token's); we keep that one,
so TRL's importance-sampling correction can compare it with the trainer's own logprobs.

In server mode every call gathers the prompts of all processes and slices the answer by process
index, so every rank must call it the same number of times with the same number of prompts: the
trainer gives the turn batcher a ``collective`` and the batcher runs in lockstep rounds
(``calib.batcher``).
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

from calib.generation import Completion, eos_ids_of


class VLLMBackend:
    """Generation through ``trainer.vllm_generation`` (colocate or server)."""

    def __init__(self, trainer: Any):
        self.trainer = trainer
        self.eos_token_ids = eos_ids_of(trainer.processing_class, trainer.model)
        self.calls = 0

    def generate(self, prompts: Sequence[Sequence[int]], seeds: Sequence[int] | None = None) -> list[Completion]:
        """One engine call for the whole batch. ``seeds`` are ignored: vLLM seeds its own sampler
        (set ``vllm`` seeding through TRL's ``generation_kwargs`` if you need it)."""
        if not prompts:
            return []
        from trl.extras.profiling import profiling_context

        _, completion_ids, logprobs, _ = self.trainer.vllm_generation.generate(
            prompts=[list(p) for p in prompts],
            images=None,
            num_generations=1,
            profiler=profiling_context(self.trainer, "vLLM.generate"),
        )
        self.calls += 1
        out = []
        for i, ids in enumerate(completion_ids):
            ids = [int(t) for t in ids]
            if logprobs is not None:
                lps = [float("nan") if (lp is None or lp[0] is None) else float(lp[0]) for lp in logprobs[i]]
            else:
                lps = [float("nan")] * len(ids)
            out.append(Completion(ids, lps))
        return out
