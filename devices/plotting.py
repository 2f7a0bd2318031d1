"""Plots of device-model characteristics (``xbarsim device plot``).

One panel per hook the model provides: the programming-error and read-noise
standard deviation vs. conductance, and for drift models the conductance over
time for a few programmed levels (log time axis, +/- 1 sigma band where the
model reports its spread). Everything is in normalized conductance units
(``G_max = 1``). Plots are computed on the host with NumPy as the array module
and drawn with Matplotlib's Agg canvas (no display, no global pyplot state).
"""
from __future__ import annotations

import textwrap
from pathlib import Path

import numpy as np
from matplotlib.backends.backend_agg import FigureCanvasAgg
from matplotlib.figure import Figure

from devices.base import DeviceModel, DeviceParams
from devices.registry import KINDS, _by_kind
from simulator.errors import DeviceModelError

#: programmed levels (fraction of the conductance range above Gmin) of drift plots
DRIFT_LEVELS = (0.1, 0.3, 0.5, 0.7, 0.9)


def model_classes(name: str, extra_paths=None) -> dict[str, type[DeviceModel]]:
    """{kind: class} of every hook registered under ``name``; DeviceModelError when there is none."""
    table = _by_kind(extra_paths)
    found = {k: table[k][name] for k in KINDS if name in table[k]}
    if not found:
        names = sorted({n for k in KINDS for n in table[k]})
        raise DeviceModelError(f"device model {name!r} is not known; available: {', '.join(names)}")
    return found


def _summary(cls: type[DeviceModel]) -> str:
    doc = (cls.__doc__ or "").strip().splitlines()
    return doc[0].replace("``", "") if doc else cls.__name__


def zero_sigma_hint(kind: str, params: DeviceParams) -> str:
    """Why a sigma-vs-G panel is flat at zero, and how to get a curve (``kind``: "error" or "noise")."""
    key = "alpha_error" if kind == "error" else "alpha_noise"
    what = "programming error" if kind == "error" else "read noise"
    if getattr(params, key) == 0:
        return (f"{what}: sigma = 0 at every G because {key} = 0; set it to see the curve, "
                f"e.g. --{key.replace('_', '-')} 0.05")
    return f"{what}: sigma = 0 at every G with these parameters (see --param for the model's coefficients)"


def _sigma_panel(ax, model: DeviceModel, kind: str, params: DeviceParams, notes: list[str] | None = None) -> None:
    G = np.linspace(params.Gmin, 1.0, 401)
    if kind == "error":
        sigma = model.programming_sigma(G, np)
        ax.set_title(f"programming error ({model.name})")
    else:
        sigma = model.read_noise_sigma(G, np)
        ax.set_title(f"read noise ({model.name})")
    ax.plot(G, np.broadcast_to(sigma, G.shape), color="C0")
    ax.set_xlabel("target conductance G (normalized, Gmax = 1)")
    ax.set_ylabel(r"$\sigma_G$ (normalized)")
    ax.set_xlim(0.0, 1.0)
    ax.set_ylim(bottom=0.0)
    ax.grid(alpha=0.3)
    if not np.any(np.asarray(sigma) != 0):  # a flat zero line says nothing by itself
        hint = zero_sigma_hint(kind, params)
        ax.text(0.5, 0.5, textwrap.fill(hint, 40), transform=ax.transAxes, ha="center", va="center", fontsize="small",
                bbox=dict(boxstyle="round", facecolor="lightyellow", edgecolor="0.6"))
        if notes is not None:
            notes.append(hint)


def _drift_panel(ax, model: DeviceModel, params: DeviceParams) -> None:
    t_min = max(getattr(model, "drift_min_days", 0.0) or 0.0, 1e-3)
    valid = model.drift_valid_days
    t_max = 2.0 * valid if valid else 1e3
    if params.t_drift > 0:
        t_max = max(t_max, 1.5 * params.t_drift)
    t = np.logspace(np.log10(t_min), np.log10(t_max), 200)
    G0 = params.Gmin + (1.0 - params.Gmin) * np.asarray(DRIFT_LEVELS)
    for i, g0 in enumerate(G0):
        G = np.full(1, g0)
        mean = np.array([model.drift_mean(G, ti, np)[0] for ti in t])
        ax.plot(t, mean, color=f"C{i}", label=f"G0 = {g0:.2f}")
        try:
            sd = np.array([np.broadcast_to(model.drift_sigma(G, ti, np), G.shape)[0] for ti in t])
        except NotImplementedError:
            continue
        ax.fill_between(t, mean - sd, mean + sd, color=f"C{i}", alpha=0.2, linewidth=0)
    if valid:
        ax.axvline(valid, color="k", linestyle="--", linewidth=1, label=f"end of data ({valid:g} d)")
    if params.t_drift > 0:
        ax.axvline(params.t_drift, color="r", linestyle=":", linewidth=1, label=f"t_drift = {params.t_drift:g} d")
    ax.set_xscale("log")
    ax.set_xlabel("time after programming (days)")
    ax.set_ylabel("G (normalized)")
    ax.set_title(f"drift ({model.name}), band: ±1σ")
    ax.grid(alpha=0.3, which="both")
    ax.legend(fontsize="small")


def plot_device(name: str, params: DeviceParams, path, extra_paths=None, notes: list[str] | None = None) -> Path:
    """Save a PNG of the characteristics of device model ``name`` to ``path``; return the path.

    ``notes``, when given, receives one line per panel that is flat at zero, saying why (also written on the panel).
    """
    classes = model_classes(name, extra_paths)
    kinds = [k for k in KINDS if k in classes]
    fig = Figure(figsize=(5.5 * len(kinds), 4.2), layout="constrained")
    FigureCanvasAgg(fig)
    axes = fig.subplots(1, len(kinds), squeeze=False)[0]
    for ax, kind in zip(axes, kinds):
        model = classes[kind](params)
        try:
            if kind == "drift":
                _drift_panel(ax, model, params)
            else:
                _sigma_panel(ax, model, kind, params, notes)
        except NotImplementedError:
            ax.set_axis_off()
            ax.text(0.5, 0.5, f"{name}: no {kind} characteristic to plot", ha="center", va="center")
    ratio = "inf" if params.On_off_ratio == 0 else f"{params.On_off_ratio:g}"
    summary = textwrap.fill(f"{name}: {_summary(classes[kinds[0]])}", width=75 * len(kinds))
    fig.suptitle(f"{summary}\nOn_off_ratio = {ratio}", fontsize="small")
    out = Path(path)
    if out.parent and not out.parent.exists():
        raise DeviceModelError(f"--out {str(out)!r}: folder {str(out.parent)!r} does not exist")
    fig.savefig(out, format="png", dpi=110)
    return out
