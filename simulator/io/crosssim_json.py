"""CrossSimParameters JSON files (sections ``core``, ``xbar``, ``simulation``) mapped onto xbarsim parameters.

:func:`from_json` reads each section with :class:`_Section`, which hands out
every key once and refuses the leftovers as unknown keys; one function per
section (``_json_core``, ``_json_simulation``, ``_json_device``, ...). The
conventions (units, enumerations, notes) are those of
:mod:`simulator.io.crosssim_config`, which also maps flat ``inference_config.py``
modules.
"""
from __future__ import annotations

from typing import Any, Mapping

from simulator.errors import ConfigError
from simulator.io.crosssim_config import device_name, on_off_ratio, sonos_current, note

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
    out[f"{key}_model"] = device_name(model, sec.source, f"{sec.path}.model")


def _json_core(core: _Section, source: str, out: dict) -> tuple[bool, Any, Any]:
    """Section ``core``: style, array size, slicing, weight and input mapping; returns the input (clip, min, max)."""
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
    _json_weight_mapping(mapping.sub("weights"), source, out)
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
    return in_clip, in_lo, in_hi


def _json_weight_mapping(wmap: _Section, source: str, out: dict) -> None:
    """Section ``core.mapping.weights``: only the percentile limit and equal partitions exist in xbarsim."""
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


#: simulation keys that change nothing in xbarsim: (key, why it is noted when set, or None)
_SIM_NOTED = (("relaxation_gamma", "xbarsim picks the relaxation factor from a bound on the circuit's spectrum"),
              ("Verr_matmul_criterion", "xbarsim stops when the worst node change is below Verr_th"),
              ("disable_fast_balanced", None), ("disable_fast_matmul", None),
              ("disable_fast_nonlinear_IV", None), ("hide_convergence_msg", None))
#: simulation keys with an xbarsim counterpart: (CrossSim key, xbarsim key, type, default)
_SIM_KEYS = (("useGPU", "useGPU", bool, False), ("gpu_id", "gpu_num", int, 0),
             ("Niters_max_parasitics", "parasitics_max_iter", int, 100), ("Verr_th_mvm", "Verr_th", float, 1e-3))


def _json_simulation(sim: _Section, source: str, out: dict) -> None:
    """Section ``simulation``: convolution packing, GPU, parasitic-solver settings."""
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
    for key, ours, kind, default in _SIM_KEYS:
        out[ours] = kind(sim.get(key, default))
    for key, why in _SIM_NOTED:
        value = sim.get(key, None)
        if key.startswith("disable") and value:
            note(source, f"simulation.{key}", "xbarsim's fast paths give the same results as its exact ones")
        elif why and value is not None and key == "relaxation_gamma" and float(value) != 1:
            note(source, f"simulation.{key}", why)
    sim.done(("convolution", "analytics", "useGPU", "gpu_id", "Niters_max_parasitics", "Verr_th_mvm",
              "Verr_matmul_criterion", "relaxation_gamma", "disable_fast_balanced", "disable_fast_matmul",
              "disable_fast_nonlinear_IV", "hide_convergence_msg"))


def _json_device(dev: _Section, source: str, out: dict) -> tuple[int, float]:
    """Section ``xbar.device``: on/off ratio, drift time, error models; returns (cell_bits, Rmin in ohms)."""
    cell_bits = int(dev.get("cell_bits", 0) or 0)
    rmin = float(dev.get("Rmin", 1000.0))
    rmax = float(dev.get("Rmax", 10000.0))
    vread = float(dev.get("Vread", 0.1))
    out["t_drift"] = float(dev.get("time", 0) or 0)
    infinite = bool(dev.get("infinite_on_off_ratio", False))
    out["On_off_ratio"] = on_off_ratio(source, rmin, rmax, infinite)
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
    sonos_current(out, source, rmin, vread)
    return cell_bits, rmin


def _json_array(arr: _Section, source: str, rmin: float, out: dict) -> None:
    """Section ``xbar.array``: the column current limit and wire parasitics (ohms -> Rmin units)."""
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


def _json_dac(dac: _Section, source: str, inputs: tuple[bool, Any, Any], out: dict) -> None:
    """Section ``xbar.dac.mvm`` with the input mapping of ``core`` (``inputs``: clip, min, max)."""
    in_clip, in_lo, in_hi = inputs
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


def _json_adc(adc: _Section, xbar: _Section, source: str, out: dict) -> None:
    """Section ``xbar.adc.mvm``: model (and its parameters), bits, range option and calibrated range."""
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


def _check_cell_bits(cell_bits: int, source: str, out: dict) -> None:
    """``xbar.device.cell_bits`` must agree with how xbarsim slices the weights."""
    wb, ns = out["weight_bits"], out["Nslices"]
    if cell_bits and wb:
        mag = wb - 1 if out["style"] == "BALANCED" else wb
        derived = -(-mag // ns)
        if ns > 1 and wb % ns == 0:
            derived = wb // ns if out["style"] == "OFFSET" else derived
        if cell_bits != derived:
            raise ConfigError(f"{source}: xbar.device.cell_bits = {cell_bits} disagrees with weight_bits = {wb}, "
                              f"{ns} slice(s), style {out['style']} ({derived} bits per device)")


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
    inputs = _json_core(core, source, out)
    _json_simulation(sim, source, out)
    cell_bits, rmin = _json_device(xbar.sub("device"), source, out)
    _json_array(xbar.sub("array"), source, rmin, out)
    _json_dac(_paired(xbar, "dac"), source, inputs, out)
    _json_adc(_paired(xbar, "adc"), xbar, source, out)
    _check_cell_bits(cell_bits, source, out)
    return out
