"""Online recalibration (issue 24, item 1): the same analysis as ``calib analyze`` on the episodes of the
last W training steps, weights moved toward what it finds, thin evidence left alone, every version
recorded and loadable."""

from __future__ import annotations

import numpy as np
import pytest

from calib.analysis.online import (
    RecalibrationConfig,
    decide_weights,
    history,
    recalibrate,
    spec_path,
    try_recalibrate,
)
from calib.errors import UsageError
from calib.spec import RewardSpec, load_spec
from calib.store import Store

SIGNALS = '''
def marker(ep, turn):
    return float(ep["info"]["marker"][turn["turn_idx"]])


def coin(ep, turn):
    return float(ep["info"]["coin"][turn["turn_idx"]])
'''


@pytest.fixture
def signals(tmp_path, monkeypatch) -> tuple[str, str]:
    (tmp_path / "drift_signals.py").write_text(SIGNALS)
    monkeypatch.syspath_prepend(str(tmp_path))
    return "drift_signals:marker", "drift_signals:coin"


def _episode(run: str, step: int, task: int, k: int, success: bool, marker: list[float], coin: list[float]) -> dict:
    msgs = [{"role": "system", "content": "policy"}]
    for t in range(len(marker)):
        msgs += [{"role": "user", "content": f"u{t}"}, {"role": "assistant", "content": f"a{t}"}]
    group = f"{run}/0/step{step}/t{task}"
    return {"episode_id": f"{group}/{k}", "run_id": run, "iteration": 0, "task_id": f"t{task}", "group_id": group,
            "outcome": float(success), "success": success, "messages": msgs,
            "info": {"step": step, "marker": marker, "coin": coin}}


def drift_store(path, *, steps: int = 20, drift_at: int = 11, groups: int = 5, size: int = 6, seed: int = 0,
                run: str = "r") -> Store:
    """Training episodes of run ``r``: ``marker`` fires on the turns of successes before ``drift_at``
    and on the turns of failures from then on; ``coin`` is noise throughout."""
    rng = np.random.default_rng(seed)
    store = Store(path)
    for step in range(1, steps + 1):
        recs = []
        for task in range(groups):
            outcomes = rng.random(size) < 0.5
            outcomes[0], outcomes[1] = True, False  # every group informative
            for k, ok in enumerate(outcomes):
                good = bool(ok) if step < drift_at else not ok
                marker = [float(rng.random() < (0.8 if good else 0.2)) for _ in range(3)]
                coin = [float(rng.random() < 0.5) for _ in range(3)]
                recs.append(_episode(run, step, task, k, bool(ok), marker, coin))
        store.add_episodes(recs, source=f"train:{run}:step{step}")
    return store


def _spec(marker: str, coin: str, w_marker: float = 0.3, w_coin: float = 0.2) -> RewardSpec:
    return RewardSpec.from_dict({"name": "drift", "advantage": {"mode": "gtpo_hybrid"},
                                 "turn_rewards": [{"signal": marker, "weight": w_marker},
                                                  {"signal": coin, "weight": w_coin}]})


def test_planted_drift_is_flipped_within_two_windows(tmp_path, signals):
    marker, coin = signals
    store = drift_store(tmp_path / "s")
    cfg = RecalibrationConfig(every=5, window=5, blend=0.5, n_boot=200)
    spec = _spec(marker, coin)
    weights = {}
    for step in (5, 10, 15, 20):
        rec = recalibrate(store, spec, run_id="r", step=step, config=cfg, out_dir=tmp_path / "out")
        spec = rec.spec
        weights[step] = spec.turn_weights()[marker]
        assert rec.first_step == step - 4 and rec.episodes == 5 * 30
    assert weights[5] > 0 and weights[10] > 0  # before the drift: kept
    assert weights[20] < 0, weights  # the drift starts at step 11: flipped by the second window after it
    assert weights[15] < weights[10]


def test_thin_evidence_keeps_the_weight(tmp_path, signals):
    marker, coin = signals
    store = drift_store(tmp_path / "s", steps=5)
    rec = recalibrate(store, _spec(marker, coin), run_id="r", step=5,
                      config=RecalibrationConfig(every=5, window=5, blend=1.0, n_boot=200))
    coin_change = next(c for c in rec.changes if c["signal"] == coin)
    assert coin_change["decision"].startswith("kept (thin")  # noise: its interval covers 0.5
    assert rec.spec.turn_weights()[coin] == 0.2
    # too few informative groups: nothing moves, even a signal with a clear effect
    rec = recalibrate(store, _spec(marker, coin), run_id="r", step=5,
                      config=RecalibrationConfig(every=5, window=1, blend=1.0, min_groups=6, n_boot=100))
    assert all(c["decision"].startswith("kept (thin: 5 informative groups") for c in rec.changes)
    assert rec.spec.turn_weights() == {marker: 0.3, coin: 0.2}
    assert "no weight changed" in rec.log_line()


def test_every_version_is_recorded_and_loads(tmp_path, signals):
    marker, coin = signals
    store = drift_store(tmp_path / "s", steps=10)
    cfg = RecalibrationConfig(every=5, window=5, n_boot=100)
    spec = _spec(marker, coin)
    for step in (5, 10):
        rec = recalibrate(store, spec, run_id="r", step=step, config=cfg, out_dir=tmp_path / "out")
        assert rec.path == spec_path(tmp_path / "out", step)
        loaded = load_spec(rec.path)
        assert loaded.turn_weights() == rec.spec.turn_weights()
        prov = loaded.provenance.model_dump()["recalibration"]
        assert prov["step"] == step and prov["window"] == [step - 4, step]
        assert prov["version"] == (1 if step == 5 else 2)
        spec = loaded
    h = history(store, "r")
    assert sorted(set(h["step"])) == [5, 10] and set(h["signal"]) == {marker, coin}
    last = h[h["step"] == 10].set_index("signal")["weight_after"].to_dict()
    assert last == spec.turn_weights()


def test_an_empty_window_is_skipped_with_a_reason(tmp_path, signals):
    marker, coin = signals
    store = drift_store(tmp_path / "s", steps=3)
    rec, line = try_recalibrate(store, _spec(marker, coin), run_id="r", step=40,
                                config=RecalibrationConfig(every=10, window=5))
    assert rec is None and "skipped" in line


def test_decide_weights_is_the_documented_rule():
    rows = {"a": {"verdict": "flip", "proposed_weight": -0.3, "group_auc": 0.2, "group_auc_ci": [0.1, 0.3],
                  "informative_groups": 8},
            "b": {"verdict": "zero", "proposed_weight": 0.0, "group_auc": 0.52, "group_auc_ci": [0.4, 0.6],
                  "informative_groups": 8},
            "c": {"verdict": "keep", "proposed_weight": 0.3, "group_auc": 0.9, "group_auc_ci": [0.8, 0.95],
                  "informative_groups": 2}}
    out = {c["signal"]: c for c in decide_weights(rows, {"a": 0.3, "b": 0.1, "c": 0.0, "d": 0.2}, blend=0.5,
                                                  min_groups=3)}
    assert out["a"]["weight_after"] == pytest.approx(0.0) and out["a"]["decision"] == "updated"
    assert out["b"]["weight_after"] == 0.1 and "covers no effect" in out["b"]["decision"]
    assert out["c"]["weight_after"] == 0.0 and "2 informative groups" in out["c"]["decision"]
    assert out["d"]["weight_after"] == 0.2 and "not measured" in out["d"]["decision"]


@pytest.mark.parametrize("kw", [{"every": -1}, {"window": 0}, {"blend": 0.0}, {"blend": float("nan")},
                                {"min_groups": 0}, {"rule": "magic"}])
def test_config_refuses_bad_values(kw):
    with pytest.raises(UsageError):
        RecalibrationConfig(**kw)


# ------------------------------------------------------------------------ the trainer's callback


class _Acc:
    num_processes = 1


class _FakeTrainer:
    """What RecalibrationCallback touches on MultiTurnGRPOTrainer."""

    def __init__(self, spec, store):
        self.calib_spec, self.calib_store, self.accelerator = spec, store, _Acc()
        self.used: list[tuple[int, dict]] = []

    def set_calib_spec(self, spec):
        self.calib_spec = spec


class _State:
    def __init__(self, step):
        self.global_step, self.is_world_process_zero = step, True


def _run(trainer, cb, args, steps, save_every=5):
    for step in steps:
        trainer.used.append((step, trainer.calib_spec.turn_weights()))  # the weights that reward this step
        cb.on_step_end(args, _State(step), None)
        if step % save_every == 0:
            (args.output_dir / f"checkpoint-{step}").mkdir(parents=True, exist_ok=True)
            cb.on_save(args, _State(step), None)


def test_callback_swaps_weights_between_steps_and_resumes_bit_identically(tmp_path, signals):
    from types import SimpleNamespace

    from trainer.recalibration import CHECKPOINT_SPEC, RecalibrationCallback

    marker, coin = signals
    store = drift_store(tmp_path / "s")
    cfg = RecalibrationConfig(every=5, window=5, blend=0.5, n_boot=100)
    lines: list[str] = []

    def fresh(out):
        args = SimpleNamespace(output_dir=out, run_id="r", domain="airline-mini")
        t = _FakeTrainer(_spec(marker, coin), store)
        return t, RecalibrationCallback(t, cfg, log=lines.append), args

    # uninterrupted: 20 steps
    t1, cb1, a1 = fresh(tmp_path / "full")
    _run(t1, cb1, a1, range(1, 21))
    used = dict(t1.used)
    assert used[6] == load_spec(spec_path(a1.output_dir, 5)).turn_weights()  # step 6 is rewarded by step 5's
    assert used[5] == used[1]  # a recalibration applies from the next step
    assert used[20][marker] != used[1][marker]
    assert len([x for x in lines if x.startswith("recalibration at step")]) == 4

    # killed after checkpoint-10, resumed by a new process that starts from the original spec
    t2, cb2, a2 = fresh(tmp_path / "killed")
    _run(t2, cb2, a2, range(1, 11))
    t3, cb3, a3 = fresh(tmp_path / "killed")
    cb3.on_train_begin(a3, _State(10), None)
    assert t3.calib_spec.turn_weights() == t2.calib_spec.turn_weights()
    _run(t3, cb3, a3, range(11, 21))
    assert t3.calib_spec.turn_weights() == t1.calib_spec.turn_weights()  # bit-identical
    for step in (15, 20):
        a = (a1.output_dir / f"checkpoint-{step}" / CHECKPOINT_SPEC).read_text()
        b = (a3.output_dir / f"checkpoint-{step}" / CHECKPOINT_SPEC).read_text()
        strip = lambda s: [x for x in s.splitlines() if "created" not in x]
        assert strip(a) == strip(b)


def test_the_loop_passes_recalibration_to_each_iterations_training(tmp_path, monkeypatch):
    """``calib loop`` (hf family) trains each iteration with the loop config's recalibration options."""
    from pathlib import Path

    import trainer.run as run_mod
    from trainer.hf_family import HFFamily
    from trainer.loop_config import LoopConfig

    cfg = LoopConfig.model_validate({"family": "hf", "domain": "airline-mini", "workdir": str(tmp_path),
                                     "train": {"recalibrate_every": 5, "recalibration_window": 7,
                                               "recalibration_blend": 0.25, "recalibration_rule": "joint"}})
    seen = {}

    class Stop(Exception):
        pass

    def fake_run_train(job, **kw):
        seen["job"] = job
        raise Stop

    monkeypatch.setattr(run_mod, "run_train", fake_run_train)
    with pytest.raises(Stop):
        HFFamily(cfg, tmp_path).train(0, Path("spec.yaml"), Store(tmp_path / "store"), seed=0)
    job = seen["job"]
    assert (job.recalibrate_every, job.recalibration_window, job.recalibration_blend, job.recalibration_rule) == \
        (5, 7, 0.25, "joint")
    with pytest.raises(Exception, match="recalibration_blend"):
        LoopConfig.model_validate({"family": "hf", "train": {"recalibration_blend": 0}})


def test_report_shows_calibration_over_time_and_keeps_hostile_text_inert(tmp_path, signals):
    import pandas as pd

    from calib.analysis.online import HISTORY_TABLE
    from calib.report import write_report

    marker, coin = signals
    run = "r<script>alert(1)</script>"
    store = drift_store(tmp_path / "s", steps=10, run=run)
    spec = _spec(marker, coin)
    for step in (5, 10):
        spec = recalibrate(store, spec, run_id=run, step=step, config=RecalibrationConfig(every=5, window=5,
                                                                                            n_boot=100),
                           out_dir=tmp_path / "out").spec
    hostile = "<img src=x onerror=alert(1)> $x^2$ \u202e"
    store.write_table(HISTORY_TABLE, pd.DataFrame([
        {"run_id": run, "step": s, "first_step": s, "signal": hostile, "weight_before": 0.0, "proposed": 0.1,
         "weight_after": w, "verdict": v, "decision": "updated", "group_auc": 0.6, "ci_lo": 0.55, "ci_hi": 0.7,
         "informative_groups": 5, "episodes": 150, "spec_path": "x"} for s, w, v in ((5, 0.1, "keep"), (10, -0.1, "flip"))]))
    from calib.report.render import ReportConfig

    path = write_report(store, tmp_path / "report.html", config=ReportConfig(max_episodes=0)).path
    page = path.read_text()
    assert 'id="recalibration"' in page and page.count('aria-label="recalibration-') == 1
    assert "<script>alert(1)</script>" not in page and "<img src=x" not in page
    assert "run r&lt;script&gt;alert(1)&lt;/script&gt;" in page
    assert "x^2" in page  # the legend label is text, $ kept literal (not typeset as math)


def test_the_log_line_shows_a_hostile_name_as_text():
    from calib.analysis.online import Recalibration

    spec = RewardSpec.from_dict({"turn_rewards": [{"signal": "gold_match", "weight": 0.1}]})
    rec = Recalibration(step=3, first_step=1, spec=spec, episodes=8, informative_groups=2, changes=[
        {"signal": "x\n\x1b[2Jy\u202e", "weight_before": 0.0, "weight_after": 0.1, "verdict": "keep",
         "decision": "updated"}])
    line = rec.log_line()
    assert "\n" not in line and "\x1b" not in line and "\u202e" not in line
    assert "x\\n\\x1b[2Jy\\u202e +0.000 -> +0.100 (keep)" in line
