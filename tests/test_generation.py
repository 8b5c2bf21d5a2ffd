"""calib.generation (batched local backend) and calib.batcher (turn batching, lockstep rounds)."""

from __future__ import annotations

import asyncio
import threading

import pytest

pytestmark = pytest.mark.xdist_group("generation")  # one worker under xdist: the model loads once


@pytest.fixture(scope="module")
def tiny(tiny_model_dir):
    path = tiny_model_dir
    import torch
    from transformers import AutoModelForCausalLM, AutoTokenizer

    torch.set_num_threads(1)
    tok = AutoTokenizer.from_pretrained(path)
    model = AutoModelForCausalLM.from_pretrained(path, dtype=torch.float32)
    model.eval()
    return model, tok


def _prompts(tok) -> list[list[int]]:
    convs = [
        [{"role": "user", "content": "Hi"}],
        [{"role": "system", "content": "You are an airline agent. Be brief."},
         {"role": "user", "content": "I want to cancel my reservation ABC123, please. My user id is mia_li_3668."}],
        [{"role": "user", "content": "What is two plus two?"}],
        [{"role": "system", "content": "You are a helpful assistant that answers in one short sentence."},
         {"role": "user", "content": "Name a city in France and say one thing about it."},
         {"role": "assistant", "content": "Paris is the capital of France."},
         {"role": "user", "content": "And another one?"}],
    ]
    return [tok.apply_chat_template(c, add_generation_prompt=True, tokenize=True, return_dict=False) for c in convs]


def _top2_gap(model, ids: list[int]) -> float:
    import torch

    with torch.no_grad():
        logits = model(torch.tensor([ids])).logits[0, -1]
    top = torch.topk(logits, 2).values
    return float(top[0] - top[1])


def test_batched_greedy_equals_unbatched(tiny):
    """Left padding + attention mask: each row decodes as it would alone (near-ties aside)."""
    from calib.generation import LocalBackend, SamplingSettings

    model, tok = tiny
    backend = LocalBackend(model, tok, SamplingSettings(max_new_tokens=24, temperature=0.0))
    prompts = _prompts(tok)
    assert len({len(p) for p in prompts}) == len(prompts), "prompts must differ in length to test padding"
    alone = [backend.generate([p])[0] for p in prompts]
    together = backend.generate(prompts)
    near_ties = []
    for p, a, b in zip(prompts, alone, together):
        if a.ids == b.ids:
            continue
        k = next((i for i, (x, y) in enumerate(zip(a.ids, b.ids)) if x != y), min(len(a.ids), len(b.ids)))
        gap = _top2_gap(model, p + a.ids[:k])
        print(f"row differs at token {k}: unbatched top-2 logit gap {gap:.2e}")
        assert gap < 1e-3, f"batched generation changed a token that was not a near-tie (gap {gap})"
        near_ties.append(k)
    print(f"{len(prompts) - len(near_ties)}/{len(prompts)} rows identical token for token; near-ties: {near_ties}")
    for a, b in zip(alone, together):
        assert len(a.logprobs) == len(a.ids) and len(b.logprobs) == len(b.ids)


def test_completions_are_trimmed_and_logprobs_are_the_models(tiny):
    """Each row ends at its own end-of-turn token; logprobs equal a teacher-forced forward pass
    (log_softmax(logits / T)), which is what TRL's loss recomputes."""
    import torch

    from calib.generation import LocalBackend, SamplingSettings

    model, tok = tiny
    backend = LocalBackend(model, tok, SamplingSettings(max_new_tokens=40, temperature=0.8))
    prompts = _prompts(tok)
    outs = backend.generate(prompts, seeds=[1, 2, 3, 4])
    again = backend.generate(prompts, seeds=[1, 2, 3, 4])
    assert [o.ids for o in outs] == [o.ids for o in again], "same batch and seeds must give the same tokens"
    eos = backend.eos_token_ids
    for p, o in zip(prompts, outs):
        assert all(t not in eos for t in o.ids[:-1]), "nothing may follow the end-of-turn token"
        assert len(o.ids) <= 40
        with torch.no_grad():
            logits = model(torch.tensor([p + o.ids])).logits[0, len(p) - 1 : -1]  # (N, V)
        want = torch.log_softmax(logits / 0.8, dim=-1).gather(-1, torch.tensor(o.ids)[:, None]).squeeze(-1)
        assert torch.allclose(torch.tensor(o.logprobs), want, atol=2e-3), (o.logprobs[:5], want[:5].tolist())


# --- the turn batcher on a fake backend ----------------------------------------------------------------


class FakeBackend:
    """Echoes each prompt's last token + 1; records every call's size."""

    eos_token_ids = frozenset({0})

    def __init__(self, fail: bool = False):
        self.sizes: list[int] = []
        self.fail = fail

    def generate(self, prompts, seeds=None):
        from calib.generation import Completion

        if self.fail:
            raise RuntimeError("backend down")
        self.sizes.append(len(prompts))
        return [Completion([p[-1] + 1, 0], [-0.5, -0.1]) for p in prompts]


async def _episodes(batcher, n: int, turns: int, user_delay=lambda i: 0.0):
    async def one(i: int) -> list[int]:
        got = []
        async with batcher.episode():
            for t in range(turns + (i % 2)):  # odd episodes take one more turn
                out = await batcher.generate([i, t], seed=i)
                got.append(out.ids[0])
                await asyncio.sleep(user_delay(i))  # the user simulator answers
        return got

    try:
        return await asyncio.gather(*(one(i) for i in range(n)))
    finally:
        await batcher.aclose()


def test_batcher_sends_every_waiting_turn_in_one_call():
    from calib.batcher import TurnBatcher

    backend = FakeBackend()
    batcher = TurnBatcher(backend)
    results = asyncio.run(_episodes(batcher, 6, 3))
    assert results == [[t + 1 for t in range(3 + (i % 2))] for i in range(6)]
    # Rounds: 3 full rounds of 6 episodes, then the 3 odd episodes' extra turn.
    assert backend.sizes == [6, 6, 6, 3]
    assert batcher.stats.turns == 21 and batcher.stats.calls == 4


def test_batcher_waits_for_slow_users_then_caps_the_batch():
    from calib.batcher import TurnBatcher

    backend = FakeBackend()
    # Episode 0's user is slow: the others wait for it (every live episode must be waiting) ...
    asyncio.run(_episodes(TurnBatcher(backend), 4, 2, user_delay=lambda i: 0.05 if i == 0 else 0.0))
    assert backend.sizes[0] == 4 and sum(backend.sizes) == 10
    # ... unless max_batch turns are already waiting.
    capped = FakeBackend()
    asyncio.run(_episodes(TurnBatcher(capped, max_batch=3), 7, 1))
    assert max(capped.sizes) <= 3 and sum(capped.sizes) == 10


def test_batcher_propagates_backend_errors():
    from calib.batcher import TurnBatcher

    with pytest.raises(RuntimeError, match="backend down"):
        asyncio.run(_episodes(TurnBatcher(FakeBackend(fail=True)), 3, 1))


def test_lockstep_rounds_across_ranks():
    """Two ranks (threads with their own event loops) sharing a collective: every rank calls the
    backend the same number of times with the same number of prompts; placeholders are dropped."""
    from calib.batcher import TurnBatcher

    n_ranks = 2
    barrier = threading.Barrier(n_ranks)
    slots: list = [None] * n_ranks
    results: list = [None] * n_ranks
    backends = [FakeBackend() for _ in range(n_ranks)]
    errors: list = []

    def make_gather(rank):
        def gather(obj):
            slots[rank] = obj
            barrier.wait(timeout=10)
            out = list(slots)
            barrier.wait(timeout=10)
            return out

        return gather

    def run(rank):
        try:
            # rank 0: 3 episodes of 2-3 turns; rank 1: 1 episode of 1 turn (it finishes early).
            n, turns = (3, 2) if rank == 0 else (1, 1)
            b = TurnBatcher(backends[rank], collective=make_gather(rank), placeholder=[7])
            results[rank] = asyncio.run(_episodes(b, n, turns))
        except Exception as e:  # noqa: BLE001 - reported below
            errors.append(e)
            barrier.abort()

    threads = [threading.Thread(target=run, args=(r,)) for r in range(n_ranks)]
    for t in threads:
        t.start()
    for t in threads:
        t.join(timeout=30)
    assert not errors, errors
    assert results[0] == [[1, 2], [1, 2, 3], [1, 2]]
    assert results[1] == [[1]]
    # Rounds: (3 real | 1 real + 2 placeholders), (3 | 3 placeholders), (1 | 1 placeholder), then both
    # report nothing left and stop.
    assert backends[0].sizes == backends[1].sizes == [3, 3, 1]


def test_prefix_cache_reuses_earlier_turns_without_changing_them(tiny):
    """Turn 2 of each conversation starts with turn 1's prompt + completion: with the prefix cache only
    the new suffix is run, and greedy tokens equal a run without the cache (near-ties aside)."""
    from calib.generation import LocalBackend, SamplingSettings

    model, tok = tiny
    settings = SamplingSettings(max_new_tokens=16, temperature=0.0)
    plain = LocalBackend(model, tok, settings)
    cached = LocalBackend(model, tok, settings, prefix_cache_tokens=100_000)
    first = _prompts(tok)
    outs = cached.generate(first)
    assert cached.reused_tokens == 0 and len(cached._cache) == len(first)
    follow = tok("\n<|im_start|>user\nThanks. Anything else?<|im_end|>\n<|im_start|>assistant\n",
                 add_special_tokens=False)["input_ids"]
    second = [p + o.ids + follow for p, o in zip(first, outs)]
    # Different suffix lengths per row, so the cached rows need the padded-hole layout.
    second[0] = second[0] + follow
    want = [plain.generate([p])[0] for p in second]
    got = cached.generate(second)
    assert cached.reused_tokens >= sum(len(p) + len(o.ids) - 1 for p, o in zip(first, outs))
    assert cached.prefilled_tokens < sum(len(p) for p in first + second) - cached.reused_tokens + 1
    for p, a, b in zip(second, want, got):
        if a.ids != b.ids:
            k = next((i for i, (x, y) in enumerate(zip(a.ids, b.ids)) if x != y), min(len(a.ids), len(b.ids)))
            gap = _top2_gap(model, p + a.ids[:k])
            print(f"cached row differs at token {k}: top-2 gap {gap:.2e}")
            assert gap < 1e-3
    cached.clear_prefix_cache()
    assert cached._cache == []
