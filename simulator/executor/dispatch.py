"""The executor's op table: layer type -> the function that runs it.

:func:`apply_layer` runs one layer on its input tensors. MVM layers (Dense,
Conv2D, DepthwiseConv2D, Conv2DTranspose, GRUCell) run on the layer's cores
(or, ``ideal``, on exact floating-point MVMs); every other layer is an exact
digital operation: the entries of :data:`NHWC_OPS` (pooling, element-wise
arithmetic, batch norm when not folded, padding, reshapes, activations) and
:data:`~simulator.tensor_ops.TENSOR_OPS` (ONNX-style operators). witin layers
run through :mod:`simulator.witin` (chip layers, digital ops).

Layouts: 4-D activations are NHWC inside the executor; a layer with
``data_format = "channels_first"`` (a native-layout graph) is transposed to
NHWC and back around its NHWC op. Dense layers take ``(..., features)``.

Every function takes the running simulation (see :class:`Executor`) first:
it supplies the backend ``xp``, the config, the cores by layer name, the
global image index of the batch (it keys read noise: convolutions hand their
cores ``row0 = (image index) * windows + window``), and the ideal MVM cache.
"""
from __future__ import annotations

import math
from typing import Any, Callable, Protocol

from simulator import ops, tensor_ops
from simulator.config import Config
from simulator.errors import ConfigError, DataError
from simulator.executor.core_factory import mvm_matrix
from simulator.network import Layer
from simulator.tensor_ops import TENSOR_OPS
from simulator.witin.digital import run_layer as run_witin_digital

#: witin digital ops that have no float counterpart: they run in ideal passes too
_WITIN_ONLY = {"MatMul", "Hypot", "InvSqrt", "ClnBn2d"}


class Executor(Protocol):
    """What the op functions read from the running simulation."""

    xp: Any
    config: Config
    #: cores by layer name (see :class:`~simulator.executor.core_factory.CoreFactory`)
    cores: dict[str, Any]
    #: global index of the first image of the batch being run (keys read noise)
    batch_offset: int
    #: floating-point type of ideal passes ("float64", or "float32" for timing)
    ideal_dtype: str
    #: exact MVM functions by (ideal dtype, layer name), filled on first use
    ideal_cache: dict


Op = Callable[[Executor, Layer, list, bool], Any]


# ------------------------------------------------------------ MVM layers
def layer_mvm(sim: Executor, layer: Layer, ideal: bool) -> Callable:
    """The MVM of a layer: its core(s), or (``ideal``) the exact ``X @ W + b`` in the ideal dtype."""
    if not ideal:
        return sim.cores[layer.name]
    key = (sim.ideal_dtype, layer.name)
    if key not in sim.ideal_cache:
        xp, dt = sim.xp, sim.ideal_dtype

        def exact(W, b) -> Callable:
            Wd = xp.asarray(W, dtype=dt)
            bd = None if b is None else xp.asarray(b, dtype=dt)
            return lambda X, row0=None: X @ Wd + bd if bd is not None else X @ Wd

        w = layer.weights
        if layer.type == "GRUCell":
            sim.ideal_cache[key] = (exact(w["weight_ih"], w.get("bias_ih")), exact(w["weight_hh"], w.get("bias_hh")))
        else:
            sim.ideal_cache[key] = exact(*mvm_matrix(layer))
    return sim.ideal_cache[key]


def conv_mvm(sim: Executor, x, layer: Layer, mvm, kernel, strides, dilation, pads):
    """A convolution of NHWC ``x`` as batched MVMs over its im2col windows, chunked to the memory budget."""
    xp = sim.xp
    (kh, kw), (sh, sw), (dh, dw) = kernel, strides, dilation
    run = mvm
    if getattr(mvm, "can_prequantize", False):
        # The DAC is elementwise: encode every activation once, not its kh*kw window copies.
        x = mvm.prequantize(x)  # voltages, or int8 DAC codes (a quarter of the bytes through im2col)
        run = lambda cols, row0: mvm(cols, prequantized=True, row0=row0)  # noqa: E731
        x = ops.pad_nhwc(x, pads, xp, mvm.prequantized_zero(x))
    else:
        x = ops.pad_nhwc(x, pads, xp)
    N, H, W, C = x.shape
    Ho = ops.conv_output_size(H, kh, sh, dh)
    Wo = ops.conv_output_size(W, kw, sw, dw)
    if Ho <= 0 or Wo <= 0:
        raise DataError(f"layer {layer.name!r}: kernel {kh}x{kw} does not fit its {H}x{W} input")
    per_image = Ho * Wo * kh * kw * C * xp.dtype(x.dtype).itemsize * 2
    chunk = max(1, int(sim.config.memory_budget_mb * 1e6 // max(per_image, 1)))
    outs = []
    for s in range(0, N, chunk):
        cols, _ = ops.im2col(x[s : s + chunk], kh, kw, sh, sw, dh, dw, xp)
        y = run(cols, row0=(sim.batch_offset + s) * Ho * Wo)  # rows: image-major, then window oh*Wo+ow
        outs.append(y.reshape(-1, Ho, Wo, y.shape[-1]))
    return outs[0] if len(outs) == 1 else xp.concatenate(outs, axis=0)


def dense(sim: Executor, layer: Layer, ins: list, ideal: bool):
    """Dense on ``(..., features)``: every token of an image is one MVM row."""
    x = ins[0]
    shape = x.shape
    per_image = math.prod(shape[1:-1])  # tokens per image (1 for (N, features))
    y = layer_mvm(sim, layer, ideal)(x.reshape(-1, shape[-1]), row0=sim.batch_offset * per_image)
    return ops.activation(y.reshape(shape[:-1] + (y.shape[-1],)), layer.config.get("activation"), sim.xp)


def conv2d(sim: Executor, layer: Layer, ins: list, ideal: bool):
    """Conv2D / DepthwiseConv2D (NHWC); ideal depthwise convolutions as exact per-channel window sums."""
    xp, c, x = sim.xp, layer.config, ins[0]
    kh, kw = c["kernel_size"]
    sh, sw = c.get("strides", (1, 1))
    dh, dw = c.get("dilation_rate", (1, 1))
    pads = ops.resolve_padding(c.get("padding", "valid"), x.shape[1], x.shape[2], kh, kw, sh, sw, dh, dw)
    if ideal and layer.type == "DepthwiseConv2D":  # exact: per-channel window sums, not the block-diagonal matrix
        y = ops.depthwise_conv(ops.pad_nhwc(x, pads, xp), layer.weights["depthwise_kernel"],
                               layer.weights.get("bias") if c.get("use_bias", True) else None, (sh, sw), (dh, dw), xp)
    else:
        y = conv_mvm(sim, x, layer, layer_mvm(sim, layer, ideal), (kh, kw), (sh, sw), (dh, dw), pads)
    return ops.activation(y, c.get("activation"), xp)


def conv_transpose(sim: Executor, layer: Layer, ins: list, ideal: bool):
    """Transposed convolution = stride-1 convolution of the zero-upsampled input with the flipped kernel."""
    xp, c, x = sim.xp, layer.config, ins[0]
    kh, kw = c["kernel_size"]
    dh, dw = c.get("dilation_rate", (1, 1))
    up = ops.conv_transpose_input(x, (kh, kw), c.get("strides", (1, 1)), (dh, dw), c.get("padding", "valid"),
                                  c.get("output_padding"), xp)
    y = conv_mvm(sim, up, layer, layer_mvm(sim, layer, ideal), (kh, kw), (1, 1), (dh, dw), ((0, 0), (0, 0)))
    return ops.activation(y, c.get("activation"), xp)


def gru(sim: Executor, layer: Layer, ins: list, ideal: bool):
    """torch.nn.GRUCell semantics, gate order (r, z, n); both products are MVM layers. Inputs: x[, h]."""
    xp, x = sim.xp, ins[0]
    H = layer.weights["weight_hh"].shape[0]
    h = ins[1] if len(ins) > 1 else xp.zeros((x.shape[0], H), dtype=x.dtype)
    ih, hh = layer_mvm(sim, layer, ideal)
    return ops.gru_cell(ih(x, row0=sim.batch_offset), hh(h, row0=sim.batch_offset), h, xp)


# ------------------------------------------------------------ digital NHWC ops
def _pool(sim: Executor, layer: Layer, ins: list, ideal: bool):
    c = layer.config
    pool = c.get("pool_size", (2, 2))
    return ops.pool2d(ins[0], "max" if layer.type == "MaxPooling2D" else "avg", pool, c.get("strides") or pool,
                      c.get("padding", "valid"), sim.xp, count_include_pad=bool(c.get("count_include_pad", False)),
                      dilation=c.get("dilation_rate") or (1, 1), ceil_mode=bool(c.get("ceil_mode", False)))


def _global_pool(sim: Executor, layer: Layer, ins: list, ideal: bool):
    keep = bool(layer.config.get("keepdims", False))
    x = ins[0]
    return x.mean(axis=(1, 2), keepdims=keep) if layer.type == "GlobalAveragePooling2D" else x.max(axis=(1, 2), keepdims=keep)


def _fold(fn: Callable) -> Op:
    """An n-ary element-wise op as a left fold of binary ``fn`` over the inputs."""
    def op(sim: Executor, layer: Layer, ins: list, ideal: bool):
        y = ins[0]
        for other in ins[1:]:
            y = fn(y, other)
        return y

    return op


def _batchnorm(sim: Executor, layer: Layer, ins: list, ideal: bool):
    xp, c, w, x = sim.xp, layer.config, layer.weights, ins[0]
    eps = float(c.get("epsilon", 1e-3))
    scale = xp.asarray(w.get("gamma", 1.0), dtype=x.dtype) / xp.sqrt(xp.asarray(w["moving_variance"], dtype=x.dtype) + eps)
    shift = xp.asarray(w.get("beta", 0.0), dtype=x.dtype) - xp.asarray(w["moving_mean"], dtype=x.dtype) * scale
    axis = int(c.get("axis", -1)) % x.ndim
    if axis != x.ndim - 1:  # channels on another axis (native NCHW tensors): (C,) -> (C, 1, ..., 1)
        shape = (-1,) + (1,) * (x.ndim - 1 - axis)
        scale, shift = scale.reshape(shape), shift.reshape(shape)
    return x * scale + shift


def _zero_padding(sim: Executor, layer: Layer, ins: list, ideal: bool):
    p = layer.config.get("padding", ((1, 1), (1, 1)))
    return ops.pad_nhwc(ins[0], ops.resolve_padding(p, 0, 0, 1, 1, 1, 1), sim.xp)


def _reshape(sim: Executor, layer: Layer, ins: list, ideal: bool):
    c, x = layer.config, ins[0]
    if "shape" in c:  # full shape, batch axis included (0 copies the input's size of that axis)
        return x.reshape(tuple(x.shape[i] if int(v) == 0 else int(v) for i, v in enumerate(c["shape"])))
    return ops.reshape(x, c["target_shape"], c.get("order", "NHWC"), sim.xp)


def _prelu(sim: Executor, layer: Layer, ins: list, ideal: bool):
    x = ins[0]
    a = sim.xp.asarray(layer.weights["alpha"], dtype=x.dtype)
    return sim.xp.where(x >= 0, x, a * x)


def _mean(sim: Executor, layer: Layer, ins: list, ideal: bool):
    axis = layer.config.get("axis")
    return ins[0].mean(axis=tuple(axis) if isinstance(axis, list) else axis,
                       keepdims=bool(layer.config.get("keepdims", False)))


#: layer type -> op for 4-D NHWC activations (and anything not 4-D); MVM layers included
NHWC_OPS: dict[str, Op] = {
    "Conv2D": conv2d,
    "DepthwiseConv2D": conv2d,
    "Conv2DTranspose": conv_transpose,
    "GRUCell": gru,
    "MaxPooling2D": _pool,
    "AveragePooling2D": _pool,
    "GlobalAveragePooling2D": _global_pool,
    "GlobalMaxPooling2D": _global_pool,
    "Add": _fold(lambda a, b: a + b),
    "Subtract": lambda sim, layer, ins, ideal: ins[0] - ins[1],
    "Multiply": _fold(lambda a, b: a * b),
    "Divide": lambda sim, layer, ins, ideal: ins[0] / ins[1],
    "Concatenate": lambda sim, layer, ins, ideal: sim.xp.concatenate(ins, axis=int(layer.config.get("axis", -1))),
    "BatchNormalization": _batchnorm,
    "ZeroPadding2D": _zero_padding,
    "Flatten": lambda sim, layer, ins, ideal: ops.flatten(ins[0], layer.config.get("order", "NHWC"), sim.xp),
    "Reshape": _reshape,
    "Activation": lambda sim, layer, ins, ideal: ops.activation(ins[0], layer.config.get("activation"), sim.xp,
                                                                layer.config.get("alpha")),
    "PReLU": _prelu,
    "Sqrt": lambda sim, layer, ins, ideal: sim.xp.sqrt(ins[0]),
    "Mean": _mean,
    "Dropout": lambda sim, layer, ins, ideal: ins[0],
    "GaussianNoise": lambda sim, layer, ins, ideal: ins[0],
}


def _nhwc(sim: Executor, layer: Layer, ins: list, ideal: bool):
    op = NHWC_OPS.get(layer.type)
    if op is None:  # pragma: no cover - the network model only admits executable types
        raise ConfigError(f"layer {layer.name!r}: type {layer.type} cannot be executed")
    return op(sim, layer, ins, ideal)


def apply_layer(sim: Executor, layer: Layer, ins: list, ideal: bool):
    """Output of ``layer`` on input tensors ``ins`` (internal layout); ``ideal``: exact MVMs, no analog effects."""
    xp, t = sim.xp, layer.type
    if layer.attrs.get("witin") and sim.config.witin_mode == "chip" and not ideal and layer.is_mvm:
        return sim.cores[layer.name].forward(*ins, image_offset=sim.batch_offset)
    if layer.attrs.get("witin_digital") is not None and (not ideal or t in _WITIN_ONLY):
        return run_witin_digital(layer, ins, xp, ideal)
    if t == "Dense":
        return dense(sim, layer, ins, ideal)
    if t in TENSOR_OPS:
        return tensor_ops.apply(xp, layer, ins)
    if layer.config.get("data_format") == "channels_first":  # conv / pooling in a native-layout graph
        y = _nhwc(sim, layer, [ops.nchw_to_nhwc(ins[0], xp)] + ins[1:], ideal)
        return ops.nhwc_to_nchw(y, xp)
    return _nhwc(sim, layer, ins, ideal)
