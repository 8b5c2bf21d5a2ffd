"""``calib ingest --format verl`` on rollout dumps that verl 0.9.1's own code wrote (calib/ingest/verl.py).

Runs in the verl venv (verl, torch and transformers installed; ``make test`` runs tests/with_verl there).
The dumps are written by verl's trainer code, not by hand: tests/with_verl/verl_dumps.py says how (verl's
Continuous Token builder makes the token ids of multi-turn tool-calling trajectories with the tiny
SmolLM2 tokenizer, ``RayPPOTrainer._log_rollout_data`` on a ``DataProto`` writes step 2, the v1
trainer's ``_write_generations`` step 10). The only lines written by hand are the broken ones appended
on purpose. tests/data/verl/rollouts is the same dump, committed for the main suite and the docs;
``test_the_committed_fixture_is_what_verl_writes`` checks that it still is.
"""

from __future__ import annotations

import json
import math
import shutil
from pathlib import Path

import pytest
from typer.testing import CliRunner

try:
    # tests/with_verl/verl_dumps.py: verl's own code writes the dumps
    from verl_dumps import SAMPLES, N, write_dumps
except ImportError as e:  # never a silent skip: these tests belong to the verl venv
    pytest.fail(f"tests/with_verl needs verl (0.9.1), torch and transformers: run them in the verl venv "
                f"(`make test` does; by hand: <verl venv>/bin/python -m pytest tests/with_verl). Import failed: {e}",
                pytrace=False)

from calib.cli import app
from calib.ingest import check_source, ingest_file
from calib.ingest.chat_text import split_verl_sample
from calib.ingest.sniff import sniff_format
from calib.ingest.verl import verl_files
from calib.store import Store

runner = CliRunner()

DATA = Path(__file__).resolve().parents[1] / "data" / "verl" / "rollouts"


@pytest.fixture(scope="module")
def dumps(tmp_path_factory, tiny_model_dir) -> Path:
    """A rollout_data_dir with steps 2 (verl's trainer) and 10 (the v1 trainer's writer), written now."""
    return write_dumps(tmp_path_factory.mktemp("verl") / "rollouts", Path(tiny_model_dir))


def _lines(path: Path) -> list[dict]:
    return [json.loads(x) for x in path.read_text().splitlines()]


def _eps(store: Store):
    df = store.query("SELECT * FROM episodes ORDER BY iteration, source_line")
    df["info"] = df["info"].map(json.loads)
    df["messages"] = df["messages"].map(json.loads)
    return df


def test_the_dump_is_what_verl_wrote(dumps: Path):
    """The stripped-special-token text the importer has to read (docs/importing.md)."""
    assert [p.name for p in verl_files(dumps)] == ["2.jsonl", "10.jsonl"]  # by step, not by name
    lines = _lines(dumps / "2.jsonl")
    assert len(lines) == N
    first = lines[0]
    assert set(first) == {"input", "output", "gts", "score", "step", "acc", "format_ok", "pred", "request_id"}
    assert first["input"].startswith("system\nYou are a weather agent. Use the tools.\nuser\n")
    assert first["input"].endswith("\nassistant\n") and "<|im_start|>" not in first["input"]
    # verl's default builder (SmolLM2): the tool response right after </tool_call>, no newline
    assert "</tool_call>tool\n{\"temp_c\": 21}\nassistant\nIt is 21 C in Paris." in first["output"]
    # Qwen's builder inserts the newline, and Qwen's template renders the result as a user message
    assert "</tool_call>\nuser\n<tool_response>\n{\"value\": 69.8}\n</tool_response>\nassistant\n" in lines[3]["output"]
    assert "<tools>" in lines[3]["input"]  # Qwen's template put the tools in the system prompt
    assert (first["score"], first["step"], first["gts"], first["request_id"]) == (1.0, 2, "21", "req-0")
    assert _lines(dumps / "10.jsonl")[4]["uid"] == "v1convert_1_0"


def test_the_committed_fixture_is_what_verl_writes(dumps: Path):
    """tests/data/verl/rollouts (read by the main suite and docs/importing.md) is byte for byte what
    verl writes now; if verl or the tokenizer changed it, rewrite it with tests/with_verl/verl_dumps.py."""
    assert sorted(p.name for p in DATA.iterdir()) == ["10.jsonl", "2.jsonl"]
    for name in ("2.jsonl", "10.jsonl"):
        assert (DATA / name).read_bytes() == (dumps / name).read_bytes(), \
            f"{DATA / name} is stale: rewrite it with python tests/with_verl/verl_dumps.py tests/data/verl/rollouts"


def test_split_verl_sample_on_real_dumps(dumps: Path):
    lines = _lines(dumps / "2.jsonl")
    msgs = split_verl_sample(lines[1]["input"], lines[1]["output"])
    assert [m["role"] for m in msgs] == ["system", "user", "assistant", "tool", "tool", "assistant"]
    assert msgs[2]["tool_calls"] == [{"id": "call_0", "name": "lookup_weather", "arguments": {"city": "Paris"}},
                                     {"id": "call_1", "name": "lookup_weather", "arguments": {"city": "Lyon"}}]
    assert [(m["tool_call_id"], m["content"]) for m in msgs[3:5]] == [("call_0", '{"temp_c": 21}'),
                                                                     ("call_1", '{"temp_c": 19}')]
    assert msgs[-1] == {"role": "assistant", "content": "Paris 21 C, Lyon 19 C."}
    qwen = split_verl_sample(lines[3]["input"], lines[3]["output"])
    assert [m["role"] for m in qwen] == ["system", "user", "assistant", "tool", "assistant"]
    assert qwen[0]["content"].startswith("You convert units.\n\n# Tools")
    assert qwen[3] == {"role": "tool", "content": '{"value": 69.8}', "tool_call_id": "call_0", "name": "convert_units"}


def test_ingest_one_step_file_auto_detected(dumps: Path, tmp_path: Path):
    f = dumps / "2.jsonl"
    assert sniff_format(f) == "verl"
    r = ingest_file(Store(tmp_path / "s"), f)
    assert (r.format, r.episodes, r.quarantined, r.n_groups, r.success_threshold) == ("verl", N, 0, 2, 1.0)
    df = _eps(Store(tmp_path / "s"))
    assert set(df["run_id"]) == {"rollouts"} and set(df["iteration"]) == {2}
    assert list(df["outcome"]) == [s[2] for s in SAMPLES]
    assert list(df["success"]) == [s[2] >= 1.0 for s in SAMPLES]
    # v0 dumps carry no uid: a group is the samples of one prompt in the step; the task is the prompt
    assert df["group_id"].nunique() == 2 and df["task_id"].nunique() == 2
    assert all(g.startswith("rollouts/2/prompt-") for g in df["group_id"])
    assert list(df["n_turns"]) == [2, 2, 1, 2, 2, 1]
    info = df["info"][0]
    assert (info["step"], info["gts"], info["request_id"], info["extra"], info["success_threshold"]) == \
        (2, "21", "req-0", {"pred": "21"}, 1.0)
    assert info["signals"] == {"verl:acc": 1.0, "verl:format_ok": 1.0}
    # the call verl never ran (turn limit) got an empty result, and is counted
    stopped = df.iloc[4]
    assert stopped["info"]["unanswered_tool_calls"] == 1
    assert stopped["messages"][-1] == {"role": "tool", "content": None, "tool_call_id": "call_1",
                                       "name": "convert_units"}


def test_turns_and_signals_in_the_store(dumps: Path, tmp_path: Path):
    st = Store(tmp_path / "s")
    ingest_file(st, dumps / "2.jsonl")
    turns = st.query("SELECT e.source_line, t.turn_idx, t.kind, t.tool_name, t.tool_args, t.n_tool_calls, "
                     "t.observation, t.text FROM turns t JOIN episodes e USING (episode_id) "
                     "ORDER BY e.source_line, t.turn_idx")
    rows = [tuple(None if isinstance(v, float) and math.isnan(v) else v for v in r)  # pandas' NaN: None
            for r in turns.itertuples(index=False)]
    assert rows[0][:7] == (1, 0, "tool_call", "lookup_weather", '{"city":"Paris"}', 1, '{"temp_c": 21}')
    assert rows[0][7] == "Let me check."
    assert rows[1][2:4] == ("message", None) and rows[1][7] == "It is 21 C in Paris."
    assert rows[2][2:6] == ("tool_call", "lookup_weather", '{"city":"Paris"}', 2)
    assert rows[2][6] == '{"temp_c": 21}\n{"temp_c": 19}'
    assert rows[4][:4] == (3, 0, "invalid", None)  # the call verl's parser could not read
    assert rows[5][2:5] == ("tool_call", "convert_units", '{"to":"F","value":21}')
    assert rows[-1][2:4] == ("message", None) and rows[-1][7] == "About 70 F."


def test_folder_reingest_and_the_v1_uids(dumps: Path, tmp_path: Path):
    assert check_source(dumps) == "verl"
    st = Store(tmp_path / "s")
    r = ingest_file(st, dumps)
    assert (r.format, r.episodes, r.quarantined) == ("verl", 2 * N, 0)
    df = _eps(st)
    assert list(df["iteration"]) == [2] * N + [10] * N
    v1 = df[df["iteration"] == 10]
    # a v1 uid {uid}_{rollout}_{output} groups by its prompt part; the task is still the prompt
    assert set(v1["group_id"]) == {"rollouts/10/v1weather", "rollouts/10/v1convert"}
    assert set(v1["task_id"]) == set(df[df["iteration"] == 2]["task_id"])
    assert v1["info"].iloc[1]["uid"] == "v1weather_1_0" and v1["info"].iloc[0]["gts"] == "21"
    again = ingest_file(st, dumps)
    assert (again.episodes, again.skipped_duplicates, again.quarantined) == (0, 2 * N, 0)
    assert len(st.query("SELECT episode_id FROM episodes")) == 2 * N
    # --run-id names the run instead of the folder
    r2 = ingest_file(Store(tmp_path / "s2"), dumps, fmt="verl", run_id="grpo-7")
    assert r2.episodes == 2 * N
    assert set(_eps(Store(tmp_path / "s2"))["run_id"]) == {"grpo-7"}


def test_bad_lines_are_quarantined_with_file_and_line(dumps: Path, tmp_path: Path):
    d = tmp_path / "run"
    d.mkdir()
    f = d / "2.jsonl"
    shutil.copy(dumps / "2.jsonl", f)
    good = _lines(f)[0]
    with open(f, "a", encoding="utf-8") as out:
        out.write('{"input": "system\\nS\\n", "output": \n')  # cut: not JSON
        out.write(json.dumps({**good, "input": "A plain prompt, no chat template"}) + "\n")
        out.write(json.dumps({**good, "score": "n/a"}) + "\n")
        out.write(json.dumps({**good, "output": good["output"] + "\nuser\n<tool_response>\nx\n</tool_response>"
                                                                  "\nuser\n<tool_response>\ny\n</tool_response>"})
                  + "\n")
    r = ingest_file(Store(tmp_path / "s"), d)
    assert (r.episodes, r.quarantined) == (N, 4)
    assert r.reasons[0].startswith(f"{f}:{N + 1}: invalid JSON")
    assert r.reasons[1] == f"{f}:{N + 2}: input has no chat role markers: it was not rendered with the chatml template"
    assert r.reasons[2].startswith(f"{f}:{N + 3}: score should be a finite number, got str 'n/a'")
    assert r.reasons[3].startswith(f"{f}:{N + 4}: a tool response (message 5) answers no tool call: the assistant "
                                  "message before it made none")
    q = [json.loads(x) for x in Path(r.quarantine_file).read_text().splitlines()]
    assert [(e["file"], e["line"]) for e in q] == [(str(f), N + k) for k in range(1, 5)]


def test_cli_auto_ingest_and_analyze(dumps: Path, tmp_path: Path):
    store, out = tmp_path / "s", tmp_path / "out"
    res = runner.invoke(app, ["ingest", str(dumps), "--store", str(store)])
    assert res.exit_code == 0, res.output
    assert "verl" in res.output and "success = reward >= 1 (--success-threshold)" in res.output
    res = runner.invoke(app, ["ingest", str(dumps / "2.jsonl"), "--store", str(tmp_path / "s2"), "--format", "verl",
                              "--success-threshold", "0.5"])
    assert res.exit_code == 0, res.output
    assert int(Store(tmp_path / "s2").query("SELECT count(*) AS n FROM episodes WHERE success")["n"][0]) == 3
    res = runner.invoke(app, ["analyze", "--store", str(store), "--out", str(out), "--n-boot", "200"])
    assert res.exit_code == 0, res.output
    analysis = json.loads((out / "analysis.json").read_text())
    names = {r["signal"] for r in analysis["imported_signals"]["episode"]}
    assert names == {"verl:acc", "verl:format_ok"}  # "pred" is a string: no signal
    # the analysis moved them into the signals table: episode-level rows (turn_idx NULL)
    sig = Store(store).query("SELECT e.iteration, e.source_line, s.signal, s.value, s.turn_idx FROM signals s "
                             "JOIN episodes e USING (episode_id) WHERE s.signal LIKE 'verl:%' AND e.iteration = 2")
    got = {(r.source_line, r.signal): r.value for r in sig.itertuples()}
    assert len(got) == 2 * N and sig["turn_idx"].isna().all()
    assert got[(1, "verl:acc")] == 1.0 and got[(2, "verl:acc")] == 0.0 and got[(3, "verl:format_ok")] == 0.0
