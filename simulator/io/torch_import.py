"""PyTorch / witin_nn models -> :class:`~simulator.network.Network`.

``from_torch(module, example_input)`` traces the module with ``torch.fx``
(witin_nn layers and standard layers are leaves), propagates the example
input's shapes through the graph and maps every node to one of our layer
types. When fx cannot trace the module (data-dependent Python control flow),
the module is run once with forward hooks on its leaf modules and the graph is
rebuilt from which tensor each leaf received; that fallback sees only module
calls, so functional operations between modules are then an error.

Layouts: the network records ``input_layout = "NCHW"``; internally
activations are NHWC, so conv kernels are converted to Keras layout,
``Flatten``/``Reshape`` carry ``order = "NCHW"`` (same element order as
torch) and channel axes of concatenation / mean are remapped.

witin layers are recognised by class name. CIM layers (WitinLinear,
WitinConv2d, WitinConvTranspose2d, WitinGruCell) get ``attrs["witin"]``:
the layer_config values under witin_nn's names plus ``io_max_x``,
``io_max_weight`` and ``io_max_y`` from the ``autoscale_*_obj.io_max``
buffers (GRU cells: per product under ``"ih"`` / ``"hh"``). Digital witin
ops (WitinGELU, WitinSigmoid, ...) become ordinary layers computed exactly,
with their class name in ``attrs["witin_op"]``.

torch is an optional dependency (``pip install 'xbarsim[torch]'``).
"""
from __future__ import annotations

import math
import operator
import warnings
from typing import Any

import numpy as np

from simulator.errors import ModelError
from simulator.network import Layer, Network

CIM_CLASSES = {"WitinLinear", "WitinConv2d", "WitinConvTranspose2d", "WitinGruCell", "WitinGRUCell"}
DIGITAL_CLASSES = {
    "WitinGELU", "WitinSigmoid", "WitinTanh", "WitinPReLU", "WitinElementAdd", "WitinElementMul",
    "WitinElementDivide", "WitinSqrt", "WitinMean", "WitinCat", "WitinBatchNorm2d",
    "WitinMatMul", "WitinHypot", "WitinInvSqrt", "WitinClnBn2d",
}
WITIN_CLASSES = CIM_CLASSES | DIGITAL_CLASSES


def _torch():
    try:
        import torch
    except ImportError:
        raise ModelError(
            "importing PyTorch models needs torch: install the extra with pip install 'xbarsim[torch]'"
        ) from None
    return torch


def _np(t) -> np.ndarray:
    """A tensor as a float32 NumPy array (a copy: imported weights never alias the model's tensors)."""
    return t.detach().cpu().float().numpy().copy()


def _pair(v) -> list[int]:
    if isinstance(v, (tuple, list)):
        return [int(v[0]), int(v[1])]
    return [int(v), int(v)]


def _enum_name(v: Any) -> Any:
    if hasattr(v, "name") and not isinstance(v, (str, int, float, bool)):
        return v.name
    return v


def _scalar(v: Any) -> Any:
    torch = _torch()
    if isinstance(v, torch.Tensor):
        if v.numel() == 1:
            return float(v.detach().cpu().reshape(-1)[0])
        return [float(a) for a in v.detach().cpu().reshape(-1)]
    return _enum_name(v)


def _io_max(module, name: str):
    obj = getattr(module, f"autoscale_{name}_obj", None)
    if obj is None:
        return None
    value = getattr(obj, "io_max", None)
    if value is None:
        return None
    return float(_scalar(value))


def witin_attrs(module) -> dict[str, Any]:
    """The witin parameters of a witin CIM module: its layer_config and io_max buffers."""
    from simulator.witin.chip import WITIN_KEYS, normalize_handle_neg_in

    cfg = _built_config(module)
    out: dict[str, Any] = {}
    for key in WITIN_KEYS:
        if cfg is not None and hasattr(cfg, key):
            out[key] = _scalar(getattr(cfg, key))
    if "handle_neg_in" in out:
        out["handle_neg_in"] = normalize_handle_neg_in(out["handle_neg_in"])
    if cfg is not None:
        for key in ("use_quantization", "noise_model", "to_linear", "output_fp_clip", "hardware"):
            if hasattr(cfg, key):
                out[key] = _scalar(getattr(cfg, key))
        out["noise_model"] = str(out.get("noise_model", "NORMAL"))
        out["hardware"] = str(out.get("hardware", "ARRAY"))
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


def load_state_dict_module(path, module_spec: str, kwargs: dict | None = None, label: str | None = None):
    """Build ``package.module:Class(**kwargs)`` and load the state_dict file ``path`` into it (strict).

    ``label`` names the option in error messages (default ``module = '<spec>'``).
    Returns the torch module; bad specs, files and mismatches raise :class:`ModelError`.
    """
    import importlib

    torch = _torch()
    label = label or f"module = {module_spec!r}"
    mod_name, _, cls_name = str(module_spec).partition(":")
    if not mod_name or not cls_name:
        raise ModelError(f"{label}: expected 'package.module:Class'")
    try:
        klass = getattr(importlib.import_module(mod_name), cls_name)
    except (ImportError, AttributeError) as exc:
        raise ModelError(f"{label}: cannot import it ({exc.__class__.__name__}: {exc})") from None
    try:
        model = klass(**(kwargs or {}))
    except Exception as exc:  # noqa: BLE001 - user code
        raise ModelError(f"{label}: {cls_name}(**module_kwargs) failed ({exc.__class__.__name__}: {exc})") from None
    if not isinstance(model, torch.nn.Module):
        raise ModelError(f"{label}: {cls_name}() is a {type(model).__name__}, not a torch.nn.Module")
    try:
        state = torch.load(str(path), map_location="cpu", weights_only=True)
    except Exception as exc:  # noqa: BLE001 - torch raises many kinds of errors for bad files
        first = (str(exc).splitlines() or [""])[0][:200]
        raise ModelError(f"{path}: not a readable state_dict file ({exc.__class__.__name__}: {first})") from None
    if not isinstance(state, dict):
        raise ModelError(f"{path}: holds a {type(state).__name__}, expected a state_dict (a dict of tensors)")
    try:
        model.load_state_dict(state, strict=True)
    except RuntimeError as exc:
        raise ModelError(f"{path}: does not match {module_spec}: {' '.join(str(exc).split())[:300]}") from None
    return model


def from_state_dict(path, module_spec: str, example_input, kwargs: dict | None = None,
                    name: str | None = None) -> Network:
    """Import ``package.module:Class(**kwargs)`` with the state_dict file ``path`` (what witin users save).

    witin_nn convolutions cannot be pickled whole (``torch.save(model)``
    fails), so witin models are saved as ``torch.save(model.state_dict())``;
    the io_max values are parameters of the state_dict. The state_dict must
    match the class exactly (``strict``). ``example_input``: a tensor or a
    shape with the batch axis.
    """
    torch = _torch()
    model = load_state_dict_module(path, module_spec, kwargs, label=f"--module {module_spec!r}")
    if not isinstance(example_input, torch.Tensor):
        example_input = torch.zeros(tuple(int(v) for v in example_input))
    return from_torch(model, example_input, name=name or str(module_spec).partition(":")[2])


def digital_attrs(module) -> dict[str, Any]:
    """The witin parameters of a witin digital operator: layer_config fields and io_max values.

    Read from the config snapshot the module computes with (witin_nn copies a
    layer's config when the layer is built, so later edits of the
    ``layer_config`` object change nothing there, and nothing here).
    """
    from simulator.witin.digital import CONFIG_KEYS

    cfg = _built_config(module)
    out: dict[str, Any] = {}
    for key in CONFIG_KEYS:
        if cfg is not None and hasattr(cfg, key):
            out[key] = _scalar(getattr(cfg, key))
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


# ----------------------------------------------------------------- builder
class _Builder:
    def __init__(self, root, where: str):
        self.root = root
        self.where = where
        self.layers: list[Layer] = []
        self.names: set[str] = set()
        self.value: dict[Any, str] = {}  # fx node / tensor id -> producing layer name
        self.rank: dict[str, int] = {}

    def err(self, name: str, kind: str, why: str) -> ModelError:
        return ModelError(f"{self.where}: layer {name!r} ({kind}): {why}")

    def unique(self, name: str) -> str:
        base = name.replace(".", "_") or "layer"
        out, i = base, 1
        while out in self.names:
            i += 1
            out = f"{base}_{i}"
        self.names.add(out)
        return out

    def add(self, name, type_, inputs, config=None, weights=None, attrs=None, rank=None) -> str:
        lname = self.unique(name)
        self.layers.append(Layer(lname, type_, list(inputs), dict(config or {}), dict(weights or {}), dict(attrs or {})))
        if rank is not None:
            self.rank[lname] = rank
        return lname

    # ----- axis helpers (NCHW native -> NHWC internal)
    @staticmethod
    def axis(ax: int, rank: int) -> int:
        ax = ax % rank if rank else ax
        if rank == 4:
            return {0: 0, 1: 3, 2: 1, 3: 2}[ax]
        return ax

    # ----- modules
    def module(self, qual: str, mod, ins: list[str], in_rank: int, out_rank: int, n_args: int) -> str:
        torch = _torch()
        nn = torch.nn
        cls = type(mod).__name__
        kind = f"{cls}"
        if cls in ("WitinLinear",) or isinstance(mod, nn.Linear):
            w = {"kernel": _np(mod.weight).T.copy()}
            if mod.bias is not None:
                w["bias"] = _np(mod.bias)
            attrs = {"witin": witin_attrs(mod)} if cls in CIM_CLASSES else {}
            return self.add(qual, "Dense", ins, {"units": int(mod.out_features), "use_bias": mod.bias is not None}, w, attrs, out_rank)
        if cls == "WitinConv2d" or isinstance(mod, nn.Conv2d):
            pmode = getattr(mod, "padding_mode", "zeros")
            if pmode != "zeros" and not (cls == "WitinConv2d" and pmode == "reflect"):
                raise self.err(qual, kind, f"padding_mode {mod.padding_mode!r} is not supported (only 'zeros'; "
                               "WitinConv2d also 'reflect')")
            weight = _np(mod.weight)  # (cout, cin/g, kh, kw)
            groups = int(mod.groups)
            pad = mod.padding
            if isinstance(pad, str):
                padding: Any = pad
            else:
                ph, pw = _pair(pad)
                padding = [[ph, ph], [pw, pw]]
            cfg = {
                "kernel_size": _pair(mod.kernel_size), "strides": _pair(mod.stride), "padding": padding,
                "dilation_rate": _pair(mod.dilation), "use_bias": mod.bias is not None,
            }
            bias = {"bias": _np(mod.bias)} if mod.bias is not None else {}
            cin, cout = int(mod.in_channels), int(mod.out_channels)
            if cls not in CIM_CLASSES and groups == cin and groups > 1 and cout % cin == 0:
                mult = cout // cin
                k = weight[:, 0].reshape(cin, mult, *weight.shape[2:]).transpose(2, 3, 0, 1)
                cfg["depth_multiplier"] = mult
                return self.add(qual, "DepthwiseConv2D", ins, cfg, {"depthwise_kernel": np.ascontiguousarray(k), **bias}, rank=4)
            cfg.update({"filters": cout, "groups": groups})
            k = np.ascontiguousarray(weight.transpose(2, 3, 1, 0))
            attrs = {"witin": witin_attrs(mod)} if cls in CIM_CLASSES else {}
            if pmode != "zeros":
                attrs["witin"]["padding_mode"] = pmode
            return self.add(qual, "Conv2D", ins, cfg, {"kernel": k, **bias}, attrs, 4)
        if cls == "WitinConvTranspose2d" or isinstance(mod, nn.ConvTranspose2d):
            if int(mod.groups) != 1:
                raise self.err(qual, kind, f"groups = {mod.groups} is not supported for transposed convolutions")
            if getattr(mod, "padding_mode", "zeros") != "zeros":
                raise self.err(qual, kind, f"padding_mode {mod.padding_mode!r} is not supported (only 'zeros')")
            ph, pw = _pair(mod.padding)
            cfg = {
                "filters": int(mod.out_channels), "kernel_size": _pair(mod.kernel_size), "strides": _pair(mod.stride),
                "padding": [[ph, ph], [pw, pw]], "output_padding": _pair(mod.output_padding),
                "dilation_rate": _pair(mod.dilation), "use_bias": mod.bias is not None,
            }
            w = {"kernel": np.ascontiguousarray(_np(mod.weight).transpose(2, 3, 1, 0))}  # (kh, kw, cout, cin)
            if mod.bias is not None:
                w["bias"] = _np(mod.bias)
            attrs = {"witin": witin_attrs(mod)} if cls in CIM_CLASSES else {}
            return self.add(qual, "Conv2DTranspose", ins, cfg, w, attrs, 4)
        if cls in ("WitinGruCell", "WitinGRUCell") or isinstance(mod, nn.GRUCell):
            H = int(mod.hidden_size)
            w = {"weight_ih": _np(mod.weight_ih).T.copy(), "weight_hh": _np(mod.weight_hh).T.copy()}
            use_bias = getattr(mod, "bias_ih", None) is not None
            if use_bias:
                w["bias_ih"], w["bias_hh"] = _np(mod.bias_ih), _np(mod.bias_hh)
            attrs = {}
            if cls in CIM_CLASSES:
                attrs = {"witin": _gru_witin_attrs(mod)}
            cfg = {"units": H, "use_bias": use_bias, "hidden_input": len(ins) > 1}
            return self.add(qual, "GRUCell", ins, cfg, w, attrs, 2)
        if cls == "WitinBatchNorm2d" or isinstance(mod, (nn.BatchNorm2d, nn.BatchNorm1d)):
            if not mod.track_running_stats or mod.running_mean is None:
                raise self.err(qual, kind, "batch norm without running statistics cannot be imported")
            if isinstance(mod, nn.BatchNorm1d) and in_rank != 2:
                raise self.err(qual, kind, f"BatchNorm1d on a rank-{in_rank} tensor is not supported")
            w = {"moving_mean": _np(mod.running_mean), "moving_variance": _np(mod.running_var)}
            if mod.affine:
                w["gamma"], w["beta"] = _np(mod.weight), _np(mod.bias)
            return self.add(qual, "BatchNormalization", ins, {"epsilon": float(mod.eps), "axis": -1}, w,
                            self._digital(mod), in_rank)
        simple = {
            nn.ReLU: "relu", nn.Sigmoid: "sigmoid", nn.Tanh: "tanh", nn.ReLU6: "relu6", nn.SiLU: "swish",
            nn.Hardsigmoid: "hard_sigmoid",
        }
        for klass, act in simple.items():
            if type(mod) is klass:
                return self.activation(qual, act, ins, in_rank)
        if cls in ("WitinSigmoid",):
            return self.activation(qual, "sigmoid", ins, in_rank, mod)
        if cls in ("WitinTanh",):
            return self.activation(qual, "tanh", ins, in_rank, mod)
        if cls == "WitinGELU" or isinstance(mod, nn.GELU):
            if getattr(mod, "approximate", "none") != "none":
                raise self.err(qual, kind, f"GELU approximate={mod.approximate!r} is not supported (only 'none')")
            return self.activation(qual, "gelu", ins, in_rank, mod)
        if isinstance(mod, nn.LeakyReLU):
            return self.add(qual, "Activation", ins, {"activation": "leaky_relu", "alpha": float(mod.negative_slope)}, rank=in_rank)
        if isinstance(mod, nn.ELU):
            return self.add(qual, "Activation", ins, {"activation": "elu", "alpha": float(mod.alpha)}, rank=in_rank)
        if isinstance(mod, nn.Softmax):
            dim = mod.dim if mod.dim is not None else -1
            if in_rank == 4 or (dim % max(in_rank, 1)) != in_rank - 1:
                raise self.err(qual, kind, f"softmax over dim {dim} of a rank-{in_rank} tensor is not supported (only the last dim of a 2-D tensor)")
            return self.activation(qual, "softmax", ins, in_rank)
        if cls == "WitinPReLU" or isinstance(mod, nn.PReLU):
            return self.add(qual, "PReLU", ins, {}, {"alpha": _np(mod.weight)}, self._digital(mod), in_rank)
        if isinstance(mod, nn.MaxPool2d) or isinstance(mod, nn.AvgPool2d):
            if getattr(mod, "ceil_mode", False):
                raise self.err(qual, kind, "ceil_mode=True is not supported")
            if isinstance(mod, nn.MaxPool2d) and _pair(mod.dilation) != [1, 1]:
                raise self.err(qual, kind, "dilated pooling is not supported")
            if isinstance(mod, nn.AvgPool2d) and mod.divisor_override is not None:
                raise self.err(qual, kind, "divisor_override is not supported")
            ph, pw = _pair(mod.padding)
            stride = mod.stride if mod.stride is not None else mod.kernel_size
            cfg = {"pool_size": _pair(mod.kernel_size), "strides": _pair(stride), "padding": [[ph, ph], [pw, pw]]}
            if isinstance(mod, nn.MaxPool2d):
                return self.add(qual, "MaxPooling2D", ins, cfg, rank=4)
            cfg["count_include_pad"] = bool(mod.count_include_pad)
            return self.add(qual, "AveragePooling2D", ins, cfg, rank=4)
        if isinstance(mod, (nn.AdaptiveAvgPool2d, nn.AdaptiveMaxPool2d)):
            size = mod.output_size
            if _pair(size if size is not None else 1) != [1, 1]:
                raise self.err(qual, kind, f"only output_size 1 is supported, got {size}")
            t = "GlobalAveragePooling2D" if isinstance(mod, nn.AdaptiveAvgPool2d) else "GlobalMaxPooling2D"
            return self.add(qual, t, ins, {"keepdims": True}, rank=4)
        if isinstance(mod, nn.Flatten):
            if mod.start_dim != 1 or mod.end_dim != -1:
                raise self.err(qual, kind, f"only Flatten(start_dim=1, end_dim=-1) is supported")
            if in_rank == 2:
                return ins[0]
            return self.add(qual, "Flatten", ins, {"order": "NCHW"}, rank=2)
        if isinstance(mod, (nn.Dropout, nn.Dropout2d)):
            return self.add(qual, "Dropout", ins, {"rate": float(mod.p)}, rank=in_rank)
        if isinstance(mod, nn.Identity):
            return ins[0]
        if cls == "WitinElementAdd":
            return self.add(qual, "Add", ins, attrs=self._digital(mod), rank=out_rank)
        if cls == "WitinElementMul":
            return self.add(qual, "Multiply", ins, attrs=self._digital(mod), rank=out_rank)
        if cls == "WitinElementDivide":
            return self.add(qual, "Divide", ins, attrs=self._digital(mod), rank=out_rank)
        if cls == "WitinSqrt":
            return self.add(qual, "Sqrt", ins, attrs=self._digital(mod), rank=in_rank)
        if cls == "WitinCat":
            return self.add(qual, "Concatenate", ins, {"axis": self.axis(int(mod.dim), in_rank)}, attrs=self._digital(mod), rank=in_rank)
        if cls == "WitinMean":
            if not isinstance(mod.dim, int):
                raise self.err(qual, kind, f"dim must be one int (witin_nn 0.1.3 reduces one axis), got {mod.dim!r}")
            return self.mean(qual, ins, mod.dim, bool(mod.keepdim), in_rank, self._digital(mod))
        if cls == "WitinMatMul":
            if in_rank not in (2, 3, 4):
                raise self.err(qual, kind, f"matmul of rank-{in_rank} tensors is not supported")
            return self.add(qual, "MatMul", ins, attrs=self._digital(mod), rank=out_rank)
        if cls == "WitinHypot":
            return self.add(qual, "Hypot", ins, attrs=self._digital(mod), rank=out_rank)
        if cls == "WitinInvSqrt":
            return self.add(qual, "InvSqrt", ins, attrs=self._digital(mod), rank=in_rank)
        if cls == "WitinClnBn2d":
            if in_rank != 4:
                raise self.err(qual, kind, f"ClnBn2d needs an NCHW tensor, got rank {in_rank}")
            return self.add(qual, "ClnBn2d", ins, attrs=self._digital(mod), rank=4)
        raise self.err(qual, kind, "unsupported layer type")

    def _digital(self, mod) -> dict[str, Any]:
        cls = type(mod).__name__
        if cls not in WITIN_CLASSES:
            return {}
        return {"witin_op": cls, "witin_digital": digital_attrs(mod)}

    def activation(self, qual, act, ins, rank, mod=None) -> str:
        return self.add(qual, "Activation", ins, {"activation": act}, attrs=self._digital(mod) if mod is not None else None, rank=rank)

    def mean(self, qual, ins, dim, keepdim, rank, attrs=None) -> str:
        if dim is None:
            raise self.err(qual, "mean", "a mean over all axes (including the batch) is not supported")
        dims = [dim] if isinstance(dim, int) else list(dim)
        if any(d % rank == 0 for d in dims):
            raise self.err(qual, "mean", "a mean over the batch axis is not supported")
        axes = sorted(self.axis(int(d), rank) for d in dims)
        if rank == 4 and sorted(d % 4 for d in dims) == [2, 3]:
            t = "GlobalAveragePooling2D"
            if keepdim:
                return self.add(qual, t, ins, {"keepdims": True}, attrs=attrs, rank=4)
            return self.add(qual, t, ins, {"keepdims": False}, attrs=attrs, rank=2)
        if rank == 4 and not keepdim:
            raise self.err(qual, "mean", "a mean without keepdim that leaves a 4-D tensor in another layout is not supported")
        out_rank = rank if keepdim else rank - len(axes)
        return self.add(qual, "Mean", ins, {"axis": axes if len(axes) > 1 else axes[0], "keepdims": keepdim}, attrs=attrs, rank=out_rank)


def _gru_witin_attrs(mod) -> dict[str, Any]:
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


# ------------------------------------------------------------------ fx path
def _is_leaf_factory(torch):
    base = torch.fx.Tracer.is_leaf_module

    def is_leaf(self, m, qualname):
        if type(m).__name__ in WITIN_CLASSES:
            return True
        return base(self, m, qualname)

    return is_leaf


def _shape_of(node):
    meta = node.meta.get("tensor_meta")
    shape = getattr(meta, "shape", None)
    if shape is None:
        return None
    return tuple(int(d) for d in shape)


def _trace(module, example_input, torch):
    tracer_cls = type("XbarsimTracer", (torch.fx.Tracer,), {"is_leaf_module": _is_leaf_factory(torch)})
    tracer = tracer_cls()
    graph = tracer.trace(module)
    gm = torch.fx.GraphModule(module, graph)
    from torch.fx.passes.shape_prop import ShapeProp

    inputs = example_input if isinstance(example_input, (tuple, list)) else (example_input,)
    ShapeProp(gm).propagate(*inputs)
    return gm


_FN_ACT = {
    "relu": "relu", "sigmoid": "sigmoid", "tanh": "tanh", "gelu": "gelu", "relu6": "relu6", "silu": "swish",
    "hardsigmoid": "hard_sigmoid", "elu": "elu", "leaky_relu": "leaky_relu",
}


def _fn_name(target) -> str:
    if isinstance(target, str):
        return target
    return getattr(target, "__name__", str(target))


def _from_fx(gm, b: _Builder, torch) -> list[str]:
    modules = dict(gm.named_modules())
    outputs: list[str] = []
    for node in gm.graph.nodes:
        shape = _shape_of(node)
        rank = len(shape) if shape is not None else None
        if node.op == "placeholder":
            if node not in b.value:
                raise b.err(node.name, "input", "only one input tensor is supported")
            continue
        if node.op == "output":
            args = node.args[0]
            args = args if isinstance(args, (tuple, list)) else (args,)
            for a in args:
                if a not in b.value:
                    raise b.err(str(a), "output", "the model output is not a tensor computed by supported layers")
                outputs.append(b.value[a])
            continue
        if node.op == "get_attr":
            raise b.err(node.target, "constant tensor", "constants used outside a layer are not supported")
        flat = list(node.args)
        if flat and isinstance(flat[0], (tuple, list)):
            flat = list(flat[0]) + flat[1:]
        tensor_args = [a for a in flat if isinstance(a, torch.fx.Node) and _shape_of(a) is not None]
        if shape is None and node.op in ("call_function", "call_method"):
            continue  # not a tensor: shape arithmetic feeding view/reshape arguments
        ins = [b.value[a] for a in tensor_args if a in b.value]
        in_rank = b.rank.get(ins[0], None) if ins else None
        if in_rank is None and tensor_args:
            s = _shape_of(tensor_args[0])
            in_rank = len(s) if s is not None else None
        if node.op == "call_module":
            mod = modules[node.target]
            if len(ins) != len(tensor_args):
                raise b.err(node.target, type(mod).__name__, "takes a tensor that is not computed by supported layers")
            b.value[node] = b.module(node.target, mod, ins, in_rank or 0, rank or 0, len(node.args))
            continue
        name = _fn_name(node.target)
        kind = f"{node.op} {name}"
        if len(ins) != len(tensor_args) or not ins:
            raise b.err(node.name, kind, "operates on a value that is not a tensor of the traced graph (constants and shape math are not supported)")
        scalars = [a for a in node.args[1:] if not isinstance(a, torch.fx.Node)] if node.args else []
        if name in ("add", "iadd", "__add__", "sub", "__sub__", "mul", "__mul__", "imul", "truediv", "div", "__truediv__"):
            if len(ins) != 2 or scalars:
                raise b.err(node.name, kind, "only element-wise operations between two tensors are supported (no scalar operands)")
            t = {"add": "Add", "iadd": "Add", "__add__": "Add", "sub": "Subtract", "__sub__": "Subtract",
                 "mul": "Multiply", "__mul__": "Multiply", "imul": "Multiply", "truediv": "Divide", "div": "Divide",
                 "__truediv__": "Divide"}[name]
            b.value[node] = b.add(node.name, t, ins, rank=rank)
            continue
        if name in ("cat", "concat", "concatenate"):
            dim = node.kwargs.get("dim", node.args[1] if len(node.args) > 1 else 0)
            b.value[node] = b.add(node.name, "Concatenate", ins, {"axis": b.axis(int(dim), in_rank)}, rank=rank)
            continue
        if name in _FN_ACT:
            cfg: dict[str, Any] = {"activation": _FN_ACT[name]}
            if name == "leaky_relu":
                cfg["alpha"] = float(node.kwargs.get("negative_slope", node.args[1] if len(node.args) > 1 else 0.01))
            if name == "gelu" and node.kwargs.get("approximate", "none") != "none":
                raise b.err(node.name, kind, "GELU approximate='tanh' is not supported")
            b.value[node] = b.add(node.name, "Activation", ins, cfg, rank=rank)
            continue
        if name in ("softmax",):
            dim = node.kwargs.get("dim", node.args[1] if len(node.args) > 1 else -1)
            if in_rank != 2 or int(dim) % 2 != 1:
                raise b.err(node.name, kind, "softmax is supported over the last dim of a 2-D tensor only")
            b.value[node] = b.add(node.name, "Activation", ins, {"activation": "softmax"}, rank=rank)
            continue
        if name == "sqrt":
            b.value[node] = b.add(node.name, "Sqrt", ins, rank=rank)
            continue
        if name in ("flatten", "view", "reshape"):
            if shape is None:
                raise b.err(node.name, kind, "unknown output shape")
            if in_rank == 2 and len(shape) == 2:
                b.value[node] = ins[0]
            elif len(shape) == 2 and in_rank == 4:
                b.value[node] = b.add(node.name, "Flatten", ins, {"order": "NCHW"}, rank=2)
            else:
                b.value[node] = b.add(node.name, "Reshape", ins, {"target_shape": list(shape[1:]), "order": "NCHW"}, rank=len(shape))
            continue
        if name in ("dropout", "contiguous", "clone", "detach"):
            b.value[node] = ins[0]
            continue
        if name == "mean":
            dim = node.kwargs.get("dim", node.args[1] if len(node.args) > 1 else None)
            keep = bool(node.kwargs.get("keepdim", node.args[2] if len(node.args) > 2 else False))
            b.value[node] = b.mean(node.name, ins, dim, keep, in_rank or 0)
            continue
        if name in ("adaptive_avg_pool2d", "adaptive_max_pool2d"):
            size = node.kwargs.get("output_size", node.args[1] if len(node.args) > 1 else None)
            if _pair(size) != [1, 1]:
                raise b.err(node.name, kind, "only output_size 1 is supported")
            t = "GlobalAveragePooling2D" if name.startswith("adaptive_avg") else "GlobalMaxPooling2D"
            b.value[node] = b.add(node.name, t, ins, {"keepdims": True}, rank=4)
            continue
        if name in ("max_pool2d", "avg_pool2d"):
            args = list(node.args[1:])
            ks = node.kwargs.get("kernel_size", args[0] if args else None)
            st = node.kwargs.get("stride", args[1] if len(args) > 1 else None) or ks
            pd = node.kwargs.get("padding", args[2] if len(args) > 2 else 0)
            if node.kwargs.get("ceil_mode", False):
                raise b.err(node.name, kind, "ceil_mode=True is not supported")
            ph, pw = _pair(pd)
            cfg = {"pool_size": _pair(ks), "strides": _pair(st), "padding": [[ph, ph], [pw, pw]]}
            if name == "avg_pool2d":
                cfg["count_include_pad"] = bool(node.kwargs.get("count_include_pad", True))
            b.value[node] = b.add(node.name, "MaxPooling2D" if name == "max_pool2d" else "AveragePooling2D", ins, cfg, rank=4)
            continue
        raise b.err(node.name, kind, "unsupported operation")
    return outputs


# ----------------------------------------------------------------- hook path
def _from_hooks(module, example_input, b: _Builder, torch, input_name: str) -> list[str]:
    leaves = []
    for qual, m in module.named_modules():
        if qual == "":
            continue
        if type(m).__name__ in WITIN_CLASSES or not list(m.children()):
            if not any(qual.startswith(p + ".") for p, _ in leaves):
                leaves.append((qual, m))
    calls: list[tuple[str, Any, list, Any]] = []
    handles = []

    def hook_for(qual):
        def hook(mod, args, output):
            calls.append((qual, mod, list(args), output))
        return hook

    for qual, m in leaves:
        handles.append(m.register_forward_hook(hook_for(qual)))
    try:
        with torch.no_grad():
            module(example_input)
    finally:
        for h in handles:
            h.remove()
    produced: dict[int, str] = {id(example_input): input_name}
    ranks: dict[int, int] = {id(example_input): example_input.dim()}
    last = None
    for qual, mod, args, output in calls:
        tensors = [a for a in args if isinstance(a, torch.Tensor)]
        ins = []
        for t in tensors:
            if id(t) not in produced:
                raise b.err(qual, type(mod).__name__, "receives a tensor computed outside modules; "
                            "torch.fx could not trace this model, so functional operations cannot be imported")
            ins.append(produced[id(t)])
        in_rank = tensors[0].dim() if tensors else 0
        out = output[0] if isinstance(output, tuple) else output
        name = b.module(qual, mod, ins, in_rank, out.dim(), len(args))
        produced[id(out)] = name
        last = out
    if last is None:
        raise b.err(type(module).__name__, "model", "no supported layers were called")
    return [produced[id(last)]]


# ------------------------------------------------------------------- public
def from_torch(module, example_input, name: str | None = None) -> Network:
    """Import a torch (or witin_nn) module as a :class:`Network` (input_layout ``"NCHW"``).

    ``example_input`` is one batch (any batch size) with which the module is
    traced and shapes are propagated. The module is put in eval mode.
    """
    torch = _torch()
    if not isinstance(module, torch.nn.Module):
        raise ModelError(f"from_torch expects a torch.nn.Module, got {type(module).__name__}")
    if not isinstance(example_input, torch.Tensor):
        raise ModelError("from_torch: example_input must be one torch.Tensor batch")
    module.eval()
    where = name or type(module).__name__
    b = _Builder(module, where)
    input_name = b.add("input", "Input", [], rank=example_input.dim())
    try:
        gm = _trace(module, example_input, torch)
    except ModelError:
        raise
    except Exception:  # noqa: BLE001 - fx raises many kinds of errors for untraceable code
        gm = None
    if gm is not None:
        placeholders = [n for n in gm.graph.nodes if n.op == "placeholder"]
        if len(placeholders) != 1:
            raise ModelError(f"{where}: the model takes {len(placeholders)} inputs; exactly one is supported")
        b.value[placeholders[0]] = input_name
        outputs = _from_fx(gm, b, torch)
    else:
        outputs = _from_hooks(module, example_input, b, torch, input_name)
    metadata = {"source": "torch", "torch_class": type(module).__name__}
    if any(l.attrs.get("witin") for l in b.layers):
        metadata["witin"] = True
    stale = unrecorded_io_max(b.layers)
    if stale:
        msg = (f"{where}: witin layer(s) {', '.join(stale)} carry witin_nn's initial io_max values (never recorded: "
               "the model was trained in float mode or not trained); their auto scales are placeholders. Record "
               "io_max with quantization-aware training, or set fixed scales (use_auto_scale = false)")
        warnings.warn(msg, UserWarning, stacklevel=2)
        metadata["witin_unrecorded_io_max"] = stale
    net = Network(
        name=where,
        layers=b.layers,
        outputs=outputs,
        input_layout="NCHW" if example_input.dim() == 4 else "NHWC",
        input_shape=tuple(int(s) for s in example_input.shape[1:]),
        metadata=metadata,
        source=where,
    )
    return net
