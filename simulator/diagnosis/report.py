"""Files of a diagnosis: ``diagnose.csv``, three PNG plots and a self-contained ``report.html``.

* ``snr_by_cause.png`` -- one bar per analog core, its height the SNR (dB)
  of the layer output; the bar is split into segments in proportion to each
  cause's share of the error (causes switched on alone).
* ``adc_histograms.png`` -- per core, the histogram of ADC inputs in units of
  ADC levels (all arrays of the layer), the ADC range marked by two lines;
  mass beyond the lines was clipped.
* ``sensitivity.png`` -- per layer, accuracy with only this layer non-ideal
  and with only this layer ideal, against the floating-point and the
  simulated accuracy.
* ``report.html`` -- the summary, the table and the three plots (embedded
  as base64 PNGs, so the page needs no other file).
"""
from __future__ import annotations

import base64
import html
import math
from pathlib import Path
from typing import TYPE_CHECKING

import numpy as np

from simulator.diagnosis.causes import CAUSES
from simulator.errors import OutputError

if TYPE_CHECKING:  # pragma: no cover
    from simulator.diagnosis.results import DiagnoseReport

COLORS = {
    "weights": "#4477aa", "programming": "#66ccee", "read_noise": "#228833", "parasitics": "#ccbb44",
    "icol": "#aa3377", "dac": "#ee6677", "adc": "#bbbbbb",
}


def _plt():
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    return plt


def _save(plt, fig, path: Path) -> Path:
    fig.tight_layout()
    fig.savefig(path, dpi=110)
    plt.close(fig)
    return path


def plot_snr(report: "DiagnoseReport", path: Path) -> Path:

    plt = _plt()
    ds = report.layers
    fig, ax = plt.subplots(figsize=(max(5.0, 0.8 * len(ds) + 2), 4.2))
    x = np.arange(len(ds))
    drawn = set()
    finite = [d.snr_db for d in ds if math.isfinite(d.snr_db)]
    top = max(finite + [1.0])
    for i, d in enumerate(ds):
        if not math.isfinite(d.snr_db):
            ax.text(i, 0.02 * top, "exact" if d.snr_db > 0 else "n/a", ha="center", va="bottom", fontsize=8)
            continue
        shares = [(c, s) for c, s in d.cause_share.items() if s == s and s > 0]
        bottom = 0.0
        if not shares:
            ax.bar(i, d.snr_db, color="#dddddd", edgecolor="black", linewidth=0.5)
        for c, s in shares:
            h = d.snr_db * s
            ax.bar(i, h, bottom=bottom, color=COLORS[c], edgecolor="black", linewidth=0.5,
                   label=CAUSES[c] if c not in drawn else None)
            drawn.add(c)
            bottom += h
        ax.text(i, d.snr_db, f"{d.snr_db:.1f}", ha="center", va="bottom" if d.snr_db >= 0 else "top", fontsize=8)
    ax.set_xticks(x)
    ax.set_xticklabels([d.core for d in ds], rotation=45, ha="right", fontsize=8)
    ax.set_ylabel("layer output SNR (dB)")
    ax.set_title("SNR per layer, split by each cause's share of the error (first order)")
    ax.axhline(0, color="black", linewidth=0.6)
    if drawn:
        ax.legend(fontsize=7, loc="best")
    return _save(plt, fig, path)


def plot_adc(report: "DiagnoseReport", path: Path) -> Path | None:
    plt = _plt()
    ds = [d for d in report.layers if d.observation is not None and d.observation.adc.n]
    if not ds:
        return None
    n = len(ds)
    cols = min(4, n)
    rows = math.ceil(n / cols)
    fig, axes = plt.subplots(rows, cols, figsize=(3.4 * cols, 2.6 * rows), squeeze=False)
    for ax in axes.flat[n:]:
        ax.axis("off")
    for ax, d in zip(axes.flat, ds):
        use = d.observation.adc.main
        centers = 0.5 * (use.edges[1:] + use.edges[:-1])
        width = use.edges[1] - use.edges[0]
        ax.bar(centers, np.maximum(use.hist, 0), width=width, color="#4477aa", linewidth=0)
        ax.set_yscale("log")
        ax.axvline(use.kmin - 0.5, color="#cc3311", linewidth=1.2)
        ax.axvline(use.kmax + 0.5, color="#cc3311", linewidth=1.2)
        ax.set_title(f"{d.core}: {100 * use.clipped_low_fraction:.1f} % low, "
                     f"{100 * use.clipped_high_fraction:.1f} % high", fontsize=8)
        ax.set_xlabel(f"ADC input (levels of the {use.bits}-bit ADC)", fontsize=7)
        ax.tick_params(labelsize=7)
    fig.suptitle("ADC inputs; red lines: the ADC range (beyond them: clipped)", fontsize=9)
    return _save(plt, fig, path)


def plot_sensitivity(report: "DiagnoseReport", path: Path) -> Path | None:
    plt = _plt()
    seen, ds = set(), []
    for d in report.layers:
        if d.layer not in seen and d.acc_only_nonideal == d.acc_only_nonideal:
            seen.add(d.layer)
            ds.append(d)
    if not ds:
        return None
    fig, ax = plt.subplots(figsize=(max(5.0, 0.8 * len(ds) + 2), 4.0))
    x = np.arange(len(ds))
    ax.bar(x - 0.2, [100 * d.acc_only_nonideal for d in ds], 0.4, label="only this layer non-ideal", color="#ee6677")
    ax.bar(x + 0.2, [100 * d.acc_only_ideal for d in ds], 0.4, label="only this layer ideal", color="#4477aa")
    ax.axhline(100 * report.ideal_accuracy, color="black", linestyle="--", linewidth=1,
               label=f"floating point {100 * report.ideal_accuracy:.1f} %")
    ax.axhline(100 * report.accuracy, color="#cc3311", linestyle=":", linewidth=1.2,
               label=f"all layers non-ideal {100 * report.accuracy:.1f} %")
    ax.set_xticks(x)
    ax.set_xticklabels([d.layer for d in ds], rotation=45, ha="right", fontsize=8)
    ax.set_ylabel("accuracy (%)")
    lo = min([100 * d.acc_only_nonideal for d in ds] + [100 * d.acc_only_ideal for d in ds] + [100 * report.accuracy])
    ax.set_ylim(max(0.0, lo - 5), 100.5)
    ax.set_title("Sensitivity: accuracy per layer")
    ax.legend(fontsize=7, loc="lower right")
    return _save(plt, fig, path)


def _img(path: Path | None, alt: str) -> str:
    if path is None:
        return ""
    data = base64.b64encode(path.read_bytes()).decode("ascii")
    alt = html.escape(alt)
    return f'<figure><img alt="{alt}" src="data:image/png;base64,{data}"><figcaption>{alt}</figcaption></figure>'


def write_report(report: "DiagnoseReport", folder: Path, plots: bool = True) -> dict[str, Path]:
    """Write the report's files into ``folder``; returns ``{kind: path}``."""
    try:
        folder.mkdir(parents=True, exist_ok=True)
        paths: dict[str, Path] = {}
        frame = report.to_frame()
        paths["csv"] = folder / "diagnose.csv"
        frame.to_csv(paths["csv"], index=False)
        figs = {}
        if plots:
            figs["snr"] = plot_snr(report, folder / "snr_by_cause.png")
            figs["adc"] = plot_adc(report, folder / "adc_histograms.png")
            figs["sensitivity"] = plot_sensitivity(report, folder / "sensitivity.png")
            paths.update({k: v for k, v in figs.items() if v is not None})
        cfg = report.config
        body = [
            f"<h1>xbarsim diagnose: {html.escape(report.model_name)}</h1>",
            f"<p>config <code>{html.escape(str(cfg.source))}</code>, {report.n_images} test images, "
            f"seed {report.seed}</p>",
            "<h2>Summary</h2><ul>" + "".join(f"<li>{html.escape(s)}</li>" for s in report.summary()) + "</ul>",
        ]
        if report.notes:
            body.append("<ul>" + "".join(f"<li>{html.escape(s)}</li>" for s in report.notes) + "</ul>")
        body.append("<h2>Layers</h2>")
        body.append(frame.to_html(index=False, float_format=lambda v: f"{v:.4g}", na_rep="-", border=0))
        body.append("<h2>Plots</h2>")
        body.append(_img(figs.get("snr"), "Layer output SNR, stacked by each cause's share of the error"))
        body.append(_img(figs.get("adc"), "ADC input histograms with the ADC range marked"))
        body.append(_img(figs.get("sensitivity"), "Accuracy with only one layer non-ideal / only one layer ideal"))
        body.append("<h2>Config</h2><pre>" + html.escape(cfg.to_toml()) + "</pre>")
        style = ("body{font-family:sans-serif;max-width:1200px;margin:auto}"
                 "table{border-collapse:collapse;font-size:11px}"
                 "td,th{padding:2px 6px;border-bottom:1px solid #ddd}img{max-width:100%}")
        page = (f"<!DOCTYPE html><html><head><meta charset='utf-8'><title>xbarsim diagnose</title>"
                f"<style>{style}</style></head><body>{''.join(body)}</body></html>")
        paths["html"] = folder / "report.html"
        paths["html"].write_text(page, encoding="utf-8")
    except OSError as exc:
        raise OutputError(f"output folder {str(folder)!r} cannot be written ({exc.strerror or exc})") from None
    return paths
