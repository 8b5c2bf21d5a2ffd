"""verifiers, ART and verl dumps as input (calib/ingest/verifiers.py, calib/ingest/art.py, calib/ingest/verl.py).

The fixtures in tests/data/verifiers and tests/data/art were written by the libraries' own serialisation
code (scripts/make_rl_fixtures.py says how): 3 tasks x 3 rollouts of a weather agent with two tool calls
per rollout, rewards 0.8 * correct + 0.2 * format, one truncated rollout and (verifiers) one errored.
"""

from __future__ import annotations

import json
import shutil
from pathlib import Path

import numpy as np
import pyarrow as pa
import pyarrow.parquet as pq
import pytest
from typer.testing import CliRunner

from calib.cli import app
from calib.ingest import ingest_file
from calib.ingest.sniff import sniff_format
from calib.store import Store

runner = CliRunner()
DATA = Path(__file__).resolve().parent / "data"
VF_RESULTS = DATA / "verifiers" / "results"
VF_TRACES = DATA / "verifiers" / "traces"
ART = DATA / "art"
ART_TRAIN = ART / "proj" / "models" / "agent-001" / "trajectories" / "train" / "0003.parquet"
VERL = DATA / "verl" / "rollouts"  # written by verl's own code: tests/with_verl/verl_dumps.py
# (reward, correct, format) per rollout as scripts/make_rl_fixtures.py planned them; task 2 rollout 2 errored
REWARDS = [[1.0, 0.2, 0.8], [0.0, 1.0, 0.2], [1.0, 0.0, None]]


def _eps(store: Store):
    df = store.query("SELECT * FROM episodes ORDER BY group_id, source_line, episode_id")
    df["info"] = df["info"].map(json.loads)
    df["messages"] = df["messages"].map(json.loads)
    return df


def _check_weather(df, *, source: str, group_of, n_eps: int = 9):
    """ART has no error status: the fixture gives its "errored" rollout reward -1 instead."""
    assert len(df) == n_eps
    assert df["group_id"].nunique() == 3
    for task in range(3):
        g = df[df["group_id"] == group_of(task)]
        assert len(g) == 3, (task, list(df["group_id"]))
        want = [r if r is not None else -1.0 for r in REWARDS[task] if r is not None or source == "art"]
        got = sorted(g["outcome"].round(6)[g["status"] == "ok"])
        assert got == sorted(want)
    ok = df[df["status"] == "ok"].iloc[0]
    roles = [m["role"] for m in ok["messages"]]
    assert roles == ["system", "user", "assistant", "tool", "assistant", "tool", "assistant"]
    calls = ok["messages"][2]["tool_calls"]
    assert calls[0]["name"] == "lookup_weather" and calls[0]["arguments"] == {"city": "Paris"}
    assert ok["messages"][4]["tool_calls"][0]["name"] == "convert_units"
    assert ok["messages"][3]["tool_call_id"] == calls[0]["id"]
    assert ok["n_turns"] == 3
    sig = ok["info"]["signals"]
    g0 = df[df["group_id"] == group_of(0)]
    first = g0[g0["outcome"] == 1.0].iloc[0]["info"]["signals"]  # task 0's first rollout: correct, well formatted
    assert first[f"{source}:correct_answer" if source == "verifiers" else "art:correct"] == 1.0
    assert first[f"{source}:format_ok"] == 1.0
    assert sig[f"{source}:num_tool_calls"] == 2.0
    # success is reward >= 1.0 by default: partial rewards are not successes
    assert set(df.loc[df["success"], "outcome"]) == {1.0}


# ----------------------------------------------------------------------------- verifiers


def test_verifiers_results_folder(tmp_path: Path):
    r = ingest_file(Store(tmp_path / "s"), VF_RESULTS)
    assert (r.format, r.episodes, r.quarantined, r.errors, r.success_threshold) == ("verifiers", 9, 0, 1, 1.0)
    df = _eps(Store(tmp_path / "s"))
    _check_weather(df, source="verifiers", group_of=lambda t: f"results/{t}")
    assert set(df["task_id"]) == {"0", "1", "2"}
    assert set(df["policy"]) == {"tiny-agent-v1"}  # metadata.json's model
    trunc = df[df["info"].map(lambda i: i.get("is_truncated") is True)]
    assert len(trunc) == 1 and trunc.iloc[0]["status"] == "ok"
    assert trunc.iloc[0]["info"]["stop_condition"] == "max_turns"
    assert [m["role"] for m in trunc.iloc[0]["messages"]][-2:] == ["assistant", "tool"]
    err = df[df["status"] == "error"].iloc[0]
    assert err["info"]["error"]["error"] == "ModelError"
    assert df.iloc[1]["info"]["signals"] == {"verifiers:correct_answer": 0.0, "verifiers:format_ok": 1.0,
                                             "verifiers:num_tool_calls": 2.0}


def test_verifiers_traces_v1(tmp_path: Path):
    r = ingest_file(Store(tmp_path / "s"), VF_TRACES / "traces.jsonl")
    assert (r.format, r.episodes, r.quarantined, r.errors) == ("verifiers", 9, 0, 1)
    df = _eps(Store(tmp_path / "s"))
    _check_weather(df, source="verifiers", group_of=lambda t: f"weather-{t}")
    # the trace ids are kept; rewards are the weighted sum of {score, weight}
    ids = [json.loads(line)["traces"][0]["id"] for line in (VF_TRACES / "traces.jsonl").read_text().splitlines()]
    assert sorted(df["episode_id"]) == sorted(ids)
    row = df[df["outcome"] == 0.8].iloc[0]
    assert row["info"]["rewards"]["correct_answer"] == {"score": 1.0, "weight": 0.8}
    trunc = df[df["info"].map(lambda i: i.get("is_truncated") is True)]
    assert len(trunc) == 1 and trunc.iloc[0]["info"]["stop_condition"] == "max_turns"
    assert df[df["status"] == "error"].iloc[0]["info"]["errors"][0]["type"] == "RuntimeError"


def test_success_threshold(tmp_path: Path):
    r = ingest_file(Store(tmp_path / "s"), VF_RESULTS, success_threshold=0.8)
    assert r.successes == 4 and r.success_threshold == 0.8  # rewards 1.0, 0.8, 1.0, 1.0
    res = runner.invoke(app, ["ingest", str(VF_RESULTS), "--store", str(tmp_path / "s2"), "--success-threshold", "0.5"])
    assert res.exit_code == 0, res.output
    assert "success = reward >= 0.5" in res.output


# ----------------------------------------------------------------------------- ART


def test_art_parquet(tmp_path: Path):
    r = ingest_file(Store(tmp_path / "s"), ART_TRAIN)
    assert (r.format, r.episodes, r.quarantined) == ("art", 9, 0)
    df = _eps(Store(tmp_path / "s"))
    _check_weather(df, source="art", group_of=lambda t: f"agent-001/train/3/{t}", n_eps=9)
    assert set(df["run_id"]) == {"agent-001/train"} and set(df["iteration"]) == {3}
    assert set(df["task_id"]) == {"weather-0", "weather-1", "weather-2"}  # the group's scenario_id
    first = df.iloc[0]
    assert first["info"]["metadata"] == {"rollout": 0, "city": "Paris"}
    assert first["info"]["metrics"]["num_tool_calls"] == 2
    trunc = df[df["info"].map(lambda i: i["metrics"].get("truncated") is True)]
    assert len(trunc) == 1 and trunc.iloc[0]["messages"][-1]["content"] == "The temperature in"
    assert trunc.iloc[0]["info"]["signals"]["art:truncated"] == 1.0


@pytest.mark.parametrize("name", ["0001.jsonl", "0002.yaml"])
def test_art_older_jsonl_and_yaml(tmp_path: Path, name: str):
    path = ART / "legacy" / name
    assert sniff_format(path) == "art"
    r = ingest_file(Store(tmp_path / "s"), path)
    assert (r.format, r.episodes, r.quarantined) == ("art", 9, 0)
    step = int(name[:4])
    df = _eps(Store(tmp_path / "s"))
    _check_weather(df, source="art", group_of=lambda t: f"legacy/{step}/{t}")
    assert set(df["iteration"]) == {step}


def test_art_folder_is_one_ingest_with_splits_and_steps(tmp_path: Path):
    r = ingest_file(Store(tmp_path / "s"), ART / "proj")
    assert (r.format, r.episodes, r.quarantined) == ("art", 9 + 6, 0)
    runs = Store(tmp_path / "s").query("SELECT run_id, iteration, count(*) AS n FROM episodes GROUP BY ALL ORDER BY 1")
    assert runs.values.tolist() == [["agent-001/train", 3, 9], ["agent-001/val", 0, 6]]


def test_art_trajectory_json_column(tmp_path: Path):
    """Newer ART releases add format_version, trajectory_index, group_json and trajectory_json (authoritative)."""
    groups = [json.loads(line) for line in (ART / "legacy" / "0001.jsonl").read_text().splitlines()]
    rows = []
    for gi, g in enumerate(groups):
        group_json = json.dumps({"metadata": {"scenario_id": f"weather-{gi}"}, "metrics": {}, "logs": []})
        for ti, t in enumerate(g["trajectories"]):
            rows.append({"format_version": 2, "group_index": gi, "trajectory_index": ti, "group_json": group_json,
                         "trajectory_json": json.dumps(t), "reward": t["reward"], "messages": None})
        rows.append({"format_version": 2, "group_index": gi, "trajectory_index": None, "group_json": group_json,
                     "trajectory_json": None, "reward": None, "messages": None}) if gi == 2 else None
    split = tmp_path / "m" / "trajectories" / "train"
    split.mkdir(parents=True)
    pq.write_table(pa.Table.from_pylist(rows), split / "0007.parquet")
    assert sniff_format(split / "0007.parquet") == "art"
    r = ingest_file(Store(tmp_path / "s"), split / "0007.parquet")
    assert (r.episodes, r.quarantined) == (9, 0)
    df = _eps(Store(tmp_path / "s"))
    _check_weather(df, source="art", group_of=lambda t: f"m/train/7/{t}")
    assert set(df["task_id"]) == {"weather-0", "weather-1", "weather-2"}


# ----------------------------------------------------------------------------- damaged copies


def test_damaged_verifiers_results(tmp_path: Path):
    d = tmp_path / "run"
    shutil.copytree(VF_RESULTS, d)
    lines = (d / "results.jsonl").read_text().splitlines()
    bad = json.loads(lines[3])
    bad["reward"] = "high"
    lines[3] = json.dumps(bad)
    lines[8] = lines[8][: len(lines[8]) // 2]  # a truncated last line
    (d / "results.jsonl").write_text("\n".join(lines))
    r = ingest_file(Store(tmp_path / "s"), d)
    assert (r.episodes, r.quarantined) == (7, 2)
    q = [json.loads(x) for x in Path(r.quarantine_file).read_text().splitlines()]
    assert [(Path(e["file"]).name, e["line"]) for e in q] == [("results.jsonl", 4), ("results.jsonl", 9)]
    assert "reward should be a finite number" in q[0]["reason"] and "invalid JSON" in q[1]["reason"]


def test_damaged_art_files(tmp_path: Path):
    root = tmp_path / "proj"
    shutil.copytree(ART / "proj", root)
    val = root / "models" / "agent-001" / "trajectories" / "val" / "0000.parquet"
    data = val.read_bytes()
    val.write_bytes(data[: len(data) // 2])  # a Parquet file cut short
    r = ingest_file(Store(tmp_path / "s"), root)
    assert (r.episodes, r.quarantined) == (9, 1)  # the train file is kept whole
    q = [json.loads(x) for x in Path(r.quarantine_file).read_text().splitlines()]
    assert q[0]["file"] == str(val) and "Parquet" in q[0]["reason"]
    # a non-numeric reward in the older JSONL: only that trajectory goes
    groups = (ART / "legacy" / "0001.jsonl").read_text().splitlines()
    g = json.loads(groups[1])
    g["trajectories"][2]["reward"] = "n/a"
    groups[1] = json.dumps(g)
    (tmp_path / "0001.jsonl").write_text("\n".join(groups) + "\n")
    r = ingest_file(Store(tmp_path / "s2"), tmp_path / "0001.jsonl")
    assert (r.episodes, r.quarantined) == (8, 1)
    q = json.loads(Path(r.quarantine_file).read_text().splitlines()[0])
    assert q["line"] == 2 and q["reason"].startswith("trajectories[2]: reward should be a finite number")
    # a NaN reward in a Parquet row: that row only, with its row number
    tbl = pq.read_table(ART_TRAIN).to_pylist()
    tbl[4]["reward"] = float("nan")
    bad = tmp_path / "x" / "trajectories" / "train" / "0003.parquet"
    bad.parent.mkdir(parents=True)
    pq.write_table(pa.Table.from_pylist(tbl, schema=pq.read_schema(ART_TRAIN)), bad)
    r = ingest_file(Store(tmp_path / "s3"), bad)
    assert (r.episodes, r.quarantined) == (8, 1)
    assert json.loads(Path(r.quarantine_file).read_text())["line"] == 5


def test_other_formats_are_not_mistaken(tmp_path: Path):
    native = tmp_path / "native.jsonl"
    native.write_text(json.dumps({"task_id": "t", "outcome": 1, "messages": [
        {"role": "user", "content": "hi"}, {"role": "assistant", "content": "hello"}]}) + "\n")
    chat = tmp_path / "chat.jsonl"
    chat.write_text(json.dumps({"prompt": [{"role": "user", "content": "q"}], "completion": "a", "reward": 1}) + "\n")
    other = tmp_path / "table.parquet"
    pq.write_table(pa.table({"a": [1, 2]}), other)
    yaml_cfg = tmp_path / "config.yaml"
    yaml_cfg.write_text("lr: 0.1\n")
    assert sniff_format(native) == "native"
    assert sniff_format(chat) == "chat"
    assert sniff_format(other) == "native"
    assert sniff_format(yaml_cfg) == "native"
    assert sniff_format(VF_RESULTS / "results.jsonl") == "verifiers"
    assert sniff_format(VF_TRACES / "traces.jsonl") == "verifiers"
    assert sniff_format(ART_TRAIN) == "art"
    assert sniff_format(VERL / "2.jsonl") == "verl"
    res = runner.invoke(app, ["ingest", str(tmp_path), "--store", str(tmp_path / "s")])
    assert res.exit_code == 2 and "is a directory" in res.output


def test_cli_auto_detects_folders(tmp_path: Path):
    res = runner.invoke(app, ["ingest", str(VF_TRACES), str(ART / "proj"), str(VERL), "--store", str(tmp_path / "s")],
                        env={"COLUMNS": "200"})
    assert res.exit_code == 0, res.output
    assert "verifiers" in res.output and " art " in res.output and " verl " in res.output
    assert "success = reward >= 1" in res.output
    assert Store(tmp_path / "s").count() == 9 + 15 + 12


def test_verl_rollout_dir_without_verl(tmp_path: Path):
    """The committed verl dump (tests/with_verl runs the same checks on a dump written now, in the verl venv).
    A rollout_data_dir holds <step>.jsonl files as ART's logs may: it is recognised as verl first."""
    from calib.ingest import check_source
    from calib.ingest.art import is_art_dir

    assert is_art_dir(VERL) and check_source(VERL) == "verl"
    r = ingest_file(Store(tmp_path / "s"), VERL)
    assert (r.format, r.episodes, r.quarantined, r.n_groups, r.success_threshold) == ("verl", 12, 0, 4, 1.0)
    df = _eps(Store(tmp_path / "s"))
    assert set(df["run_id"]) == {"rollouts"} and sorted(set(df["iteration"])) == [2, 10]
    assert df["task_id"].nunique() == 2 and int(df["success"].sum()) == 4
    assert {g for g in df["group_id"] if "/10/" in g} == {"rollouts/10/v1weather", "rollouts/10/v1convert"}
    calls = [m for ep in df["messages"] for m in ep if m.get("tool_calls")]
    assert {c["name"] for m in calls for c in m["tool_calls"]} == {"lookup_weather", "convert_units"}
    assert set(df["info"].map(lambda i: tuple(sorted(i.get("signals", {}))))) == {("verl:acc", "verl:format_ok"), ()}


# ----------------------------------------------------------------------------- components as signals


def _planted_verifiers_dump(root: Path, n_groups: int = 24, k: int = 6, seed: int = 0) -> Path:
    """A results.jsonl with partial rewards and three components: ``separates`` (higher for the
    successes inside each group), ``difficulty`` (the task's difficulty: constant inside a group, but
    it tracks the success rate across tasks) and ``score`` (the reward itself)."""
    rng = np.random.default_rng(seed)
    root.mkdir()
    lines = []
    for task in range(n_groups):
        difficulty = task / n_groups
        wins = rng.random(k) < (0.85 - 0.7 * difficulty)
        wins[0], wins[1] = True, False  # every group informative
        for j in range(k):
            reward = 1.0 if wins[j] else float(rng.choice([0.0, 0.25, 0.5]))
            separates = (0.6 if wins[j] else 0.2) + 0.3 * rng.random()
            lines.append(json.dumps({
                "example_id": task, "prompt": [{"role": "user", "content": f"task {task}"}],
                "completion": [{"role": "assistant", "content": f"answer {j}"}], "reward": reward,
                "metrics": {"separates": separates, "difficulty": difficulty, "score": reward, "judge": "n/a"}}))
    (root / "results.jsonl").write_text("\n".join(lines) + "\n")
    return root


def test_analyze_planted_components(tmp_path: Path):
    dump = _planted_verifiers_dump(tmp_path / "dump")
    ingest_file(Store(tmp_path / "s"), dump)
    out = tmp_path / "out"
    res = runner.invoke(app, ["analyze", "--store", str(tmp_path / "s"), "--out", str(out), "--n-boot", "300"])
    assert res.exit_code == 0, res.output
    ep = {r["signal"]: r for r in json.loads((out / "analysis.json").read_text())["imported_signals"]["episode"]}
    assert set(ep) == {"verifiers:separates", "verifiers:difficulty", "verifiers:score"}  # no string metric
    assert ep["verifiers:separates"]["verdict"] == "keep" and ep["verifiers:separates"]["group_auc"] == 1.0
    assert ep["verifiers:difficulty"]["verdict"] == "zero" and ep["verifiers:difficulty"]["group_auc"] == 0.5
    assert ep["verifiers:difficulty"]["auc"] < 0.4  # it does track difficulty across tasks
    assert ep["verifiers:score"]["verdict"] == "outcome" and ep["verifiers:score"]["reproduces_outcome"]
    assert "verifiers:" not in (out / "reward_spec.yaml").read_text().split("provenance")[0]


def test_weighted_component_reproduces_the_reward():
    from calib.analysis.episode import analyze_episode_signals

    y = np.array([1, 0, 1, 0, 1, 0, 0, 1], dtype=bool)
    score = np.array([1, 0, 1, 0.5, 1, 0, 0.5, 1])
    data = {"group": np.array(list("aabbccdd"), dtype=object), "success": y, "outcome": 0.8 * score,
            "values": {"v:score": score, "v:other": score + np.array([0, 0, 0, 0, 0, 0.1, 0, 0])}}
    rows = {r["signal"]: r for r in analyze_episode_signals(data, n_boot=100)}
    assert rows["v:score"]["reproduces_outcome"] and rows["v:score"]["verdict"] == "outcome"
    assert not rows["v:other"]["reproduces_outcome"]


def test_developer_role_is_the_system_prompt():
    from calib.ingest.verifiers import result_to_native

    rec = {"example_id": 3, "reward": 0.5, "prompt": [{"role": "developer", "content": "rules"},
                                                      {"role": "user", "content": "q"}], "completion": "a"}
    nat = result_to_native(rec, run_id="r")
    assert [m["role"] for m in nat["messages"]] == ["system", "user", "assistant"]
    assert nat["success"] is False and nat["group_id"] == "r/3"


@pytest.mark.parametrize("strict", [False, True])
def test_a_bad_line_in_a_library_dump_is_quarantined_or_with_strict_stops_the_ingest(tmp_path: Path, strict: bool):
    """The library formats (verifiers, ART, verl) take each record the same way: a bad one is
    quarantined with its file and line while the rest is ingested, or with --strict the ingest stops,
    names the place and the reason, and writes nothing."""
    folder = tmp_path / "rollouts"
    shutil.copytree(VERL, folder)
    good = len((folder / "2.jsonl").read_text().splitlines())
    with open(folder / "2.jsonl", "a") as f:
        f.write('{"input": "no markers", "output": "x", "score": 1.0, "step": 2}\n')
    store = tmp_path / "store"
    res = runner.invoke(app, ["ingest", str(folder), "--format", "verl", "--store", str(store),
                              *(["--strict"] if strict else [])])
    if strict:
        assert res.exit_code == 1, res.output
        assert f"2.jsonl:{good + 1}:" in res.output and "--strict: nothing from" in res.output
        assert Store(store).count("episodes") == 0
    else:
        assert res.exit_code == 0, res.output
        q = [json.loads(x) for p in (store / "quarantine").glob("*.jsonl") for x in p.read_text().splitlines()]
        assert [(Path(r["file"]).name, r["line"]) for r in q] == [("2.jsonl", good + 1)]
        assert Store(store).count("episodes") > 0
