"""tau2-bench results as input (calib/ingest/tau2.py): both layouts, quarantine, signals, eval, analyze.

None of this needs the ``tau2`` package: a results file is JSON.
"""

from __future__ import annotations

import json
import os
import sys
from math import comb
from pathlib import Path

import pytest
from typer.testing import CliRunner

from calib.cli import app
from calib.ingest import ingest_file
from calib.ingest.tau2 import action_match_per_turn, component_signals
from calib.store import Store

runner = CliRunner()
ROOT = Path(__file__).resolve().parents[1]


def _find_tau2_sample() -> Path | None:
    env = os.environ.get("CALIB_TAU2_SAMPLE")
    for c in ([Path(env)] if env else []) + [ROOT.parent / "shared" / "tau2" / "airline_sample_10.json",
                                              ROOT / "shared" / "tau2" / "airline_sample_10.json"]:
        if c.exists():
            return c
    return None


@pytest.fixture(scope="session")
def tau2_sample(skip_or_fail) -> Path:
    """``../shared/tau2/airline_sample_10.json``: 10 simulations written by tau2's own code."""
    p = _find_tau2_sample()
    if p is None:
        msg = "tau2 sample not found: set CALIB_TAU2_SAMPLE or place it at ../shared/tau2/airline_sample_10.json"
        skip_or_fail(msg)
    return p


FIXTURE_4x = ROOT / "tests" / "data" / "tau2_airline_oracle_4trials.json"  # made by scripts/make_tau2_fixture.py


def _doc(path: Path) -> dict:
    return json.loads(path.read_text())


def _as_directory(doc: dict, root: Path) -> Path:
    """The directory layout: results.json without simulations + simulations/<id>.json."""
    root.mkdir()
    (root / "results.json").write_text(json.dumps({k: v for k, v in doc.items() if k != "simulations"}))
    (root / "simulations").mkdir()
    for sim in doc["simulations"]:
        (root / "simulations" / f"{sim['id']}.json").write_text(json.dumps(sim))
    return root


def _episodes(store: Store):
    return store.query("SELECT episode_id, task_id, outcome, success, info FROM episodes ORDER BY episode_id")


def test_single_file_keeps_ids_trials_and_reward_info(tau2_sample: Path, store_dir: Path):
    doc = _doc(tau2_sample)
    st = Store(store_dir)
    res = ingest_file(st, tau2_sample)  # auto-detected
    assert res.format == "tau2"
    assert (res.episodes, res.quarantined) == (len(doc["simulations"]), 0)
    assert res.successes == sum(s["reward_info"]["reward"] == 1.0 for s in doc["simulations"]) == 5
    eps = _episodes(st).set_index("episode_id")
    for sim in doc["simulations"]:
        row = eps.loc[sim["id"]]
        info = json.loads(row["info"])
        assert row["task_id"] == sim["task_id"]
        assert row["success"] == (sim["reward_info"]["reward"] == 1.0)
        assert info["reward_info"] == sim["reward_info"]
        assert (info["trial"], info["seed"], info["termination_reason"]) == (
            sim["trial"], sim["seed"], sim["termination_reason"])
    # one turn per assistant message, tool-call arguments kept as objects
    n_asst = {s["id"]: sum(m["role"] == "assistant" for m in s["messages"]) for s in doc["simulations"]}
    turns = st.query("SELECT episode_id, count(*) AS n FROM turns GROUP BY 1")
    assert dict(zip(turns["episode_id"], turns["n"])) == n_asst


def test_directory_layout_equals_single_file(tau2_sample: Path, tmp_path: Path):
    doc = _doc(tau2_sample)
    d = _as_directory(doc, tmp_path / "run")
    a, b = Store(tmp_path / "a"), Store(tmp_path / "b")
    ingest_file(a, tau2_sample)
    res = ingest_file(b, d)
    assert (res.format, res.episodes, res.successes, res.quarantined) == ("tau2", 10, 5, 0)
    cols = "episode_id, task_id, outcome, success, messages, info"
    left = a.query(f"SELECT {cols} FROM episodes ORDER BY episode_id")
    right = b.query(f"SELECT {cols} FROM episodes ORDER BY episode_id")
    assert left.drop(columns="info").equals(right.drop(columns="info"))
    assert [json.loads(x)["reward_info"] for x in left["info"]] == [json.loads(x)["reward_info"] for x in right["info"]]


def test_damaged_copy_quarantines_exactly_the_bad_simulations(tau2_sample: Path, tmp_path: Path):
    doc = _doc(tau2_sample)
    bad = json.loads(json.dumps(doc))
    truncated = {k: bad["simulations"][2][k] for k in ("id", "task_id", "timestamp")}  # cut after 3 fields
    bad["simulations"][2] = truncated
    bad["simulations"][5]["reward_info"]["reward"] = "1.0"
    f = tmp_path / "damaged.json"
    f.write_text(json.dumps(bad))
    st = Store(tmp_path / "s")
    res = ingest_file(st, f)
    assert (res.episodes, res.quarantined) == (8, 2)
    q = [json.loads(line) for line in Path(res.quarantine_file).read_text().splitlines()]
    assert sorted((e["file"], e["line"]) for e in q) == [(str(f), 2), (str(f), 5)]
    assert any("missing field 'messages'" in e["reason"] and e["reason"].startswith("simulations[2]") for e in q)
    assert any("reward should be a number" in e["reason"] for e in q)
    kept = set(_episodes(st)["episode_id"])
    assert kept == {s["id"] for i, s in enumerate(doc["simulations"]) if i not in (2, 5)}


def test_directory_with_a_truncated_file(tau2_sample: Path, tmp_path: Path):
    doc = _doc(tau2_sample)
    d = _as_directory(doc, tmp_path / "run")
    victim = d / "simulations" / f"{doc['simulations'][3]['id']}.json"
    victim.write_text(victim.read_text()[:500])
    res = ingest_file(Store(tmp_path / "s"), d)
    assert (res.episodes, res.quarantined) == (9, 1)
    q = json.loads(Path(res.quarantine_file).read_text())
    assert q["file"] == str(victim) and "invalid JSON" in q["reason"]


def test_cli_ingest_tau2_directory_and_strict(tau2_sample: Path, tmp_path: Path):
    d = _as_directory(_doc(tau2_sample), tmp_path / "run")
    res = runner.invoke(app, ["ingest", str(d), "--store", str(tmp_path / "s")])
    assert res.exit_code == 0, res.output
    assert "tau2" in res.output
    bad = tmp_path / "bad.json"
    doc = _doc(tau2_sample)
    doc["simulations"][0]["reward_info"]["reward"] = None
    bad.write_text(json.dumps(doc))
    res = runner.invoke(app, ["ingest", str(bad), "--store", str(tmp_path / "s2"), "--strict"])
    assert res.exit_code == 1
    assert "simulations[0]" in res.output and "--strict" in res.output


def test_components_and_action_match_from_reward_info():
    ri = {"reward": 0.0, "db_check": {"db_match": True, "db_reward": 1.0},
          "action_checks": [{"action": {"name": "a", "arguments": {"x": 1}, "compare_args": None}, "action_match": True},
                            {"action": {"name": "b", "arguments": {"y": 2}, "compare_args": ["y"]}, "action_match": False}],
          "communicate_checks": [{"info": "327", "met": False}, {"info": "1000", "met": True}],
          "nl_assertions": None, "env_assertions": []}
    assert component_signals(ri) == {"tau2:db_match": 1.0, "tau2:communicate": 0.5, "tau2:nl_assertions": None,
                                     "tau2:action_checks": 0.5, "tau2:env_assertions": None}
    msgs = [{"role": "assistant", "content": "hi"}, {"role": "user", "content": "x"},
            {"role": "assistant", "tool_calls": [{"name": "a", "arguments": {"x": 1}}]},
            {"role": "tool", "content": "ok"},
            {"role": "assistant", "tool_calls": [{"name": "b", "arguments": {"y": 2}}]},  # b was judged unmatched
            {"role": "tool", "content": "ok"},
            {"role": "assistant", "tool_calls": [{"name": "a", "arguments": {"x": 2}}]}]
    assert action_match_per_turn(msgs, ri) == [0.0, 1.0, 0.0, 0.0]
    assert action_match_per_turn(msgs, {"action_checks": None}) == [None] * 4


def test_user_tool_calls_are_kept_and_marked(tmp_path: Path):
    """telecom: the customer's own tool calls stay on the user message and are not agent turns."""
    sim = {"id": "s1", "task_id": "t", "trial": 0, "termination_reason": "user_stop",
           "reward_info": {"reward": 1.0},
           "messages": [
               {"role": "assistant", "content": "Hi! How can I help?"},
               {"role": "user", "content": None, "tool_calls": [
                   {"id": "u1", "name": "toggle_airplane_mode", "arguments": {}, "requestor": "user"}]},
               {"role": "tool", "id": "u1", "content": "Airplane mode off", "requestor": "user"},
               {"role": "user", "content": "It works now."},
               {"role": "assistant", "content": "Great."}]}
    f = tmp_path / "r.json"
    f.write_text(json.dumps({"info": {"environment_info": {"domain_name": "telecom"}}, "tasks": [], "simulations": [sim]}))
    st = Store(tmp_path / "s")
    res = ingest_file(st, f)
    assert res.episodes == 1, res.reasons
    msgs = json.loads(st.query("SELECT messages FROM episodes")["messages"][0])
    assert msgs[1]["tool_calls"][0]["requestor"] == "user"
    assert msgs[2]["requestor"] == "user"
    turns = st.query("SELECT turn_idx, observation, user_text FROM turns ORDER BY turn_idx")
    assert len(turns) == 2 and turns["observation"].isna().all()


def test_eval_pass_hat_k_equals_hand_computation(tmp_path: Path):
    """calib eval on imported tau2 results == pass^k computed by hand from the file."""
    path = FIXTURE_4x
    doc = _doc(path)
    ingest_file(Store(tmp_path / "s"), path, run_id="t2")
    res = runner.invoke(app, ["eval", "--store", str(tmp_path / "s"), "--run", "t2", "--json"])
    assert res.exit_code == 0, res.output
    got = {int(k): v for k, v in json.loads(res.output)["pass_hat_k"].items()}
    by_task: dict[str, list[bool]] = {}
    for s in doc["simulations"]:
        by_task.setdefault(str(s["task_id"]), []).append(s["reward_info"]["reward"] == 1.0)
    kmax = max(len(v) for v in by_task.values())
    for k in range(1, kmax + 1):
        vals = [comb(sum(v), k) / comb(len(v), k) for v in by_task.values() if len(v) >= k]
        assert got[k] == pytest.approx(sum(vals) / len(vals))
    assert kmax == 4 and 1 in got and 4 in got


def test_analyze_lists_tau2_component_signals(tmp_path: Path):
    path = FIXTURE_4x
    ingest_file(Store(tmp_path / "s"), path)
    out = tmp_path / "out"
    res = runner.invoke(app, ["analyze", "--store", str(tmp_path / "s"), "--out", str(out), "--n-boot", "200"])
    assert res.exit_code == 0, res.output
    doc = json.loads((out / "analysis.json").read_text())
    imported = doc["imported_signals"]
    ep = {r["signal"]: r for r in imported["episode"]}
    assert {"tau2:db_match", "tau2:communicate", "tau2:action_checks", "tau2:nl_assertions"} <= set(ep)
    for r in ep.values():
        assert r["verdict"] in ("keep", "flip", "zero", "outcome")
        assert {"auc", "auc_ci", "group_auc", "group_auc_ci", "pb_corr", "reproduces_outcome"} <= set(r)
    assert [r["signal"] for r in imported["turn"]] == ["tau2:action_match"]
    assert "sign_agreement" in imported["turn"][0]
    # imported signals are reported, never weighted in the proposed spec
    spec = (out / "reward_spec.yaml").read_text()
    assert "tau2:" not in spec.split("provenance")[0]
    assert "Imported signals" in res.output
    # episode-level rows sit in the signals table with turn_idx NULL
    n = Store(tmp_path / "s").query("SELECT count(*) AS n FROM signals WHERE signal = 'tau2:db_match' "
                                    "AND turn_idx IS NULL")["n"][0]
    assert n == len(_doc(path)["simulations"])


def test_eval_on_the_sample_too(tau2_sample: Path, tmp_path: Path):
    ingest_file(Store(tmp_path / "s"), tau2_sample, run_id="t2")
    res = runner.invoke(app, ["eval", "--store", str(tmp_path / "s"), "--run", "t2", "--json"])
    assert json.loads(res.output)["success_rate"] == 0.5


def test_episode_analysis_flags_a_component_that_is_the_outcome():
    import numpy as np

    from calib.analysis.episode import analyze_episode_signals

    y = np.array([1, 0, 1, 0, 1, 0, 0, 1], dtype=bool)
    data = {"group": np.array(list("aabbccdd"), dtype=object), "success": y, "outcome": y.astype(float),
            "values": {"x:is_outcome": y.astype(float), "x:noise": np.array([1, 1, 0, 0, 1, 1, 0, 0.0]),
                       "x:anti": 1.0 - y.astype(float)}}
    rows = {r["signal"]: r for r in analyze_episode_signals(data, n_boot=200)}
    assert rows["x:is_outcome"]["verdict"] == "outcome" and rows["x:is_outcome"]["reproduces_outcome"]
    assert rows["x:noise"]["verdict"] == "zero" and rows["x:noise"]["group_auc"] == 0.5
    assert rows["x:anti"]["verdict"] == "flip" and rows["x:anti"]["group_auc"] == 0.0


def test_report_has_an_imported_signals_section(tmp_path: Path):
    """calib analyze --html: the tau2 components get their own section (one row each), valid HTML."""
    import subprocess

    ingest_file(Store(tmp_path / "s"), FIXTURE_4x)
    out = tmp_path / "out"
    res = runner.invoke(app, ["analyze", "--store", str(tmp_path / "s"), "--out", str(out), "--n-boot", "200", "--html"])
    assert res.exit_code == 0, res.output
    html = (out / "report.html").read_text()
    section = html.split('<section id="imported-signals">', 1)[1].split("</section>", 1)[0]
    doc = json.loads((out / "analysis.json").read_text())["imported_signals"]
    for r in doc["turn"] + doc["episode"]:
        assert f'data-signal="{r["signal"]}"' in section
    assert 'data-signal="tau2:db_match" data-level="episode"' in section
    check = subprocess.run([sys.executable, str(ROOT / "scripts" / "check_html.py"), str(out / "report.html")],
                           capture_output=True, text=True, check=False)
    assert check.returncode == 0, check.stdout + check.stderr


def test_report_without_analysis_keeps_imported_signals_apart(tmp_path: Path):
    """calib report (no --analysis) after calib analyze: imported signals are not treated as module:function."""
    ingest_file(Store(tmp_path / "s"), FIXTURE_4x)
    assert runner.invoke(app, ["analyze", "--store", str(tmp_path / "s"), "--out", str(tmp_path / "a"),
                               "--n-boot", "50"]).exit_code == 0
    res = runner.invoke(app, ["report", "--store", str(tmp_path / "s"), "--out", str(tmp_path / "r.html")])
    assert res.exit_code == 0, res.output
    html = (tmp_path / "r.html").read_text()
    assert 'data-signal="tau2:db_match" data-level="episode"' in html
    assert 'id="signal-table"' in html and 'data-signal="tau2:db_match" class=' not in html
