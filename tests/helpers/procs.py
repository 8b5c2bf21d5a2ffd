"""Start and finish the worker processes of the concurrency tests (store, compaction, signals).

The workers (``tests/helpers/*_worker.py``) each touch ``<go>.ready.<pid>`` once they have imported
everything, then wait for ``go``: so every worker starts its real work at the same moment, and an
import that takes seconds on a loaded machine does not serialise them.
"""

from __future__ import annotations

import os
import subprocess
import sys
import time
from pathlib import Path

HELPERS = Path(__file__).resolve().parent


def spawn(script: str, *args: str, env: dict[str, str] | None = None) -> subprocess.Popen:
    """Run ``tests/helpers/<script>`` with ``args`` in a new Python process, output captured."""
    return subprocess.Popen([sys.executable, str(HELPERS / script), *args], stdout=subprocess.PIPE,
                            stderr=subprocess.PIPE, text=True, env={**os.environ, **(env or {})})


def start(go: Path, procs: list[subprocess.Popen], timeout: float) -> None:
    """Touch ``go`` once every worker has imported everything and waits for it."""
    deadline = time.monotonic() + timeout
    while len(list(go.parent.glob(go.name + ".ready.*"))) < len(procs):
        assert time.monotonic() < deadline and all(p.poll() is None for p in procs), "a worker did not start"
        time.sleep(0.01)
    go.touch()


def finish(procs: list[subprocess.Popen], timeout: float) -> list[str]:
    """Wait for every worker; fail with the end of its output if one exits non-zero. Returns stdouts."""
    outs = []
    for p in procs:
        out, err = p.communicate(timeout=timeout)
        assert p.returncode == 0, (out + err)[-3000:]
        outs.append(out)
    return outs
