"""Outputs of the real-model experiment: the Markdown table and the training curves.

The numbers come from :func:`experiments.real_lm.run_real_lm` (``results.json``); this only
formats them, so the table always equals the JSON.
"""

from __future__ import annotations

import math
from pathlib import Path
from typing import Any

from experiments.real_lm import ARM_NAMES


def _pct(x: Any) -> str:
    return "n/a" if x is None or not math.isfinite(float(x)) else f"{100 * float(x):.1f}"


def _ci(mean: float, ci: list[float]) -> str:
    lo, hi = ci
    if not (math.isfinite(lo) and math.isfinite(hi)):
        return _pct(mean)
    return f"{_pct(mean)} [{_pct(lo)}, {_pct(hi)}]"


def _num(x: Any, fmt: str = "{:.2f}") -> str:
    return "n/a" if x is None or not math.isfinite(float(x)) else fmt.format(float(x))


def markdown_table(result: dict[str, Any]) -> str:
    """One row for the SFT model and one per arm: held-out success and what happened during RL."""
    s = result["sft"]
    n_tasks = result["summary"]["test_tasks"]
    head = ("| policy | held-out success % (95% CI) | greedy % | test tasks with 0 < success < 1 | "
            "informative groups in RL % | mean abs advantage | turns (RL) | RL success % |")
    rows = [head, "|" + "---|" * 8,
            (f"| SFT warm start | {_ci(s['success'], s['ci'])} | {_pct(s['greedy_success'])} | "
             f"{_num(s['tasks_between'], '{:.1f}')} of {n_tasks} | - | - | - | - |")]
    for name in ARM_NAMES:
        a = result["arms"][name]
        rows.append(f"| {name} | {_ci(a['success'], a['ci'])} | {_pct(a['greedy_success'])} | "
                    f"{_num(a['tasks_between'], '{:.1f}')} of {n_tasks} | {_pct(a['informative_share'])} | "
                    f"{_num(a['mean_abs_advantage'], '{:.3f}')} | {_num(a['train_turns'], '{:.1f}')} | "
                    f"{_pct(a['train_success'])} |")
    return "\n".join(rows)


def plot_curves(result: dict[str, Any], out_dir: Path) -> list[Path]:
    """Training success per RL step (mean over seeds) for each arm, as PNG and SVG."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt
    import numpy as np

    fig, ax = plt.subplots(figsize=(7, 4))
    for name in ARM_NAMES:
        curves = [c for c in result["arms"][name].get("curves", []) if c]
        if not curves:
            continue
        n = min(len(c) for c in curves)
        mean = np.mean([c[:n] for c in curves], axis=0)
        ax.plot(range(1, n + 1), 100 * mean, marker="o", lw=1.6, label=name)
    seeds = result["summary"]["seeds"]
    ax.set(xlabel="RL step", ylabel="success % of the step's rollouts (train split)", ylim=(-2, 102),
           title=f"Real model (SmolLM2-135M after SFT): training success, mean of {seeds} seed(s)")
    ax.grid(alpha=0.3)
    ax.legend(fontsize=8)
    fig.tight_layout()
    out_dir.mkdir(parents=True, exist_ok=True)
    paths = [out_dir / "real_lm_curves.png", out_dir / "real_lm_curves.svg"]
    for p in paths:
        fig.savefig(p, dpi=120)
    plt.close(fig)
    return paths


def write_report(result: dict[str, Any], out_dir: Path) -> dict[str, Path]:
    """table.md and the curves next to results.json."""
    table = out_dir / "table.md"
    table.write_text(markdown_table(result) + "\n", encoding="utf-8")
    png, svg = plot_curves(result, out_dir)
    return {"table": table, "png": png, "svg": svg, "json": out_dir / "results.json"}
