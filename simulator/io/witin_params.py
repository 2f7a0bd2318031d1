"""The witin parameters of witin_nn modules, read for import (witin_nn is recognised by class name).

CIM layers (WitinLinear, WitinConv2d, WitinConvTranspose2d, WitinGruCell)
get ``attrs["witin"]`` (:func:`witin_attrs`): the layer_config values under
witin_nn's names plus ``io_max_x``, ``io_max_weight`` and ``io_max_y`` from
the ``autoscale_*_obj.io_max`` buffers (GRU cells: per product under
``"ih"`` / ``"hh"``, :func:`gru_witin_attrs`). Digital witin ops (WitinGELU,
WitinSigmoid, ...) get ``attrs["witin_digital"]`` (:func:`digital_attrs`).
"""
from __future__ import annotations

from typing import Any

from simulator.io.torch_tensors import scalar

CIM_CLASSES = {"WitinLinear", "WitinConv2d", "WitinConvTranspose2d", "WitinGruCell", "WitinGRUCell"}
DIGITAL_CLASSES = {
    "WitinGELU", "WitinSigmoid", "WitinTanh", "WitinPReLU", "WitinElementAdd", "WitinElementMul",
    "WitinElementDivide", "WitinSqrt", "WitinMean", "WitinCat", "WitinBatchNorm2d",
    "WitinMatMul", "WitinHypot", "WitinInvSqrt", "WitinClnBn2d",
}
WITIN_CLASSES = CIM_CLASSES | DIGITAL_CLASSES

# witin_nn 0.1.3 layer_config fields whose non-default values change witin_nn's outputs in ways xbarsim does not
# simulate: field -> (the classes whose outputs it changes, measured with witin_nn 0.1.3, see docs/witin.md; the
# default, which is what xbarsim computes). debug_mode and target_platform change no output and are not read;
# x_clip, gelu_shift_num and cln_simple are simulated (simulator/witin/digital.py), G_algo > 0 on the CIM layers
# but GRU cells (simulator/witin/chip.py; G_algo = 0 is refused below: witin_nn's outputs are inf / NaN).
UNSIMULATED_FIELDS: dict[str, tuple[frozenset[str], Any]] = {
    "conv2d_split_N": (frozenset(WITIN_CLASSES), 1000000),  # witin_nn itself refuses every other value
    "G_algo": (frozenset({"WitinGruCell", "WitinGRUCell"}), 1),  # simulated on the other CIM layers (G > 0)
}


def unsimulated_fields(module) -> list[str]:
    """One phrase per layer_config field of witin module ``module`` set to a value xbarsim does not simulate.

    A field is read from the copy witin_nn took when the layer was built
    where that copy holds it, else from ``layer_config`` (witin_nn reads
    ``cln_simple`` there at every call).
    """
    cls = type(module).__name__
    built, live = _built_config(module), getattr(module, "layer_config", None)
    out = []
    for field, (classes, default) in UNSIMULATED_FIELDS.items():
        src = built if built is not None and hasattr(built, field) else live
        if cls not in classes or src is None or not hasattr(src, field):
            continue
        value = getattr(src, field)
        value = None if value is None else scalar(value)
        if (value is None) != (default is None) or (value is not None and value != default):
            out.append(f"layer_config.{field} = {value!r} is not simulated (xbarsim computes witin_nn 0.1.3's "
                       f"default {field} = {default!r}, and witin_nn's outputs differ with other values)")
    g = getattr(built, "G_algo", None) if built is not None else None
    if cls in CIM_CLASSES and g is not None and not scalar(g) > 0:
        out.append(f"layer_config.G_algo = {scalar(g)!r} is not simulated: witin_nn divides the layer's outputs by "
                   "G_algo (0 gives inf / NaN outputs); give G_algo > 0")
    return out


def _io_max(module, name: str):
    obj = getattr(module, f"autoscale_{name}_obj", None)
    if obj is None:
        return None
    value = getattr(obj, "io_max", None)
    if value is None:
        return None
    return float(scalar(value))


def witin_attrs(module) -> dict[str, Any]:
    """The witin parameters of a witin CIM module: its layer_config and io_max buffers."""
    from simulator.witin.chip import WITIN_KEYS, normalize_handle_neg_in

    cfg = _built_config(module)
    out: dict[str, Any] = {}
    for key in WITIN_KEYS:
        if cfg is not None and hasattr(cfg, key):
            out[key] = scalar(getattr(cfg, key))
    if "handle_neg_in" in out:
        out["handle_neg_in"] = normalize_handle_neg_in(out["handle_neg_in"])
    if cfg is not None:
        for key in ("use_quantization", "noise_model", "to_linear", "output_fp_clip", "hardware", "G_algo"):
            if hasattr(cfg, key):
                out[key] = scalar(getattr(cfg, key))
        out["noise_model"] = str(out.get("noise_model", "NORMAL"))
        out["hardware"] = str(out.get("hardware", "ARRAY"))
        # witin_nn picks the hardware when the layer is built: its forward object is a QAT_VPU or QAT_ARRAY
        # (WitinLinear is always QAT_ARRAY); that object holds no hardware field
        forward = type(getattr(module, "forward__func", None)).__name__
        if forward.endswith(("_VPU", "_ARRAY")):
            out["hardware"] = forward.rsplit("_", 1)[1]
    for part in ("x", "weight", "y"):
        v = _io_max(module, part)
        if v is not None:
            out[f"io_max_{part}"] = v
    return out


def unrecorded_io_max(layers) -> list[str]:
    """Names of quantized witin layers whose io_max values all still equal witin_nn's initial values.

    witin_nn initialises ``io_max`` of an input / output with its bit width
    (``x_quant_bits``, ``x_left_quant_bits``, ``x_right_quant_bits``,
    ``y_quant_bits``) and of weights with 8; they change only during
    quantization-aware training. A layer still holding all of them was never
    calibrated.
    """
    stale = []
    for layer in layers:
        cim = layer.attrs.get("witin") or {}
        dig = layer.attrs.get("witin_digital")
        attrs = dig if dig is not None else cim
        if not attrs or attrs.get("use_quantization") is False or attrs.get("use_auto_scale") is False:
            continue
        init = {
            "io_max_x": attrs.get("x_quant_bits", 8), "io_max_x1": attrs.get("x_left_quant_bits", 8),
            "io_max_x2": attrs.get("x_right_quant_bits", 8), "io_max_y": attrs.get("y_quant_bits", 8),
            "io_max_weight": 8,
        }
        present = {k: v for k, v in attrs.items() if k.startswith("io_max_") and v is not None}
        if present and all(k in init and float(v) == float(init[k]) for k, v in present.items()):
            stale.append(layer.name)
    return stale



def digital_attrs(module) -> dict[str, Any]:
    """The witin parameters of a witin digital operator: layer_config fields and io_max values.

    Read from the config snapshot the module computes with (witin_nn copies a
    layer's config when the layer is built, so later edits of the
    ``layer_config`` object change nothing there, and nothing here); fields
    the snapshot lacks (``cln_simple``) from ``layer_config``, where witin_nn
    reads them at every call.
    """
    from simulator.witin.digital import CONFIG_KEYS

    cfg, live = _built_config(module), getattr(module, "layer_config", None)
    out: dict[str, Any] = {}
    for key in CONFIG_KEYS:
        src = cfg if cfg is not None and hasattr(cfg, key) else live  # cln_simple: read at every call
        if src is not None and hasattr(src, key):
            out[key] = scalar(getattr(src, key))
    for name, _ in module.named_parameters():
        if name.startswith("autoscale_") and name.endswith("_obj.io_max"):
            part = name[len("autoscale_") : -len("_obj.io_max")]
            out[f"io_max_{part}"] = _io_max(module, part)
    return out


def _built_config(module):
    """The layer config witin_nn computes with: the copy taken when the layer was built, if any."""
    fn = getattr(module, "forward__func", None)
    if fn is not None and hasattr(fn, "x_quant_bits"):
        return fn  # witin_nn's forward object holds the values copied at build time
    return getattr(module, "layer_config", None)


def gru_witin_attrs(mod) -> dict[str, Any]:
    """:func:`witin_attrs` of a witin GRU cell, its io_max values per product (``"ih"``, ``"hh"``)."""
    out = witin_attrs(mod)
    for key in [k for k in out if k.startswith("io_max")]:
        out.pop(key)
    for part, names in (("ih", ("ih", "x_ih", "input")), ("hh", ("hh", "x_hh", "hidden"))):
        sub: dict[str, Any] = {}
        for q in ("x", "weight", "y"):
            for n in names:
                v = _io_max(mod, f"{q}_{n}") if _io_max(mod, f"{q}_{n}") is not None else _io_max(mod, f"{n}_{q}")
                if v is not None:
                    sub[f"io_max_{q}"] = v
                    break
        if sub:
            out[part] = sub
    return out
