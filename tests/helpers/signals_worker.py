"""Worker processes for tests/test_signals_concurrency.py: ``calib analyze`` in a real process.

    signals_worker.py analyze STORE GO N OUT    wait for the GO file, then run ``calib analyze --store
                                                STORE --out OUT``; its first signal write waits until
                                                N workers have reached theirs

The wait is the test's only instrument (it patches ``Store.write_signals`` in this process): every
worker has decided what to compute, from the same store, before any of them writes, which is the
race two ``calib analyze`` started together run into by chance.
"""

from __future__ import annotations

import os
import sys
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[2]))


def _wait_for(cond, what: str, timeout: float = 120.0) -> None:
    deadline = time.monotonic() + timeout
    while not cond():
        if time.monotonic() > deadline:
            raise SystemExit(f"timed out waiting for {what}")
        time.sleep(0.005)


def analyze(store: str, go: str, n: int, out: str) -> None:
    from calib.cli import app
    from calib.store.store import Store

    real = Store.write_signals
    waited = []

    def write_signals(self, df, **kw):
        if not waited:
            waited.append(True)
            Path(f"{go}.writing.{os.getpid()}").touch()
            _wait_for(lambda: len(list(Path(go).parent.glob(Path(go).name + ".writing.*"))) >= n,
                      "the other workers to reach their first write")
        return real(self, df, **kw)

    Store.write_signals = write_signals  # this process only
    Path(f"{go}.ready.{os.getpid()}").touch()
    _wait_for(Path(go).exists, str(go))
    app(["analyze", "--store", store, "--out", out], prog_name="calib", standalone_mode=True)


def main() -> None:
    mode, args = sys.argv[1], sys.argv[2:]
    if mode == "analyze":
        analyze(args[0], args[1], int(args[2]), args[3])
    else:
        raise SystemExit(f"unknown mode {mode}")


if __name__ == "__main__":
    main()
