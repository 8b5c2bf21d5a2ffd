"""Run ``calib loop`` and die by SIGKILL right after stage ``ITERATION:STAGE`` is recorded.

The fault injection the resume test needs lives here, not in product code: this wrapper patches
``LoopState.mark`` in its own process and then runs the real CLI, so the crash happens exactly
where a real one could (after the state file is replaced, with no cleanup).

Usage: python tests/helpers/crash_loop.py ITERATION:STAGE calib-args...
"""

from __future__ import annotations

import os
import signal
import sys
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[2]))


def main() -> None:
    target, args = sys.argv[1], sys.argv[2:]
    from trainer.loop import LoopState

    original = LoopState.mark

    def mark_then_crash(self, it, stage, result):
        original(self, it, stage, result)
        if f"{it}:{stage}" == target:
            os.kill(os.getpid(), signal.SIGKILL)

    LoopState.mark = mark_then_crash
    from calib.cli import app

    sys.exit(app(args=args, prog_name="calib"))


if __name__ == "__main__":
    main()
