"""Custom signals behave the same in training (trainer/rewards.py) and in analysis (calib/signals/compute.py).

Both accept exactly a finite number or None from a custom ``(episode, turn)`` signal, and both turn a
bad value or an exception into a CalibError that names the signal, the episode and the turn.
"""

from __future__ import annotations

import textwrap

import numpy as np
import pytest

from calib.errors import CalibError

SIGNALS = textwrap.dedent(
    """
    import numpy as np

    def half(ep, turn):
        return 0.5

    def flag(ep, turn):
        return turn["turn_idx"] == 0

    def nothing(ep, turn):
        return None

    def np_float(ep, turn):
        return np.float64(0.25)

    def text(ep, turn):
        return "0.5"

    def not_a_number(ep, turn):
        return float("nan")

    def infinite(ep, turn):
        return float("inf")

    def a_list(ep, turn):
        return [1.0]

    def broken(ep, turn):
        raise ZeroDivisionError("boom")
    """
)
ACCEPTED = {"half": [0.5, 0.5], "flag": [1.0, 0.0], "nothing": [None, None], "np_float": [0.25, 0.25]}
REFUSED = ["text", "not_a_number", "infinite", "a_list", "broken"]

EPISODE = {
    "episode_id": "e1",
    "run_id": "r",
    "task_id": "t",
    "outcome": 1.0,
    "success": True,
    "messages": [
        {"role": "user", "content": "cancel"},
        {"role": "assistant", "content": None,
         "tool_calls": [{"id": "c", "name": "get_user_details", "arguments": {"user_id": "x"}}]},
        {"role": "tool", "tool_call_id": "c", "name": "get_user_details", "content": "{}"},
        {"role": "assistant", "content": "Done."},
    ],
}


@pytest.fixture
def module(tmp_path, monkeypatch) -> str:
    (tmp_path / "parity_signals.py").write_text(SIGNALS)
    monkeypatch.syspath_prepend(str(tmp_path))
    return "parity_signals"


def _training(name: str) -> np.ndarray:
    from calib.envs import load_domain
    from trainer.rewards import episode_turn_rewards

    return episode_turn_rewards(EPISODE, {name: 1.0}, load_domain("airline-mini").catalogue)


def _analysis(tmp_path, name: str) -> list[float | None]:
    from calib.envs import load_domain
    from calib.signals.compute import compute_signals
    from calib.store import Store

    store = Store(tmp_path / "store")
    if store.count() == 0:
        store.add_episodes([EPISODE], source="parity")
    compute_signals(store, [name], catalogue=load_domain("airline-mini").catalogue)
    df = store.query("SELECT turn_idx, value FROM signals WHERE signal = ? ORDER BY turn_idx", [name])
    return [None if np.isnan(v) else float(v) for v in df.value]


@pytest.mark.parametrize("fn", sorted(ACCEPTED))
def test_accepted_values_agree(fn, module, tmp_path):
    name = f"{module}:{fn}"
    want = ACCEPTED[fn]
    assert _analysis(tmp_path, name) == want
    np.testing.assert_allclose(_training(name), [0.0 if v is None else v for v in want])


@pytest.mark.parametrize("fn", REFUSED)
def test_refused_values_fail_alike_with_signal_episode_and_turn(fn, module, tmp_path):
    name = f"{module}:{fn}"
    with pytest.raises(CalibError) as analysis:
        _analysis(tmp_path, name)
    with pytest.raises(CalibError) as training:
        _training(name)
    for e in (analysis.value, training.value):
        msg = str(e)
        assert name in msg and "'e1'" in msg and "turn 0" in msg, msg
