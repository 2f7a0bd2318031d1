"""CrossSim 3 configs mapped onto xbarsim parameters (one place for every key).

Two inputs are read unchanged:

* a flat ``inference_config.py`` module of CrossSim 3.x (its shipped keys and
  the keyword arguments of ``dnn_inference_params``) -- :func:`from_flat`;
* a CrossSimParameters JSON file (sections ``core``, ``xbar``, ``simulation``,
  e.g. the chip presets default, ISAAC, ISAAC-SarADC, PRIME, SONOS-TCAS) --
  :func:`simulator.io.crosssim_json.from_json`.

This module holds the flat mapping and what both share (device names,
on/off ratio, SONOS current, notes).

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


def device_name(value: Any, source: str, key: str) -> str:
    """CrossSim 3 device model name -> xbarsim name (SONOS means the Agrawal 2022 fit there)."""
    if not isinstance(value, str):
        raise ConfigError(f"{source}: {key} = {value!r}: expected a device model name (string)")
    if value.strip().lower() == "sonos":
        return SONOS_CROSSSIM3
    return value


def _resistances(data: Mapping[str, Any]) -> tuple[float, float, bool]:
    """(Rmin, Rmax, infinite_on_off_ratio) of a flat module, CrossSim's defaults where absent."""
    rmin = float(data.get("Rmin", 1000.0))
    rmax = float(data.get("Rmax", 10000.0))
    return rmin, rmax, bool(data.get("infinite_on_off_ratio", False))


def on_off_ratio(source: str, rmin: float, rmax: float, infinite: bool) -> float:
    """xbarsim's On_off_ratio from CrossSim's resistances in ohms: Rmax / Rmin, 0 for an infinite ratio."""
    if not rmin > 0:
        raise ConfigError(f"{source}: Rmin = {rmin}: the minimum device resistance must be > 0 ohm")
    if infinite:
        return 0.0
    if not rmax > rmin:
        raise ConfigError(f"{source}: Rmax = {rmax} must exceed Rmin = {rmin} (or set infinite_on_off_ratio = True)")
    return rmax / rmin


def sonos_current(out: dict, source: str, rmin: float, vread: float) -> None:
    """The Agrawal SONOS fit needs the largest cell current I_max = Vread / Rmin (nA)."""
    if any(out.get(k) == SONOS_CROSSSIM3 for k in ("error_model", "noise_model", "drift_model")):
        out.setdefault("device_params", {})["sonos_Imax_nA"] = vread / rmin * 1e9


# --------------------------------------------------------------- flat modules
def _flat_refusals(d: dict, source: str) -> None:
    """Flat keys whose CrossSim meaning xbarsim cannot honour (ideal runs, terminal resistances, row choice)."""
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


#: dnn_inference_params spellings -> the flat module's names
_FLAT_RENAMED = (("core_style", "style"), ("input_bits", "dac_bits"), ("adc_per_ibit", "ADC_per_ibit"))


def _flat_renames(d: dict, source: str) -> None:
    for old, new in _FLAT_RENAMED:
        if old in d:
            if new in d and d[new] != d[old]:
                raise ConfigError(f"{source}: {old} = {d[old]!r} and {new} = {d[new]!r} contradict ({old} is "
                                  f"CrossSim's other spelling of {new})")
            d[new] = d.pop(old)


def _flat_ranges(d: dict, out: dict, source: str) -> None:
    """input_range -> dac_range, adc_range -> adc_xbar_range (when calibrated), positiveInputsOnly (noted)."""
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


def _flat_gate(d: dict, source: str) -> bool | None:
    """gate_input / current_from_input -> noRowParasitics (the same switch); returns gate_input or None."""
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
    return gate


def _flat_devices_and_wires(d: dict, out: dict, source: str, gate: bool | None) -> tuple[float, float]:
    """Rmin / Rmax / infinite_on_off_ratio -> On_off_ratio; Rp_row / Rp_col (ohms) -> Rmin units; (Rmin, Vread)."""
    rmin, rmax, infinite = _resistances(d)
    has_r = any(k in d for k in ("Rmin", "Rmax", "infinite_on_off_ratio"))
    for k in ("Rmin", "Rmax", "infinite_on_off_ratio"):
        d.pop(k, None)
    if has_r:
        if "On_off_ratio" in d:
            raise ConfigError(f"{source}: On_off_ratio and Rmin/Rmax/infinite_on_off_ratio both set the on/off ratio; "
                              "give one of them")
        out["On_off_ratio"] = on_off_ratio(source, rmin, rmax, infinite)
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
    return rmin, vread


def _flat_checks(d: dict, out: dict, source: str) -> None:
    """Current limits, contradictions, device names and the keys that only steer CrossSim's output."""
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
            d[key] = device_name(d[key], source, key)
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


def from_flat(data: Mapping[str, Any], source: str) -> dict[str, Any]:
    """Map a flat CrossSim 3 ``inference_config.py`` (or dnn_inference_params kwargs) onto xbarsim keys."""
    d = dict(data)
    out: dict[str, Any] = {}
    _flat_refusals(d, source)
    _flat_renames(d, source)
    _flat_ranges(d, out, source)
    gate = _flat_gate(d, source)
    rmin, vread = _flat_devices_and_wires(d, out, source, gate)
    _flat_checks(d, out, source)
    # what is left: xbarsim names (same meaning) or unknown (the schema reports those with a hint)
    for key, value in d.items():
        out[key] = value
    sonos_current(out, source, rmin, vread)
    return out
