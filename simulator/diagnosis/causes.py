"""The causes of a layer's error and the configs that switch them on alone or off (see :mod:`simulator.diagnosis.core`).

:data:`CAUSES` names them; :func:`variant_config` builds the config of a chip
with only some causes on, :func:`layers_ideal` one in which chosen layers are
ideal (through ``[layers.<name>]`` overrides).
"""
from __future__ import annotations

from typing import Any, Iterable, Mapping

from simulator.config import LAYER_KEYS, Config

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


def prerequisites(cfg: Config, layers: Iterable[str]) -> dict[str, set[str]]:
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
    return minimal_config(data)


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


def minimal_config(data: Mapping[str, Any]) -> dict[str, Any]:
    """A config dict without the keys that hold their default value (and without None values)."""
    defaults = Config().to_dict()
    return {k: v for k, v in data.items() if v is not None and (k == "layers" or k not in defaults or defaults[k] != v)}


def layers_ideal(cfg: Config, data: Mapping[str, Any], names: Iterable[str]) -> dict[str, Any]:
    """``data`` with every non-ideality of layers ``names`` off through ``[layers.<name>]`` overrides.

    A layer stays analog (so per-layer limit files keep their order) unless one
    of its settings can only be undone by a None override (e.g. Lloyd levels,
    per-slice ADC exponents): then it becomes exact digital (``analog = false``).
    """
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


def cause_sets(cfg: Config, layers: list[str]) -> list[frozenset]:
    """Every cause off (the floor), every cause alone (with its prerequisites), each prerequisite set alone."""
    prereq = prerequisites(cfg, layers)
    sets = [frozenset()]
    for c in CAUSES:
        pre = prereq.get(c, set())
        sets.append(frozenset({c} | pre))
        if pre:
            sets.append(frozenset(pre))
    return list(dict.fromkeys(sets))
