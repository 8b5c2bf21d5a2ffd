"""Discriminative analysis of per-turn signals (docs/architecture.md section 4).

``metrics`` holds the pure math (arrays in, numbers out); ``run`` reads the store and assembles the
per-signal table; ``synthetic`` makes seeded rollouts with planted signals for tests and benches.
"""
