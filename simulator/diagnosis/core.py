"""``diagnose(config)``: where the accuracy goes, layer by layer and cause by cause.

Steps (one chip: seed ``config.seed``, else 0; the test images selected by
``ntest``):

1. **Observed pass.** The full non-ideal chip runs the test images with a
   :class:`~simulator.observe.Recorder` attached: for every analog core the
   relative RMS error and SNR of its output against the ideal output on the
   *same inputs* (so upstream errors are not counted again), DAC/ADC clipping
   and level use, Icol_max clipping, and a uniform sample of input rows.
   Where an elementwise activation directly follows the layer (a fused
   activation, or a sole ``Activation`` consumer), outputs are compared
   after it -- what the next layer sees; ReLU-aware ADC ranges clip outputs
   the ReLU zeroes anyway. The floating-point and simulated accuracies come
   from the same pass.
2. **Cause split (first order).** For every cause -- weight quantization,
   programming error / drift, read noise, parasitics, current limit, DAC,
   ADC -- a chip with only that non-ideality switched on (the others set to
   their ideal values) is built, and each core's sampled inputs go through
   that core: its error alone. A cause that cannot exist alone (an ADC
   range set for bit-sliced weights or bit-sliced inputs) is switched on
   with what it needs, and its error is the increase of the mean squared
   error over those prerequisites alone. The causes' errors need not add up
   to the whole (they interact: an ADC clips noise, too).
3. **Sensitivity.** Accuracy when only this layer is non-ideal (every
   non-ideality of every other MVM layer switched off by ``[layers.<name>]``
   overrides; a layer whose settings cannot be undone that way runs exact
   digital, ``analog = false``) and when only this layer is ideal. These
   runs are independent: they go to the sweep executors (local processes or
   a Dask cluster), with a progress bar.

Errors whose relative RMS is below ``256 * eps`` of the simulation's float
type are reported as 0 (SNR inf): that is the resolution of the arithmetic.
Memory stays bounded by the batch size, the recorder's histograms and its
``samples`` rows per layer.
"""
from __future__ import annotations

import functools
import logging
import math
import os
import tempfile
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Callable, Iterable, Mapping, Optional

import numpy as np

from simulator.config import Config, load_config
from simulator.errors import ConfigError, OutputError, XbarsimError

log = logging.getLogger("xbarsim.diagnose")

#: cause key -> label
CAUSES: dict[str, str] = {
    "weights": "weight quantization",
    "programming": "programming error / drift",
    "read_noise": "read noise",
    "parasitics": "parasitics (IR drop)",
    "icol": "current limit (Icol_max)",
    "dac": "DAC",
    "adc": "ADC",
}

#: config keys of every cause and their ideal ("off") values
_OFF: dict[str, dict[str, Any]] = {
    "weights": dict(weight_bits=0, Nslices=1, weight_quantizer="uniform", weight_levels=None, weight_percentile=100.0,
                    bias_bits=0),
    "programming": dict(error_model="none", drift_model="none", stuck_off_fraction=0.0, stuck_on_fraction=0.0,
                        drift_compensation="none"),
    "read_noise": dict(noise_model="none"),
    "parasitics": dict(Rp=0.0, Rp_row=None, Rp_col=None),
    "icol": dict(Icol_max=0.0, Icell_max=0.0),
    "dac": dict(dac_bits=0, input_bitslicing=False, input_slice_size=1, dac_type="generic"),
    "adc": dict(adc_bits=0, adc_range_option="max", adc_range=None, adc_exponents=None, adc_xbar_range=None,
                ADC_per_ibit=False, adc_type="generic", adc_params={}, subtract_current_in_xbar=True),
}

_HINTS = {
    "weights": "{wb}: more weight_bits, a lower weight_percentile, or Lloyd levels (weight_quantizer = 'lloyd')",
    "programming": "programming error / drift: tighter programming (lower alpha_error), a device with less drift, "
                   "or a shorter t_drift",
    "read_noise": "read noise: a device with less read noise (alpha_noise / noise_model)",
    "parasitics": "IR drop: fewer rows per array (NrowsMax) or a lower Rp",
}


def active_causes(cfg: Config, layers: Iterable[str]) -> dict[str, list[str]]:
    """``{cause: [layers where it is switched on]}`` from the config alone (empty: nothing is non-ideal)."""
    out: dict[str, list[str]] = {}
    for name in layers:
        hw = cfg.for_layer(name)

        def get(key, default=None):
            return getattr(hw, key, getattr(cfg, key, default))

        on = {
            "weights": hw.weight_bits > 0 or hw.weight_quantizer == "lloyd" or hw.weight_percentile < 100
                       or (hw.bias_bits > 0 and hw.digital_bias),
            "programming": get("error_model") != "none" or get("drift_model") != "none"
                           or get("stuck_off_fraction", 0) > 0 or get("stuck_on_fraction", 0) > 0,
            "read_noise": get("noise_model") != "none",
            "parasitics": hw.Rp > 0 or (get("Rp_row") or 0) > 0 or (get("Rp_col") or 0) > 0,
            "icol": hw.Icol_max > 0,
            "dac": hw.dac_bits > 0,
            "adc": hw.adc_bits > 0,
        }
        for cause, flag in on.items():
            if flag:
                out.setdefault(cause, []).append(name)
    return out


def _prerequisites(cfg: Config, layers: Iterable[str]) -> dict[str, set[str]]:
    """Causes that must be on for a cause to exist as configured (the ADC of sliced weights / inputs)."""
    hws = [cfg.for_layer(n) for n in layers]
    adc: set[str] = set()
    if any(h.adc_bits > 0 and (h.Nslices > 1 or h.adc_range_option == "granular") for h in hws):
        adc.add("weights")
    if any(h.adc_bits > 0 and (h.input_bitslicing or h.adc_range_option == "granular") for h in hws):
        adc.add("dac")
    par: set[str] = set()
    if any(h.Rp > 0 and h.input_bitslicing for h in hws):
        par.add("dac")  # the parasitic topology was chosen for bit-sliced inputs
    return {"adc": adc, "parasitics": par}


def _known(key: str) -> bool:
    return key in Config.model_fields


def variant_config(cfg: Config, on: Iterable[str]) -> dict[str, Any]:
    """Config dict with only the causes ``on`` switched on (others at their ideal values), one run."""
    on = set(on)
    data = cfg.to_dict()
    for cause, keys in _OFF.items():
        if cause in on:
            continue
        for k, v in keys.items():
            if not _known(k):
                continue
            data[k] = v
            for ov in data.get("layers", {}).values():
                ov.pop(k, None)
        if cause == "weights" and data.get("balanced_style") == "unified_reference":
            data["balanced_style"] = "one_sided"  # the non-uniform-level mapping needs Lloyd levels
        if cause == "weights":
            for ov in data.get("layers", {}).values():
                if ov.get("balanced_style") == "unified_reference":
                    ov.pop("balanced_style")
    _quiet_devices(data)
    data["Nruns"] = 1
    return _minimal(data)


def _quiet_devices(data: dict[str, Any]) -> None:
    """Drop device settings that act on nothing once the device models are off (no warnings for them)."""
    layers = data.get("layers", {})

    def off(key):
        return data.get(key, "none") == "none" and all(ov.get(key, "none") == "none" for ov in layers.values())

    if off("drift_model") and not data.get("device_data") and not any(ov.get("device_data") for ov in layers.values()):
        data["t_drift"] = 0.0
    if off("drift_model") and off("error_model") and off("noise_model"):
        data.pop("device_params", None)
        for ov in layers.values():
            ov.pop("device_params", None)


def _minimal(data: Mapping[str, Any]) -> dict[str, Any]:
    """A config dict without the keys that hold their default value (and without None values)."""
    defaults = Config().to_dict()
    return {k: v for k, v in data.items() if v is not None and (k == "layers" or k not in defaults or defaults[k] != v)}


def _layers_ideal(cfg: Config, data: Mapping[str, Any], names: Iterable[str]) -> dict[str, Any]:
    """``data`` with every non-ideality of layers ``names`` off through ``[layers.<name>]`` overrides.

    A layer stays analog (so per-layer limit files keep their order) unless one
    of its settings can only be undone by a None override (e.g. Lloyd levels,
    per-slice ADC exponents): then it becomes exact digital (``analog = false``).
    """
    from simulator.config import LAYER_KEYS

    out = dict(data)
    out["layers"] = {k: dict(v) for k, v in data.get("layers", {}).items()}
    for n in names:
        hw = cfg.for_layer(n)
        ov = out["layers"].setdefault(n, {})
        digital = False
        for keys in _OFF.values():
            for k, v in keys.items():
                if not _known(k):
                    continue
                if k not in LAYER_KEYS:
                    digital = True  # a global-only setting: this layer cannot drop it alone
                elif v is None:
                    ov.pop(k, None)
                    if getattr(hw, k, None) is not None:
                        digital = True
                else:
                    ov[k] = v
        if getattr(hw, "device_params", None):
            ov["device_params"] = {}  # no device model is left on this layer to read them
        if getattr(hw, "balanced_style", None) == "unified_reference":
            ov["balanced_style"] = "one_sided"  # the non-uniform-level mapping needs Lloyd levels
        if digital:
            out["layers"][n] = {"analog": False}
    return out


def _post_function(sim, layer_name: str, core_name: str):
    """The elementwise activation applied right after this layer in a graph host, else None."""
    if core_name != layer_name:  # GRU cores: the gates mix both products
        return None
    layers = getattr(sim, "layers", None)
    outputs = getattr(sim, "outputs", None)
    if not isinstance(layers, list) or outputs is None:
        return None
    by_name = {getattr(l, "name", None): l for l in layers}
    layer = by_name.get(layer_name)
    if layer is None:
        return None
    act = layer.config.get("activation")
    if act in (None, "linear") and layer_name not in outputs:
        consumers = [l for l in layers if layer_name in l.inputs]
        if len(consumers) == 1 and consumers[0].type == "Activation":
            act = consumers[0].config.get("activation")
    if act in (None, "linear", "softmax"):
        return None
    from simulator import ops

    return lambda v, xp, act=act: ops.activation(v, act, xp)


def _floor(dtype) -> float:
    return 256.0 * float(np.finfo(np.dtype(str(dtype))).eps)


def _rel(mse: float, ref: float, floor: float) -> float:
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


# ---------------------------------------------------------------------- running
def _check_folder(out: Path) -> None:
    try:
        out.mkdir(parents=True, exist_ok=True)
        with tempfile.NamedTemporaryFile(dir=out, prefix=".write-test-"):
            pass
    except OSError as exc:
        raise OutputError(f"output folder {str(out)!r} cannot be written ({exc.strerror or exc})") from None


def _input_layout(sim) -> Optional[str]:
    """The layout a host wants its input batches in (None: the dataset's own)."""
    return getattr(sim, "input_layout", None) or getattr(getattr(sim, "network", None), "input_layout", None)


def accuracy_run(cfg, runs=None, progress=False, network=None, simulation=None):
    """What a sensitivity task runs: the simulated top-1 accuracy of one chip, as a one-row Result.

    Like :func:`simulator.run` for one run, without its floating-point pass
    (the diagnosis measures that once). Importable by worker processes; the
    chip is ``simulation(cfg, seed)`` when given, else a Simulation of
    ``network`` (default: the model ``cfg.model_name``).
    """
    import time

    from simulator.calibration_io import calibration_for
    from simulator.network import load_model_for
    from simulator.runner import Result, _correct, load_test_dataset
    from simulator.simulation import Simulation

    cfg = load_config(cfg)
    run_index = runs[0] if runs else 0
    seed = (cfg.seed or 0) + run_index
    t0 = time.perf_counter()
    if simulation is not None:
        sim = simulation(cfg, seed)
    else:
        net = network if network is not None else load_model_for(cfg)
        sim = Simulation(net, cfg, seed=seed, calibration=calibration_for(net, cfg))
    hits = n = 0
    for x, y in load_test_dataset(cfg).iter_batches(layout=_input_layout(sim)):
        hits += _correct(sim.forward(x), np.asarray(y), [1])[1]
        n += len(y)
    sec = (time.perf_counter() - t0) / max(n, 1)
    row = {"run": run_index, "seed": seed, "accuracy": hits / max(n, 1), "seconds_per_image": sec}
    name = getattr(getattr(sim, "network", None), "name", cfg.model_name)
    return Result(config=cfg, model_name=name, rows=[row], ideal_accuracy=float("nan"), seconds_per_image=sec,
                  ideal_seconds_per_image=float("nan"), n_images=n)


def diagnose(
    config: "str | os.PathLike | Mapping[str, Any] | Config",
    network: Any = None,
    *,
    ntest: Optional[int] = None,
    layers: Optional[Iterable[str]] = None,
    samples: int = 2048,
    workers: Optional[int] = 1,
    scheduler: Optional[str] = None,
    scheduler_timeout: float = 10.0,
    sensitivity: bool = True,
    out: "str | os.PathLike | None" = None,
    plots: bool = True,
    progress: bool = False,
    simulation: Optional[Callable[[Config, int], Any]] = None,
    runner: Optional[Callable[..., Any]] = None,
    seed: Optional[int] = None,
) -> DiagnoseReport:
    """Per-layer error budget of a config (see the module docstring).

    Parameters
    ----------
    ntest: test images (default: the config's ``ntest``; 0 = the whole split).
    layers: layer (or core) names to diagnose (default: every analog layer).
    samples: input rows kept per layer for the cause split.
    workers / scheduler: where the sensitivity runs go (1 = this process;
        N local processes; a Dask scheduler address), as for sweeps.
    sensitivity: run the per-layer accuracy runs (2 per layer).
    out: also write the CSV, plots and HTML page to this folder.
    simulation: ``f(config, seed)`` building the chip (default:
        :class:`~simulator.simulation.Simulation` on ``network``); any host
        whose ``cores`` holds NeuralCores and that has ``forward``,
        ``ideal_forward`` and ``observe`` works; the sensitivity runs use it
        too (it must pickle for workers > 1 or a scheduler).
    runner: ``f(config, runs=[0], progress=False)`` returning a Result, for
        the sensitivity runs (default: :func:`accuracy_run`; must pickle
        for workers > 1).
    """
    cfg, seed = _diagnose_config(config, ntest, seed)
    out_path = Path(out) if out is not None else None
    if out_path is not None:
        _check_folder(out_path)
    user_factory = simulation
    if simulation is None:
        net = network if network is not None else _load_network(cfg)
        model_name = net.name
        simulation = functools.partial(_default_simulation, net)
    else:
        model_name = getattr(network, "name", cfg.model_name)

    from simulator.observe import neural_cores
    from simulator.runner import load_test_dataset

    sim = simulation(cfg, seed)
    cores = list(neural_cores(sim))
    all_layers = list(dict.fromkeys(l for l, _, _ in cores))
    cores = _select(cores, layers, cfg, model_name, all_layers)
    sel_layers = list(dict.fromkeys(l for l, _, _ in cores))
    notes: list[str] = []
    data = load_test_dataset(cfg)
    cause_sets = _cause_sets(cfg, all_layers)
    bar = None
    if progress:
        from tqdm.auto import tqdm

        total = data.n + len(cause_sets) + (2 * len(sel_layers) if sensitivity else 0)
        bar = tqdm(total=total, unit="step", dynamic_ncols=True, leave=False, desc="diagnose")
    try:
        post = {c: f for l, c, _ in cores if (f := _post_function(sim, l, c)) is not None}
        rec, accuracy, ideal_accuracy, n = _observed_pass(sim, data, cores, post, samples, seed, bar)
        mse = _cause_errors(cfg, simulation, seed, cause_sets, cores, rec, post, notes, bar)
        prereq = _prerequisites(cfg, all_layers)
        diags = [_layer_diagnosis(l, c, rec[c], post, mse, prereq) for l, c, _ in cores]
        floors = [f"{d.core} {d.floor_error:.2g}" for d in diags if d.floor_error > 0]
        if floors:
            notes.append("note: with every cause switched off these layers still differ from their ideal output "
                         f"(relative RMS error: {', '.join(floors)}), because their mapping fixes a quantization "
                         "(witin layers on arrays keep witin's quantization); each cause's error is counted above "
                         "that floor")
        if sensitivity and sel_layers:
            if runner is None and user_factory is not None:
                runner = functools.partial(accuracy_run, simulation=user_factory)  # must pickle for workers
            elif runner is None and network is not None and workers == 1 and scheduler is None:
                runner = functools.partial(accuracy_run, network=network)  # in this process: the given model
            _sensitivity(cfg, all_layers, sel_layers, diags, workers, scheduler, scheduler_timeout, runner, bar)
    finally:
        if bar is not None:
            bar.close()
    if not sel_layers:
        notes.append("note: the model has no analog MVM layer")
    report = DiagnoseReport(config=cfg, model_name=model_name, n_images=n, seed=seed, ideal_accuracy=ideal_accuracy,
                            accuracy=accuracy, layers=diags, causes=active_causes(cfg, all_layers), notes=notes)
    if out_path is not None:
        report.write(out_path, plots=plots)
    return report


def _diagnose_config(config, ntest: Optional[int], seed: Optional[int]) -> tuple[Config, int]:
    """The config of the diagnosed chip: one run, a fixed seed, ``ntest`` images."""
    cfg = load_config(config)
    if ntest is not None and int(ntest) < 0:
        raise ConfigError(f"--ntest must be >= 0 images (0 = the whole test split), got {ntest}")
    seed = int(seed if seed is not None else (cfg.seed if cfg.seed is not None else 0))
    data = _minimal(cfg.to_dict())
    data.update(seed=seed, Nruns=1, **({"ntest": int(ntest)} if ntest is not None else {}))
    return load_config(data, name=cfg.source), seed


def _load_network(cfg: Config):
    from simulator.network import load_model_for

    return load_model_for(cfg)


def _default_simulation(net, cfg, seed: int):
    """A :class:`~simulator.simulation.Simulation` of ``net`` with the config's calibrated ranges."""
    from simulator.calibration_io import calibration_for
    from simulator.simulation import Simulation

    cfg = load_config(cfg)
    return Simulation(net, cfg, seed=seed, calibration=calibration_for(net, cfg))


def _select(cores: list, layers: Optional[Iterable[str]], cfg: Config, model_name: str, all_layers: list[str]) -> list:
    """The cores named by the layer filter (layer or core names); every core without one."""
    if layers is None:
        return cores
    wanted = list(layers)
    known = {n for l, c, _ in cores for n in (l, c)}
    bad = [n for n in wanted if n not in known]
    if bad or not wanted:
        raise ConfigError(
            f"{cfg.source}: layer filter {', '.join(map(repr, bad or wanted)) or '(empty)'} names no analog layer "
            f"of model {model_name!r}; analog layers: {', '.join(all_layers) or 'none'}")
    return [t for t in cores if t[0] in wanted or t[1] in wanted]


def _observed_pass(sim, data, cores, post, samples: int, seed: int, bar):
    """Run the test images through the non-ideal chip with a recorder: (recorder, accuracy, ideal accuracy, n)."""
    from simulator.runner import _correct

    hits = ideal_hits = n = 0
    with sim.observe(adc=True, dac=True, layers=[c for _, c, _ in cores], samples=samples, seed=seed,
                     post=post) as rec:
        for x, y in data.iter_batches(layout=_input_layout(sim)):
            y = np.asarray(y)
            hits += _correct(sim.forward(x), y, [1])[1]
            ideal_hits += _correct(sim.ideal_forward(x), y, [1])[1]
            n += len(y)
            if bar is not None:
                bar.update(len(y))
    return rec, hits / max(n, 1), ideal_hits / max(n, 1), n


def _cause_errors(cfg, simulation, seed, cause_sets, cores, rec, post, notes, bar) -> dict:
    """``{cause set: {core: (mean squared error, mean squared ideal output, dtype)}}`` on the sampled inputs."""
    from simulator.observe import neural_cores

    mse: dict[frozenset, dict[str, tuple[float, float, str]]] = {}
    for key in cause_sets:
        if bar is not None:
            bar.set_postfix_str(", ".join(sorted(key)) or "ideal")
        mse[key] = {}
        try:
            vsim = simulation(load_config(variant_config(cfg, key), name=cfg.source), seed)
        except XbarsimError as exc:
            notes.append(f"note: {', '.join(CAUSES[c] for c in sorted(key))} could not be switched on alone ({exc})")
            vsim = None
        vcores = {} if vsim is None else {c: core for _, c, core in neural_cores(vsim)}
        for _, cname, _ in cores:
            core, X = vcores.get(cname), rec[cname].samples
            if core is None or X is None:
                continue
            xp = core.xp
            X = xp.asarray(X)
            ref, Y = core.ideal(X), xp.asarray(core(X), dtype=xp.float64)
            f = post.get(cname)
            if f is not None:
                ref, Y = f(ref, xp), f(Y, xp)
            d = Y - ref
            mse[key][cname] = (float(xp.mean(d * d)), float(xp.mean(ref * ref)), str(core.dtype))
        if bar is not None:
            bar.update(1)
    return mse


def _quantizer_use(use) -> dict[str, Any]:
    if use is None or not use.n:
        return {}
    main = use.main if hasattr(use, "main") else use
    return dict(bits=main.bits, clipped_low=use.clipped_low_fraction, clipped_high=use.clipped_high_fraction,
                levels_used_fraction=use.levels_used_fraction, effective_bits=use.effective_bits)


def _layer_diagnosis(lname: str, cname: str, obs, post, mse, prereq) -> LayerDiagnosis:
    """One core's whole error, its first-order cause split and its ADC/DAC/Icol use."""
    rel = _rel(obs.sum_err2, obs.sum_ref2, _floor(obs.dtype))
    r0 = mse.get(frozenset(), {}).get(cname)
    floor_error = _rel(r0[0], r0[1], _floor(r0[2])) if r0 is not None else 0.0
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
        cause_err[c] = e = _rel(m, ref, _floor(dt))
        cause_mse[c] = 0.0 if e == 0 else m
    total = sum(cause_mse.values())
    share = {c: (cause_mse[c] / total if total > 0 else 0.0) if c in cause_mse else float("nan") for c in CAUSES}
    return LayerDiagnosis(
        layer=lname, core=cname, mvms=obs.rows, activation_after=cname in post, relative_rms_error=rel,
        snr_db=snr_db(rel), cause_error=cause_err, cause_share=share, adc=_quantizer_use(obs.adc),
        dac=_quantizer_use(obs.dac), icol_clipped=obs.icol_clipped_fraction, floor_error=floor_error,
        observation=obs,
    )


def _cause_sets(cfg: Config, layers: list[str]) -> list[frozenset]:
    """Every cause off (the floor), every cause alone (with its prerequisites), each prerequisite set alone."""
    prereq = _prerequisites(cfg, layers)
    sets = [frozenset()]
    for c in CAUSES:
        pre = prereq.get(c, set())
        sets.append(frozenset({c} | pre))
        if pre:
            sets.append(frozenset(pre))
    return list(dict.fromkeys(sets))


def _sensitivity(cfg, all_layers, sel_layers, diags, workers, scheduler, timeout, runner, bar) -> None:
    from simulator.sweep.executors import Task, make_executor

    base = _minimal(cfg.to_dict())
    tasks = []
    for i, lname in enumerate(sel_layers):
        others = [l for l in all_layers if l != lname]
        tasks.append(Task(point=2 * i, run=0, config=_layers_ideal(cfg, base, others),
                          label=f"diagnose {lname}: only this layer non-ideal"))
        tasks.append(Task(point=2 * i + 1, run=0, config=_layers_ideal(cfg, base, [lname]),
                          label=f"diagnose {lname}: only this layer ideal"))
    acc: dict[int, float] = {}
    with make_executor(workers, scheduler, timeout=timeout) as ex:
        for task, payload in ex.run(tasks, runner or accuracy_run):
            acc[task.point] = float(payload["rows"][0]["accuracy"])
            if bar is not None:
                bar.update(1)
    for i, lname in enumerate(sel_layers):
        for d in diags:
            if d.layer == lname:
                d.acc_only_nonideal = acc.get(2 * i, float("nan"))
                d.acc_only_ideal = acc.get(2 * i + 1, float("nan"))
