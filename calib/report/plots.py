"""The report's figures as inline SVG text (matplotlib, Agg backend, no files, no fonts to fetch).

Each function takes plain numbers and returns one ``<svg>`` element as a string. Text stays text
(``svg.fonttype = none``: small, searchable, and matplotlib escapes it); scatter points are
rasterised into one embedded PNG (a ``data:`` image, which the page's CSP allows) so a panel's size
does not grow with its points. A per-figure hash salt keeps element ids unique across the page and
the output byte-identical from run to run (no date in the metadata), so a committed example report
only changes when its content does.
"""

from __future__ import annotations

import io
import math
import re
from collections.abc import Sequence
from typing import Any

import matplotlib

matplotlib.use("Agg")  # no display; must precede pyplot
import matplotlib.pyplot as plt
import numpy as np

VERDICT_COLORS = {"keep": "#1a7f37", "flip": "#c2410c", "zero": "#6b7280"}
SUCCESS_COLOR = "#1a7f37"
FAILURE_COLOR = "#b91c1c"
_SVG_START = re.compile(r"^.*?(?=<svg\b)", re.DOTALL)

_RC = {
    "svg.fonttype": "none",
    "font.size": 9,
    "axes.spines.top": False,
    "axes.spines.right": False,
    "axes.grid": True,
    "grid.alpha": 0.3,
    "figure.dpi": 100,
}


def _svg(fig: Any, name: str, *, tight: bool = True) -> str:
    """Serialise ``fig`` to a bare ``<svg>`` element (XML prolog and doctype dropped) and close it.

    ``tight`` crops to the drawn content (a second layout pass: fine for one axes, slow for grids,
    which set fixed margins instead).
    """
    buf = io.StringIO()
    with matplotlib.rc_context({"svg.hashsalt": f"calib-{name}"}):
        fig.savefig(buf, format="svg", bbox_inches="tight" if tight else None,
                    metadata={"Date": None, "Creator": "calib"})
    plt.close(fig)
    text = _SVG_START.sub("", buf.getvalue(), count=1)
    text = re.sub(r"\s*<metadata>.*?</metadata>", "", text, count=1, flags=re.DOTALL)  # RDF block: bytes, no content
    # ids: matplotlib's are hashes of content + salt; prefix them anyway so two figures can never clash
    text = re.sub(r'\bid="([^"]+)"', rf'id="{name}-\1"', text)
    text = re.sub(r'(url\(#|href="#)([^")]+)', rf"\1{name}-\2", text)
    return text.replace("<svg ", f'<svg role="img" aria-label="{name} plot" ', 1)


def _panel_grid(n: int, row_height: float) -> tuple[Any, np.ndarray, int]:
    """``(fig, axes [nrows, 4], nrows)`` for ``n`` small panels, four to a row, the unused ones hidden.

    Called inside the plots' ``rc_context``; the per-signal plots share it so their grids line up."""
    ncols = 4
    nrows = max(1, math.ceil(n / ncols))
    fig, axes = plt.subplots(nrows, ncols, figsize=(10, row_height * nrows), squeeze=False)
    for ax in axes.ravel()[n:]:
        ax.set_visible(False)
    return fig, axes, nrows


def _grid_margins(fig: Any, nrows: int) -> None:
    """Fixed margins for a grid of small panels (what tight_layout finds, without its cost)."""
    h = fig.get_figheight()
    fig.subplots_adjust(left=0.07, right=0.99, bottom=0.45 / h, top=1 - 0.35 / h, wspace=0.28,
                        hspace=0.75 if nrows > 1 else 0.2)


def _few_ticks(ax: Any) -> None:
    """Three or four ticks per axis: small panels stay legible, and each tick label costs layout time."""
    from matplotlib.ticker import MaxNLocator

    ax.xaxis.set_major_locator(MaxNLocator(4))
    ax.yaxis.set_major_locator(MaxNLocator(3))


def _fmt(v: float | None) -> str:
    return "n/a" if v is None or not math.isfinite(v) else f"{v:.3f}"


def forest_plot(rows: Sequence[Any]) -> str:
    """AUC and within-group AUC of every signal with their 95% CIs; 0.5 = no information."""
    n = len(rows)
    with matplotlib.rc_context(_RC):
        fig, ax = plt.subplots(figsize=(7.5, 0.45 * n + 1.2))
        ax.axvline(0.5, color="#111827", lw=1, ls="--", zorder=1)
        for i, r in enumerate(rows):
            y = n - 1 - i
            color = VERDICT_COLORS.get(r.verdict, "#6b7280")
            for dy, val, ci, marker in ((0.15, r.auc, r.auc_ci, "o"), (-0.15, r.group_auc, r.group_auc_ci, "s")):
                if ci[0] is not None and ci[1] is not None:
                    ax.plot([ci[0], ci[1]], [y + dy, y + dy], color=color, lw=2, alpha=0.8, zorder=2)
                if val is not None:
                    ax.plot([val], [y + dy], marker=marker, ms=6, color=color, zorder=3,
                            mfc=color if marker == "s" else "white")
        ax.set_yticks(range(n))
        ax.set_yticklabels([f"{r.signal} ({r.verdict})" for r in reversed(rows)])
        ax.set_xlim(0, 1)
        ax.set_ylim(-0.7, n - 0.3)
        ax.set_xlabel("AUC against success (circle: all pairs; square: pairs within a group)")
        if n:  # legend in grey: the colours are the verdicts
            ax.plot([], [], marker="o", color="#374151", mfc="white", label="auc (all pairs)")
            ax.plot([], [], marker="s", color="#374151", label="group auc (pairs in a group)")
            ax.legend(loc="lower center", bbox_to_anchor=(0.5, 1.0), ncol=2, frameon=False, fontsize=8)
        return _svg(fig, "forest")


def position_plot(rows: Sequence[Any], *, max_positions: int = 10) -> str:
    """AUC of the signal's value at turn t, per t: where in the episode a signal carries information."""
    with matplotlib.rc_context(_RC):
        fig, ax = plt.subplots(figsize=(7.5, 3.2))
        ax.axhline(0.5, color="#111827", lw=1, ls="--")
        cmap = plt.get_cmap("tab10")
        drawn = 0
        for i, r in enumerate(rows):
            ys = [np.nan if v is None else v for v in r.auc_by_position[:max_positions]]
            if not ys or all(np.isnan(ys)):
                continue
            ax.plot(range(len(ys)), ys, marker="o", ms=3, lw=1.3, color=cmap(i % 10), label=r.signal)
            drawn += 1
        ax.set_ylim(0, 1)
        ax.set_xlabel("turn index t")
        ax.set_ylabel("AUC of the value at turn t")
        if drawn:
            ax.legend(fontsize=7, ncol=2, frameon=False, loc="center left", bbox_to_anchor=(1.0, 0.5))
        else:
            ax.text(0.5, 0.5, "no position data in the analysis", ha="center", transform=ax.transAxes)
        return _svg(fig, "position")


def distribution_plot(dists: dict[str, dict[str, Any]], order: Sequence[str], *, aggregate: str = "mean") -> str:
    """One small histogram per signal: its episode aggregate in successes versus failures."""
    names = [s for s in order if s in dists]
    with matplotlib.rc_context(_RC):
        fig, axes, nrows = _panel_grid(len(names), 2.1)
        for ax, name in zip(axes.ravel(), names):
            d = dists[name]
            edges = np.asarray(d["edges"])
            ax.stairs(d["success"], edges, color=SUCCESS_COLOR, lw=1.5, label=f"success (n={d['n_success']})")
            ax.stairs(d["failure"], edges, color=FAILURE_COLOR, lw=1.5, ls="--", label=f"failure (n={d['n_failure']})")
            ax.set_title(f"{name}: {_fmt(d['mean_success'])} vs {_fmt(d['mean_failure'])}", fontsize=8)
            ax.tick_params(labelsize=7)
            _few_ticks(ax)
        if names:
            axes.ravel()[0].legend(fontsize=6, frameon=False)
            fig.supxlabel(f"episode {aggregate} of the signal", fontsize=8)
            fig.supylabel("share of episodes", fontsize=8)
        _grid_margins(fig, nrows)
        return _svg(fig, "distributions", tight=False)


def scatter_plot(panels: Sequence[Any], *, mode: str) -> str:
    """Turn advantage (y) against outcome advantage (x): the misalignment picture for ``mode``."""
    with matplotlib.rc_context(_RC):
        fig, axes, nrows = _panel_grid(len(panels), 2.4)
        for ax, p in zip(axes.ravel(), panels):
            agree = np.sign(p.y) == np.sign(p.x)
            against = (np.sign(p.y) == -np.sign(p.x)) & (p.y != 0)
            neutral = ~agree & ~against
            for sel, color in ((neutral, "#9ca3af"), (agree, SUCCESS_COLOR), (against, FAILURE_COLOR)):
                if sel.any():
                    ax.scatter(p.x[sel], p.y[sel], s=5, alpha=0.35, color=color, lw=0, rasterized=True)
            ax.axhline(0, color="#111827", lw=0.6)
            ax.axvline(0, color="#111827", lw=0.6)
            ax.set_title(f"{p.title}\nagreement {_fmt(p.agreement)}", fontsize=8)
            ax.tick_params(labelsize=7)
            _few_ticks(ax)
        if panels:
            fig.supxlabel("outcome advantage GN(R) of the turn's episode", fontsize=8)
            fig.supylabel(f"turn advantage ({mode})", fontsize=8)
        else:
            axes[0, 0].text(0.5, 0.5, "no informative groups to draw", ha="center", transform=axes[0, 0].transAxes)
        _grid_margins(fig, nrows)
        return _svg(fig, "scatter", tight=False)


def history_plot(history: dict[str, Any]) -> str:
    """Success per iteration (left) and turn-reward weights per iteration (right, when recorded)."""
    weights = history.get("weights") or {}
    with matplotlib.rc_context(_RC):
        fig, axes = plt.subplots(1, 2 if weights else 1, figsize=(10 if weights else 6, 3), squeeze=False)
        ax = axes[0, 0]
        for series in history.get("success", []):
            ax.plot(series["iteration"], series["success_rate"], marker="o", label=series["label"])
        from matplotlib.ticker import MaxNLocator

        ax.set_ylim(0, 1)
        ax.set_xlabel("iteration")
        ax.set_ylabel("success rate")
        ax.xaxis.set_major_locator(MaxNLocator(integer=True))
        ax.legend(fontsize=7, frameon=False)
        if weights:
            ax = axes[0, 1]
            cmap = plt.get_cmap("tab10")
            for i, (sig, w) in enumerate(weights.items()):
                ax.plot(w["iteration"], w["weight"], marker="o", ms=3, color=cmap(i % 10), label=sig)
            ax.axhline(0, color="#111827", lw=0.6)
            ax.set_xlabel("iteration")
            ax.set_ylabel("turn-reward weight")
            ax.xaxis.set_major_locator(MaxNLocator(integer=True))
            ax.legend(fontsize=7, frameon=False, loc="center left", bbox_to_anchor=(1.0, 0.5))
        fig.tight_layout()
        return _svg(fig, "history")


def _label(name: str, width: int = 40) -> str:
    """A signal name as a legend label: control characters shown as escapes (calib.textutil), ``$`` kept
    literal (matplotlib would read ``$...$`` as math), cut to ``width`` characters."""
    from calib.textutil import cut, visible

    return cut(visible(name), width).replace("$", r"\$")


def recalibration_plot(run: dict[str, Any], index: int = 0) -> str:
    """One run's online recalibration: success per training step (left) and each signal's weight at
    each recalibration (right), a ring where its verdict changed."""
    signals = run["signals"]
    with matplotlib.rc_context(_RC):
        fig, axes = plt.subplots(1, 2, figsize=(10, 3), squeeze=False)
        ax = axes[0, 0]
        ax.plot(run["success"]["step"], run["success"]["rate"], color=SUCCESS_COLOR, lw=1.2)
        ax.set_ylim(0, 1)
        ax.set_xlabel("training step")
        ax.set_ylabel("success rate")
        ax = axes[0, 1]
        cmap = plt.get_cmap("tab10")
        for i, (sig, w) in enumerate(signals.items()):
            color = cmap(i % 10)
            ax.plot(w["step"], w["weight"], marker="o", ms=3, color=color, label=_label(sig))
            flips = [(x, y) for x, y, c in zip(w["step"], w["weight"], w["changed"]) if c]
            if flips:
                ax.scatter(*zip(*flips), s=60, facecolors="none", edgecolors=color, linewidths=1.2)
        ax.axhline(0, color="#111827", lw=0.6)
        ax.set_xlabel("training step (recalibration)")
        ax.set_ylabel("turn-reward weight")
        if signals:
            ax.legend(fontsize=7, frameon=False, loc="center left", bbox_to_anchor=(1.0, 0.5))
        fig.tight_layout()
        return _svg(fig, f"recalibration-{index}")
