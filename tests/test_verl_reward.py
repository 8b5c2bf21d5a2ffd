"""The verl reward side gives the per-turn signal values ``calib analyze`` gives (issue 26, acceptance 3).

Trajectories in verl's dump format (decoded prompt and response text): the committed dumps that verl's
own code wrote (tests/with_verl/verl_dumps.py) and airline episodes of the shipped sample rendered as
verl decodes a chatml model's multi-turn rollout (special tokens stripped, hermes tool calls, Qwen's
``<tool_response>`` form). Each is ingested with ``calib ingest --format verl`` and analysed with
``calib analyze``; ``trainer.verl.reward`` computes the same signals from the text alone, and the two
must agree on every turn of every episode (a value the analysis leaves out is NaN on the reward side).
Then the spec's weighted turn rewards go through the token layout and back unchanged.
"""

from __future__ import annotations

import json
import shutil
from pathlib import Path

import numpy as np
import pytest
import torch
from typer.testing import CliRunner

from calib.cli import app
from calib.signals import BUILTIN_SIGNALS
from calib.spec import load_spec
from calib.store import Store
from trainer.verl import layout, reward

ROOT = Path(__file__).resolve().parents[1]
VERL_DUMPS = ROOT / "tests" / "data" / "verl" / "rollouts"
SAMPLE = ROOT / "data" / "sample_rollouts.jsonl"
runner = CliRunner()


def _render(messages: list[dict]) -> tuple[str, str]:
    """A native episode as verl's dump shows it: (prompt up to the first assistant turn, response)."""
    parts = []
    for m in messages:
        if m["role"] == "tool":
            parts.append(f"user\n<tool_response>\n{m.get('content') or ''}\n</tool_response>\n")
            continue
        text = m.get("content") or ""
        for c in m.get("tool_calls") or []:
            fn = c.get("function") or c
            args = fn.get("arguments")
            args = json.loads(args) if isinstance(args, str) else args
            text += ("\n" if text else "") + "<tool_call>\n" + json.dumps({"name": fn["name"], "arguments": args}) + \
                "\n</tool_call>"
        parts.append(f"{m['role']}\n{text}\n")
    first = next(i for i, m in enumerate(messages) if m["role"] == "assistant")
    prompt = "".join(parts[:first]) + "assistant\n"
    response = "".join(parts[first:])[len("assistant\n"):].rstrip("\n")
    return prompt, response


def _sample_dump(folder: Path, n: int = 6) -> None:
    folder.mkdir(parents=True)
    lines = []
    with open(SAMPLE) as f:
        for k, line in zip(range(n), f):
            ep = json.loads(line)
            prompt, response = _render(ep["messages"])
            lines.append(json.dumps({"input": prompt, "output": response, "gts": None, "score": ep["outcome"],
                                     "step": 3, "uid": f"task-{ep['task_id']}"}))
    (folder / "3.jsonl").write_text("\n".join(lines) + "\n")


def _analysed(tmp_path: Path, folder: Path) -> tuple[Store, dict[tuple[int, int], str]]:
    store = tmp_path / "store"
    res = runner.invoke(app, ["ingest", str(folder), "--format", "verl", "--store", str(store), "--run-id", "v"])
    assert res.exit_code == 0, res.output
    res = runner.invoke(app, ["analyze", "--store", str(store), "--out", str(tmp_path / "out")])
    assert res.exit_code == 0, res.output
    st = Store(store, create=False)
    eps = st.query("select episode_id, info from episodes")
    ids = {}
    for eid, info in zip(eps["episode_id"], eps["info"]):
        info = json.loads(info)
        ids[(info["step"], info["sample_index"])] = eid
    return st, ids


def _store_values(st: Store, eid: str, n_turns: int) -> dict[str, np.ndarray]:
    rows = st.query("select signal, turn_idx, value from signals where episode_id = ? and turn_idx is not null", [eid])
    out = {s: np.full(n_turns, np.nan) for s in BUILTIN_SIGNALS}
    for s, t, v in zip(rows["signal"], rows["turn_idx"], rows["value"]):
        if s in out and v is not None and not (isinstance(v, float) and np.isnan(v)):
            out[s][int(t)] = float(v)
    return out


def _dump_lines(folder: Path):
    for f in sorted(folder.glob("*.jsonl")):
        for k, line in enumerate(f.read_text().splitlines()):
            yield int(f.stem), k + 1, json.loads(line)


def _check_parity(tmp_path: Path, folder: Path) -> int:
    st, ids = _analysed(tmp_path, folder)
    turns = st.query("select episode_id, count(*) as n from turns group by episode_id")
    n_turns = dict(zip(turns["episode_id"], turns["n"]))
    checked = 0
    for step, line, rec in _dump_lines(folder):
        eid = ids.get((step, line))
        if eid is None:
            continue  # quarantined by the ingest (the reward side refuses the same text)
        mine = reward.turn_signal_values(rec["input"], rec["output"], list(BUILTIN_SIGNALS))
        theirs = _store_values(st, eid, int(n_turns[eid]))
        for s in BUILTIN_SIGNALS:
            assert mine[s].shape == theirs[s].shape, (s, mine[s], theirs[s])
            assert np.allclose(mine[s], theirs[s], equal_nan=True, atol=1e-9), (step, line, s, mine[s], theirs[s])
        checked += 1
    return checked


def test_reward_side_matches_calib_analyze_on_dumps_verl_wrote(tmp_path):
    folder = tmp_path / "rollouts"
    shutil.copytree(VERL_DUMPS, folder)
    assert _check_parity(tmp_path, folder) >= 8


def test_reward_side_matches_calib_analyze_on_airline_trajectories(tmp_path):
    folder = tmp_path / "rollouts"
    _sample_dump(folder)
    assert _check_parity(tmp_path, folder) == 6
    # the airline tools are known: the comparison covers non-trivial values
    vals = [reward.turn_signal_values(r["input"], r["output"], ["read_only", "state_change", "message_only"])
            for _, _, r in _dump_lines(folder)]
    assert sum(np.nansum(v["read_only"]) for v in vals) > 0 and sum(np.nansum(v["message_only"]) for v in vals) > 0


def test_turn_rewards_go_through_the_token_layout_unchanged(tmp_path):
    folder = tmp_path / "rollouts"
    _sample_dump(folder, n=3)
    spec = load_spec("preset:paper-v5-naive")
    rows, outcomes, masks = [], [], []
    for _, _, rec in _dump_lines(folder):
        r = reward.turn_rewards(rec["input"], rec["output"], spec)
        values = reward.turn_signal_values(rec["input"], rec["output"], list(spec.turn_weights()))
        want = sum(w * np.where(np.isnan(values[s]), 0.0, values[s]) for s, w in spec.turn_weights().items())
        assert np.allclose(r, want)
        rows.append(r)
        outcomes.append(rec["score"])
        masks.append([1, 1, 1, 0, 0] * len(r))  # each turn: 3 assistant tokens, then 2 tool tokens
    width = max(len(m) for m in masks)
    mask = torch.tensor([m + [0] * (width - len(m)) for m in masks])
    tlr = reward.token_level_rewards(rows, outcomes, spec, mask.clone())
    outcome, back, _ = layout.unpack(tlr.to(torch.float64), mask)
    assert np.allclose(outcome, [spec.outcome.weight * o for o in outcomes])
    for a, b in zip(back, rows):
        assert np.allclose(a, b, atol=1e-6)
    bad = mask.clone()
    bad[0, 3:5] = 1  # turns 0 and 1 merged: one turn fewer than the text has
    with pytest.raises(layout.LayoutError, match="turn rewards for"):
        reward.token_level_rewards(rows, outcomes, spec, bad)
