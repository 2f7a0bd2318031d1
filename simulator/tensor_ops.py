"""Generic digital tensor operations for graphs of any rank (the ONNX importer's vocabulary).

Each entry of :data:`TENSOR_OPS` is a layer type of the executor. It computes
the ONNX operator of the same name (opset 18 semantics) on whole tensors,
batch axis included, in the layout the tensors have inside the executor
(for networks with ``internal_layout = "native"`` that is the model's own
layout, e.g. NCHW). All of them are exact digital operations; MVMs with
constant weights are never expressed with these (they are Dense / Conv2D
layers and run on analog cores).

Operands
--------
A layer's operands are its input activations and, optionally, constant
tensors stored as layer weights. The config key ``operands`` lists them in
the operator's order: an int ``i`` is ``layer.inputs[i]``, a string is the
name of a weight (e.g. ``[0, "B"]`` for ``x - B``; ``["table", 0]`` for an
embedding lookup ``table[x]``). Without ``operands`` the inputs are used in
order. Floating-point constants take the dtype of the first floating input,
so an ideal run stays in float64.

Batch axis
----------
Constants broadcast against activations with NumPy rules (a leading 1 spans
the batch). ``Concat`` also broadcasts the leading axis of constant operands
to the batch size of the activations, as a class token does in a ViT.
"""
from __future__ import annotations

import math
from dataclasses import dataclass
from typing import Any, Callable, Sequence

from simulator import ops

OpFn = Callable[[Any, list, dict], Any]


@dataclass(frozen=True)
class TensorOp:
    """One layer type: ``fn(xp, operands, config) -> array`` and the config keys it accepts."""

    fn: OpFn
    keys: frozenset[str]


TENSOR_OPS: dict[str, TensorOp] = {}


def _op(name: str, *keys: str) -> Callable[[OpFn], OpFn]:
    def register(fn: OpFn) -> OpFn:
        TENSOR_OPS[name] = TensorOp(fn, frozenset(keys) | {"operands"})
        return fn

    return register


def gather_operands(xp, layer, ins: list) -> list:
    """The operand list of a tensor-op layer (activations and constant weights, in operator order)."""
    spec: Sequence[int | str] = layer.config.get("operands") or list(range(len(ins)))
    ftype = next((a.dtype for a in ins if xp.dtype(a.dtype).kind == "f"), None)
    out = []
    for item in spec:
        if isinstance(item, int):
            out.append(ins[item])
            continue
        w = xp.asarray(layer.weights[item])
        if ftype is not None and w.dtype.kind == "f":
            w = w.astype(ftype)
        out.append(w)
    return out


def apply(xp, layer, ins: list):
    """Run tensor-op ``layer`` on its input activations ``ins``."""
    return TENSOR_OPS[layer.type].fn(xp, gather_operands(xp, layer, ins), layer.config)


# ------------------------------------------------------------ element-wise
_UNARY: dict[str, Callable[[Any, Any, dict], Any]] = {
    "Abs": lambda xp, x, c: xp.abs(x),
    "Neg": lambda xp, x, c: -x,
    "Exp": lambda xp, x, c: xp.exp(x),
    "Log": lambda xp, x, c: xp.log(x),
    "Sqrt": lambda xp, x, c: xp.sqrt(x),
    "Reciprocal": lambda xp, x, c: 1.0 / x,
    "Floor": lambda xp, x, c: xp.floor(x),
    "Ceil": lambda xp, x, c: xp.ceil(x),
    "Round": lambda xp, x, c: xp.round(x),  # half to even, as ONNX
    "Sign": lambda xp, x, c: xp.sign(x),
    "Not": lambda xp, x, c: xp.logical_not(x),
    "Erf": lambda xp, x, c: ops._erf(x, xp),
    "Relu": lambda xp, x, c: xp.maximum(x, 0),
    "Sigmoid": lambda xp, x, c: 1.0 / (1.0 + xp.exp(-x)),
    "Tanh": lambda xp, x, c: xp.tanh(x),
    "Softplus": lambda xp, x, c: xp.logaddexp(x, 0),
    "Softsign": lambda xp, x, c: x / (1 + xp.abs(x)),
    "HardSigmoid": lambda xp, x, c: xp.clip(c.get("alpha", 0.2) * x + c.get("beta", 0.5), 0, 1),
    "HardSwish": lambda xp, x, c: x * xp.clip(x / 6.0 + 0.5, 0, 1),
    "LeakyRelu": lambda xp, x, c: xp.where(x >= 0, x, c.get("alpha", 0.01) * x),
    "Elu": lambda xp, x, c: xp.where(x >= 0, x, c.get("alpha", 1.0) * (xp.exp(xp.minimum(x, 0)) - 1)),
    "Selu": lambda xp, x, c: c.get("gamma", 1.0507009873554805) * xp.where(
        x > 0, x, c.get("alpha", 1.6732632423543772) * (xp.exp(xp.minimum(x, 0)) - 1)),
    "Mish": lambda xp, x, c: x * xp.tanh(xp.logaddexp(x, 0)),
    "Gelu": lambda xp, x, c: (
        0.5 * x * (1 + xp.tanh(math.sqrt(2 / math.pi) * (x + 0.044715 * x**3)))
        if c.get("approximate", "none") == "tanh" else 0.5 * x * (1 + ops._erf(x / math.sqrt(2.0), xp))),
}

UNARY_OPS = frozenset(_UNARY)


@_op("Unary", "op", "alpha", "beta", "gamma", "approximate")
def _unary(xp, a, c):
    return _UNARY[c["op"]](xp, a[0], c)


def _int_div(xp, x, y):
    return xp.trunc(x / y).astype(x.dtype) if xp.dtype(x.dtype).kind in "iu" else x / y


_BINARY: dict[str, Callable[[Any, Any, Any], Any]] = {
    "Add": lambda xp, x, y: x + y,
    "Sub": lambda xp, x, y: x - y,
    "Mul": lambda xp, x, y: x * y,
    "Div": _int_div,
    "Pow": lambda xp, x, y: xp.power(x, y),
    "Max": lambda xp, x, y: xp.maximum(x, y),
    "Min": lambda xp, x, y: xp.minimum(x, y),
    "Mod": lambda xp, x, y: xp.mod(x, y),
    "Equal": lambda xp, x, y: x == y,
    "Less": lambda xp, x, y: x < y,
    "LessOrEqual": lambda xp, x, y: x <= y,
    "Greater": lambda xp, x, y: x > y,
    "GreaterOrEqual": lambda xp, x, y: x >= y,
    "And": lambda xp, x, y: xp.logical_and(x, y),
    "Or": lambda xp, x, y: xp.logical_or(x, y),
    "Xor": lambda xp, x, y: xp.logical_xor(x, y),
}

BINARY_OPS = frozenset(_BINARY)


@_op("Binary", "op", "fmod")
def _binary(xp, a, c):
    op = c["op"]
    if op == "Mod" and c.get("fmod"):
        return xp.fmod(a[0], a[1])
    fn = _BINARY[op]
    y = a[0]
    for other in a[1:]:  # Max / Min / Sum / Mean are variadic in ONNX
        y = fn(xp, y, other)
    return y


@_op("Where")
def _where(xp, a, c):
    return xp.where(a[0].astype(bool), a[1], a[2])


@_op("Clip", "min", "max")
def _clip(xp, a, c):
    lo, hi = c.get("min"), c.get("max")
    y = a[0]
    if lo is not None:
        y = xp.maximum(y, lo)
    if hi is not None:
        y = xp.minimum(y, hi)
    return y


@_op("Cast", "to")
def _cast(xp, a, c):
    """Cast to 'float' keeps the executor's float dtype (float64 in ideal runs); 'int64', 'bool', ... cast."""
    x, to = a[0], c["to"]
    if to == "float":
        return x if xp.dtype(x.dtype).kind == "f" else x.astype("float64")
    if to == "bool":
        return x != 0
    return xp.trunc(x).astype(to) if xp.dtype(x.dtype).kind == "f" else x.astype(to)


# ----------------------------------------------------------- normalization
@_op("Softmax", "axis", "log", "flatten")
def _softmax(xp, a, c):
    """Softmax over ``axis`` (``flatten``: over all axes from ``axis`` on, the opset < 13 rule)."""
    x = a[0]
    axis = int(c.get("axis", -1)) % x.ndim
    axes = tuple(range(axis, x.ndim)) if c.get("flatten") else (axis,)
    z = x - x.max(axis=axes, keepdims=True)
    if c.get("log"):
        return z - xp.log(xp.exp(z).sum(axis=axes, keepdims=True))
    e = xp.exp(z)
    return e / e.sum(axis=axes, keepdims=True)


@_op("LayerNormalization", "axis", "epsilon")
def _layer_norm(xp, a, c):
    """(x - mean) / sqrt(var + epsilon) * scale + bias over the axes from ``axis`` on (population variance)."""
    x = a[0]
    axis = int(c.get("axis", -1)) % x.ndim
    axes = tuple(range(axis, x.ndim))
    mean = x.mean(axis=axes, keepdims=True)
    d = x - mean
    var = (d * d).mean(axis=axes, keepdims=True)
    y = d / xp.sqrt(var + float(c.get("epsilon", 1e-5)))
    if len(a) > 1:
        y = y * a[1]
    if len(a) > 2:
        y = y + a[2]
    return y


_REDUCE = {"ReduceMean": "mean", "ReduceSum": "sum", "ReduceMax": "max", "ReduceMin": "min", "ReduceProd": "prod"}


@_op("Reduce", "op", "axes", "keepdims")
def _reduce(xp, a, c):
    """ReduceMean/Sum/Max/Min/Prod/L2/SumSquare over ``axes`` (None: all axes)."""
    x = a[0]
    axes = c.get("axes")
    axes = None if axes is None else tuple(int(v) % x.ndim for v in axes)
    keep = bool(c.get("keepdims", True))
    op = c["op"]
    if op == "ReduceL2":
        return xp.sqrt((x * x).sum(axis=axes, keepdims=keep))
    if op == "ReduceSumSquare":
        return (x * x).sum(axis=axes, keepdims=keep)
    return getattr(x, _REDUCE[op])(axis=axes, keepdims=keep)


# ------------------------------------------------------------------ shapes
@_op("Transpose", "perm")
def _transpose(xp, a, c):
    perm = c.get("perm")
    return xp.ascontiguousarray(a[0].transpose(None if perm is None else tuple(int(p) for p in perm)))


@_op("Expand", "shape")
def _expand(xp, a, c):
    x = a[0]
    shape = tuple(int(s) for s in c["shape"])
    target = _broadcast_shape(x.shape, shape)
    return xp.broadcast_to(x, target).copy()


def _broadcast_shape(s1: Sequence[int], s2: Sequence[int]) -> tuple[int, ...]:
    n = max(len(s1), len(s2))
    a = (1,) * (n - len(s1)) + tuple(s1)
    b = (1,) * (n - len(s2)) + tuple(s2)
    return tuple(max(x, y) if 1 in (x, y) else x for x, y in zip(a, b))


@_op("Slice", "starts", "ends", "axes", "steps")
def _slice(xp, a, c):
    x = a[0]
    sl = [slice(None)] * x.ndim
    steps = c.get("steps") or [1] * len(c["starts"])
    axes = c.get("axes") or list(range(len(c["starts"])))
    for s, e, ax, st in zip(c["starts"], c["ends"], axes, steps):
        sl[int(ax) % x.ndim] = slice(int(s), int(e), int(st))
    return x[tuple(sl)]


@_op("Gather", "axis")
def _gather(xp, a, c):
    data, idx = a
    axis = int(c.get("axis", 0)) % data.ndim
    idx = xp.asarray(idx)
    idx = (xp.trunc(idx) if xp.dtype(idx.dtype).kind == "f" else idx).astype("int64")
    idx = xp.where(idx < 0, idx + data.shape[axis], idx)  # ONNX: negative indices count from the end
    return xp.take(data, idx, axis=axis)


@_op("Concat", "axis")
def _concat(xp, a, c):
    axis = int(c["axis"])
    batch = max(int(t.shape[0]) for t in a if t.ndim)
    parts = [xp.broadcast_to(t, (batch,) + t.shape[1:]) if t.ndim and t.shape[0] == 1 and batch > 1 else t for t in a]
    return xp.concatenate(parts, axis=axis)


@_op("Pad", "pads", "mode", "value")
def _pad(xp, a, c):
    """ONNX Pad: ``pads`` = [begin_0, ..., begin_{r-1}, end_0, ..., end_{r-1}]; negative entries crop."""
    x = a[0]
    r = x.ndim
    pads = [int(v) for v in c["pads"]]
    lo, hi = pads[:r], pads[r:]
    crop = tuple(slice(max(-b, 0), x.shape[i] - max(-e, 0)) for i, (b, e) in enumerate(zip(lo, hi)))
    x = x[crop]
    width = [(max(b, 0), max(e, 0)) for b, e in zip(lo, hi)]
    if not any(b or e for b, e in width):
        return x
    mode = c.get("mode", "constant")
    if mode == "constant":
        return xp.pad(x, width, mode="constant", constant_values=float(c.get("value", 0.0)))
    return xp.pad(x, width, mode=mode)


@_op("MatMul")
def _matmul(xp, a, c):
    """Product of two activations (attention scores, ...): digital, never an analog core."""
    return xp.matmul(a[0], a[1])
