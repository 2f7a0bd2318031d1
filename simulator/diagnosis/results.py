"""What :func:`~simulator.diagnosis.core.diagnose` returns: :class:`LayerDiagnosis` per analog core and the :class:`DiagnoseReport`.

Errors whose relative RMS is below ``256 * eps`` of the simulation's float
type are reported as 0 (SNR inf): that is the resolution of the arithmetic.
"""
from __future__ import annotations

import math
import os
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Optional

import numpy as np

from simulator.config import Config
from simulator.diagnosis.causes import CAUSES

_HINTS = {
    "weights": "{wb}: more weight_bits, a lower weight_percentile, or Lloyd levels (weight_quantizer = 'lloyd')",
    "programming": "programming error / drift: tighter programming (lower alpha_error), a device with less drift, "
                   "or a shorter t_drift",
    "read_noise": "read noise: a device with less read noise (alpha_noise / noise_model)",
    "parasitics": "IR drop: fewer rows per array (NrowsMax) or a lower Rp",
}


def error_floor(dtype) -> float:
    return 256.0 * float(np.finfo(np.dtype(str(dtype))).eps)


def relative_error(mse: float, ref: float, floor: float) -> float:
    if not (mse == mse) or not (ref == ref):
        return float("nan")
    if ref == 0:
        return 0.0 if mse == 0 else float("inf")
    r = math.sqrt(mse / ref)
    return 0.0 if r < floor else r


def snr_db(rel: float) -> float:
    """SNR in dB of a relative RMS error (inf for 0)."""
    if rel != rel:
        return float("nan")
    if rel == 0:
        return float("inf")
    return -20.0 * math.log10(rel) if math.isfinite(rel) else float("-inf")


@dataclass
class LayerDiagnosis:
    """Everything measured for one analog core."""

    layer: str
    core: str
    mvms: int
    activation_after: bool
    relative_rms_error: float
    snr_db: float
    cause_error: dict[str, float]  # relative RMS error with the cause alone (nan: not measured)
    cause_share: dict[str, float]  # fraction of the summed causes' mean squared error
    adc: dict[str, Any]
    dac: dict[str, Any]
    icol_clipped: float
    floor_error: float = 0.0  # relative RMS error with every cause off (mappings that fix a quantization)
    acc_only_nonideal: float = float("nan")
    acc_only_ideal: float = float("nan")
    observation: Any = field(default=None, repr=False)

    @property
    def main_cause(self) -> Optional[str]:
        shares = {c: s for c, s in self.cause_share.items() if s == s and s > 0}
        return max(shares, key=shares.get) if shares else None

    def accuracy_cost(self, ideal: float, full: float) -> float:
        """Mean of (ideal - accuracy with only this layer non-ideal) and (accuracy with only it ideal - full)."""
        return 0.5 * ((ideal - self.acc_only_nonideal) + (self.acc_only_ideal - full))


@dataclass
class DiagnoseReport:
    config: Config
    model_name: str
    n_images: int
    seed: int
    ideal_accuracy: float
    accuracy: float
    layers: list[LayerDiagnosis]
    causes: dict[str, list[str]]  # active causes -> layers
    notes: list[str] = field(default_factory=list)

    @property
    def nothing_nonideal(self) -> bool:
        return not self.causes

    def cost(self, d: LayerDiagnosis) -> float:
        return d.accuracy_cost(self.ideal_accuracy, self.accuracy)

    @property
    def significant_cost(self) -> float:
        """Accuracy cost above the sampling noise: twice the binomial standard error, at least one image."""
        p, n = self.accuracy, max(self.n_images, 1)
        return max(2.0 * math.sqrt(max(p * (1 - p), 0.0) / n), 1.0 / n)

    def ranking(self) -> list[LayerDiagnosis]:
        """Cores by accuracy cost where it exceeds the sampling noise (largest first), then by SNR (lowest first)."""
        thr = self.significant_cost

        def key(d):
            c = self.cost(d)
            c = c if c == c and c >= thr else 0.0
            snr = d.snr_db if d.snr_db == d.snr_db else float("inf")
            return (-c, snr)

        return sorted(self.layers, key=key)

    def cause_attribution(self) -> dict[str, float]:
        """Accuracy cost attributed to causes: sum over layers of cost x the cause's error share."""
        out = {c: 0.0 for c in CAUSES}
        for d in self.layers:
            cost = self.cost(d)
            if not cost == cost or cost <= 0:
                continue
            for c, s in d.cause_share.items():
                if s == s:
                    out[c] += cost * s
        return {c: v for c, v in sorted(out.items(), key=lambda kv: -kv[1]) if v > 0}

    def hint(self, d: LayerDiagnosis) -> str:
        return hint_for(d, self.config)

    def summary(self, top: int = 3) -> list[str]:
        """Lines naming the layers and causes that cost the most accuracy, with a hint each."""
        if self.nothing_nonideal:
            return ["nothing is non-ideal in this config: every analog layer computes its exact output"]
        lines = [f"accuracy {100 * self.accuracy:.2f} % (floating point {100 * self.ideal_accuracy:.2f} %) "
                 f"on {self.n_images} images, seed {self.seed}"]
        ranked = [d for d in self.ranking() if d.main_cause is not None]
        thr = self.significant_cost
        costly = [d for d in ranked if self.cost(d) >= thr][:top] or ranked[:1]
        for d in costly:
            c = self.cost(d)
            if c != c:
                cost = "accuracy cost not measured"
            elif c >= thr:
                cost = f"costs {100 * c:.1f} points of accuracy"
            else:
                cost = f"no layer costs accuracy beyond the sampling noise ({100 * thr:.1f} points); lowest SNR"
            cause = d.main_cause
            lines.append(f"{d.core}: {cost}; SNR {d.snr_db:.1f} dB, mostly {CAUSES[cause]} "
                         f"({100 * d.cause_share[cause]:.0f} % of its error): {self.hint(d)}")
        attr = self.cause_attribution()
        total = sum(attr.values())
        shown = {c: v for c, v in attr.items() if total > 0 and v / total >= 0.005}
        if shown:
            lines.append("accuracy lost by cause (layer costs split by their causes' error shares): " + ", ".join(
                f"{CAUSES[c]} {100 * v / total:.0f} %" for c, v in shown.items()))
        return lines

    # ------------------------------------------------------------ tables
    def to_frame(self):
        """pandas DataFrame, one row per analog core (the CSV)."""
        import pandas as pd

        rows = []
        for rank, d in enumerate(self.ranking(), 1):
            r = dict(rank=rank, layer=d.layer, core=d.core, mvms=d.mvms, compared_after_activation=d.activation_after,
                     relative_rms_error=d.relative_rms_error, snr_db=d.snr_db, main_cause=d.main_cause or "")
            for c in CAUSES:
                r[f"error_{c}"] = d.cause_error.get(c, float("nan"))
            for c in CAUSES:
                r[f"share_{c}"] = d.cause_share.get(c, float("nan"))
            for k in ("bits", "clipped_low", "clipped_high", "levels_used_fraction", "effective_bits"):
                r[f"adc_{k}"] = d.adc.get(k, float("nan"))
            for k in ("bits", "clipped_low", "clipped_high", "levels_used_fraction", "effective_bits"):
                r[f"dac_{k}"] = d.dac.get(k, float("nan"))
            r["error_with_every_cause_off"] = d.floor_error
            r["icol_clipped"] = d.icol_clipped
            r["accuracy_only_this_nonideal"] = d.acc_only_nonideal
            r["accuracy_only_this_ideal"] = d.acc_only_ideal
            r["accuracy_cost"] = self.cost(d)
            r["hint"] = self.hint(d) if d.main_cause else ""
            rows.append(r)
        return pd.DataFrame(rows)

    def table(self) -> str:
        """The terminal table (layers in ranking order) and the summary lines."""
        def pct(v):
            return "    -" if v != v else f"{100 * v:5.1f}"

        def db(v):
            return "    inf" if v == float("inf") else "      -" if v != v else f"{v:7.1f}"

        hdr = (f"{'#':>2} {'layer':<14} {'rel.err':>8} {'SNR dB':>7} {'main cause':<26} {'share':>5} "
               f"{'ADC lo%':>7} {'hi%':>5} {'lvl%':>5} {'ENOB':>4} {'DAC cl%':>7} {'Icol%':>5} "
               f"{'only %':>6} {'w/o %':>6} {'cost':>5}")
        lines = [hdr, "-" * len(hdr)]
        for rank, d in enumerate(self.ranking(), 1):
            mc = d.main_cause
            dac_clip = d.dac.get("clipped_low", float("nan")) + d.dac.get("clipped_high", float("nan"))
            enob = d.adc.get("effective_bits", float("nan"))
            lines.append(
                f"{rank:>2} {d.core:<14.14} {d.relative_rms_error:8.2e} {db(d.snr_db)} "
                f"{(CAUSES[mc] if mc else '-'):<26.26} {pct(d.cause_share[mc]) if mc else '    -'} "
                f"{pct(d.adc.get('clipped_low', float('nan'))):>7} {pct(d.adc.get('clipped_high', float('nan')))} "
                f"{pct(d.adc.get('levels_used_fraction', float('nan')))} "
                f"{'   -' if enob != enob else f'{enob:4.1f}'} {pct(dac_clip):>7} {pct(d.icol_clipped)} "
                f"{pct(d.acc_only_nonideal):>6} {pct(d.acc_only_ideal):>6} {pct(self.cost(d))}"
            )
        lines.append("")
        lines.append("rel.err/SNR: layer output vs its ideal output on the same inputs; share: of the causes' summed "
                     "error power (each cause alone, first order); only %: accuracy with only this layer non-ideal; "
                     "w/o %: with only this layer ideal; cost: mean accuracy loss attributed to it (points)")
        lines += self.summary()
        lines += self.notes
        return "\n".join(lines)

    def write(self, folder: "str | os.PathLike", plots: bool = True) -> dict[str, Path]:
        """diagnose.csv, PNG plots and report.html (images embedded) in ``folder``; returns the paths."""
        from simulator.diagnosis.report import write_report

        return write_report(self, Path(folder), plots=plots)


def hint_for(d: LayerDiagnosis, cfg: Config) -> str:
    """One hint for the main cause of a layer's error."""
    cause = d.main_cause
    if cause is None:
        return ""
    name = d.core
    calibrate = "calibrate its ADC range (xbarsim calibrate) or widen it"
    if cause == "adc":
        lo, hi = d.adc.get("clipped_low", 0.0), d.adc.get("clipped_high", 0.0)
        used, bits = d.adc.get("levels_used_fraction", float("nan")), d.adc.get("bits", 0)
        if hi == hi and hi >= 0.01 and hi >= lo:
            return f"{100 * hi:.0f} % of ADC outputs clipped high: {calibrate}"
        if lo == lo and lo >= 0.01 and not d.activation_after:
            return f"{100 * lo:.0f} % of ADC outputs clipped low: {calibrate}"
        if used == used and used < 0.25:
            enob = d.adc.get("effective_bits", 0)
            return (f"uses {100 * used:.0f} % of its {bits}-bit ADC levels ({enob:.1f} effective bits): "
                    "narrow its ADC range (adc_range_option = 'calibrated', xbarsim calibrate)")
        return f"the {bits}-bit ADC's resolution: more adc_bits (layers.{name}.adc_bits)"
    if cause == "dac":
        clip = d.dac.get("clipped_low", 0.0) + d.dac.get("clipped_high", 0.0)
        used, bits = d.dac.get("levels_used_fraction", float("nan")), d.dac.get("bits", 0)
        if clip == clip and clip >= 0.01:
            return (f"{100 * clip:.0f} % of its inputs clipped by the DAC range: calibrate it "
                    "(xbarsim calibrate --what dac)")
        if used == used and used < 0.25:
            return (f"uses {100 * used:.0f} % of its {bits}-bit DAC levels: narrow its input range "
                    "(xbarsim calibrate --what dac)")
        return f"the {bits}-bit DAC's resolution: more dac_bits (layers.{name}.dac_bits)"
    if cause == "icol":
        return (f"{100 * d.icol_clipped:.0f} % of column currents clipped at Icol_max: fewer rows per array (NrowsMax) "
                "or a larger Icol_max")
    if cause == "weights":
        hw = cfg.for_layer(d.layer)
        wb = f"{hw.weight_bits}-bit weights" if hw.weight_bits else "weight clipping/quantization"
        return _HINTS["weights"].format(wb=wb)
    return _HINTS[cause]


def _quantizer_use(use) -> dict[str, Any]:
    if use is None or not use.n:
        return {}
    main = use.main if hasattr(use, "main") else use
    return dict(bits=main.bits, clipped_low=use.clipped_low_fraction, clipped_high=use.clipped_high_fraction,
                levels_used_fraction=use.levels_used_fraction, effective_bits=use.effective_bits)


def layer_diagnosis(lname: str, cname: str, obs, post, mse, prereq) -> LayerDiagnosis:
    """One core's whole error, its first-order cause split and its ADC/DAC/Icol use."""
    rel = relative_error(obs.sum_err2, obs.sum_ref2, error_floor(obs.dtype))
    r0 = mse.get(frozenset(), {}).get(cname)
    floor_error = relative_error(r0[0], r0[1], error_floor(r0[2])) if r0 is not None else 0.0
    cause_mse, cause_err = {}, {}
    for c in CAUSES:
        base = frozenset(prereq.get(c, set()))
        r = mse.get(base | {c}, {}).get(cname)
        if r is None:
            cause_err[c] = float("nan")
            continue
        m, ref, dt = r
        rb = mse.get(base, {}).get(cname)  # the increase over the prerequisites (or every cause off) alone
        if rb is not None and (base or floor_error > 0):
            m = max(0.0, m - rb[0])
        cause_err[c] = e = relative_error(m, ref, error_floor(dt))
        cause_mse[c] = 0.0 if e == 0 else m
    total = sum(cause_mse.values())
    share = {c: (cause_mse[c] / total if total > 0 else 0.0) if c in cause_mse else float("nan") for c in CAUSES}
    return LayerDiagnosis(
        layer=lname, core=cname, mvms=obs.rows, activation_after=cname in post, relative_rms_error=rel,
        snr_db=snr_db(rel), cause_error=cause_err, cause_share=share, adc=_quantizer_use(obs.adc),
        dac=_quantizer_use(obs.dac), icol_clipped=obs.icol_clipped_fraction, floor_error=floor_error,
        observation=obs,
    )
