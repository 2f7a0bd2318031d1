"""Plots of profiled ADC-input / activation histograms with the chosen limits (manual Fig. 9.2)."""
from __future__ import annotations

import os
import re
from pathlib import Path
from typing import Any, Mapping, Optional

import numpy as np

from adc_calibration.collectors import StreamingHistogram
from adc_calibration.profile_store import ProfileStore

__all__ = ["plot_histograms", "plot_histogram"]


def _coarse(h: StreamingHistogram, nbars: int) -> tuple[np.ndarray, np.ndarray]:
    """Edges and counts of ``h``'s occupied bins merged into at most ``nbars`` bars."""
    lo, hi, c = h.bins(clamp=False)
    edges = np.concatenate([lo, hi[-1:]])
    f = max(1, -(-c.size // nbars))
    pad = (-c.size) % f
    if pad:
        c = np.concatenate([c, np.zeros(pad, dtype=c.dtype)])
        w = edges[1] - edges[0]
        edges = np.concatenate([edges, edges[-1] + w * np.arange(1, pad + 1)])
    return edges[::f], c.reshape(-1, f).sum(axis=1)


def _limits(value: Any) -> np.ndarray:
    arr = np.asarray(value, dtype=np.float64)
    if arr.shape == (2,):
        return arr[None, :]
    if arr.ndim == 2 and arr.shape[1] == 2:
        return arr
    raise ValueError(f"limits must have shape (2,) or (Nslices, 2), got {arr.shape}")


def plot_histogram(hists: list[tuple[str, StreamingHistogram]], limits: Optional[np.ndarray], title: str,
                   path: os.PathLike | str, nbars: int = 200, xlabel: str = "ADC input (algorithmic units)") -> Path:
    """One PNG: the histograms (log y) and vertical lines at each row of ``limits``."""
    from matplotlib.backends.backend_agg import FigureCanvasAgg
    from matplotlib.figure import Figure

    fig = Figure(figsize=(7, 4.2))
    FigureCanvasAgg(fig)
    ax = fig.add_subplot(1, 1, 1)
    colors = [f"C{i % 10}" for i in range(max(len(hists), 1))]
    for (label, h), col in zip(hists, colors):
        if h.empty:
            continue
        edges, counts = _coarse(h, nbars)
        ax.stairs(np.maximum(counts, 0), edges, color=col, label=label, fill=len(hists) == 1, alpha=0.6)
    if limits is not None:
        for i, (lo, hi) in enumerate(limits):
            col = colors[i] if len(limits) == len(hists) and len(hists) > 1 else "k"
            lab = f"limits {_label_of(hists, i, len(limits))}({lo:.4g}, {hi:.4g})"
            ax.axvline(lo, color=col, ls="--", lw=1.2, label=lab)
            ax.axvline(hi, color=col, ls="--", lw=1.2)
    ax.set_yscale("log")
    ax.set_xlabel(xlabel)
    ax.set_ylabel("count")
    ax.set_title(title)
    ax.legend(fontsize=7, loc="upper right")
    fig.tight_layout()
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    fig.savefig(path, dpi=100)
    return path


def _label_of(hists, i: int, n: int) -> str:
    return f"{hists[i][0]} " if n == len(hists) and n > 1 else ""


def plot_histograms(store: ProfileStore, ranges: Mapping[str, Any], out_dir: os.PathLike | str, *,
                    activations: bool = False, nbars: int = 200,
                    units: Optional[Mapping[str, str]] = None) -> list[Path]:
    """Save one PNG per layer of ``store`` to ``out_dir``; returns the paths.

    Each shows the profiled ADC-input histogram (log y; one curve per weight
    bit slice, input bits merged) with ``ranges[layer]`` drawn as vertical
    lines: a ``(lo, hi)`` pair, or an ``(Nslices, 2)`` array of per-slice
    limits (e.g. from :func:`adc_calibration.optimizers.sliced_limits`).
    Layers missing from ``ranges`` are drawn without limits; ``units``
    maps layers to another x-axis label (e.g. raw units of bit-sliced
    layers). With
    ``activations=True`` the activation histograms are plotted instead
    (files ``<layer>_act.png``).
    """
    out_dir = Path(out_dir)
    paths = []
    if activations:
        items = [(layer, [("activations", store.activations[layer])]) for layer in sorted(store.activations)]
        suffix, xlabel = "_act", "input activation"
    else:
        items = []
        for layer in sorted({k[0] for k in store.keys()}):
            sl = store.slices(layer)
            hs = [(f"slice {s}" if len(sl) > 1 else "ADC inputs", store.adc_histogram(layer, s)) for s in sl]
            items.append((layer, hs))
        suffix, xlabel = "_adc", "ADC input (algorithmic units)"
    for layer, hs in items:
        lim = _limits(ranges[layer]) if layer in ranges and ranges[layer] is not None else None
        fname = re.sub(r"[^A-Za-z0-9_.-]+", "_", layer) + suffix + ".png"
        n = sum(h.count for _, h in hs)
        xl = (units or {}).get(layer, xlabel)
        paths.append(plot_histogram(hs, lim, f"{layer} ({n} values)", out_dir / fname, nbars=nbars, xlabel=xl))
    return paths
