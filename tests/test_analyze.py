"""The analysis end to end: planted verdicts, the seed paper's misalignment case, the store path and
the ``calib analyze`` command (outputs, --base-spec, errors)."""

from __future__ import annotations

import json
import math
import sys
from pathlib import Path

import numpy as np
import pandas as pd
import pytest
from typer.testing import CliRunner

from calib.analysis.planted import PLANTED, planted_signals
from calib.analysis.run import AnalysisConfig, analyze_arrays, analyze_store, arrays_from_frames
from calib.cli import app
from calib.errors import UsageError
from calib.sample_episodes import synthetic_records
from calib.signals import BUILTIN_SIGNALS
from calib.signals.compute import compute_signals
from calib.spec import load_spec
from calib.store import Store

runner = CliRunner()


def _analyze_planted(seed: int, **kw):
    syn = planted_signals(300, 8, seed=seed, **kw)
    res = analyze_arrays(arrays_from_frames(syn.episodes_frame(), syn.signals_frame()), AnalysisConfig(n_boot=500))
    return {r["signal"]: r for r in res.signals}, res


# ----------------------------------------------------------------------------- planted signals


@pytest.mark.parametrize("seed", [0, 1, 2])
def test_planted_signals_get_expected_verdicts(seed):
    rows, res = _analyze_planted(seed)
    assert {name: r["verdict"] for name, r in rows.items()} == PLANTED
    assert rows["aligned"]["proposed_weight"] > 0 and rows["anti"]["proposed_weight"] < 0
    for name in ("frequent", "difficulty", "valid_bonus"):
        assert rows[name]["proposed_weight"] == 0.0
    # the table is sorted keep, flip, zero
    assert [r["verdict"] for r in res.signals][:2] == ["keep", "flip"]


@pytest.mark.parametrize("seed", [0, 1])
def test_difficulty_confound_high_pooled_auc_but_no_within_group_signal(seed):
    rows, _ = _analyze_planted(seed)
    d = rows["difficulty"]
    assert d["auc"] > 0.65 and d["auc_ci"][0] > 0.6  # pooled: looks like a strong signal
    assert abs(d["group_auc"] - 0.5) < 0.05  # inside a task it says nothing
    lo, hi = d["group_auc_ci"]
    assert lo < 0.5 < hi and d["verdict"] == "zero"
    assert d["pb_p"] < 1e-6  # the pooled correlation is "significant", which is the trap


def test_seed_paper_misalignment_valid_call_bonus():
    """A +0.3 valid-call bonus given to successes and failures alike: uninformative (group_auc ~0.5),
    yet its turn advantage is not zero, and much of it points against the outcome."""
    rows, _ = _analyze_planted(0)
    vb = rows["valid_bonus"]
    assert vb["verdict"] == "zero" and vb["group_auc_ci"][0] < 0.5 < vb["group_auc_ci"][1]
    # Failures run longer, so under sum-then-normalise (gtpo_hybrid) the bonus's return is larger
    # in failures: the advantage is *systematically* misaligned.
    assert vb["sign_agreement"]["gtpo_hybrid"] < 0.45
    assert vb["misaligned_mass"]["gtpo_hybrid"] > 0.4
    # Under normalise-then-sum (mt_grpo) the bonus is noise: about half the mass points each way, and
    # the misaligned part is large next to the outcome's own advantage.
    assert vb["sign_agreement"]["mt_grpo"] < 0.6
    assert vb["misaligned_mass"]["mt_grpo"] > 0.5
    # The aligned signal, for contrast, agrees far more.
    assert rows["aligned"]["sign_agreement"]["mt_grpo"] > 0.7

    # With equal lengths the gtpo_hybrid bias goes away, but the bonus still pushes both ways.
    rows_eq, _ = _analyze_planted(0, failure_extra_turns=0.0)
    agree = rows_eq["valid_bonus"]["sign_agreement"]["gtpo_hybrid"]
    assert 0.4 < agree < 0.6 and rows_eq["valid_bonus"]["misaligned_mass"]["gtpo_hybrid"] > 0.3


def test_misaligned_discriminative_signal_is_zero_not_keep():
    """A high group_auc is not enough: a signal whose advantage points against the outcome is zeroed."""
    cfg = AnalysisConfig(n_boot=200, min_agreement=0.99)
    syn = planted_signals(300, 8, seed=0)
    strict = {r["signal"]: r for r in analyze_arrays(arrays_from_frames(syn.episodes_frame(), syn.signals_frame()),
                                                      cfg).signals}
    assert strict["aligned"]["verdict"] == "zero" and "agrees with the outcome on only" in strict["aligned"]["reason"]


def test_analysis_is_deterministic_for_a_seed():
    a, _ = _analyze_planted(4)
    b, _ = _analyze_planted(4)
    assert a["aligned"]["group_auc_ci"] == b["aligned"]["group_auc_ci"]
    assert a["aligned"]["auc_ci"] == b["aligned"]["auc_ci"]


def test_config_errors_name_the_parameter():
    for kw, pat in [({"aggregate": "median"}, "aggregate"), ({"mode": "grpo"}, "mode"), ({"gamma": -0.1}, "gamma"),
                    ({"gamma": 1.5}, "gamma"),
                    ({"n_boot": 0}, "n_boot"), ({"alpha": 1.5}, "alpha"), ({"weight_cap": float("nan")}, "weight_cap")]:
        with pytest.raises(UsageError, match=pat):
            AnalysisConfig(**kw)


# ----------------------------------------------------------------------------- store path


@pytest.fixture(scope="module")
def synthetic_store(tmp_path_factory) -> Store:
    st = Store(tmp_path_factory.mktemp("an") / "store")
    st.add_episodes(synthetic_records(120, 8, seed=0, run_id="r1"), source="r1")
    errs = list(synthetic_records(5, 2, seed=1, run_id="r1", iteration=1))
    for r in errs:
        r["status"] = "error"
    st.add_episodes(errs, source="errors")
    st.add_episodes(synthetic_records(10, 4, seed=2, run_id="r2"), source="r2")
    return st


def test_store_analysis_on_synthetic_records(synthetic_store):
    names = list(BUILTIN_SIGNALS)
    compute_signals(synthetic_store, names, runs=["r1"])
    res = analyze_store(synthetic_store, names, runs=["r1"], config=AnalysisConfig(n_boot=300))
    rows = {r["signal"]: r for r in res.signals}
    assert set(rows) == set(names)
    assert rows["gold_match"]["verdict"] == "keep" and rows["gold_match"]["proposed_weight"] > 0
    assert rows["state_change"]["verdict"] == "flip" and rows["state_change"]["proposed_weight"] < 0
    assert rows["read_only"]["verdict"] == "zero"
    assert res.summary["episodes"] == 960 and res.summary["runs"] == ["r1"]
    assert res.summary["excluded_error_episodes"] == 10  # status='error' episodes take no part
    # turn_tokens is not in [0, 1]: its weight is scaled down so a typical turn stays within the cap
    tt = rows["turn_tokens"]
    assert tt["value_scale"] > 1 and abs(tt["proposed_weight"]) <= 0.3 / tt["value_scale"] + 1e-12


def test_store_arrays_match_frames(synthetic_store):
    """The SQL layout of flat turn values equals a straightforward pandas construction."""
    from calib.analysis.run import load_arrays

    compute_signals(synthetic_store, ["gold_match"], runs=["r2"])
    con = synthetic_store.connect()
    data = load_arrays(con, ["gold_match"], ["r2"])
    ep = con.execute("SELECT episode_id, n_turns FROM episodes WHERE run_id='r2' AND status='ok' "
                     "ORDER BY episode_id").df()
    sig = con.execute("SELECT episode_id, turn_idx, value FROM signals WHERE signal='gold_match'").df()
    con.close()
    full = ep.loc[ep.index.repeat(ep["n_turns"])].reset_index(drop=True)
    full["turn_idx"] = full.groupby("episode_id").cumcount()
    ref = full.merge(sig, on=["episode_id", "turn_idx"], how="left")["value"].to_numpy()
    np.testing.assert_array_equal(data.episode_id, ep["episode_id"].to_numpy())
    np.testing.assert_array_equal(np.isnan(data.values["gold_match"]), np.isnan(ref))
    np.testing.assert_allclose(data.values["gold_match"], ref, equal_nan=True)


# ----------------------------------------------------------------------------- calib analyze


def _run(*args: str):
    res = runner.invoke(app, list(args))
    assert "Traceback" not in (res.output or ""), res.output
    return res


@pytest.fixture(scope="module")
def taubench_store(tmp_path_factory, taubench_sample) -> Path:
    sample = taubench_sample
    d = tmp_path_factory.mktemp("tb") / "store"
    res = _run("ingest", str(sample), "--format", "taubench", "--store", str(d))
    assert res.exit_code == 0, res.output
    return d


def test_cli_on_taubench_sample(taubench_store, tmp_path):
    out = tmp_path / "out"
    res = _run("analyze", "--store", str(taubench_store), "--out", str(out), "--n-boot", "200")
    assert res.exit_code == 0, res.output
    doc = json.loads((out / "analysis.json").read_text(), parse_constant=lambda c: pytest.fail(f"non-JSON {c}"))
    names = {r["signal"] for r in doc["signals"]}
    assert names == set(BUILTIN_SIGNALS)
    assert doc["summary"]["episodes"] == 10 and doc["summary"]["success_rate"] == 0.5
    for r in doc["signals"]:
        for key in ("auc", "auc_ci", "group_auc", "group_auc_ci", "informative_groups", "n_groups", "pb_corr", "pb_p",
                    "sign_agreement", "misaligned_mass", "dead_share", "auc_by_position", "verdict",
                    "proposed_weight", "aggregate"):
            assert key in r, key
        assert set(r["sign_agreement"]) == {"mt_grpo", "gtpo_hybrid"}
    spec = load_spec(out / "reward_spec.yaml")
    assert set(spec.turn_weights()) == set(BUILTIN_SIGNALS)
    assert spec.provenance.runs == ["sample"] and spec.provenance.store == str(Path(taubench_store).absolute())
    # parquet and json hold the same numbers
    table = pd.read_parquet(out / "analysis.parquet").set_index("signal")
    for r in doc["signals"]:
        row = table.loc[r["signal"]]
        for key in ("auc", "pb_corr", "group_auc", "proposed_weight"):
            a, b = r[key], row[key]
            assert (a is None and math.isnan(b)) or a == pytest.approx(b), (r["signal"], key)
        assert row["verdict"] == r["verdict"]
    for name in BUILTIN_SIGNALS:
        assert name in res.output  # one table row per signal


def test_cli_json_and_cache(taubench_store, tmp_path):
    res = _run("analyze", "--store", str(taubench_store), "--out", str(tmp_path), "--json",
               "--signals", "gold_match,tool_error", "--n-boot", "50")
    assert res.exit_code == 0, res.output
    doc = json.loads(res.stdout.strip().splitlines()[-1])
    assert sorted(r["signal"] for r in doc["signals"]) == ["gold_match", "tool_error"]
    assert set(doc["files"]) == {"analysis.parquet", "analysis.json", "reward_spec.yaml"}


def test_cli_on_synthetic_store_with_base_spec(synthetic_store, tmp_path):
    base = tmp_path / "base.yaml"
    base.write_text(
        "version: 1\nname: iter1\nadvantage: {mode: mt_grpo, gamma: 1.0, lambda: 0.5, turn_norm: pooled}\n"
        "outcome: {weight: 2.0}\nturn_rewards: [{signal: valid_call, weight: 0.3}]\n"
    )
    out = tmp_path / "out"
    res = _run("analyze", "--store", str(synthetic_store.path), "--runs", "r1", "--out", str(out),
               "--base-spec", str(base), "--n-boot", "200", "--seed", "3")
    assert res.exit_code == 0, res.output
    spec = load_spec(out / "reward_spec.yaml")
    old = load_spec(base)
    assert spec.name == "iter1" and spec.advantage == old.advantage and spec.outcome == old.outcome
    assert spec.turn_weights() != old.turn_weights()
    assert spec.turn_weights()["gold_match"] > 0 and spec.turn_weights()["state_change"] < 0
    doc = json.loads((out / "analysis.json").read_text())
    assert doc["parameters"]["mode"] == "mt_grpo" and doc["parameters"]["seed"] == 3  # the base spec's mode
    assert doc["parameters"]["turn_norm"] == "pooled"


def test_cli_irc_rule_with_a_preset_base_spec(synthetic_store, tmp_path):
    out = tmp_path / "out"
    res = _run("analyze", "--store", str(synthetic_store.path), "--runs", "r1", "--out", str(out),
               "--base-spec", "preset:paper-v5-naive", "--rule", "irc", "--alpha", "0.4", "--delta", "0.05",
               "--n-boot", "50")
    assert res.exit_code == 0, res.output
    doc = json.loads((out / "analysis.json").read_text())
    assert doc["parameters"]["rule"] == "irc" and doc["parameters"]["irc_alpha"] == 0.4
    assert doc["convergence"]["source"] == "base" and doc["convergence"]["name"] == "paper-v5-naive"
    assert doc["convergence"]["mode"] == "mt_grpo"
    assert set(doc["advantage_diagnostics"]) == {"mt_grpo", "gtpo", "gtpo_hybrid"}
    assert "soft_match_score" in doc["tier_alignment"] and "message_only" in doc["tier_alignment"]
    for r in doc["signals"]:
        assert abs(r["proposed_weight"]) <= 0.4 + 1e-12 and "irc" in r
    assert "tier alignment of base spec paper-v5-naive" in res.output


@pytest.mark.parametrize(
    "args, pattern, code",
    [
        (["--mode", "ppo"], "--mode 'ppo'", 2),
        (["--rule", "best"], "--rule 'best'", 2),
        (["--base-spec", "preset:nope"], "no such preset", 2),
        (["--runs", "nope"], "no run 'nope'", 2),
        (["--signals", "gold"], "unknown signal 'gold'", 2),
        (["--signal", "no_such_mod_xyz:f"], "cannot import module", 2),
        (["--n-boot", "0"], "--n-boot", 2),
        (["--aggregate", "median"], "aggregate", 2),
    ],
)
def test_cli_bad_arguments(synthetic_store, tmp_path, args, pattern, code):
    res = _run("analyze", "--store", str(synthetic_store.path), "--out", str(tmp_path), *args)
    assert res.exit_code == code, res.output
    assert pattern in res.output
    assert len([ln for ln in res.output.splitlines() if ln.strip()]) <= 3  # one red line (wrapped)


def test_cli_bad_base_spec_and_missing_store(synthetic_store, tmp_path):
    bad = tmp_path / "bad.yaml"
    bad.write_text("advantage: {mode: gtpo_hybrid, gamma: 2}\nturn_rewards: [{signal: gold_match, weight: .nan}]\n")
    res = _run("analyze", "--store", str(synthetic_store.path), "--base-spec", str(bad), "--out", str(tmp_path))
    assert res.exit_code == 2 and "advantage.gamma" in res.output and "turn_rewards[0].weight" in res.output
    res = _run("analyze", "--store", str(tmp_path / "no-store"), "--out", str(tmp_path))
    assert res.exit_code == 1 and "no store at" in res.output


def test_cli_html_without_report_module(synthetic_store, tmp_path, monkeypatch):
    monkeypatch.setitem(sys.modules, "calib.report", None)  # import fails as if not installed
    res = _run("analyze", "--store", str(synthetic_store.path), "--out", str(tmp_path), "--html")
    assert res.exit_code == 2 and "--html needs calib.report" in res.output
    assert not (tmp_path / "analysis.json").exists()  # fails before doing any work


def test_cli_html_writes_the_report(synthetic_store, tmp_path, skip_or_fail):
    try:
        import calib.report  # noqa: F401
    except ImportError:
        skip_or_fail("calib.report is not installed: --html is covered by the error test above")
    res = _run("analyze", "--store", str(synthetic_store.path), "--runs", "r2", "--out", str(tmp_path), "--html",
               "--n-boot", "50")
    assert res.exit_code == 0, res.output
    html = (tmp_path / "report.html").read_text()
    assert "gold_match" in html and (tmp_path / "analysis.json").exists()


@pytest.mark.slow
def test_bench_quick_runs_and_reports_figures():
    import subprocess

    root = Path(__file__).parents[1]
    proc = subprocess.run([sys.executable, str(root / "bench" / "analyze.py"), "--quick"], check=False,
                          capture_output=True,
                          text=True, timeout=600)
    assert proc.returncode == 0, proc.stderr[-2000:]
    lines = [json.loads(ln) for ln in proc.stdout.splitlines() if ln.startswith("{")]
    figures = {ln["figure"]: ln for ln in lines}
    assert set(figures) == {"seconds_100k", "speedup_vs_pandas"}
    assert all(ln["bench"] == "analyze" and isinstance(ln["value"], float) for ln in lines)
    assert figures["speedup_vs_pandas"]["details"]["max_abs_diff"] < 1e-9
