"""The columnar fast path of the native ingest (calib/ingest/fast.py) stores exactly what the per-record
path stores: the same episode ids and content hashes, the same turns, the same quarantine."""

from __future__ import annotations

import json
import random
from pathlib import Path

import pandas as pd
import pytest

import calib.ingest as ci
from calib.ingest.fast import FastNative, iter_line_chunks
from calib.sample_episodes import synthetic_records
from calib.store import Store
from calib.tools import airline_catalogue


def _ingest(path: Path, store: Path, *, fast: bool, monkeypatch, **kw):
    monkeypatch.setattr(ci, "_FAST_OFF", not fast)
    r = ci.ingest_file(Store(store), path, **kw)
    st = Store(store)
    eps = st.query("SELECT * EXCLUDE (ingest_id) FROM episodes ORDER BY source_line, episode_id")
    for col in ("messages", "info", "expected_actions"):
        eps[col] = eps[col].map(json.loads)  # the same JSON; the text may differ in spacing and key order
    turns = st.query("SELECT * FROM turns ORDER BY episode_id, turn_idx")
    q = [json.loads(x) for x in Path(r.quarantine_file).read_text().splitlines()] if r.quarantine_file else []
    return r, eps, turns, q


def _same(a: pd.DataFrame, b: pd.DataFrame) -> None:
    assert list(a.columns) == list(b.columns)
    assert len(a) == len(b)
    for col in a.columns:
        left, right = a[col].tolist(), b[col].tolist()
        assert left == right or all((x == y) or (pd.isna(x) and pd.isna(y)) for x, y in zip(left, right)), col


def _edge_records() -> list[dict]:
    call = lambda i, name, args: {"id": f"c{i}", "type": "function",
                                  "function": {"name": name, "arguments": json.dumps(args)}}
    base = {"task_id": "t1", "outcome": 1, "messages": [
        {"role": "system", "content": "sys \"quoted\" \\ back\nslash"},
        {"role": "user", "content": "héllo ✓ 😀 </script>"},
        {"role": "assistant", "content": None, "tool_calls": [call(0, "get_user_details", {"user_id": "u1"})]},
        {"role": "tool", "tool_call_id": "c0", "content": "Error: not found"},
        {"role": "assistant", "content": "", "tool_calls": [
            call(1, "update_reservation_baggages", {"reservation_id": "R1", "total_baggages": 2.0,
                                                    "nonfree_baggages": 0, "payment_id": "p"}),
            call(2, "calculate", {"expression": "1 + 2"})]},
        {"role": "tool", "tool_call_id": "c1", "name": "", "content": "{}"},
        {"role": "tool", "tool_call_id": "c2", "content": None},
        {"role": "user", "content": "thanks"},
        {"role": "user", "content": None},
        {"role": "assistant", "content": "done"}],
        "expected_actions": [{"name": "cancel_reservation", "arguments": {"reservation_id": "R1", "n": 1.0}}],
        "info": {"seed": 3, "note": "x", "ratio": 0.25, "whole": 2.0, "flag": True, "none": None}}
    native_calls = {"task_id": "t2", "run_id": "r9", "iteration": 2, "group_id": "g", "policy": "p@1",
                    "outcome": 0.3333333333333333, "success": True, "episode_id": "given-id", "messages": [
                        {"role": "user", "content": "hi"},
                        {"role": "assistant", "content": "x", "tool_calls": [
                            {"id": "k", "name": "unknown_tool", "arguments": {"b": 1, "a": [1]}}]},
                        {"role": "tool", "tool_call_id": "k", "content": "ok"},
                        {"role": "assistant", "content": "y", "tool_calls": [
                            {"id": "k2", "name": "get_user_details", "arguments": {"user_id": 5}}]},
                        {"role": "tool", "tool_call_id": "k2", "content": "  error: bad type"},
                        {"role": "assistant", "content": "z", "tool_calls": [
                            {"id": "k3", "name": "get_user_details", "arguments": {"user_id": "u", "extra": 1}}]},
                        {"role": "tool", "tool_call_id": "k3", "content": "ok"}]}
    flat_native = {**native_calls, "episode_id": "flat", "messages": native_calls["messages"][:1] + [
        {"role": "assistant", "content": "x", "tool_calls": [{"id": "k", "name": "think", "arguments": {"thought": "t"}}]},
        {"role": "tool", "tool_call_id": "k", "content": "ok"}]}
    error_run = {"task_id": "t3", "outcome": 0.0, "status": "error", "messages": [{"role": "user", "content": "q"}]}
    reward_alias = {"task_id": "t4", "reward": 1.0, "messages": [{"role": "user", "content": "q"},
                                                                 {"role": "assistant", "content": "a"}]}
    unpaired = {"task_id": "t5", "outcome": 1.0, "messages": [
        {"role": "user", "content": "q"}, {"role": "assistant", "content": "", "tool_calls": [call(0, "think", {})]},
        {"role": "user", "content": "interrupting"}]}
    bad_reward = {"task_id": "t6", "outcome": "high", "messages": base["messages"]}
    invalid_args = {"task_id": "t7", "outcome": 1.0, "messages": [
        {"role": "user", "content": "q"},
        {"role": "assistant", "content": "", "tool_calls": [{"id": "c", "type": "function",
                                                             "function": {"name": "think", "arguments": "{oops"}}]},
        {"role": "tool", "tool_call_id": "c", "content": "r"}]}
    ctl = {"task_id": "t8", "outcome": 1.0, "messages": [{"role": "user", "content": "bell\x07"},
                                                          {"role": "assistant", "content": "ok"}]}
    dup_other = {**base, "episode_id": "given-id", "task_id": "other"}
    # info as calib's own rollouts write it (per-turn lists, nested objects), and odd values in it
    nested_info = {**base, "task_id": "t9", "info": {
        "progress": [0.0, 0.5, 1.0, 1], "reward": {"db_match": True, "details": {"b": [{"z": 2.0, "a": None}], "a": {}}},
        "mixed": [1, "x", None, [2.50]], "empty": {}, "none": None, "odd key\"/\\": 1,
        "big": 123456789012345678901234567890}}
    empty_info = {**base, "task_id": "t10", "info": {}}
    # arguments that are not JSON to Python: kept with parse_error, an invalid turn; first or second call
    c = lambda i, name, raw: {"id": f"p{i}", "type": "function", "function": {"name": name, "arguments": raw}}
    parse_errors = {"task_id": "t11", "outcome": 0.0, "messages": [
        {"role": "user", "content": "q"},
        {"role": "assistant", "content": None, "tool_calls": [c(0, "get_user_details", '{"user_id": "u1"')]},
        {"role": "tool", "tool_call_id": "p0", "content": "Error: bad"},
        {"role": "assistant", "content": "", "tool_calls": [c(1, "think", '{"thought": "t"}'),
                                                            c(2, "calculate", '{"expression": 1 + 2}')]},
        {"role": "tool", "tool_call_id": "p1", "content": "ok"},
        {"role": "tool", "tool_call_id": "p2", "content": "ok"},
        {"role": "assistant", "content": "", "tool_calls": [c(4, "cancel_reservation", 'reservation_id=R1')]},
        {"role": "tool", "tool_call_id": "p4", "content": "ok"}]}
    # per-record: blank arguments ({} to Python), broken arguments with a \u escape (DuckDB reads a lone
    # surrogate escape differently from Python), a trailing comma and a nan (JSON to DuckDB, not to Python),
    # a key that a JSON path cannot name
    per_record_args = {**parse_errors, "task_id": "t12", "messages": parse_errors["messages"][:1] + [
        {"role": "assistant", "content": "", "tool_calls": [c(3, "think", "   ")]},
        {"role": "tool", "tool_call_id": "p3", "content": "ok"},
        {"role": "assistant", "content": "", "tool_calls": [c(5, "think", '{"thought": "\\u00e9"')]},
        {"role": "tool", "tool_call_id": "p5", "content": "ok"},
        {"role": "assistant", "content": "", "tool_calls": [c(6, "get_user_details", '{"user_id": "u1",}')]},
        {"role": "tool", "tool_call_id": "p6", "content": "ok"},
        {"role": "assistant", "content": "", "tool_calls": [c(7, "calculate", '{"expression": nan}')]},
        {"role": "tool", "tool_call_id": "p7", "content": "ok"},
        {"role": "assistant", "content": "", "tool_calls": [c(8, "think", json.dumps({'we"ird\\': 1}))]},
        {"role": "tool", "tool_call_id": "p8", "content": "ok"}]}
    return [base, native_calls, flat_native, error_run, reward_alias, unpaired, bad_reward, invalid_args, ctl,
            dup_other, base, nested_info, empty_info, parse_errors, per_record_args]


# lines that DuckDB's JSON reader accepts and Python's json rejects: quarantined by both paths
_LENIENT_LINES = [b'{"task_id": "tc", "outcome": 1, "messages": [{"role": "assistant", "content": "a"},]}',
                  b'{"task_id": "ti", "outcome": 1, "info": {"x": nan}, "messages": [{"role": "assistant", "content": "a"}]}',
                  b'{"task_id": "tj", "outcome": 1, "info": {"x": -Inf}, "messages": [{"role": "assistant", "content": "a"}]}']


def _write(path: Path, recs: list, extra_lines: list[bytes] = ()) -> Path:
    with open(path, "wb") as f:
        f.writelines(json.dumps(r, ensure_ascii=False).encode() + b"\n" for r in recs)
        f.write(b"\n")
        f.writelines(raw + b"\n" for raw in extra_lines)
    return path


@pytest.mark.parametrize("kind", ["synthetic", "edge"])
def test_fast_and_per_record_paths_store_the_same(tmp_path: Path, monkeypatch, kind: str):
    if kind == "synthetic":
        src = _write(tmp_path / "s.jsonl", list(synthetic_records(38, 8, seed=5, chatter=1.0)))
    else:
        src = _write(tmp_path / "e.jsonl", _edge_records(), [b"{not json", b"\xff\xfe bytes", b"[1, 2]",
                                                              b'{"task_id": "n", "outcome": NaN, "messages": []}',
                                                              *_LENIENT_LINES])
    slow = _ingest(src, tmp_path / "slow", fast=False, monkeypatch=monkeypatch)
    fast = _ingest(src, tmp_path / "fast", fast=True, monkeypatch=monkeypatch)
    rs, rf = slow[0], fast[0]
    for field in ("records", "episodes", "turns", "skipped_duplicates", "quarantined", "successes", "errors"):
        assert getattr(rs, field) == getattr(rf, field), field
    assert rs.groups == rf.groups
    _same(slow[1], fast[1])  # episodes: ids, hashes, every column
    _same(slow[2], fast[2])  # turns
    assert [(q["line"], q["reason"]) for q in slow[3]] == [(q["line"], q["reason"]) for q in fast[3]]
    if kind == "edge":
        assert rs.quarantined >= 9 and rs.skipped_duplicates == 1
        assert {q["line"] for q in fast[3]} >= {len(_edge_records()) + k for k in (6, 7, 8)}  # _LENIENT_LINES
        kinds = fast[2][fast[2].episode_id.isin(fast[1][fast[1].task_id == "t11"].episode_id)].kind.tolist()
        assert kinds == ["invalid", "invalid", "invalid"], kinds
        kinds = fast[2][fast[2].episode_id.isin(fast[1][fast[1].task_id == "t12"].episode_id)].kind.tolist()
        assert kinds == ["tool_call", "invalid", "invalid", "invalid", "tool_call"], kinds  # "   " is {}


def _random_episode(rng: random.Random, k: int) -> dict:
    """A valid episode of a random shape: users and assistants in any order, 0-3 calls per assistant
    message, null/empty/"error" contents, tool messages with and without a name."""
    text = lambda: rng.choice([None, "", "hi", "  error: x", "Error!", "ok\nline", "\u00a0ERROR z", "x error", "é ✓"])
    msgs: list[dict] = [{"role": "system", "content": text()}] if rng.random() < 0.5 else []
    cid = 0
    for _ in range(rng.randint(0, 6)):
        r = rng.random()
        if r < 0.3:
            msgs.append({"role": rng.choice(["user", "assistant"]), "content": text()})
            continue
        n = rng.randint(1, 3)
        args = lambda: json.dumps(rng.choice([{}, {"user_id": "u"}, {"expression": "1"}, {"thought": "t"}]))
        msgs.append({"role": "assistant", "content": text(), "tool_calls": [
            {"id": f"c{cid + j}", "type": "function",
             "function": {"name": rng.choice(["think", "get_user_details", "calculate"]), "arguments": args()}}
            for j in range(n)]})
        msgs += [{"role": "tool", "tool_call_id": f"c{cid + j}", "content": text(),
                  **({"name": "nm"} if rng.random() < 0.3 else {})} for j in range(n)]
        cid += n
    if not any(m["role"] == "assistant" for m in msgs):
        msgs.append({"role": "assistant", "content": text()})
    return {"task_id": f"t{k}", "outcome": rng.choice([0, 1, 0.5]), "messages": msgs}


def test_random_shapes_take_the_fast_path_and_store_the_same(tmp_path: Path, monkeypatch):
    """Turn numbers, observations, user texts, previous user texts and tool errors (built in Arrow on the
    fast path) match the per-record path on episodes of random shapes."""
    rng = random.Random(7)
    src = _write(tmp_path / "r.jsonl", [_random_episode(rng, k) for k in range(300)])
    fast_path = FastNative(airline_catalogue(), cli_run=None, default_run="x")
    try:
        (lines, texts, _), = list(iter_line_chunks(src))
        assert fast_path.run(lines, texts).slow == []
    finally:
        fast_path.close()
    slow = _ingest(src, tmp_path / "slow", fast=False, monkeypatch=monkeypatch)
    fast = _ingest(src, tmp_path / "fast", fast=True, monkeypatch=monkeypatch)
    assert slow[0].episodes == fast[0].episodes == 300
    _same(slow[1], fast[1])
    _same(slow[2], fast[2])


def test_the_common_shapes_take_the_fast_path(tmp_path: Path):
    """Synthetic episodes and the well-formed edge records are handled in SQL (with nested info, and
    calls whose arguments are not JSON); nested arguments and the arguments Python and DuckDB read
    differently fall back."""
    edge = _edge_records()
    recs = list(synthetic_records(10, 5, seed=1)) + [edge[0], edge[2], edge[11], edge[12], edge[13], edge[7], edge[1],
                                                   edge[14]]
    src = _write(tmp_path / "x.jsonl", recs)
    fast = FastNative(airline_catalogue(), cli_run=None, default_run="x")
    try:
        (lines, texts, bad), = list(iter_line_chunks(src))
        chunk = fast.run(lines, texts)
    finally:
        fast.close()
    assert bad == [] and chunk.slow == [57, 58] and chunk.episodes.num_rows == 56  # edge[1] has {"a": [1]}
