"""Summary table and plot of a finished sweep."""
from __future__ import annotations

import itertools
import math
from pathlib import Path
from typing import Any, Optional, Sequence

from simulator.sweep.spec import SweepSpec

#: result columns that are not per-run metrics
_NOT_METRICS = {"point", "run", "seed", "ideal_accuracy", "seconds_per_image"}

#: most facets drawn for sweeps of more than two parameters
MAX_FACETS = 12

#: legend label of the reference accuracy line
FLOAT_LABEL = "ideal (floating point)"
#: the same for witin networks: the reference is the float network, not the noise-free chip
WITIN_FLOAT_LABEL = "float network (no chip quantization, no noise)"


def summarize(results, spec: SweepSpec, point_vals: Sequence[dict[str, Any]]):
    """One row per point: swept values, runs, mean/std/min/max accuracy (+ other metrics' means)."""
    import pandas as pd

    names = spec.names
    metrics = [c for c in results.columns if c not in _NOT_METRICS and c not in names and c != "accuracy"]
    rows = []
    groups = dict(tuple(results.groupby("point", sort=True))) if len(results) else {}
    for k, vals in enumerate(point_vals):
        g = groups.get(k)
        if g is None or not len(g):
            continue
        acc = g["accuracy"].astype(float)
        row = {"point": k, **{n: _display(vals[n]) for n in names}, "runs": len(g)}
        row.update(
            mean=float(acc.mean()),
            std=float(acc.std(ddof=1)) if len(acc) > 1 else 0.0,
            min=float(acc.min()),
            max=float(acc.max()),
        )
        for m in metrics:
            col = pd.to_numeric(g[m], errors="coerce")
            if col.notna().any():
                row[f"{m}_mean"] = float(col.mean())
        if "ideal_accuracy" in g and g["ideal_accuracy"].notna().any():
            row["ideal_accuracy"] = float(g["ideal_accuracy"].dropna().iloc[0])
        if "seconds_per_image" in g and g["seconds_per_image"].notna().any():
            row["seconds_per_image"] = float(g["seconds_per_image"].mean())
        rows.append(row)
    return pd.DataFrame(rows)


def _display(v: Any) -> Any:
    if isinstance(v, (list, tuple, dict)):
        import json

        return json.dumps(v)
    return v


def format_summary(summary) -> str:
    if summary is None or not len(summary):
        return "(no finished points)"
    return summary.to_string(index=False, float_format=lambda x: f"{x:.4g}")


def _numeric(values: Sequence[Any]) -> bool:
    return all(isinstance(v, (int, float)) and not isinstance(v, bool) and math.isfinite(v) for v in values)


def plot_summary(summary, spec: SweepSpec, path: "str | Path", *, title: str = "", nruns: int = 1,
                 witin: bool = False) -> Optional[str]:
    """Save a PNG of accuracy vs the swept parameter(s) (:func:`summary_figure`); return a note when none is drawn."""
    fig = summary_figure(summary, spec, title=title, nruns=nruns, witin=witin)
    if isinstance(fig, str):
        return fig
    fig.savefig(str(path), dpi=110)
    return None


def summary_figure(summary, spec: SweepSpec, *, title: str = "", nruns: int = 1, witin: bool = False):
    """The Matplotlib figure of accuracy vs the swept parameter(s), or a note (str) saying why there is none.

    One parameter: line plot with std error bars (log x for a log range);
    zipped parameters: the same, with the other parameters' values on a
    second x axis on top. Two: heat map of the mean with ``mean±std`` labels
    (the mean alone at one run per point). More: one heat map of the first
    two per value of the others (up to :data:`MAX_FACETS` facets), else no
    plot. ``witin``: the network has witin chip layers, so the reference line
    is labelled as the float network and a noise_level = 0 point as the
    noise-free chip.
    """
    if summary is None or not len(summary):
        return "no finished points to plot"  # a note, not a figure
    # the Agg canvas directly: no pyplot state, no dependence on the user's backend
    from matplotlib.backends.backend_agg import FigureCanvasAgg
    from matplotlib.figure import Figure

    names = spec.names
    spread = f"{nruns} runs per point, error bars: std" if nruns > 1 else "1 run per point: no spread"
    sub = f"{title}  ({spread})" if title else ""
    if len(names) == 1 or spec.zip:
        fig = Figure(figsize=(6.4, 4.4 + (0.4 if spec.zip and len(names) > 1 else 0)), layout="constrained")
        ax = fig.add_subplot()
        _line(ax, summary, spec, witin=witin)
        if sub:
            ax.set_title(sub, fontsize=9)
    else:
        others = names[2:]
        combos = list(itertools.product(*(_unique(summary[n]) for n in others))) if others else [()]
        if len(combos) > MAX_FACETS:
            return (
                f"no plot: {len(names)} swept parameters give {len(combos)} facets (at most {MAX_FACETS}); "
                f"see summary.csv"
            )
        ncol = min(3, len(combos))
        nrow = math.ceil(len(combos) / ncol)
        ny, nx = len(_unique(summary[names[0]])), len(_unique(summary[names[1]]))
        w = min(4.8, 1.2 + 0.7 * nx)
        h = min(4.2, 1.0 + 0.45 * ny)
        fig = Figure(figsize=(max(5.0, w * ncol + 1.2), max(3.6, h * nrow + 0.8)), layout="constrained")
        axes = [fig.add_subplot(nrow, ncol, i + 1) for i in range(len(combos))]
        vmin, vmax = float(summary["mean"].min()), float(summary["mean"].max())
        im = None
        for ax, combo in zip(axes, combos):
            part = summary
            for n, v in zip(others, combo):
                part = part[part[n] == v]
            im = _heat(ax, part, names[0], names[1], vmin, vmax, show_std=nruns > 1)
            if others:
                ax.set_title(", ".join(f"{n}={v}" for n, v in zip(others, combo)), fontsize=9)
        if im is not None:
            fig.colorbar(im, ax=axes, label="accuracy (mean)")
        if sub:
            fig.suptitle(sub, fontsize=9)
    FigureCanvasAgg(fig)
    return fig


def _unique(col) -> list:
    seen = []
    for v in col:
        if v not in seen:
            seen.append(v)
    return seen


def _line(ax, summary, spec: SweepSpec, *, witin: bool = False) -> None:
    names = spec.names
    first = spec.params[0]
    xs = list(summary[names[0]])
    numeric = _numeric(xs) and (len(names) == 1 or len(set(xs)) == len(xs))
    if numeric:
        x = xs
        label = names[0]
    else:
        x = list(range(len(summary)))
        ticks = [", ".join(str(summary[n].iloc[i]) for n in names) for i in range(len(summary))]
        ax.set_xticks(x, ticks, rotation=30 if max(len(t) for t in ticks) > 6 else 0, ha="right" if max(len(t) for t in ticks) > 6 else "center")
        label = ", ".join(names)
    runs = summary["runs"] if "runs" in summary else [1] * len(summary)
    several = any(int(r) > 1 for r in runs)
    ax.errorbar(x, summary["mean"], yerr=summary["std"] if several else None, marker="o", capsize=3,
                label=("chip" if witin else "analog") + (" (mean ± std)" if several else " (one run per point)"))
    if "ideal_accuracy" in summary and summary["ideal_accuracy"].notna().any():
        ax.plot(x, summary["ideal_accuracy"], ls="--", color="0.5", label=WITIN_FLOAT_LABEL if witin else FLOAT_LABEL)
    if witin and "noise_level" in names:
        for i, level in enumerate(summary["noise_level"]):
            if level == 0:
                ax.annotate("noise-free chip", (x[i], summary["mean"].iloc[i]), textcoords="offset points",
                            xytext=(6, -12), fontsize=8)
    if numeric and first.scale == "log" and all(v > 0 for v in x):
        ax.set_xscale("log")
    if numeric and len(names) > 1:  # zipped: the other parameters' values on a second axis, point by point
        top = ax.secondary_xaxis("top")
        top.set_xticks(x, [" / ".join(str(summary[n].iloc[i]) for n in names[1:]) for i in range(len(summary))],
                       fontsize=8)
        top.minorticks_off()
        top.set_xlabel(" / ".join(names[1:]) + f"  (zipped with {names[0]})", fontsize=9)
    ax.set_xlabel(label)
    ax.set_ylabel("accuracy")
    ax.grid(True, alpha=0.3)
    ax.legend(fontsize=8)


def _heat(ax, part, yname: str, xname: str, vmin: float, vmax: float, show_std: bool = True):
    import numpy as np

    ys, xs = _unique(part[yname]), _unique(part[xname])
    grid = np.full((len(ys), len(xs)), np.nan)
    err = np.full_like(grid, np.nan)
    for _, r in part.iterrows():
        i, j = ys.index(r[yname]), xs.index(r[xname])
        grid[i, j], err[i, j] = r["mean"], r["std"]
    im = ax.imshow(grid, origin="lower", aspect="auto", vmin=vmin, vmax=vmax if vmax > vmin else vmin + 1e-9, cmap="viridis")
    ax.set_xticks(range(len(xs)), [str(v) for v in xs])
    ax.set_yticks(range(len(ys)), [str(v) for v in ys])
    ax.set_xlabel(xname)
    ax.set_ylabel(yname)
    if grid.size <= 120:
        mid = (vmin + vmax) / 2
        for i in range(len(ys)):
            for j in range(len(xs)):
                if np.isfinite(grid[i, j]):
                    ax.text(
                        j, i, f"{grid[i, j]:.3f}\n±{err[i, j]:.3f}" if show_std else f"{grid[i, j]:.3f}",
                        ha="center", va="center", fontsize=7,
                        color="black" if grid[i, j] > mid else "white",
                    )
    return im
