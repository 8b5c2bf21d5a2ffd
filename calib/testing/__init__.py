"""Test helpers that ship with calib (a fake OpenAI-compatible server), reused by tests and benchmarks."""
