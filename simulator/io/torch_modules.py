"""torch (and witin_nn) modules -> our layers: :class:`GraphBuilder` and its module rules.

:meth:`GraphBuilder.module` translates one module call into one layer of the
graph (or passes its input through), following the first rule of
:func:`module_rules` whose test matches the module; a module no rule knows is
refused. Conventions: activations are NHWC inside, so conv kernels are
converted to Keras layout (``(kh, kw, cin/g, cout)``), Dense kernels are
``(in, out)``, channel axes are remapped with :meth:`GraphBuilder.axis`; witin
modules carry their parameters in ``attrs`` (:mod:`simulator.io.witin_params`).
"""
from __future__ import annotations

import functools
from typing import Any, Callable

from simulator.errors import ModelError
from simulator.io.kernels import conv_kernel, depthwise_kernel
from simulator.io.torch_tensors import pair, to_numpy, torch_module
from simulator.io.witin_params import (
    CIM_CLASSES, WITIN_CLASSES, digital_attrs, gru_witin_attrs, unsimulated_fields, witin_attrs,
)
from simulator.network import Layer


class GraphBuilder:
    """The layers of a torch model being imported, and the value (layer name) of every tensor met so far."""

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

    @staticmethod
    def axis(ax: int, rank: int) -> int:
        """A torch (NCHW) axis as our internal (NHWC) axis."""
        ax = ax % rank if rank else ax
        if rank == 4:
            return {0: 0, 1: 3, 2: 1, 3: 2}[ax]
        return ax

    def module(self, qual: str, mod, ins: list[str], in_rank: int, out_rank: int) -> str:
        """Add the layer computing module ``mod`` (qualified name ``qual``) on ``ins``; returns its output's name."""
        cls = type(mod).__name__
        unsimulated = unsimulated_fields(mod) if cls in WITIN_CLASSES else []
        if unsimulated:
            raise self.err(qual, cls, "; ".join(unsimulated))
        for matches, translate in module_rules():
            if matches(mod, cls):
                return translate(self, qual, mod, ins, in_rank, out_rank)
        raise self.err(qual, cls, "unsupported layer type")

    def digital(self, mod) -> dict[str, Any]:
        """``attrs`` of a digital layer: the witin operator and its parameters, if ``mod`` is a witin op."""
        cls = type(mod).__name__
        if cls not in WITIN_CLASSES:
            return {}
        return {"witin_op": cls, "witin_digital": digital_attrs(mod)}

    def activation(self, qual, act, ins, rank, mod=None) -> str:
        return self.add(qual, "Activation", ins, {"activation": act}, attrs=self.digital(mod) if mod is not None else None, rank=rank)

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


def _cim_attrs(mod, cls: str) -> dict[str, Any]:
    return {"witin": witin_attrs(mod)} if cls in CIM_CLASSES else {}


# ------------------------------------------------------------------ MVM modules
def _linear(b: GraphBuilder, qual, mod, ins, in_rank, out_rank) -> str:
    w = {"kernel": to_numpy(mod.weight).T.copy()}
    if mod.bias is not None:
        w["bias"] = to_numpy(mod.bias)
    cfg = {"units": int(mod.out_features), "use_bias": mod.bias is not None}
    return b.add(qual, "Dense", ins, cfg, w, _cim_attrs(mod, type(mod).__name__), out_rank)


def _conv2d(b: GraphBuilder, qual, mod, ins, in_rank, out_rank) -> str:
    cls = type(mod).__name__
    pmode = getattr(mod, "padding_mode", "zeros")
    if pmode != "zeros" and not (cls == "WitinConv2d" and pmode == "reflect"):
        raise b.err(qual, cls, f"padding_mode {mod.padding_mode!r} is not supported (only 'zeros'; "
                    "WitinConv2d also 'reflect')")
    weight = to_numpy(mod.weight)  # (cout, cin/g, kh, kw)
    groups = int(mod.groups)
    pad = mod.padding
    if isinstance(pad, str):
        padding: Any = pad
    else:
        ph, pw = pair(pad)
        padding = [[ph, ph], [pw, pw]]
    cfg = {
        "kernel_size": pair(mod.kernel_size), "strides": pair(mod.stride), "padding": padding,
        "dilation_rate": pair(mod.dilation), "use_bias": mod.bias is not None,
    }
    bias = {"bias": to_numpy(mod.bias)} if mod.bias is not None else {}
    cin, cout = int(mod.in_channels), int(mod.out_channels)
    if cls not in CIM_CLASSES and groups == cin and groups > 1 and cout % cin == 0:
        mult = cout // cin
        cfg["depth_multiplier"] = mult
        return b.add(qual, "DepthwiseConv2D", ins, cfg, {"depthwise_kernel": depthwise_kernel(weight, cin), **bias},
                     rank=4)
    cfg.update({"filters": cout, "groups": groups})
    k = conv_kernel(weight)
    attrs = _cim_attrs(mod, cls)
    if pmode != "zeros":
        attrs["witin"]["padding_mode"] = pmode
    return b.add(qual, "Conv2D", ins, cfg, {"kernel": k, **bias}, attrs, 4)


def _conv_transpose2d(b: GraphBuilder, qual, mod, ins, in_rank, out_rank) -> str:
    cls = type(mod).__name__
    if int(mod.groups) != 1:
        raise b.err(qual, cls, f"groups = {mod.groups} is not supported for transposed convolutions")
    if getattr(mod, "padding_mode", "zeros") != "zeros":
        raise b.err(qual, cls, f"padding_mode {mod.padding_mode!r} is not supported (only 'zeros')")
    ph, pw = pair(mod.padding)
    cfg = {
        "filters": int(mod.out_channels), "kernel_size": pair(mod.kernel_size), "strides": pair(mod.stride),
        "padding": [[ph, ph], [pw, pw]], "output_padding": pair(mod.output_padding),
        "dilation_rate": pair(mod.dilation), "use_bias": mod.bias is not None,
    }
    w = {"kernel": conv_kernel(to_numpy(mod.weight))}  # (cin, cout, kh, kw) -> (kh, kw, cout, cin)
    if mod.bias is not None:
        w["bias"] = to_numpy(mod.bias)
    return b.add(qual, "Conv2DTranspose", ins, cfg, w, _cim_attrs(mod, cls), 4)


def _gru_cell(b: GraphBuilder, qual, mod, ins, in_rank, out_rank) -> str:
    w = {"weight_ih": to_numpy(mod.weight_ih).T.copy(), "weight_hh": to_numpy(mod.weight_hh).T.copy()}
    use_bias = getattr(mod, "bias_ih", None) is not None
    if use_bias:
        w["bias_ih"], w["bias_hh"] = to_numpy(mod.bias_ih), to_numpy(mod.bias_hh)
    attrs = {"witin": gru_witin_attrs(mod)} if type(mod).__name__ in CIM_CLASSES else {}
    cfg = {"units": int(mod.hidden_size), "use_bias": use_bias, "hidden_input": len(ins) > 1}
    return b.add(qual, "GRUCell", ins, cfg, w, attrs, 2)


# ------------------------------------------------------------------ digital modules
def _batch_norm(b: GraphBuilder, qual, mod, ins, in_rank, out_rank) -> str:
    nn = torch_module().nn
    if not mod.track_running_stats or mod.running_mean is None:
        raise b.err(qual, type(mod).__name__, "batch norm without running statistics cannot be imported")
    if isinstance(mod, nn.BatchNorm1d) and in_rank != 2:
        raise b.err(qual, type(mod).__name__, f"BatchNorm1d on a rank-{in_rank} tensor is not supported")
    w = {"moving_mean": to_numpy(mod.running_mean), "moving_variance": to_numpy(mod.running_var)}
    if mod.affine:
        w["gamma"], w["beta"] = to_numpy(mod.weight), to_numpy(mod.bias)
    return b.add(qual, "BatchNormalization", ins, {"epsilon": float(mod.eps), "axis": -1}, w, b.digital(mod), in_rank)


def _activation(act: str, witin: bool = False):
    def translate(b: GraphBuilder, qual, mod, ins, in_rank, out_rank) -> str:
        return b.activation(qual, act, ins, in_rank, mod if witin else None)
    return translate


def _gelu(b: GraphBuilder, qual, mod, ins, in_rank, out_rank) -> str:
    if getattr(mod, "approximate", "none") != "none":
        raise b.err(qual, type(mod).__name__, f"GELU approximate={mod.approximate!r} is not supported (only 'none')")
    return b.activation(qual, "gelu", ins, in_rank, mod)


def _alpha_activation(act: str, attr: str):
    def translate(b: GraphBuilder, qual, mod, ins, in_rank, out_rank) -> str:
        return b.add(qual, "Activation", ins, {"activation": act, "alpha": float(getattr(mod, attr))}, rank=in_rank)
    return translate


def _softmax(b: GraphBuilder, qual, mod, ins, in_rank, out_rank) -> str:
    dim = mod.dim if mod.dim is not None else -1
    if in_rank == 4 or (dim % max(in_rank, 1)) != in_rank - 1:
        raise b.err(qual, type(mod).__name__, f"softmax over dim {dim} of a rank-{in_rank} tensor is not supported "
                    "(only the last dim of a 2-D tensor)")
    return b.activation(qual, "softmax", ins, in_rank)


def _prelu(b: GraphBuilder, qual, mod, ins, in_rank, out_rank) -> str:
    return b.add(qual, "PReLU", ins, {}, {"alpha": to_numpy(mod.weight)}, b.digital(mod), in_rank)


def _pool(b: GraphBuilder, qual, mod, ins, in_rank, out_rank) -> str:
    nn = torch_module().nn
    kind = type(mod).__name__
    if getattr(mod, "ceil_mode", False):
        raise b.err(qual, kind, "ceil_mode=True is not supported")
    if isinstance(mod, nn.MaxPool2d) and pair(mod.dilation) != [1, 1]:
        raise b.err(qual, kind, "dilated pooling is not supported")
    if isinstance(mod, nn.AvgPool2d) and mod.divisor_override is not None:
        raise b.err(qual, kind, "divisor_override is not supported")
    ph, pw = pair(mod.padding)
    stride = mod.stride if mod.stride is not None else mod.kernel_size
    cfg = {"pool_size": pair(mod.kernel_size), "strides": pair(stride), "padding": [[ph, ph], [pw, pw]]}
    if isinstance(mod, nn.MaxPool2d):
        return b.add(qual, "MaxPooling2D", ins, cfg, rank=4)
    cfg["count_include_pad"] = bool(mod.count_include_pad)
    return b.add(qual, "AveragePooling2D", ins, cfg, rank=4)


def _adaptive_pool(b: GraphBuilder, qual, mod, ins, in_rank, out_rank) -> str:
    size = mod.output_size
    if pair(size if size is not None else 1) != [1, 1]:
        raise b.err(qual, type(mod).__name__, f"only output_size 1 is supported, got {size}")
    t = "GlobalAveragePooling2D" if isinstance(mod, torch_module().nn.AdaptiveAvgPool2d) else "GlobalMaxPooling2D"
    return b.add(qual, t, ins, {"keepdims": True}, rank=4)


def _flatten(b: GraphBuilder, qual, mod, ins, in_rank, out_rank) -> str:
    if mod.start_dim != 1 or mod.end_dim != -1:
        raise b.err(qual, type(mod).__name__, "only Flatten(start_dim=1, end_dim=-1) is supported")
    if in_rank == 2:
        return ins[0]
    return b.add(qual, "Flatten", ins, {"order": "NCHW"}, rank=2)


def _dropout(b: GraphBuilder, qual, mod, ins, in_rank, out_rank) -> str:
    return b.add(qual, "Dropout", ins, {"rate": float(mod.p)}, rank=in_rank)


def _identity(b: GraphBuilder, qual, mod, ins, in_rank, out_rank) -> str:
    return ins[0]


# ------------------------------------------------------------------ witin digital operators
#: witin op -> (our layer type, rank of its output: "in" / "out" / fixed, rank the input must have or None)
_WITIN_OPS: dict[str, tuple[str, Any, Any]] = {
    "WitinElementAdd": ("Add", "out", None), "WitinElementMul": ("Multiply", "out", None),
    "WitinElementDivide": ("Divide", "out", None), "WitinSqrt": ("Sqrt", "in", None),
    "WitinMatMul": ("MatMul", "out", (2, 3, 4)), "WitinHypot": ("Hypot", "out", None),
    "WitinInvSqrt": ("InvSqrt", "in", None), "WitinClnBn2d": ("ClnBn2d", 4, (4,)),
}


def _witin_op(b: GraphBuilder, qual, mod, ins, in_rank, out_rank) -> str:
    cls = type(mod).__name__
    ltype, rank, need = _WITIN_OPS[cls]
    if need is not None and in_rank not in need:
        why = (f"ClnBn2d needs an NCHW tensor, got rank {in_rank}" if cls == "WitinClnBn2d"
               else f"matmul of rank-{in_rank} tensors is not supported")
        raise b.err(qual, cls, why)
    rank = in_rank if rank == "in" else out_rank if rank == "out" else rank
    return b.add(qual, ltype, ins, attrs=b.digital(mod), rank=rank)


def _witin_cat(b: GraphBuilder, qual, mod, ins, in_rank, out_rank) -> str:
    return b.add(qual, "Concatenate", ins, {"axis": b.axis(int(mod.dim), in_rank)}, attrs=b.digital(mod), rank=in_rank)


def _witin_mean(b: GraphBuilder, qual, mod, ins, in_rank, out_rank) -> str:
    if not isinstance(mod.dim, int):
        raise b.err(qual, type(mod).__name__, f"dim must be one int (witin_nn 0.1.3 reduces one axis), got {mod.dim!r}")
    return b.mean(qual, ins, mod.dim, bool(mod.keepdim), in_rank, b.digital(mod))


Translate = Callable[..., str]
Matches = Callable[[Any, str], bool]


@functools.lru_cache(maxsize=1)
def module_rules() -> list[tuple[Matches, Translate]]:
    """(test of (module, class name), translation) in order: the first match translates a module."""
    nn = torch_module().nn

    def kind(*names: str, types: tuple = ()) -> Matches:
        return lambda mod, cls: cls in names or (bool(types) and isinstance(mod, types))

    exact = {nn.ReLU: "relu", nn.Sigmoid: "sigmoid", nn.Tanh: "tanh", nn.ReLU6: "relu6", nn.SiLU: "swish",
             nn.Hardsigmoid: "hard_sigmoid"}
    rules: list[tuple[Matches, Translate]] = [
        (kind("WitinLinear", types=(nn.Linear,)), _linear),
        (kind("WitinConv2d", types=(nn.Conv2d,)), _conv2d),
        (kind("WitinConvTranspose2d", types=(nn.ConvTranspose2d,)), _conv_transpose2d),
        (kind("WitinGruCell", "WitinGRUCell", types=(nn.GRUCell,)), _gru_cell),
        (kind("WitinBatchNorm2d", types=(nn.BatchNorm2d, nn.BatchNorm1d)), _batch_norm),
    ]
    rules += [((lambda klass: lambda mod, cls: type(mod) is klass)(klass), _activation(act)) for klass, act in exact.items()]
    rules += [
        (kind("WitinSigmoid"), _activation("sigmoid", witin=True)),
        (kind("WitinTanh"), _activation("tanh", witin=True)),
        (kind("WitinGELU", types=(nn.GELU,)), _gelu),
        (kind(types=(nn.LeakyReLU,)), _alpha_activation("leaky_relu", "negative_slope")),
        (kind(types=(nn.ELU,)), _alpha_activation("elu", "alpha")),
        (kind(types=(nn.Softmax,)), _softmax),
        (kind("WitinPReLU", types=(nn.PReLU,)), _prelu),
        (kind(types=(nn.MaxPool2d, nn.AvgPool2d)), _pool),
        (kind(types=(nn.AdaptiveAvgPool2d, nn.AdaptiveMaxPool2d)), _adaptive_pool),
        (kind(types=(nn.Flatten,)), _flatten),
        (kind(types=(nn.Dropout, nn.Dropout2d)), _dropout),
        (kind(types=(nn.Identity,)), _identity),
        (kind(*_WITIN_OPS), _witin_op),
        (kind("WitinCat"), _witin_cat),
        (kind("WitinMean"), _witin_mean),
    ]
    return rules
