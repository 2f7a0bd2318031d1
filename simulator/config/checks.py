"""Checks of parameter values and combinations (each failure one line naming the parameters).

The schema's validators call these; they read parameters by name and never
import the schema (annotations only).
"""
from __future__ import annotations

from typing import TYPE_CHECKING, Any, Mapping

from simulator.errors import ConfigError

if TYPE_CHECKING:
    from simulator.config.hardware import HardwareParams
    from simulator.config.schema import Config


def _numeric_annotation(ann) -> bool:
    """True for int/float fields (also inside Optional/Union/list/tuple) that do not also take booleans."""
    import typing

    leaves: set = set()

    def walk(a):
        args = typing.get_args(a)
        if args:
            for x in args:
                walk(x)
        else:
            leaves.add(a)

    walk(ann)
    return bool(leaves & {int, float}) and bool not in leaves


def reject_booleans(data: Mapping[str, Any], fields, where: str) -> None:
    for key, value in data.items():
        f = fields.get(key)
        if f is None or not _numeric_annotation(f.annotation):
            continue
        items = value if isinstance(value, (list, tuple)) else [value]
        if any(isinstance(v, bool) for v in items):
            raise ValueError(f"{where}{key} = {value!r}: expected a number, not a boolean")


def check_combinations(p: "HardwareParams", cfg: "Config", where: str) -> None:
    """Reject incompatible parameter combinations (one line naming both parameters).

    ``p`` is the global parameters (``where = ""``) or one layer's merged ones
    (``where = "layers.<name>."``); the checks run in this order, so the first
    problem found is the one reported.
    """
    _check_weights_and_slicing(p, where)
    _check_parasitics(p, where)
    _check_converters(p, cfg, where)
    _check_limits_devices_ranges(p, where)


def _check_weights_and_slicing(p: "HardwareParams", where: str) -> None:
    """Granular ADC ranges, input and weight bit slicing, weight quantizers and mappings."""
    if p.adc_range_option == "granular" and p.adc_bits > 0:
        missing = []
        if p.weight_bits == 0:
            missing.append("weight_bits > 0")
        if p.dac_bits == 0:
            missing.append("dac_bits > 0")
        if not p.input_bitslicing:
            missing.append("input_bitslicing = true")
        if not p.ADC_per_ibit:
            missing.append("ADC_per_ibit = true")
        if missing:
            raise ValueError(f"{where}adc_range_option = 'granular' requires {', '.join(missing)} (manual 9.3.3)")
        if p.weight_quantizer == "lloyd":
            raise ValueError(f"{where}adc_range_option = 'granular' needs equally spaced weight levels; "
                             "weight_quantizer = 'lloyd' has none (use 'max' or 'calibrated')")
    if p.input_bitslicing and p.dac_bits == 0:
        raise ValueError(f"{where}input_bitslicing = true requires dac_bits > 0 (the number of input bits)")
    if p.Nslices > 1 and p.weight_bits == 0:
        raise ValueError(f"{where}Nslices = {p.Nslices} requires weight_bits > 0")
    if p.Nslices > 1:
        mag = p.weight_bits - 1 if p.style == "BALANCED" else p.weight_bits
        if p.Nslices > mag:
            raise ValueError(
                f"{where}Nslices = {p.Nslices} is more than the {mag} bits to slice with weight_bits = {p.weight_bits}, style = {p.style}"
            )
        if p.style == "BALANCED" and p.balanced_style == "two_sided":
            raise ValueError(f"{where}Nslices > 1 with style = 'BALANCED' needs balanced_style = 'one_sided' (manual 6.6.1)")
    if p.weight_quantizer == "uniform" and p.weight_levels is not None:
        raise ValueError(f"{where}weight_levels is only used with weight_quantizer = 'lloyd'; use weight_bits for uniform levels")
    if p.balanced_style == "unified_reference" and p.weight_quantizer != "lloyd":
        raise ValueError(f"{where}balanced_style = 'unified_reference' is the non-uniform-level mapping; it needs weight_quantizer = 'lloyd'")
    if p.weight_quantizer == "lloyd":
        if p.weight_levels is None:
            raise ValueError(f"{where}weight_quantizer = 'lloyd' requires weight_levels (an integer >= 2)")
        if p.Nslices > 1:
            raise ValueError(f"{where}weight_quantizer = 'lloyd' cannot be combined with Nslices > 1")


def _check_parasitics(p: "HardwareParams", where: str) -> None:
    """Wire resistances and the parasitic circuit topology."""
    if p.Rp > 0 and (p.Rp_row is not None or p.Rp_col is not None):
        given = ", ".join(f"{k} = {getattr(p, k)}" for k in ("Rp_row", "Rp_col") if getattr(p, k) is not None)
        raise ValueError(f"{where}Rp = {p.Rp} and {given} both set the wire resistance; give either Rp (rows and columns) "
                         "or Rp_row / Rp_col")
    rp_row, rp_col = wire_resistances(p)
    if p.noRowParasitics and p.Rp_row is not None and p.Rp_row > 0:
        raise ValueError(f"{where}Rp_row = {p.Rp_row} has no effect with noRowParasitics = true (gate_input: the rows carry "
                         "no current); set Rp_row = 0 or noRowParasitics = false")
    if max(rp_row, rp_col) > 0:
        from simulator.circuits.parasitics import check_topology

        try:
            check_topology(max(rp_row, rp_col), p.noRowParasitics, p.style, p.interleaved_posneg, p.input_bitslicing)
        except ConfigError as exc:
            raise ValueError(f"{where}{exc}") from None


def _check_converters(p: "HardwareParams", cfg: "Config", where: str) -> None:
    """ADC / DAC models that nothing would use."""
    if where == "" and getattr(cfg, "layers", None) is not None:  # converter models that no layer would use
        def any_layer(key):
            return getattr(p, key) > 0 or any((getattr(o, key) or 0) > 0 for o in cfg.layers.values())

        if (p.adc_type != "generic" or p.adc_params) and not any_layer("adc_bits"):
            what = f"adc_type = {p.adc_type!r}" if p.adc_type != "generic" else "adc_params"
            raise ValueError(f"{what} has no effect: no layer has an ADC (adc_bits = 0)")
        if p.dac_type != "generic" and not any_layer("dac_bits"):
            raise ValueError(f"dac_type = {p.dac_type!r} has no effect: no layer has a DAC (dac_bits = 0)")
    if p.dac_type != "generic" and p.input_bitslicing:
        raise ValueError(f"{where}dac_type = {p.dac_type!r} has no effect with input_bitslicing = true (the inputs are "
                         "integer codes applied bit by bit); remove dac_type")


def _check_limits_devices_ranges(p: "HardwareParams", where: str) -> None:
    """Current limits, array options, stuck devices, device data, ADC ranges, G_ref."""
    if p.Icol_max > 0 and not p.Icell_max > 0:
        raise ValueError(f"{where}Icol_max = {p.Icol_max} needs Icell_max > 0 (the current of one cell at Gmax, A) to limit column currents")
    check_array_options(p, where)
    if p.stuck_off_fraction + p.stuck_on_fraction > 1:
        raise ValueError(f"{where}stuck_off_fraction + stuck_on_fraction = "
                         f"{p.stuck_off_fraction + p.stuck_on_fraction:g}: a device is stuck at most one way (sum <= 1)")
    if p.device_data and p.error_model not in ("none", "empirical"):
        raise ValueError(f"{where}device_data sets the programming error (the 'empirical' model); "
                         f"error_model = {p.error_model!r} cannot be used with it (set error_model = 'none')")
    if p.adc_exponents is not None and len(p.adc_exponents) != p.Nslices:
        raise ValueError(f"{where}adc_exponents has {len(p.adc_exponents)} entries, expected Nslices = {p.Nslices}")
    if p.adc_range_option != "calibrated":
        for key in ("adc_range", "adc_exponents"):
            if getattr(p, key) is not None:
                raise ValueError(f"{where}{key} is only used with adc_range_option = 'calibrated' "
                                 f"(it is {p.adc_range_option!r}): set adc_range_option = 'calibrated' or drop {key}")
    if p.G_ref is not None and p.balanced_style != "unified_reference":
        raise ValueError(f"{where}G_ref is the reference conductance of balanced_style = 'unified_reference' "
                         f"(it is {p.balanced_style!r}): set balanced_style = 'unified_reference' or drop G_ref")


def wire_resistances(p: "HardwareParams") -> tuple[float, float]:
    """(row, column) wire segment resistance normalized to Rmin: Rp_row / Rp_col, each defaulting to Rp."""
    return (p.Rp if p.Rp_row is None else p.Rp_row), (p.Rp if p.Rp_col is None else p.Rp_col)


def check_array_options(p: "HardwareParams", where: str) -> None:
    """CrossSim 3 array options: column split, input slices, separate subtraction, converter models."""
    if p.input_slice_size > 1:
        if not p.input_bitslicing:
            raise ValueError(f"{where}input_slice_size = {p.input_slice_size} requires input_bitslicing = true")
        if p.noRowParasitics:
            raise ValueError(f"{where}input_slice_size = {p.input_slice_size} needs driven rows; noRowParasitics = true "
                             "(gate_input: inputs switch the select transistors) takes one input bit at a time")
        if p.adc_range_option == "granular" and p.adc_bits > 0:
            raise ValueError(f"{where}adc_range_option = 'granular' sets the ADC step for 1-bit inputs (manual 9.3.3); "
                             f"input_slice_size = {p.input_slice_size} needs 'max' or 'calibrated'")
    if not p.subtract_current_in_xbar:
        if p.style != "BALANCED":
            raise ValueError(f"{where}subtract_current_in_xbar = false needs style = 'BALANCED' (two devices per weight)")
        if p.interleaved_posneg:
            raise ValueError(f"{where}subtract_current_in_xbar = false contradicts interleaved_posneg = true (the "
                             "interleaved devices share one column, so their currents subtract in the array)")
    if p.adc_xbar_range is not None and p.adc_range_option != "calibrated":
        raise ValueError(f"{where}adc_xbar_range is only used with adc_range_option = 'calibrated'")
    from simulator.circuits.converters import check_converter_options

    try:
        check_converter_options(p.adc_type, p.adc_params, p.dac_type)
    except ConfigError as exc:
        raise ValueError(f"{where}{exc}") from None
