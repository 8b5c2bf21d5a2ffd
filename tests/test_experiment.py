"""The misalignment experiment: policy, training step, calibrated spec, summary statistics, outputs and CLI."""

from __future__ import annotations

import json

import numpy as np
import pytest
import torch
from scipy import stats
from typer.testing import CliRunner

from calib.advantages import group_normalize
from calib.analysis.run import AnalysisConfig
from calib.cli import app
from calib.envs.testbed import SIGNALS, SyntheticConfig, make_tasks, rollout
from calib.spec import load_spec, save_spec
from experiments.arms import ARM_NAMES, NAIVE_SIGNALS, get_arms
from experiments.calibrate import analyze_batch, calibrated_spec
from experiments.misalignment import ExperimentConfig, mean_ci, quick_config, run_experiment
from experiments.report import SECTION, update_results_md
from experiments.train import TrainConfig, train_arm
from trainer.tabular import TabularPolicy, batch_advantages, policy_step, prior_logits, softmax_table

CFG = SyntheticConfig(n_tasks=12)


def _prior_batch(seed: int = 0, per_task: int = 16, cfg: SyntheticConfig = CFG):
    tasks = make_tasks(cfg, seed)
    probs = softmax_table(prior_logits(tasks))
    return rollout(tasks, probs, np.repeat(np.arange(cfg.n_tasks), per_task), np.random.default_rng([seed, 9]))


def test_policy_log_prob_matches_the_table():
    tasks = make_tasks(CFG, 0)
    pol = TabularPolicy(tasks)
    with torch.no_grad():
        pol.theta.normal_(generator=torch.Generator().manual_seed(0))
    p = pol.probs()
    assert p.shape == CFG.table_shape and np.allclose(p.sum(-1), 1.0)
    b = rollout(tasks, p, np.repeat(np.arange(CFG.n_tasks), 4), np.random.default_rng(0))
    v = b.valid
    task = np.broadcast_to(b.task[:, None], v.shape)[v]
    lp = pol.log_prob(task, b.stage[v], b.looked[v], b.actions[v]).detach().numpy()
    assert np.allclose(lp, np.log(p[task, b.stage[v], b.looked[v], b.actions[v]]))


def test_prior_starts_modest_and_knows_the_shape_of_the_job():
    b = _prior_batch(per_task=64)
    assert 0.05 < b.success.mean() < 0.5  # something to learn, and successes to learn from
    p = softmax_table(prior_logits(b.tasks))
    done = b.tasks.done_mask
    assert (p[..., CFG.reply][done] > 0.5).all() and (p[..., CFG.reply][~done] < 0.1).all()


def test_policy_step_changes_parameters_in_the_advantage_direction():
    tasks = make_tasks(CFG, 0)
    pol = TabularPolicy(tasks)
    opt = torch.optim.SGD(pol.parameters(), lr=0.5)
    spec = get_arms(["grpo"])[0].fixed_spec()
    b = rollout(tasks, pol.probs(), np.repeat(np.arange(CFG.n_tasks), 8), np.random.default_rng(1))
    before = pol.probs()
    policy_step(pol, opt, b, spec)
    assert pol.theta.abs().sum() > 0
    after = pol.probs()
    # Under grpo every turn of an episode gets GN(R): the first action of successful episodes gains
    # probability on average, that of failed episodes in informative groups loses it.
    adv = np.array([a[0] for a in batch_advantages(b, spec)])
    first = (b.task, b.stage[:, 0], b.looked[:, 0], b.actions[:, 0])
    gain = after[first] - before[first]
    assert np.allclose(adv, group_normalize(b.outcome, b.group))
    assert gain[adv > 0].mean() > 0 > gain[adv < 0].mean()


def test_grpo_training_learns_the_testbed():
    tasks = make_tasks(CFG, 0)
    cfg = TrainConfig(steps=25, tasks_per_step=6, eval_every=25, eval_episodes=16)
    res = train_arm(tasks, get_arms(["grpo"])[0].fixed_spec(), cfg, seed=0)
    curve = res["curve"]
    assert [p["step"] for p in curve] == [0, 25]
    assert curve[-1]["success"] > curve[0]["success"] + 0.2


def test_training_is_deterministic_per_seed():
    tasks = make_tasks(CFG, 1)
    cfg = TrainConfig(steps=5, tasks_per_step=4, eval_every=5, eval_episodes=4)
    spec = get_arms(["naive_gtpo_hybrid"])[0].fixed_spec()
    assert train_arm(tasks, spec, cfg, seed=1) == train_arm(tasks, spec, cfg, seed=1)


def test_arms_and_their_specs():
    assert ARM_NAMES[0] == "grpo" and len(set(ARM_NAMES)) == len(ARM_NAMES)
    naive = get_arms(["naive_mt_grpo"])[0].fixed_spec()
    assert naive.turn_weights() == {s: 0.3 for s in NAIVE_SIGNALS} and naive.advantage.mode == "mt_grpo"
    assert get_arms(["grpo"])[0].fixed_spec().turn_weights() == {}
    assert get_arms(["calibrated_mt_grpo"])[0].fixed_spec() is None
    with pytest.raises(ValueError, match="bogus"):
        get_arms(["grpo", "bogus"])


@pytest.mark.parametrize("mode", ["mt_grpo", "gtpo_hybrid"])
def test_calibrated_spec_is_the_analysis_proposal(tmp_path, mode):
    b = _prior_batch(per_task=32)
    spec = calibrated_spec(b, mode=mode, seed=3)
    result, cfg = analyze_batch(b, mode=mode, seed=3)
    assert isinstance(cfg, AnalysisConfig) and cfg.mode == mode
    proposed = {r["signal"]: r["proposed_weight"] for r in result.signals}
    w = spec.turn_weights()
    assert set(w) == set(SIGNALS) and all(abs(w[s] - proposed[s]) < 1e-6 for s in SIGNALS)
    assert spec.advantage.mode == mode
    # The planted relations come out as they should: the aligned signal is kept, wrong writes flipped.
    assert w["gold_match"] > 0 and w["state_change"] < 0
    save_spec(spec, tmp_path / "s.yaml")
    assert load_spec(tmp_path / "s.yaml", known_signals=SIGNALS).turn_weights() == w


def test_mean_ci_is_the_t_interval():
    x = np.array([0.2, 0.5, 0.4, 0.9])
    m, lo, hi = mean_ci(x)
    ref = stats.t.interval(0.95, len(x) - 1, loc=x.mean(), scale=stats.sem(x))
    assert m == pytest.approx(x.mean()) and (lo, hi) == pytest.approx(ref)
    assert np.isnan(mean_ci(np.array([0.3]))[1])


def test_results_section_replaces_only_its_own_section(tmp_path):
    md = tmp_path / "docs" / "results.md"
    md.parent.mkdir()
    fig = tmp_path / "f.png"
    fig.write_bytes(b"png")
    other = "## Real model on airline-mini\n\nnumbers by the lead\n"
    md.write_text(f"# Results\n\nintro\n\n{SECTION}\n\nold table\n\n{other}")
    update_results_md(md, f"{SECTION}\n\nnew table\n", [fig])
    text = md.read_text()
    assert "new table" in text and "old table" not in text
    assert text.startswith("# Results\n\nintro\n") and text.rstrip().endswith("numbers by the lead")
    assert text.index(SECTION) < text.index("## Real model")
    update_results_md(md, f"{SECTION}\n\nnew table\n", [fig])
    assert md.read_text() == text  # idempotent
    assert (md.parent / "figures" / "f.png").read_bytes() == b"png"
    fresh = tmp_path / "fresh.md"
    update_results_md(fresh, f"{SECTION}\n\nx\n", [])
    assert fresh.read_text().startswith("# Results") and SECTION in fresh.read_text()


def test_run_experiment_summary_shapes():
    cfg = ExperimentConfig(
        seeds=2, calib_episodes=4, arms=("grpo", "calibrated_mt_grpo"), env=SyntheticConfig(n_tasks=6),
        train=TrainConfig(steps=4, tasks_per_step=3, eval_every=2, eval_episodes=4),
    )
    seen = []
    res = run_experiment(cfg, on_arm=lambda seed, arm: seen.append((seed, arm)))
    assert seen == [(0, "grpo"), (0, "calibrated_mt_grpo"), (1, "grpo"), (1, "calibrated_mt_grpo")]
    rows = {r["arm"]: r for r in res["summary"]}
    assert set(rows) == {"grpo", "calibrated_mt_grpo"} and "delta_vs_grpo" not in rows["grpo"]
    d = rows["calibrated_mt_grpo"]["delta_vs_grpo"][0]
    finals = {a: [s[a]["final"]["success"] for s in res["per_seed"]] for a in rows}
    assert d == pytest.approx(np.mean(finals["calibrated_mt_grpo"]) - np.mean(finals["grpo"]))
    assert res["curves"]["grpo"]["step"] == [0, 2, 4]
    assert set(res["specs"][0]) == {"mt_grpo"}


def test_cli_misalignment_quick_three_seeds(tmp_path):
    """The acceptance test: `calib experiment misalignment --seeds 3` on a small budget makes the table."""
    out, md = tmp_path / "exp", tmp_path / "results.md"
    r = CliRunner().invoke(
        app, ["experiment", "misalignment", "--seeds", "3", "--quick", "--out", str(out), "--results-md", str(md)],
        env={"COLUMNS": "160"},
    )
    assert r.exit_code == 0, r.output
    for name in ARM_NAMES:
        assert name in r.output
    data = json.loads((out / "results.json").read_text())
    assert [row["arm"] for row in data["summary"]] == list(ARM_NAMES)
    assert all(row["seeds"] == 3 for row in data["summary"])
    assert data["config"]["train"]["steps"] == quick_config().train.steps
    assert all(len(c["mean"]) == len(c["step"]) for c in data["curves"].values())
    assert (out / "misalignment_curves.png").read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"
    assert (out / "misalignment_curves.svg").read_text().lstrip().startswith("<?xml")
    assert len(list((out / "specs").glob("*.yaml"))) == 3 * 2
    table = (out / "table.md").read_text()
    assert table.count("\n") == 2 + len(ARM_NAMES)
    text = md.read_text()
    assert SECTION in text and table.strip() in text and "figures/misalignment_curves.png" in text
    assert f"calib experiment misalignment --seeds 3 --quick --out {out}" in text
    assert (tmp_path / "figures" / "misalignment_curves.png").exists()


def test_cli_rejects_unknown_arm_with_one_line(tmp_path):
    r = CliRunner().invoke(app, ["experiment", "misalignment", "--arms", "grpo,nope", "--out", str(tmp_path)])
    assert r.exit_code == 2
    assert "nope" in r.output and "Traceback" not in r.output


def test_cli_quick_does_not_touch_results_md_by_default(tmp_path, monkeypatch):
    monkeypatch.chdir(tmp_path)
    r = CliRunner().invoke(
        app, ["experiment", "misalignment", "--seeds", "1", "--quick", "--steps", "2", "--arms", "grpo", "--json"]
    )
    assert r.exit_code == 0, r.output
    doc = json.loads(r.output.strip().splitlines()[-1])
    assert doc["results_md"] is None and not (tmp_path / "docs").exists()
    assert (tmp_path / "reports" / "experiment" / "results.json").exists()


def test_paper_arms_use_the_presets():
    v5 = get_arms(["paper_v5_naive"])[0].fixed_spec()
    v6 = get_arms(["paper_v6_calibrated"])[0].fixed_spec()
    assert v5.turn_weights() == load_spec("preset:paper-v5-naive").turn_weights() and v5.advantage.mode == "mt_grpo"
    assert v6.advantage.mode == "gtpo_hybrid" and v6.turn_weights()["state_change"] == -0.1
    b = _prior_batch(per_task=4)
    assert set(v5.turn_weights()) <= set(b.signals)  # the testbed has every signal the presets name
    r = b.turn_rewards(v5.turn_weights())
    assert [len(x) for x in r] == list(b.lengths)


def test_bounded_setting_ends_idle_conversations_and_adds_the_kl_penalty():
    from experiments.misalignment import BOUNDED_KL, BOUNDED_PATIENCE, bounded_setting

    cfg = bounded_setting(quick_config(1))
    assert cfg.setting == "bounded" and cfg.env.patience == BOUNDED_PATIENCE and cfg.train.kl_coef == BOUNDED_KL
    tasks = make_tasks(cfg.env, 0)
    lookups = np.zeros(cfg.env.table_shape)
    lookups[..., cfg.env.lookup] = 1.0  # a farmer: looks things up for ever
    b = rollout(tasks, lookups, np.repeat(np.arange(cfg.env.n_tasks), 2), np.random.default_rng(0))
    assert b.hung_up.all() and not b.timeout.any() and (b.lengths == BOUNDED_PATIENCE).all()
    # The KL term is 0 at the prior and grows as the policy leaves it.
    policy = TabularPolicy(tasks)
    idx = np.zeros(5, dtype=np.int64)
    assert float(policy.kl_to_prior(idx, idx, idx).detach().sum()) == pytest.approx(0.0, abs=1e-12)
    with torch.no_grad():
        policy.theta[0, 0, 0, 0] += 2.0
    assert float(policy.kl_to_prior(idx, idx, idx).detach().min()) > 0.01


def test_cli_bounded_setting_writes_its_own_section(tmp_path):
    from experiments.report import BOUNDED_SECTION

    md = tmp_path / "results.md"
    md.write_text(f"# Results\n\n{SECTION}\n\ndefault table\n\n## Real model\n\nkept\n")
    r = CliRunner().invoke(
        app, ["experiment", "misalignment", "--seeds", "2", "--quick", "--steps", "4", "--setting", "bounded",
              "--arms", "grpo,paper_v6_calibrated", "--out", str(tmp_path / "exp"), "--results-md", str(md)],
    )
    assert r.exit_code == 0, r.output
    text = md.read_text()
    assert text.index(SECTION) < text.index(BOUNDED_SECTION) < text.index("## Real model")
    assert "default table" in text and "kept" in text and "--setting bounded" in text
    assert "hangs up after 3 turns" in text and "KL penalty to the initial policy 0.04" in text
    assert (tmp_path / "exp" / "misalignment_curves_bounded.png").exists()
    r = CliRunner().invoke(app, ["experiment", "misalignment", "--setting", "nope", "--out", str(tmp_path / "x")])
    assert r.exit_code == 2 and "--setting 'nope'" in r.output


def test_an_installed_cli_never_rewrites_results_md_unless_asked(tmp_path, monkeypatch):
    """Without --results-md the full (not --quick) run writes only its --out folder (issue 25): rewriting
    docs/results.md belongs to scripts/update_results.sh."""
    monkeypatch.chdir(tmp_path)
    (tmp_path / "docs").mkdir()
    (tmp_path / "docs" / "results.md").write_text("# Results\n\nkeep me\n")
    r = CliRunner().invoke(app, ["experiment", "misalignment", "--seeds", "1", "--steps", "1", "--arms", "grpo",
                                 "--out", str(tmp_path / "exp"), "--json"])
    assert r.exit_code == 0, r.output
    assert json.loads(r.output.strip().splitlines()[-1])["results_md"] is None
    assert (tmp_path / "docs" / "results.md").read_text() == "# Results\n\nkeep me\n"
    assert not (tmp_path / "docs" / "figures").exists()
