"""calib ingest + the store: tau-bench import, round trip, bad input, atomicity, idempotency."""

from __future__ import annotations

import json
import math
import os
import signal
import subprocess
import sys
import time
from pathlib import Path

import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st
from typer.testing import CliRunner

from calib.cli import app
from calib.ingest import ingest_file
from calib.records import canonical_json, normalize_episode
from calib.sample_episodes import synthetic_records
from calib.store import Store
from calib.store.ops import export, query

runner = CliRunner()


def _write_jsonl(path: Path, records: list) -> Path:
    with open(path, "w", encoding="utf-8") as f:
        f.writelines((r if isinstance(r, str) else json.dumps(r)) + "\n" for r in records)
    return path


# ----------------------------------------------------------------------------- tau-bench import


def test_taubench_sample_ingest(taubench_sample: Path, store_dir: Path):
    st_ = Store(store_dir)
    r = ingest_file(st_, taubench_sample)
    assert r.format == "taubench"
    assert (r.episodes, r.successes, r.n_groups, r.quarantined) == (10, 5, 10, 0)

    source = json.loads(taubench_sample.read_text())
    eps = st_.query("SELECT episode_id, task_id, n_turns, outcome, expected_actions FROM episodes").set_index("task_id")
    turns = st_.query("SELECT e.task_id, t.turn_idx, t.kind, t.tool_name, t.tool_args, t.is_write "
                      "FROM turns t JOIN episodes e USING (episode_id) ORDER BY e.task_id, t.turn_idx")
    assert len(eps) == 10
    for rec in source:
        tid = str(rec["task_id"])
        assistant = [m for m in rec["traj"] if m["role"] == "assistant"]
        assert eps.loc[tid, "n_turns"] == len(assistant)
        assert eps.loc[tid, "outcome"] == rec["reward"]
        got = turns[turns.task_id == tid].reset_index(drop=True)
        for i, m in enumerate(assistant):
            calls = m.get("tool_calls") or []
            if calls:
                fn = calls[0]["function"]
                assert got.loc[i, "tool_name"] == fn["name"]
                assert json.loads(got.loc[i, "tool_args"]) == json.loads(fn["arguments"])
                assert got.loc[i, "kind"] == "tool_call"
            else:
                assert got.loc[i, "kind"] == "message"
                assert not isinstance(got.loc[i, "tool_name"], str)  # NULL (pandas shows NaN)
        exp = json.loads(eps.loc[tid, "expected_actions"])
        assert [a["name"] for a in exp] == [a["name"] for a in rec["info"]["reward_info"]["actions"]]
    # is_write comes from the airline catalogue
    writes = set(turns.loc[turns.is_write == True, "tool_name"])
    assert writes and writes <= {"book_reservation", "cancel_reservation", "update_reservation_flights",
                                 "update_reservation_baggages", "update_reservation_passengers", "send_certificate"}
    assert set(turns.loc[turns.is_write == False, "tool_name"]) >= {"get_user_details"}


def test_reingest_is_idempotent(taubench_sample: Path, store_dir: Path):
    st_ = Store(store_dir)
    ingest_file(st_, taubench_sample)
    again = ingest_file(st_, taubench_sample)
    assert again.episodes == 0 and again.skipped_duplicates == 10
    assert st_.count() == 10
    assert st_.count("turns") == st_.query("SELECT sum(n_turns) AS n FROM episodes").n[0]


# ----------------------------------------------------------------------------- round trip (property)

_text = st.text(st.characters(blacklist_categories=("Cs",)), max_size=40)
_scalar = st.one_of(st.integers(-10**6, 10**6), st.booleans(), _text, st.none(),
                    st.floats(allow_nan=False, allow_infinity=False, width=32))
_args = st.dictionaries(st.text("abcdefgh_", min_size=1, max_size=8),
                        st.one_of(_scalar, st.lists(_scalar, max_size=3)), max_size=4)


@st.composite
def episodes(draw):
    msgs = [{"role": "system", "content": draw(_text)}, {"role": "user", "content": draw(_text)}]
    for t in range(draw(st.integers(1, 5))):
        if draw(st.booleans()):
            calls = [{"id": f"c{t}_{j}", "name": draw(st.sampled_from(["get_user_details", "cancel_reservation",
                                                                       "my_tool"])),
                      "arguments": draw(_args)} for j in range(draw(st.integers(1, 2)))]
            msgs.append({"role": "assistant", "content": draw(st.one_of(st.none(), _text)), "tool_calls": calls})
            for c in calls:
                msgs.append({"role": "tool", "tool_call_id": c["id"], "name": c["name"], "content": draw(_text)})
        else:
            msgs.append({"role": "assistant", "content": draw(_text)})
            msgs.append({"role": "user", "content": draw(_text)})
    return {
        "run_id": draw(st.sampled_from(["r1", "r2"])),
        "iteration": draw(st.integers(0, 3)),
        "task_id": draw(st.sampled_from(["a/1", "a/2", "b/3"])),
        "policy": draw(st.one_of(st.none(), _text)),
        "outcome": draw(st.floats(0, 1, allow_nan=False)),
        "messages": msgs,
        "expected_actions": [{"name": "cancel_reservation", "arguments": draw(_args)}],
        "info": {"k": draw(_scalar)},
    }


@settings(max_examples=25, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture])
@given(eps=st.lists(episodes(), min_size=1, max_size=6))
def test_roundtrip_jsonl_ingest_export(tmp_path_factory, eps):
    d = tmp_path_factory.mktemp("rt")
    src = _write_jsonl(d / "in.jsonl", eps)
    st_ = Store(d / "store")
    r = ingest_file(st_, src)
    expected = {}
    for e in eps:
        n = normalize_episode(e)
        expected[n["episode_id"]] = n
    assert r.episodes == len(expected) and r.quarantined == 0
    out = d / "out.jsonl"
    export(st_, "jsonl", out)
    got = {json.loads(line)["episode_id"]: json.loads(line) for line in out.read_text().split("\n") if line}
    assert set(got) == set(expected)
    for eid, exp in expected.items():
        assert canonical_json(normalize_episode(got[eid])) == canonical_json(exp)
    # and the export ingests back as the same episodes: nothing new
    again = ingest_file(st_, out)
    assert again.episodes == 0 and again.skipped_duplicates == len(expected)


# ----------------------------------------------------------------------------- bad input


def _good(i: int) -> dict:
    return {"run_id": "fz", "task_id": f"t{i % 3}", "outcome": float(i % 2), "episode_id": f"good-{i}",
            "messages": [{"role": "user", "content": f"hello {i}"},
                         {"role": "assistant", "content": None,
                          "tool_calls": [{"id": "c1", "function": {"name": "get_user_details",
                                                                   "arguments": json.dumps({"user_id": f"u{i}"})}}]},
                         {"role": "tool", "tool_call_id": "c1", "content": "{}"},
                         {"role": "assistant", "content": "done"}]}


def _fuzz_corpus(path: Path) -> tuple[int, dict[int, str]]:
    """Good records interleaved with 12 kinds of bad ones; returns (#good, {line: expected reason fragment})."""
    bad: list[tuple[bytes, str]] = [
        (b'{"run_id": "fz", "task_id": "t", "outcome": 1, "messages": [{"role": "us', "invalid JSON"),
        (json.dumps({**_good(100), "outcome": "high"}).encode(), "outcome should be a number"),
        (json.dumps({k: v for k, v in _good(101).items() if k != "task_id"}).encode(), "task_id"),
        (json.dumps({**_good(102), "messages": [{"role": "wizard", "content": "x"}]}).encode(), "unknown role"),
        (json.dumps({**_good(103), "messages": _good(103)["messages"][:2]}).encode(), "has no tool result"),
        (b'{"run_id": "fz", "task_id": "t", "outcome": 1, "messages": [{"role": "user", "content": "caf\xe9"}]}',
         "not valid UTF-8"),
        (json.dumps({**_good(104), "messages": [{"role": "user", "content": "x" * 10_500_000},
                                                {"role": "assistant", "content": "ok"}]}).encode(),
         "characters long"),
        (json.dumps({**_good(0), "outcome": 0.5}).encode(), "duplicate episode_id"),
        (b'{"run_id": "fz", "task_id": "t", "outcome": NaN, "messages": []}', "NaN"),
        (json.dumps(["not", "an", "object"]).encode(), "should be a JSON object"),
        (json.dumps({**_good(105), "messages": "hello"}).encode(), "messages should be a non-empty list"),
        (json.dumps({**_good(106), "messages": [{"role": "user", "content": 5}, {"role": "assistant",
                                                                               "content": "x"}]}).encode(),
         "should be a string"),
        (json.dumps({**_good(107), "success": "yes"}).encode(), "success should be true or false"),
        (json.dumps({**_good(108), "messages": [{"role": "tool", "content": "orphan"},
                                                {"role": "assistant", "content": "x"}]}).encode(),
         "without a preceding tool call"),
    ]
    lines: list[bytes] = []
    expected: dict[int, str] = {}
    n_good = 0
    for i in range(30):
        lines.append(json.dumps(_good(i)).encode())
        n_good += 1
        if i < len(bad):
            lines.append(bad[i][0])
            expected[len(lines)] = bad[i][1]
    path.write_bytes(b"\n".join(lines) + b"\n")
    return n_good, expected


def test_fuzz_corpus_good_ingested_bad_quarantined(tmp_path: Path):
    src = tmp_path / "fuzz.jsonl"
    n_good, expected = _fuzz_corpus(src)
    st_ = Store(tmp_path / "store")
    r = ingest_file(st_, src)
    assert r.episodes == n_good
    assert r.quarantined == len(expected)
    q = [json.loads(line) for line in Path(r.quarantine_file).read_text().splitlines()]
    by_line = {e["line"]: e for e in q}
    assert set(by_line) == set(expected)
    for line, fragment in expected.items():
        assert by_line[line]["file"] == str(src)
        assert fragment.lower() in by_line[line]["reason"].lower(), (line, by_line[line]["reason"])
    ids = set(st_.query("SELECT episode_id FROM episodes").episode_id)
    assert ids == {f"good-{i}" for i in range(30)}


def test_cli_bad_input_no_traceback_and_exit_codes(tmp_path: Path):
    src = tmp_path / "fuzz.jsonl"
    _fuzz_corpus(src)
    store = tmp_path / "store"
    res = runner.invoke(app, ["ingest", str(src), "--store", str(store)])
    assert res.exit_code == 0, res.output
    assert "quarantined" in res.output and "Traceback" not in res.output

    empty = tmp_path / "empty.jsonl"
    empty.write_text("")
    res = runner.invoke(app, ["ingest", str(empty), "--store", str(store)])
    assert res.exit_code == 1 and "nothing was ingested" in res.output and "Traceback" not in res.output

    res = runner.invoke(app, ["ingest", str(tmp_path / "missing.jsonl"), "--store", str(store)])
    assert res.exit_code == 2 and "no such file" in res.output

    res = runner.invoke(app, ["ingest", str(src), "--store", str(store), "--format", "xml"])
    assert res.exit_code == 2 and "unknown format" in res.output

    strict_store = tmp_path / "strict"
    res = runner.invoke(app, ["ingest", str(src), "--store", str(strict_store), "--strict"])
    assert res.exit_code == 1 and "--strict" in res.output and "Traceback" not in res.output
    assert Store(strict_store).count() == 0


def test_store_query_is_read_only_and_export_parquet(taubench_sample: Path, tmp_path: Path):
    store = tmp_path / "store"
    assert runner.invoke(app, ["ingest", str(taubench_sample), "--store", str(store)]).exit_code == 0
    res = runner.invoke(app, ["store", "query", "SELECT count(*) AS n FROM turns", "--store", str(store), "--json"])
    assert res.exit_code == 0
    assert json.loads(res.output)[0]["n"] == Store(store).count("turns")
    for bad in ("DROP VIEW episodes", "CREATE TABLE x AS SELECT 1", "COPY episodes TO 'x.csv'"):
        res = runner.invoke(app, ["store", "query", bad, "--store", str(store)])
        assert res.exit_code == 1 and "read-only" in res.output, res.output
    res = runner.invoke(app, ["store", "export", "--store", str(store), "--format", "parquet",
                              "--out", str(tmp_path / "pq")])
    assert res.exit_code == 0, res.output
    import pandas as pd

    assert len(pd.read_parquet(tmp_path / "pq" / "episodes.parquet")) == 10
    res = runner.invoke(app, ["store", "info", "--store", str(store), "--json"])
    d = json.loads(res.output)
    assert d["episodes"] == 10 and d["groups"] == 10 and math.isclose(d["success_rate"], 0.5)
    res = runner.invoke(app, ["store", "info", "--store", str(tmp_path / "nope")])
    assert res.exit_code == 1 and "no store" in res.output


def test_store_defaults_to_env_var(taubench_sample: Path, tmp_path: Path, monkeypatch):
    monkeypatch.setenv("CALIB_STORE", str(tmp_path / "envstore"))
    assert runner.invoke(app, ["ingest", str(taubench_sample)]).exit_code == 0
    assert Store(tmp_path / "envstore").count() == 10


def test_chat_jsonl_groups_by_prompt(tmp_path: Path):
    prompt = [{"role": "user", "content": "Book me a flight"}]
    rows = [{"prompt": prompt, "completion": [{"role": "assistant", "content": f"try {i}"}], "reward": i % 2}
            for i in range(4)]
    rows += [{"messages": [{"role": "user", "content": "Cancel it"}, {"role": "assistant", "content": "ok"}],
              "reward": 1.0}]
    st_ = Store(tmp_path / "store")
    r = ingest_file(st_, _write_jsonl(tmp_path / "chat.jsonl", rows))
    assert r.format == "chat" and r.episodes == 5 and r.n_groups == 2


# ----------------------------------------------------------------------------- atomicity


def test_sigkill_midway_leaves_nothing_and_rerun_completes(tmp_path: Path):
    src = tmp_path / "big.jsonl"
    n = 3000
    _write_jsonl(src, list(synthetic_records(n // 8, 8, seed=3)))
    store = tmp_path / "store"
    env = {**os.environ, "CALIB_INGEST_CHUNK": "100"}
    proc = subprocess.Popen([sys.executable, "-m", "calib", "ingest", str(src), "--store", str(store)],
                            env=env, stdout=subprocess.DEVNULL, stderr=subprocess.PIPE)
    deadline = time.time() + 120
    killed = False
    while time.time() < deadline and proc.poll() is None:
        parts = list((store / "_staging").glob("*/episodes-00002.parquet")) if store.exists() else []
        if parts:  # several chunks are on disk: we are midway through the file
            proc.send_signal(signal.SIGKILL)
            killed = True
            break
        time.sleep(0.02)
    proc.wait()
    assert killed, f"ingest finished before it could be killed: {proc.stderr.read().decode()[-500:]}"
    st_ = Store(store, create=False)  # a reader sees nothing of the dead ingest and deletes nothing
    assert st_.count() == 0 and st_.count("turns") == 0
    assert any((store / "_staging").iterdir())
    res = subprocess.run([sys.executable, "-m", "calib", "ingest", str(src), "--store", str(store)],
                         env=env, check=False, capture_output=True, text=True)
    assert res.returncode == 0, res.stderr
    assert not any((store / "_staging").iterdir())  # the next writer removed the dead ingest's folder
    assert st_.count() == n
    assert query(st_, "SELECT count(DISTINCT episode_id) AS d FROM episodes").d[0] == n


@pytest.mark.parametrize("chunk", [7, 1 << 20])  # elements cross chunk boundaries, or all in one chunk
def test_json_array_reader_lines_and_errors(tmp_path: Path, chunk: int):
    from calib.ingest.readers import iter_json_array

    def read(data: bytes) -> list:
        (tmp_path / "a.json").write_bytes(data)
        return [(line, obj, err and err.split(" (")[0].split(":")[0]) for line, obj, err, _ in
                iter_json_array(tmp_path / "a.json", chunk_size=chunk)]

    good = b'[\n  {"a": 1,\n   "b": "x"},\n\n  {"c": [1, 2]}\n]\n'
    assert read(good) == [(2, {"a": 1, "b": "x"}, None), (5, {"c": [1, 2]}, None)]
    assert read(b"") == [(1, None, "empty file")]
    assert read(b'  {"a": 1}') == [(1, None, "expected a JSON array of results")]
    assert read(b'[{"a": 1},\n{"b": 2}') == [(1, {"a": 1}, None), (2, {"b": 2}, None),
                                              (2, None, "truncated JSON")]
    assert read(b'[{"a": 1}\n{"b": 2}]') == [(1, {"a": 1}, None), (2, None, "invalid JSON")]
    assert read(b'[{"a": 1},\n{"b": oops}]') == [(1, {"a": 1}, None), (2, None, "invalid JSON")]
    bad_utf8 = b'[{"a": 1},\n' + b'{"b": "' + b"x" * 20 + b'\xff"}]'
    got = read(bad_utf8)
    assert got[-1][1:] == (None, "file is not valid UTF-8") and got[-1][0] in (1, 2)
