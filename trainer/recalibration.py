"""Online recalibration inside ``calib train`` (``--recalibrate-every N``): a TrainerCallback.

Every N optimiser steps it runs :func:`calib.analysis.online.try_recalibrate` (the one analysis entry
point, on this run's episodes of the last W steps, which the trainer has already written to the
store with their step) and hands the new spec to the trainer, whose next rollouts are rewarded with
it. It prints one line per recalibration, saves the spec in force into every checkpoint
(``calib_spec.yaml``), and on ``--resume`` starts from the spec of the checkpoint it resumes, so a
killed run continues with exactly the weights it had.
"""

from __future__ import annotations

import sys
from pathlib import Path
from typing import Any

from transformers import TrainerCallback

CHECKPOINT_SPEC = "calib_spec.yaml"


class RecalibrationCallback(TrainerCallback):
    """Recalibrates ``trainer``'s spec on schedule; keeps it across checkpoints."""

    def __init__(self, trainer: Any, config: Any, *, log: Any = None):
        self.trainer = trainer
        self.config = config
        # stderr, with the step lines: stdout stays for --json
        self.log = log or (lambda line: print(line, file=sys.stderr, flush=True))
        self.lines: list[str] = []

    def on_train_begin(self, args, state, control, **kwargs):
        if state.global_step <= 0:
            return
        path = Path(args.output_dir) / f"checkpoint-{state.global_step}" / CHECKPOINT_SPEC
        if path.exists():
            from calib.spec import load_spec

            self.trainer.set_calib_spec(load_spec(path))
            self._say(f"recalibration: resumed with the spec in force at step {state.global_step} ({path})")

    def on_step_end(self, args, state, control, **kwargs):
        if not self.config.due(state.global_step):
            return
        rec = None
        if state.is_world_process_zero:
            from calib.analysis.online import try_recalibrate

            rec, line = try_recalibrate(
                self.trainer.calib_store, self.trainer.calib_spec, run_id=args.run_id, step=state.global_step,
                config=self.config, out_dir=args.output_dir, domain=args.domain,
            )
            self._say(line)
        spec = self._broadcast(rec.spec if rec is not None else None)
        if spec is not None:
            self.trainer.set_calib_spec(spec)

    def on_save(self, args, state, control, **kwargs):
        if not state.is_world_process_zero:
            return
        from calib.spec import save_spec

        folder = Path(args.output_dir) / f"checkpoint-{state.global_step}"
        if folder.is_dir():
            save_spec(self.trainer.calib_spec, folder / CHECKPOINT_SPEC)

    def _broadcast(self, spec: Any) -> Any:
        """The main process's new spec on every process (the others did not analyse)."""
        acc = self.trainer.accelerator
        if acc.num_processes == 1:
            return spec
        from accelerate.utils import broadcast_object_list

        box = [spec.to_dict() if spec is not None else None]
        broadcast_object_list(box, from_process=0)
        if box[0] is None:
            return None
        from calib.spec import RewardSpec

        return RewardSpec.from_dict(box[0])

    def _say(self, line: str) -> None:
        self.lines.append(line)
        self.log(line)
