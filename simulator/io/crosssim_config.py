"""CrossSim 3 configs mapped onto xbarsim parameters (one place for every key).

Two inputs are read unchanged:

* a flat ``inference_config.py`` module of CrossSim 3.x (its shipped keys and
  the keyword arguments of ``dnn_inference_params``) -- :func:`from_flat`;
* a CrossSimParameters JSON file (sections ``core``, ``xbar``, ``simulation``,
  e.g. the chip presets default, ISAAC, ISAAC-SarADC, PRIME, SONOS-TCAS) --
  :func:`from_json`.

Each returns a plain xbarsim config dict (validated afterwards by
:func:`simulator.config.load_config`). Enumerated values are accepted in any
letter case and as CrossSim's integers (``"style": 2`` = BITSLICED). A key
xbarsim cannot honour raises one :class:`ConfigError` line naming it and why;
keys that only steer CrossSim's own console or output are accepted and logged
as a note ("xbarsim.crosssim" logger). Units: CrossSim's ``Rp_row``/``Rp_col``
are ohms and become xbarsim's Rmin-normalized ``Rp_row``/``Rp_col``;
``Rmin``/``Rmax``/``infinite_on_off_ratio`` become ``On_off_ratio``;
CrossSim's ``Icol_max`` (flat files: amperes with ``Icell_max``; JSON: units of
one cell's maximum current) keeps its meaning. docs/crosssim.md lists every key.
"""
from __future__ import annotations

import logging
from typing import Any, Mapping

from simulator.errors import ConfigError

log = logging.getLogger("xbarsim.crosssim")

#: keys of a flat CrossSim 3 module that only exist in CrossSim 3 (a v2.0-style module has none)
CROSSSIM3_FLAT_KEYS = frozenset({
    "Rp_row", "Rp_col", "Rp_row_terminal", "Rp_col_terminal", "Rmin", "Rmax", "infinite_on_off_ratio", "NcolsMax",
    "subtract_current_in_xbar", "gate_input", "input_slice_size", "adc_type", "return_network_output",
    "show_HW_config", "export_conductances", "conductances_dir", "disable_SW_packing", "core_style", "input_bits",
    "positiveInputsOnly", "current_from_input", "selected_rows", "Vread", "gpu_id", "adc_per_ibit",
    "profile_xbar_inputs", "profile_adc_inputs", "ideal", "input_range",
})

#: flat keys that only steer CrossSim's own output: accepted with a note
_OUTPUT_ONLY = {
    "show_HW_config": "xbarsim prints its hardware summary with `xbarsim inspect`",
    "return_network_output": "xbarsim's Python API returns the network outputs (simulator.run / Simulation.forward)",
    "disable_SW_packing": "xbarsim always batches all sliding windows into one MVM (x_par/y_par are accepted)",
    "time_interval": None,
    "profile_xbar_inputs": "profiling is `xbarsim calibrate`",
    "profile_adc_inputs": "profiling is `xbarsim calibrate`",
    "gpu_id": None,
}

#: the flat keys that are already xbarsim names with the same meaning
_SAME = frozenset({
    "useGPU", "gpu_num", "Nruns", "task", "model_name", "ntest", "ntest_batch", "nstart", "randomSampling",
    "count_interval", "topk", "show_model_summary", "weight_bits", "weight_percentile", "Nslices", "NrowsMax",
    "NcolsMax", "style", "balanced_style", "subtract_current_in_xbar", "digital_offset", "interleaved_posneg",
    "fold_batchnorm", "digital_bias", "bias_bits", "error_model", "alpha_error", "proportional_error", "noise_model",
    "alpha_noise", "proportional_noise", "t_drift", "drift_model", "adc_bits", "dac_bits", "input_bitslicing",
    "input_slice_size", "ADC_per_ibit", "adc_range_option", "x_par", "y_par", "Icol_max", "Icell_max",
    "export_conductances", "conductances_dir", "adc_type", "dataset_normalization", "subtract_pixel_mean",
})

#: CrossSim 3.2 names of its SONOS fit (Agrawal et al., IEDM 2022) -> xbarsim's model of that fit
SONOS_CROSSSIM3 = "SONOS_Agrawal"


def note(source: str, key: str, text: str) -> None:
    """Log (one line, logger "xbarsim.crosssim") that ``key`` is accepted, and what xbarsim does instead."""
    log.warning("%s: note: %s is accepted%s", source, key, f" ({text})" if text else "")


def is_crosssim3_flat(data: Mapping[str, Any]) -> bool:
    """Whether a flat module uses CrossSim 3 keys (else it is read as v2.0 / xbarsim names)."""
    return any(k in CROSSSIM3_FLAT_KEYS for k in data)


def is_crosssim_json(data: Any) -> bool:
    """Whether a JSON document is a CrossSimParameters file (top level of core / xbar / simulation sections)."""
    return isinstance(data, Mapping) and bool(data) and any(k in ("core", "xbar", "simulation") for k in data) and all(
        isinstance(v, Mapping) for k, v in data.items() if k in ("core", "xbar", "simulation"))


def _device_name(value: Any, source: str, key: str) -> str:
    """CrossSim 3 device model name -> xbarsim name (SONOS means the Agrawal 2022 fit there)."""
    if not isinstance(value, str):
        raise ConfigError(f"{source}: {key} = {value!r}: expected a device model name (string)")
    if value.strip().lower() == "sonos":
        return SONOS_CROSSSIM3
    return value


def _resistances(data: Mapping[str, Any]) -> tuple[float, float, bool]:
    rmin = float(data.get("Rmin", 1000.0))
    rmax = float(data.get("Rmax", 10000.0))
    return rmin, rmax, bool(data.get("infinite_on_off_ratio", False))


def _on_off(source: str, rmin: float, rmax: float, infinite: bool) -> float:
    if not rmin > 0:
        raise ConfigError(f"{source}: Rmin = {rmin}: the minimum device resistance must be > 0 ohm")
    if infinite:
        return 0.0
    if not rmax > rmin:
        raise ConfigError(f"{source}: Rmax = {rmax} must exceed Rmin = {rmin} (or set infinite_on_off_ratio = True)")
    return rmax / rmin


def _sonos_current(out: dict, source: str, rmin: float, vread: float) -> None:
    """The Agrawal SONOS fit needs the largest cell current I_max = Vread / Rmin (nA)."""
    if any(out.get(k) == SONOS_CROSSSIM3 for k in ("error_model", "noise_model", "drift_model")):
        out.setdefault("device_params", {})["sonos_Imax_nA"] = vread / rmin * 1e9


# --------------------------------------------------------------- flat modules
def from_flat(data: Mapping[str, Any], source: str) -> dict[str, Any]:
    """Map a flat CrossSim 3 ``inference_config.py`` (or dnn_inference_params kwargs) onto xbarsim keys."""
    d = dict(data)
    out: dict[str, Any] = {}
    if d.pop("ideal", False):
        raise ConfigError(f"{source}: ideal = True asks CrossSim for a floating-point run; xbarsim reports the ideal "
                          "accuracy beside every run (remove ideal)")
    for key in ("Rp_row_terminal", "Rp_col_terminal"):
        if float(d.pop(key, 0) or 0) != 0:
            raise ConfigError(f"{source}: {key}: series terminal resistance at the wire ends is not modelled by "
                              "xbarsim's parasitic solver (set it to 0)")
    sel = d.pop("selected_rows", "top")
    if str(sel).lower() != "top":
        raise ConfigError(f"{source}: selected_rows = {sel!r}: xbarsim arrays hold exactly the partition's rows, "
                          "so there is no choice of rows; only 'top' is accepted")
    # renamed keys (dnn_inference_params spellings)
    for old, new in (("core_style", "style"), ("input_bits", "dac_bits"), ("adc_per_ibit", "ADC_per_ibit")):
        if old in d:
            if new in d and d[new] != d[old]:
                raise ConfigError(f"{source}: {old} = {d[old]!r} and {new} = {d[new]!r} contradict ({old} is "
                                  f"CrossSim's other spelling of {new})")
            d[new] = d.pop(old)
    if "input_range" in d:
        out["dac_range"] = list(d.pop("input_range"))
    if "adc_range" in d:
        value = d.pop("adc_range")
        if str(d.get("adc_range_option", "calibrated")).lower() == "calibrated" and int(d.get("adc_bits", 0) or 0) > 0:
            out["adc_xbar_range"] = ([list(r) for r in value] if value and isinstance(value[0], (list, tuple))
                                     else [list(value)])
        else:
            note(source, "adc_range", "used only with adc_range_option = CALIBRATED and adc_bits > 0, as in CrossSim")
    if "positiveInputsOnly" in d:
        pos = d.pop("positiveInputsOnly")
        if isinstance(pos, (list, tuple)):
            raise ConfigError(f"{source}: positiveInputsOnly per layer is not needed: xbarsim reads each layer's "
                              "input range (signed or not) from the model or calibration")
        note(source, "positiveInputsOnly", "xbarsim decides input signedness per layer from its input range")
    # gate_input / current_from_input -> noRowParasitics
    gate = None
    if "gate_input" in d:
        gate = bool(d.pop("gate_input"))
    if "current_from_input" in d:
        cfi = not bool(d.pop("current_from_input"))
        if gate is not None and gate != cfi:
            raise ConfigError(f"{source}: gate_input = {gate} and current_from_input = {not cfi} contradict")
        gate = cfi
    if gate is not None:
        if "noRowParasitics" in d and bool(d["noRowParasitics"]) != gate:
            raise ConfigError(f"{source}: gate_input = {gate} and noRowParasitics = {d['noRowParasitics']} contradict "
                              "(they are the same switch)")
        d["noRowParasitics"] = gate
    # devices and wires
    rmin, rmax, infinite = _resistances(d)
    has_r = any(k in d for k in ("Rmin", "Rmax", "infinite_on_off_ratio"))
    for k in ("Rmin", "Rmax", "infinite_on_off_ratio"):
        d.pop(k, None)
    if has_r:
        if "On_off_ratio" in d:
            raise ConfigError(f"{source}: On_off_ratio and Rmin/Rmax/infinite_on_off_ratio both set the on/off ratio; "
                              "give one of them")
        out["On_off_ratio"] = _on_off(source, rmin, rmax, infinite)
    vread = float(d.pop("Vread", 0.1))
    for key in ("Rp_row", "Rp_col"):
        if key in d:
            if "Rp" in d:
                raise ConfigError(f"{source}: Rp and {key} both set the wire resistance; give either Rp (normalized, "
                                  "CrossSim 2) or Rp_row / Rp_col (ohms, CrossSim 3)")
            ohms = float(d.pop(key))
            if ohms < 0:
                raise ConfigError(f"{source}: {key} = {ohms}: a resistance must be >= 0 ohm")
            out[key] = ohms / rmin
    if gate and out.get("Rp_col", 0) > 0 and not (d.get("input_bitslicing") and int(d.get("dac_bits", 0) or 0) > 0):
        raise ConfigError(f"{source}: gate_input = True (the inputs switch the select transistors) with Rp_col > 0 "
                          "requires input_bitslicing = True and dac_bits > 0, as in CrossSim (manual Table 8.1)")
    if d.get("noRowParasitics") and out.get("Rp_row", 0) > 0:
        note(source, "Rp_row", "with gate_input = True the rows carry no current, as in CrossSim")
        out["Rp_row"] = 0.0
    if out.get("Rp_row", 0) == 0 and out.get("Rp_col", 0) == 0:
        out.pop("Rp_row", None), out.pop("Rp_col", None)
    if d.get("Icol_max", 0) == 0:
        d.pop("Icell_max", None)  # only used with Icol_max > 0
    elif "Icell_max" not in d:
        # dnn_inference_params takes Icol_max already in units of one cell's maximum current
        note(source, "Icol_max without Icell_max", "read as units of one cell's maximum current, as "
             "dnn_inference_params does")
        d["Icell_max"] = 1.0
    if d.get("subtract_current_in_xbar") is False and d.get("interleaved_posneg"):
        raise ConfigError(f"{source}: subtract_current_in_xbar = False contradicts interleaved_posneg = True "
                          "(CrossSim overrides it with a warning; xbarsim asks you to choose)")
    for key in ("error_model", "noise_model", "drift_model"):
        if key in d and d[key] is None:  # dnn_inference_params' default drift_model = None
            d[key] = "none"
        if key in d:
            d[key] = _device_name(d[key], source, key)
    if d.get("bias_bits") == "adc":
        raise ConfigError(f"{source}: bias_bits = 'adc' (bias levels tracking the ADC step) is not modelled; "
                          "give an integer number of bias bits")
    for key, why in _OUTPUT_ONLY.items():
        if key in d:
            value = d.pop(key)
            if key == "gpu_id":
                out.setdefault("gpu_num", value)
            elif key != "time_interval" and value:
                note(source, key, f"it only steers CrossSim's own output; {why}")
            elif key == "time_interval":
                out["time_interval"] = value
    if not d.get("export_conductances", False):
        d.pop("conductances_dir", None)
    if int(d.get("adc_bits", 0) or 0) == 0 and str(d.get("adc_range_option", "max")).lower() == "calibrated":
        d["adc_range_option"] = "max"  # no ADC: CrossSim ignores the range option, so nothing is calibrated
    # what is left: xbarsim names (same meaning) or unknown (the schema reports those with a hint)
    for key, value in d.items():
        out[key] = value
    _sonos_current(out, source, rmin, vread)
    return out


# --------------------------------------------------------------- JSON files
_CORE_STYLE = {1: "BALANCED", 2: "BITSLICED", 3: "OFFSET"}
_BAL_STYLE = {1: "one_sided", 2: "two_sided"}
_SLICED_STYLE = {1: "BALANCED", 3: "OFFSET"}
_OFFSET_STYLE = {1: "DIGITAL_OFFSET", 2: "UNIT_COLUMN_SUBTRACTION"}
_ADC_RANGE = {1: "calibrated", 2: "max", 3: "granular"}
_PARTITION = {1: "MAX", 2: "EQUAL"}


def _enum(value, table: Mapping[int, str], source: str, key: str) -> str:
    """CrossSim IntEnum value (integer or name, any case) -> its name."""
    if isinstance(value, bool):
        raise ConfigError(f"{source}: {key} = {value!r}: expected one of {', '.join(table.values())}")
    if isinstance(value, int) and value in table:
        return table[value]
    if isinstance(value, str):
        for name in table.values():
            if name.lower() == value.strip().lower():
                return name
    allowed = ", ".join(f"{v} ({k})" for k, v in table.items())
    raise ConfigError(f"{source}: {key} = {value!r}: expected one of {allowed}")


class _Section:
    """Keys of one JSON section, each consumed once; leftovers are unknown keys."""

    def __init__(self, data: Any, path: str, source: str) -> None:
        if not isinstance(data, Mapping):
            raise ConfigError(f"{source}: {path}: expected a JSON object, got {type(data).__name__}")
        self.d, self.path, self.source = dict(data), path, source

    def get(self, key: str, default=None):
        return self.d.pop(key, default)

    def sub(self, key: str) -> "_Section":
        path = key if self.path == "<top>" else f"{self.path}.{key}"
        return _Section(self.d.pop(key, {}) or {}, path, self.source)

    def done(self, known: tuple[str, ...] = ()) -> None:
        for key in self.d:
            import difflib

            match = difflib.get_close_matches(key, list(known), n=1)
            hint = f" (did you mean {match[0]!r}?)" if match else ""
            raise ConfigError(f"{self.source}: unknown key {self.path}.{key} in a CrossSim parameters file{hint}")


def _paired(sec: _Section, name: str) -> _Section:
    """The ``mvm`` half of a paired (mvm / vmm) section; vmm is unused by inference (noted when it differs)."""
    pair = sec.sub(name)
    match = pair.get("_match", True)
    mvm = pair.get("mvm", {}) or {}
    vmm = pair.get("vmm", None)
    pair.done(("_match", "mvm", "vmm"))
    if vmm is not None and not match and vmm != mvm:
        note(sec.source, f"{pair.path}.vmm", "inference runs MVMs only; the vmm settings are for transposed products")
    return _Section(mvm, f"{pair.path}.mvm", sec.source)


def _weight_error(sec: _Section, kind: str, out: dict) -> None:
    """read_noise / programming_error / drift_error -> *_model, alpha_*, proportional_*."""
    enable = bool(sec.get("enable", False))
    model = sec.get("model", "IdealDevice")
    magnitude = float(sec.get("magnitude", 0) or 0)
    sec.done(("enable", "model", "magnitude"))
    key = {"read_noise": "noise", "programming_error": "error", "drift_error": "drift"}[kind]
    if not enable or str(model).lower() == "idealdevice":
        out[f"{key}_model"] = "none"
        return
    low = str(model).lower()
    if low in ("normalindependentdevice", "normalproportionaldevice"):
        if key == "drift":
            raise ConfigError(f"{sec.source}: {sec.path}.model = {model!r}: a generic Gaussian is not a drift model")
        out[f"{key}_model"] = "alpha"
        out[f"alpha_{key}"] = magnitude
        out[f"proportional_{key}"] = low == "normalproportionaldevice"
        return
    out[f"{key}_model"] = _device_name(model, sec.source, f"{sec.path}.model")


def from_json(data: Mapping[str, Any], source: str) -> dict[str, Any]:
    """Map a CrossSimParameters JSON document (core / xbar / simulation) onto xbarsim keys."""
    top = _Section(data, "<top>", source)
    for key in top.d:
        if key not in ("core", "xbar", "simulation"):
            raise ConfigError(f"{source}: unknown section {key!r} in a CrossSim parameters file (expected core, xbar, "
                              "simulation)")
    out: dict[str, Any] = {}
    core, xbar, sim = top.sub("core"), top.sub("xbar"), top.sub("simulation")
    top.done()

    # ---- core -------------------------------------------------------------
    style = _enum(core.get("style", 1), _CORE_STYLE, source, "core.style")
    out["NrowsMax"] = int(core.get("rows_max", 0) or 0)
    out["NcolsMax"] = int(core.get("cols_max", 0) or 0)
    out["weight_bits"] = int(core.get("weight_bits", 0) or 0)
    for key in ("complex_matrix", "complex_input"):
        if core.get(key, False):
            raise ConfigError(f"{source}: core.{key} = true: complex-valued MVMs are not simulated by xbarsim")
    dtype = core.get("output_dtype", None)
    if dtype is not None and str(dtype).upper() not in ("1", "NATIVE"):
        note(source, "core.output_dtype", "xbarsim returns outputs in its simulation precision")
    bal = core.sub("balanced")
    out["balanced_style"] = _enum(bal.get("style", 1), _BAL_STYLE, source, "core.balanced.style")
    out["interleaved_posneg"] = bool(bal.get("interleaved_posneg", False))
    out["subtract_current_in_xbar"] = bool(bal.get("subtract_current_in_xbar", True))
    bal.done(("style", "interleaved_posneg", "subtract_current_in_xbar"))
    sliced = core.sub("bit_sliced")
    sliced_style = _enum(sliced.get("style", 1), _SLICED_STYLE, source, "core.bit_sliced.style")
    num_slices = int(sliced.get("num_slices", 2))
    sliced.done(("style", "num_slices"))
    offset = core.sub("offset")
    out["digital_offset"] = _enum(offset.get("style", 1), _OFFSET_STYLE, source, "core.offset.style") == "DIGITAL_OFFSET"
    offset.done(("style",))
    if style == "BITSLICED":
        out["style"], out["Nslices"] = sliced_style, num_slices
    else:
        out["style"], out["Nslices"] = style, 1
    if out["style"] == "OFFSET" or out["interleaved_posneg"]:
        out["subtract_current_in_xbar"] = True  # CrossSim ignores it then
    mapping = core.sub("mapping")
    wmap = mapping.sub("weights")
    clipping = wmap.get("clipping", True)
    for key in ("min", "max"):
        if wmap.get(key, None) is not None:
            raise ConfigError(f"{source}: core.mapping.weights.{key}: fixed weight limits are not supported; "
                              "xbarsim sets the limit from percentile (weight_percentile)")
    pct = wmap.get("percentile", 1.0)
    out["weight_percentile"] = 100.0 * float(pct if pct is not None else 1.0)
    if not clipping and out["weight_percentile"] < 100:
        raise ConfigError(f"{source}: core.mapping.weights.clipping = false with percentile < 1: xbarsim always clips "
                          "weights to the percentile limit")
    for key in ("row_partition_priority", "col_partition_priority"):
        if wmap.get(key, []):
            raise ConfigError(f"{source}: core.mapping.weights.{key}: custom partition orders are not supported")
    for key in ("row_partition_strategy", "col_partition_strategy"):
        if _enum(wmap.get(key, 2), _PARTITION, source, f"core.mapping.weights.{key}") != "EQUAL":
            raise ConfigError(f"{source}: core.mapping.weights.{key} = MAX: xbarsim splits rows and columns into "
                              "equal partitions (EQUAL, manual 8.1)")
    wmap.done(("clipping", "min", "max", "percentile", "row_partition_priority", "col_partition_priority",
               "row_partition_strategy", "col_partition_strategy"))
    imap = _paired(mapping, "inputs")
    in_clip = bool(imap.get("clipping", False))
    in_lo, in_hi = imap.get("min", -1.0), imap.get("max", 1.0)
    if imap.get("percentile", None) is not None:
        raise ConfigError(f"{source}: core.mapping.inputs.mvm.percentile: input ranges from percentiles are set by "
                          "`xbarsim calibrate --what dac`, not in the config")
    imap.done(("clipping", "min", "max", "percentile"))
    mapping.done(("weights", "inputs"))
    core.done(("style", "rows_max", "cols_max", "weight_bits", "complex_matrix", "complex_input", "output_dtype",
               "balanced", "bit_sliced", "offset", "mapping"))

    # ---- simulation ---------------------------------------------------------
    conv = sim.sub("convolution")
    out["x_par"] = int(conv.get("x_par", 1))
    out["y_par"] = int(conv.get("y_par", 1))
    conv.get("is_conv_core", None), conv.get("Nwindows", None)  # set per layer by xbarsim itself
    conv.done(("is_conv_core", "x_par", "y_par", "Nwindows"))
    ana = sim.sub("analytics")
    for key in ("profile_adc_inputs", "profile_xbar_inputs"):
        if ana.get(key, False):
            note(source, f"simulation.analytics.{key}", "profiling is `xbarsim calibrate`")
    ana.get("ntest", None)
    ana.done(("profile_adc_inputs", "profile_xbar_inputs", "ntest"))
    out["useGPU"] = bool(sim.get("useGPU", False))
    out["gpu_num"] = int(sim.get("gpu_id", 0))
    out["parasitics_max_iter"] = int(sim.get("Niters_max_parasitics", 100))
    out["Verr_th"] = float(sim.get("Verr_th_mvm", 1e-3))
    for key, why in (("relaxation_gamma", "xbarsim picks the relaxation factor from a bound on the circuit's spectrum"),
                     ("Verr_matmul_criterion", "xbarsim stops when the worst node change is below Verr_th"),
                     ("disable_fast_balanced", None), ("disable_fast_matmul", None),
                     ("disable_fast_nonlinear_IV", None), ("hide_convergence_msg", None)):
        value = sim.get(key, None)
        if key.startswith("disable") and value:
            note(source, f"simulation.{key}", "xbarsim's fast paths give the same results as its exact ones")
        elif why and value is not None and key == "relaxation_gamma" and float(value) != 1:
            note(source, f"simulation.{key}", why)
    sim.done(("convolution", "analytics", "useGPU", "gpu_id", "Niters_max_parasitics", "Verr_th_mvm",
              "Verr_matmul_criterion", "relaxation_gamma", "disable_fast_balanced", "disable_fast_matmul",
              "disable_fast_nonlinear_IV", "hide_convergence_msg"))

    # ---- xbar.device ----------------------------------------------------------
    dev = xbar.sub("device")
    cell_bits = int(dev.get("cell_bits", 0) or 0)
    rmin = float(dev.get("Rmin", 1000.0))
    rmax = float(dev.get("Rmax", 10000.0))
    vread = float(dev.get("Vread", 0.1))
    out["t_drift"] = float(dev.get("time", 0) or 0)
    infinite = bool(dev.get("infinite_on_off_ratio", False))
    out["On_off_ratio"] = _on_off(source, rmin, rmax, infinite)
    if not dev.get("clip_conductance", False):
        note(source, "xbar.device.clip_conductance = false", "xbarsim clips programmed and drifted conductances to "
             "[Gmin, Gmax] as manual 7.2.1 prescribes (CrossSim 3.2 with false clips at 0 only); see docs/crosssim.md")
    for kind in ("read_noise", "programming_error", "drift_error"):
        _weight_error(dev.sub(kind), kind, out)
    nl = dev.sub("nonlinear_IV")
    if nl.get("enable", False):
        raise ConfigError(f"{source}: xbar.device.nonlinear_IV.enable = true: non-linear cell I-V is not modelled")
    nl.d.clear()
    dev.done(("cell_bits", "Rmin", "Rmax", "Vread", "time", "infinite_on_off_ratio", "clip_conductance",
              "read_noise", "programming_error", "drift_error", "nonlinear_IV"))
    if out["drift_model"] == "none" and out["t_drift"] > 0:
        note(source, "xbar.device.time", "no drift model is enabled")
    _sonos_current(out, source, rmin, vread)

    # ---- xbar.array -----------------------------------------------------------
    arr = xbar.sub("array")
    icol = float(arr.get("Icol_max", 0) or 0)
    if icol > 0:  # CrossSim: units of one cell's maximum current
        out["Icol_max"], out["Icell_max"] = icol, 1.0
    par = arr.sub("parasitics")
    enable = bool(par.get("enable", False))
    rp_row, rp_col = float(par.get("Rp_row", 0) or 0), float(par.get("Rp_col", 0) or 0)
    for key in ("Rp_row_terminal", "Rp_col_terminal"):
        if float(par.get(key, 0) or 0) != 0:
            raise ConfigError(f"{source}: xbar.array.parasitics.{key}: terminal series resistance is not modelled")
    cfi = bool(par.get("current_from_input", True))
    sel = par.get("selected_rows", "top")
    if str(sel).lower() != "top":
        raise ConfigError(f"{source}: xbar.array.parasitics.selected_rows = {sel!r}: only 'top' is accepted")
    par.done(("enable", "Rp_row", "Rp_col", "Rp_row_terminal", "Rp_col_terminal", "current_from_input",
              "selected_rows"))
    arr.done(("Icol_max", "parasitics"))
    if enable and (rp_row > 0 or rp_col > 0):
        out["Rp_col"] = rp_col / rmin
        out["Rp_row"] = 0.0 if not cfi else rp_row / rmin
        out["noRowParasitics"] = not cfi
    elif rp_row > 0 or rp_col > 0:
        note(source, "xbar.array.parasitics.Rp_row/Rp_col", "parasitics.enable is false, as in CrossSim")

    # ---- xbar.adc / xbar.dac ----------------------------------------------------
    dac = _paired(xbar, "dac")
    dac_model = str(dac.get("model", "IdealDAC"))
    dac_bits = int(dac.get("bits", 0) or 0)
    out["input_bitslicing"] = bool(dac.get("input_bitslicing", False))
    dac.get("signed", True)  # xbarsim reads input signedness from each layer's input range
    out["input_slice_size"] = int(dac.get("slice_size", 1))
    dac.done(("model", "bits", "input_bitslicing", "signed", "slice_size"))
    if dac_model.lower() == "idealdac":
        dac_bits = 0
    else:
        # SignMagnitudeDAC: the manual's DAC is the same on the symmetric ranges CrossSim allows it, and picks
        # 2**bits levels on a layer whose inputs are non-negative instead of wasting the sign
        out["dac_type"] = "generic" if dac_model.lower() == "signmagnitudedac" else dac_model
    out["dac_bits"] = dac_bits
    if dac_bits == 0:
        out["input_bitslicing"] = False
        out["input_slice_size"] = 1
    if out.get("noRowParasitics") and not (out["input_bitslicing"] and out["input_slice_size"] == 1):
        raise ConfigError(f"{source}: xbar.array.parasitics.current_from_input = false (inputs switch the select "
                          "transistors) requires xbar.dac.mvm.input_bitslicing = true with slice_size = 1, as in CrossSim")
    elif in_lo is not None and in_hi is not None:
        out["dac_range"] = [float(in_lo), float(in_hi)]
    if in_clip and dac_bits == 0:
        raise ConfigError(f"{source}: core.mapping.inputs.mvm.clipping = true without a DAC: xbarsim clips inputs "
                          "only in the DAC (set xbar.dac.mvm.bits)")

    adc = _paired(xbar, "adc")
    adc_model = str(adc.get("model", "IdealADC"))
    out["adc_bits"] = int(adc.get("bits", 0) or 0)
    adc.get("signed", True)  # xbarsim derives ADC signedness from the style and the inputs
    if adc.get("stochastic_rounding", False):
        raise ConfigError(f"{source}: xbar.adc.mvm.stochastic_rounding = true: stochastic ADC rounding is not modelled")
    out["ADC_per_ibit"] = bool(adc.get("adc_per_ibit", False)) and out["input_bitslicing"]
    crange = adc.get("calibrated_range", None)
    out["adc_range_option"] = _enum(adc.get("adc_range_option", 1), _ADC_RANGE, source, "xbar.adc.mvm.adc_range_option")
    from simulator.circuits.converters import ADC_MODELS, canonical_name

    adc_type = canonical_name(adc_model, ADC_MODELS)
    if adc_type == "sign_magnitude":
        # CrossSim accepts SignMagnitudeADC on symmetric ranges only, where the manual's ADC ("generic") is the
        # same; xbarsim derives each layer's signedness, and on a non-negative range "generic" uses all 2**bits levels
        adc_type = "generic"
    params = {}
    if adc_type in ADC_MODELS:
        for key in list(adc.d):
            if key in ADC_MODELS[adc_type].parameters:
                params[key] = adc.get(key)
    leftovers = [k for k in adc.d if k not in ("model", "bits")]
    for key in leftovers:
        owners = sorted(n for n, c in ADC_MODELS.items() if key in c.parameters)
        if owners:
            raise ConfigError(f"{source}: xbar.adc.mvm.{key} is a parameter of the {', '.join(owners)} ADC, not of "
                              f"model {adc_model!r}")
    adc.done(("model", "bits", "signed", "stochastic_rounding", "adc_per_ibit", "calibrated_range", "adc_range_option"))
    xbar.done(("device", "array", "adc", "dac"))
    if adc_model.lower() == "idealadc":
        out["adc_bits"] = 0
    else:
        out["adc_type"] = adc_type
        if params:
            out["adc_params"] = params
    if out["adc_bits"] == 0:
        out["adc_range_option"] = "max"
        out.pop("adc_type", None), out.pop("adc_params", None)
        out["ADC_per_ibit"] = False
    elif out["adc_range_option"] == "calibrated":
        if not crange:
            raise ConfigError(f"{source}: xbar.adc.mvm.adc_range_option = CALIBRATED needs calibrated_range")
        ranges = crange if isinstance(crange[0], (list, tuple)) else [crange]
        out["adc_xbar_range"] = [[float(a), float(b)] for a, b in ranges]
    # cell_bits must agree with how xbarsim slices the weights
    wb, ns = out["weight_bits"], out["Nslices"]
    if cell_bits and wb:
        mag = wb - 1 if out["style"] == "BALANCED" else wb
        derived = -(-mag // ns)
        if ns > 1 and wb % ns == 0:
            derived = wb // ns if out["style"] == "OFFSET" else derived
        if cell_bits != derived:
            raise ConfigError(f"{source}: xbar.device.cell_bits = {cell_bits} disagrees with weight_bits = {wb}, "
                              f"{ns} slice(s), style {out['style']} ({derived} bits per device)")
    return out
