"""Outputs of the misalignment experiment: the table (console and Markdown), the learning-curve
figure, ``results.json``, the calibrated specs, and the experiment's section of ``docs/results.md``.

I/O lives here and in the CLI; the numbers come from :mod:`experiments.misalignment`.
"""

from __future__ import annotations

import json
import math
import re
import shutil
from pathlib import Path
from typing import Any

from calib.jsonutil import plain
from calib.spec import save_spec
from experiments.arms import NAIVE_SIGNALS, NAIVE_WEIGHT, get_arms

SECTION = "## Synthetic testbed: the misalignment experiment"
FIGURE = "misalignment_curves"
BOUNDED_SECTION = "## Synthetic testbed, bounded farming: the misalignment experiment"
SPARSE_SECTION = "## Synthetic testbed, sparse rewards: the misalignment experiment"


def section_heading(setting: str) -> str:
    """The results.md heading of a setting (each setting has its own section)."""
    return {"bounded": BOUNDED_SECTION, "sparse": SPARSE_SECTION}.get(setting, SECTION)


def figure_name(setting: str) -> str:
    return FIGURE if setting == "default" else f"{FIGURE}_{setting}"


def _style(rewards: str) -> str:
    if rewards.startswith("preset:"):
        return "-" if "calibrated" in rewards else (0, (5, 1, 1, 1))
    return {"none": "-", "naive": ":", "valid_bonus": "-.", "calibrated": "--", "online": (0, (6, 2)),
            "online_zero": (0, (2, 2)), "gold_only": (0, (4, 1, 1, 1, 1, 1))}[rewards]


def _pct(x: float) -> str:
    return "n/a" if not math.isfinite(x) else f"{100 * x:.1f}"


def _ci(t: tuple[float, float, float], *, signed: bool = False, bounds: tuple[float, float] = (0.0, 1.0)) -> str:
    """``mean [lo, hi]`` in percent; the interval is clipped to what the quantity can take."""
    m, lo, hi = t
    fmt = (lambda v: f"{100 * v:+.1f}") if signed else _pct
    if not (math.isfinite(lo) and math.isfinite(hi)):
        return fmt(m)
    lo, hi = max(lo, bounds[0]), min(hi, bounds[1])
    return f"{fmt(m)} [{fmt(lo)}, {fmt(hi)}]"


def _rewards(row: dict[str, Any], rewards_kind: str) -> str:
    if rewards_kind == "none":
        return "outcome only"
    if rewards_kind == "naive":
        return f"+{NAIVE_WEIGHT} each: {', '.join(NAIVE_SIGNALS)}"
    if rewards_kind == "valid_bonus":
        return f"+{NAIVE_WEIGHT} valid_call"
    if rewards_kind == "gold_only":
        return f"+{NAIVE_WEIGHT} gold_match (hand-picked)"
    if rewards_kind in ("online", "online_zero"):
        w = {k: v for k, v in row["mean_weights"].items() if abs(v) >= 0.005}
        start = "calibrated" if rewards_kind == "online" else "zero"
        return (f"from {start}, recalibrated; at the end mean " + ", ".join(f"{k} {v:+.2f}" for k, v in w.items())
                if w else f"from {start}, recalibrated; all zero at the end")
    if rewards_kind.startswith("preset:"):
        w = {k: v for k, v in row["mean_weights"].items() if v != 0}
        return f"{rewards_kind}: " + ", ".join(f"{k} {v:+g}" for k, v in w.items())
    w = {k: v for k, v in row["mean_weights"].items() if abs(v) >= 0.005}
    return ("mean " + ", ".join(f"{k} {v:+.2f}" for k, v in w.items())) if w else "all zero"


def table_rows(result: dict[str, Any]) -> list[list[str]]:
    """The table's cells: one row per arm, header first."""
    arms = {a.name: a for a in get_arms(result["arms"])}
    header = ["arm", "advantage", "turn rewards", "final success % [95% CI]", "vs grpo (pp) [95% CI]",
              "mean success over training %", "turns", "timeouts %", "hang-ups %", "wrong writes %"]
    rows = [header]
    for r in result["summary"]:
        arm = arms[r["arm"]]
        delta = _ci(r["delta_vs_grpo"], signed=True, bounds=(-1.0, 1.0)) if "delta_vs_grpo" in r else "—"
        rows.append([
            r["arm"], arm.mode, _rewards(r, arm.rewards), _ci(r["final_success"]), delta,
            _ci(r["curve_mean_success"]), f"{r['turns']:.2f}", _pct(r["timeout"]), _pct(r.get("hung_up", 0.0)),
            _pct(r["wrong_write"]),
        ])
    return rows


def markdown_table(result: dict[str, Any]) -> str:
    rows = table_rows(result)
    lines = ["| " + " | ".join(rows[0]) + " |", "|" + "---|" * len(rows[0])]
    lines += ["| " + " | ".join(r) + " |" for r in rows[1:]]
    return "\n".join(lines)


def _short(t: tuple[float, float, float], *, signed: bool = False, bounds: tuple[float, float] = (0.0, 1.0)) -> str:
    """``mean (lo..hi)`` in percent with a whole-number interval, for the console."""
    m, lo, hi = t
    f = "+.1f" if signed else ".1f"
    if not (math.isfinite(lo) and math.isfinite(hi)):
        return format(100 * m, f)
    lo, hi = max(lo, bounds[0]), min(hi, bounds[1])
    return f"{100 * m:{f}} ({100 * lo:.0f}..{100 * hi:.0f})"


def rich_table(result: dict[str, Any]):
    """A narrower table for the console (the Markdown table has every column)."""
    from rich.table import Table

    t = Table(title=f"Misalignment experiment: {result['summary'][0]['seeds']} seeds, mean (95% CI)")
    for i, h in enumerate(["arm", "final success %", "vs grpo, pp", "mean over training %", "timeouts %",
                           "wrong writes %"]):
        t.add_column(h, justify="left" if i == 0 else "right", no_wrap=i == 0)
    for r in result["summary"]:
        delta = _short(r["delta_vs_grpo"], signed=True, bounds=(-1.0, 1.0)) if "delta_vs_grpo" in r else "-"
        t.add_row(r["arm"], _short(r["final_success"]), delta, _short(r["curve_mean_success"]),
                  _pct(r["timeout"]), _pct(r["wrong_write"]))
    return t


def plot_curves(result: dict[str, Any], out_dir: Path) -> list[Path]:
    """Learning curves (mean success over seeds with its 95% band) as PNG and SVG."""
    import matplotlib

    matplotlib.use("Agg")  # files only; never a window
    import matplotlib.pyplot as plt

    fig, ax = plt.subplots(figsize=(9.5, 4.8))
    arms = {a.name: a for a in get_arms(result["arms"])}
    colors = plt.get_cmap("tab20")  # 14 arms: tab10 would give two arms one colour
    for i, (name, c) in enumerate(result["curves"].items()):
        line = ax.plot(c["step"], [100 * v for v in c["mean"]], linestyle=_style(arms[name].rewards), label=name,
                       lw=1.8, color=colors(i % 20))[0]
        if all(math.isfinite(v) for v in c["lo"] + c["hi"]):
            ax.fill_between(c["step"], [100 * max(v, 0) for v in c["lo"]], [100 * min(v, 1) for v in c["hi"]],
                            color=line.get_color(), alpha=0.12, lw=0)
    seeds = result["summary"][0]["seeds"]
    setting = result["config"].get("setting", "default")
    where = {"bounded": "Bounded farming", "sparse": "Sparse rewards"}.get(setting, "Synthetic testbed")
    ax.set(xlabel="policy-gradient step", ylabel="success % (evaluation rollouts)", ylim=(-2, 102),
           title=f"{where}: learning curves, mean and 95% CI over {seeds} seeds")
    ax.grid(alpha=0.3)
    ax.legend(fontsize=8, loc="center left", bbox_to_anchor=(1.01, 0.5), frameon=False)
    fig.tight_layout()
    out_dir.mkdir(parents=True, exist_ok=True)
    name = figure_name(setting)
    paths = [out_dir / f"{name}.png", out_dir / f"{name}.svg"]
    for p in paths:
        fig.savefig(p, dpi=120)
    plt.close(fig)
    return paths


def write_outputs(result: dict[str, Any], out_dir: Path) -> dict[str, Path]:
    """results.json, table.md, the figures and the calibrated specs (one YAML per seed and mode)."""
    out_dir.mkdir(parents=True, exist_ok=True)
    data = {k: v for k, v in result.items() if k != "specs"}
    (out_dir / "results.json").write_text(json.dumps(plain(data), indent=1) + "\n", encoding="utf-8")
    (out_dir / "table.md").write_text(markdown_table(result) + "\n", encoding="utf-8")
    for seed, by_mode in result["specs"].items():
        for mode, spec in by_mode.items():
            save_spec(spec, out_dir / "specs" / f"seed{seed}_{mode}.yaml")
    png, svg = plot_curves(result, out_dir)
    return {"json": out_dir / "results.json", "table": out_dir / "table.md", "png": png, "svg": svg}


def results_section(result: dict[str, Any], *, figure: str, command: str, seconds: float) -> str:
    """The Markdown section for docs/results.md: setup, table, figure, and what it shows."""
    cfg = result["config"]
    env, tr = cfg["env"], cfg["train"]
    init = result["initial_success"]
    rows = {r["arm"]: r for r in result["summary"]}
    patience = env.get("patience", 0)
    lines = [
        section_heading(cfg.get("setting", "default")),
        "",
        f"Measured by `{command}` ({seconds:.0f} s on this machine); see docs/experiment.md for the",
        "testbed, the arms and how to read the table. Every number below is as measured.",
        "",
        (
            f"- Testbed: {env['n_tasks']} tasks of {env['min_stages']}-{env['max_stages']} writes, "
            f"{env['n_variants']} argument variants per write, at most {env['max_turns']} turns"
            + (f"; the customer hangs up after {patience} turns in a row without progress." if patience else
               "; nobody ends a conversation early (farming is bounded by the turn limit only).")
        ),
        (
            f"- Training per arm and seed: {tr['steps']} steps x {tr['tasks_per_step']} groups x "
            f"{tr['group_size']} episodes, Adam lr {tr['lr']}"
            + (f", KL penalty to the initial policy {tr['kl_coef']:g}" if tr.get("kl_coef") else ", no KL penalty")
            + f"; evaluation every {tr['eval_every']} steps on {tr['eval_episodes']} episodes per task."
        ),
        (
            "- Calibrated arms: spec proposed by the analysis (within-group AUC, sign agreement, verdict, "
            f"weight cap 0.3) from {result['calibration_episodes']} extra episodes of the initial policy per seed."
        ),
        (
            f"- Initial policy success: {_ci(init)} % over {cfg['seeds']} seeds "
            f"(seeds {cfg['first_seed']}..{cfg['first_seed'] + cfg['seeds'] - 1})."
        ),
        "",
        markdown_table(result),
        "",
        f"![learning curves]({figure})",
        "",
        "What it shows (generated from the numbers above):",
        "",
    ]
    lines += [f"- {s}" for s in findings(rows)]
    lines += trajectory_lines(result)
    verdicts = verdict_counts(result)
    if verdicts:
        lines += ["", "Verdicts of the analysis on the calibration batches (seeds with keep / flip / zero):", ""]
        lines += ["| signal | " + " | ".join(verdicts) + " |", "|---|" + "---|" * len(verdicts)]
        signals = list(next(iter(verdicts.values())))
        for sig in signals:
            cells = [f"{c['keep']} / {c['flip']} / {c['zero']} (mean weight {c['weight']:+.2f})"
                     for c in (verdicts[m][sig] for m in verdicts)]
            lines.append(f"| {sig} | " + " | ".join(cells) + " |")
    return "\n".join(lines) + "\n"


def trajectory_lines(result: dict[str, Any]) -> list[str]:
    """Per online arm: the mean weight of each signal (over seeds) at each recalibration, as a table."""
    traj = result.get("trajectories") or {}
    if not traj:
        return []
    rc = result["config"].get("recalibration", {})
    head = (f"Weights of the online arms over training (mean over seeds; recalibrated every {rc.get('every')} "
            f"steps on the last {rc.get('window')} steps' groups, blend {rc.get('blend')}, rule {rc.get('rule')}, "
            f"a signal moves only with >= {rc.get('min_groups')} informative groups and an interval off 0.5):")
    out = ["", head, ""]
    for name, t in traj.items():
        steps = t["step"]
        show = sorted({0, *steps[len(steps) // 4 :: max(1, len(steps) // 4)], steps[-1]})
        idx = [steps.index(s) for s in show]
        out += [f"`{name}`:", "", "| signal | " + " | ".join(f"step {s}" for s in show) + " |",
                "|---|" + "---|" * len(show)]
        for sig, ws in t["weights"].items():
            if any(abs(ws[j]) >= 0.005 for j in idx):
                out.append(f"| {sig} | " + " | ".join(f"{ws[j]:+.2f}" for j in idx) + " |")
        out.append("")
    return out


def verdict_counts(result: dict[str, Any]) -> dict[str, dict[str, dict[str, float]]]:
    """mode -> signal -> number of seeds with each verdict, and the mean proposed weight."""
    out: dict[str, dict[str, dict[str, float]]] = {}
    for by_mode in result["specs"].values():
        for mode, spec in by_mode.items():
            metrics = spec.provenance.metrics if spec.provenance else {}
            weights = spec.turn_weights()
            for sig, m in metrics.items():
                c = out.setdefault(mode, {}).setdefault(sig, {"keep": 0, "flip": 0, "zero": 0, "weight": 0.0})
                c[m["verdict"]] += 1
                c["weight"] += weights.get(sig, 0.0) / len(result["specs"])
    return out


def findings(rows: dict[str, dict[str, Any]]) -> list[str]:
    """Plain statements about the table, decided by the 95% intervals (no hand-written conclusions)."""
    out = []
    for name, r in rows.items():
        if "delta_vs_grpo" not in r:
            continue
        m, lo, hi = r["delta_vs_grpo"]
        if not (math.isfinite(lo) and math.isfinite(hi)):
            verdict = "cannot be compared with grpo with one seed"
        elif hi < 0:
            verdict = "ends below grpo (the interval of the paired difference is below 0)"
        elif lo > 0:
            verdict = "ends above grpo (the interval of the paired difference is above 0)"
        else:
            verdict = "is not distinguishable from grpo at the end (the interval covers 0)"
        base = rows.get("grpo", {})
        behaviour = (
            f" At the end {_pct(r['timeout'] + r.get('hung_up', 0.0))} % of its episodes time out or are hung "
            f"up on and {_pct(r['wrong_write'])} % make a wrong write (grpo: "
            f"{_pct(base['timeout'] + base.get('hung_up', 0.0))} % and {_pct(base['wrong_write'])} %)."
            if base else ""
        )
        out.append(f"`{name}` {verdict}: {100 * m:+.1f} pp final success.{behaviour}")
    return out


def update_results_md(path: Path, section: str, figures: list[Path], heading: str = SECTION) -> Path:
    """Replace (or append) the experiment's section of ``path``; other sections stay as they are.

    The section runs from its heading to the next ``## `` heading. Figures are copied to
    ``figures/`` next to the file so the document shows them from the repository.
    """
    path.parent.mkdir(parents=True, exist_ok=True)
    fig_dir = path.parent / "figures"
    fig_dir.mkdir(exist_ok=True)
    for f in figures:
        shutil.copyfile(f, fig_dir / f.name)
    text = path.read_text(encoding="utf-8") if path.exists() else "# Results\n\n"
    pattern = re.compile(rf"^{re.escape(heading)}\n.*?(?=^## |\Z)", re.DOTALL | re.MULTILINE)
    after = re.compile(rf"^{re.escape(SECTION)}\n.*?(?=^## |\Z)", re.DOTALL | re.MULTILINE).search(text)
    if pattern.search(text):
        text = pattern.sub(lambda _: section + "\n", text, count=1)
    elif after is not None:  # another setting's section goes right after the default one
        text = text[: after.end()].rstrip("\n") + "\n\n" + section + "\n" + text[after.end():]
    else:
        text = text.rstrip("\n") + "\n\n" + section
    path.write_text(text.rstrip("\n") + "\n", encoding="utf-8")
    return path
