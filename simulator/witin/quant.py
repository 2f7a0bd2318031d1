"""witin_nn quantization formulas as small pure functions.

These are the rules by which a witin_nn CIM layer (WitinLinear, WitinConv2d,
WitinConvTranspose2d, the two products of a GRU cell) maps floating-point
tensors to the integers the chip computes with. Every function takes an array
module ``xp`` (NumPy or CuPy) where it handles arrays; scalars are plain
Python floats.

Integer-valued results are returned as float64 arrays (exact for every value
the chip can produce) so that the matrix products downstream are exact.

Conventions verified against witin_nn 0.1.3 in eval mode (see
``scripts/compare_witin_nn.py``):

* rounding is round-half-to-even everywhere (``torch.round``);
* auto scale: ``scale = 2**(bits-1) / 2**ceil(log2(io_max))``. The input is
  unsigned for ``handle_neg_in`` FALSE and PN, so its scale uses
  ``bits = x_quant_bits + 1`` (this is why the guide's example
  ``x_max = 1.7309`` at 8 bits gives ``scale_x = 128``); with Shift the input
  is signed and ``bits = x_quant_bits``;
* weights: ``clip(round(w * scale_weight), -2**(wb-1), 2**(wb-1)-1)``;
* bias: ``clip(round(b * (scale_x*scale_weight) / 128), -128*N, 127*N) * 128``
  (N = bias_row_N rows of the array driven with input 128); ``b * (sx*sw)``
  is one float32 product with the (exact) scale product. With Shift the
  compensation ``shift * sum_i NPU_w[i, j]`` is subtracted from it in float32
  before the rounding (8-bit inputs and every conv), or after rounding the
  bias (WitinLinear with x_quant_bits > 8);
* output: ``round(clip(f32(f32(acc / (scale_x*scale_weight)) * scale_y),
  -2**(yb-1), 2**(yb-1)-1))`` -- divided by the scale product and then
  multiplied by scale_y in float32, in that order (this is not
  ``round(acc / g_value)`` when the scales are not powers of two); with
  x_quant_bits > 8 (WitinLinear) the analog part (low 8 input bits, bias rows,
  noise) is quantized that way, the digital part (high input bits, bias_d) is
  ``round(acc_d / round(g_value))`` with ``g_value = scale_x*scale_weight/scale_y``
  rounded to an integer, and the sum is clipped again;
* PN convolutions (WitinConv2d, WitinConvTranspose2d) compute two passes, the
  positive inputs with NPU_w (and the bias) and the magnitudes of the negative
  inputs with a separately quantized ``clip(round(-w * scale_weight))``, which
  reaches ``-2**(wb-1)`` where NPU_w saturated at ``2**(wb-1)-1``; each pass is
  divided by the scale product and the quotients are added in float32.
  WitinLinear PN uses ``-NPU_w`` unclipped;
* Shift offset: ``round(clamp(shift_num * scale_x, 0, limit))`` with limit
  ``2**x_quant_bits`` for WitinLinear and 128 for WitinConv2d.

Bit exactness assumes accumulators below 2**24 (witin_nn accumulates in
float32 in its BLAS / oneDNN order; larger sums are rounded there, see
``docs/witin_noise.md``).
"""
from __future__ import annotations

import math
from typing import Any

import numpy as np

from simulator.errors import ModelError

HANDLE_NEG_IN = ("FALSE", "PN", "Shift")

#: How a layer type treats its input for each handle_neg_in (witin_nn 0.1.3 behaviour):
#: "unsigned" clip(round(x*s), 0, 2**xb-1); "pn" sign-magnitude ±(2**xb-1);
#: "signed" clip(round(x*s), -2**(xb-1), 2**(xb-1)-1) with a signed (xb-1)-bit scale;
#: "shift" unsigned after adding the Shift offset, signed scale.
INPUT_MODES = {
    ("Dense", "FALSE"): "unsigned", ("Dense", "PN"): "pn", ("Dense", "Shift"): "shift",
    ("Conv2D", "FALSE"): "signed", ("Conv2D", "PN"): "pn", ("Conv2D", "Shift"): "shift",
    ("Conv2DTranspose", "FALSE"): "unsigned", ("Conv2DTranspose", "PN"): "pn",
}

#: Bits the analog array takes per input; higher input bits are computed digitally.
ANALOG_INPUT_BITS = 8

#: Input value driving every bias row.
BIAS_ROW_INPUT = 128


def _round(a, xp):
    """Round half to even (numpy/cupy ``round`` does this, as does ``torch.round``)."""
    return xp.round(a)


def auto_scale(io_max: float, bits: int, what: str = "") -> float:
    """The guide's auto-scale rule ``2**(bits-1) / 2**ceil(log2(io_max))``.

    ``io_max`` is the recorded maximum absolute value (the
    ``autoscale_*_obj.io_max`` buffer). ``io_max == 0`` cannot give a scale:
    that raises :class:`ModelError` with witin_nn's message.
    """
    value = float(io_max)
    if not math.isfinite(value) or value <= 0.0:
        label = f" for {what}" if what else ""
        raise ModelError(
            f"Unable to determine quant scale{label}: io_max = {value:g} (it must be a positive, finite maximum |value|)"
        )
    # witin_nn evaluates log2 in float32
    exponent = float(np.ceil(np.log2(np.float32(value))))
    return float(2.0 ** (bits - 1) / 2.0**exponent)


def input_scale(io_max: float, x_quant_bits: int, handle_neg_in: str = "FALSE", mode: str | None = None) -> float:
    """Auto scale of a CIM layer's input.

    Unsigned inputs (mode "unsigned"/"pn", the WitinLinear default for FALSE
    and PN) use all ``x_quant_bits`` for the magnitude: ``bits = x_quant_bits + 1``.
    Signed inputs ("shift", "signed") use ``bits = x_quant_bits``.
    """
    check_handle_neg_in(handle_neg_in)
    if mode is None:
        mode = "shift" if handle_neg_in == "Shift" else ("pn" if handle_neg_in == "PN" else "unsigned")
    bits = x_quant_bits if mode in ("shift", "signed") else x_quant_bits + 1
    return auto_scale(io_max, bits, "the input (io_max_x)")


def weight_scale(io_max: float, weight_quant_bits: int = 8) -> float:
    return auto_scale(io_max, weight_quant_bits, "the weights (io_max_weight)")


def output_scale(io_max: float, y_quant_bits: int = 8) -> float:
    return auto_scale(io_max, y_quant_bits, "the output (io_max_y)")


def g_value(scale_x: float, scale_weight: float, scale_y: float) -> float:
    """The chip's output divisor ``scale_x * scale_weight / scale_y``."""
    return float(scale_x) * float(scale_weight) / float(scale_y)


def check_handle_neg_in(value: Any) -> str:
    if value not in HANDLE_NEG_IN:
        raise ModelError(f"witin handle_neg_in must be one of {', '.join(HANDLE_NEG_IN)}, got {value!r}")
    return value


#: Largest Shift offset (input units) of a WitinConv2d: witin_nn clamps ``shift_num * scale_x`` to
#: ``[0, 128]`` for convolutions whatever ``x_quant_bits`` is (WitinLinear clamps to ``[0, 2**xb]``).
CONV_SHIFT_LIMIT = 128.0


def shift_offset(shift_num: float, scale_x: float, x_quant_bits: int, limit: float | None = None) -> float:
    """Integer input offset of HandleNegInType.Shift.

    ``shift_num * scale_x`` (float32) is clamped to ``[0, limit]`` and rounded. ``limit`` defaults to
    ``2**x_quant_bits`` (WitinLinear: the whole unsigned input range); WitinConv2d uses
    :data:`CONV_SHIFT_LIMIT` (128) for every ``x_quant_bits``.
    """
    top = 2.0**x_quant_bits if limit is None else float(limit)
    eff = float(np.float32(shift_num) * np.float32(scale_x))
    eff = min(max(eff, 0.0), top)
    return float(np.round(np.float32(eff)))


def quantize_input(x, scale_x: float, x_quant_bits: int, handle_neg_in: str, xp, shift: float = 0.0, mode: str | None = None):
    """NPU_x: the integer input the chip sees.

    FALSE: ``clip(round(x*scale_x), 0, 2**xb-1)`` (negative inputs become 0);
    PN:    ``clip(round(x*scale_x), -(2**xb-1), 2**xb-1)`` (the sign moves to a
    second copy of the weights, so the array still sees magnitudes);
    Shift: ``clip(round(x*scale_x + shift), 0, 2**xb-1)`` with ``shift`` from
    :func:`shift_offset`. witin_nn computes this in float32, and so do we.
    """
    check_handle_neg_in(handle_neg_in)
    if mode is None:
        mode = "shift" if handle_neg_in == "Shift" else ("pn" if handle_neg_in == "PN" else "unsigned")
    top = 2.0**x_quant_bits - 1
    xf = xp.asarray(x, dtype=xp.float32) * xp.float32(scale_x)
    if mode == "shift":
        xf = xf + xp.float32(shift)
    q = _round(xf, xp).astype(xp.float64)
    if mode == "signed":
        half = 2.0 ** (x_quant_bits - 1)
        return xp.clip(q, -half, half - 1)
    lo = -top if mode == "pn" else 0.0
    return xp.clip(q, lo, top)


def quantize_weight(w, scale_weight: float, weight_quant_bits: int, xp, w_clip: float | None = None):
    """NPU_weight = clip(round(clip(w, ±w_clip) * scale_weight), -2**(wb-1), 2**(wb-1)-1)."""
    wf = xp.asarray(w, dtype=xp.float32)
    if w_clip is not None:
        wf = xp.clip(wf, -xp.float32(w_clip), xp.float32(w_clip))
    half = 2.0 ** (weight_quant_bits - 1)
    return xp.clip(_round(wf * xp.float32(scale_weight), xp).astype(xp.float64), -half, half - 1)


def scale_product(scale_x: float, scale_weight: float) -> float:
    """``scale_x * scale_weight``, the divisor witin_nn applies to an accumulator (before ``* scale_y``)."""
    return float(scale_x) * float(scale_weight)


def _f32(a, xp):
    return xp.asarray(a, dtype=xp.float32)


def bias_accumulator(b, scale_x: float, scale_weight: float, xp):
    """``b * (scale_x * scale_weight)`` as witin_nn computes it: one float32 product with the
    (exact) scale product, returned as a float32 array."""
    return _f32(b, xp) * xp.float32(scale_product(scale_x, scale_weight))


def bias_units(b, scale_x: float, scale_weight: float, xp):
    """``b * (scale_x * scale_weight) / 128``: the bias in bias-row steps, unrounded (float32 like witin_nn)."""
    return (bias_accumulator(b, scale_x, scale_weight, xp) / xp.float32(BIAS_ROW_INPUT)).astype(xp.float64)


def clip_bias_units(k, bias_row_N: int, xp):
    """Bias steps realisable on ``bias_row_N`` rows: ``[-128*N, 127*N]``."""
    return xp.clip(k, -128.0 * bias_row_N, 127.0 * bias_row_N)


def quantize_bias(b, scale_x: float, scale_weight: float, bias_row_N: int, xp):
    """NPU_bias = clip(round(b*scale_x*scale_weight/128), -128N, 127N) * 128 (plain case: no Shift, no bias_d)."""
    return clip_bias_units(_round(bias_units(b, scale_x, scale_weight, xp), xp), bias_row_N, xp) * BIAS_ROW_INPUT


def analog_bias_units(b, scale_x, scale_weight, bias_row_N, x_quant_bits, xp, *, shift_comp=None, bias_d=None):
    """Bias steps on the analog bias rows, including Shift's compensation and the part moved out by ``bias_d``.

    ``shift_comp`` is ``shift * sum_i NPU_w[i, j]`` per output (accumulator
    units); ``bias_d`` (float units, like the bias) is only used when
    ``x_quant_bits > 8``. With 8-bit inputs (and for every one-pass conv
    product) the compensation is subtracted from ``b * (scale_x*scale_weight)``
    in float32 and the difference is rounded once; with wider inputs the bias
    is rounded first and the compensation (and bias_d's steps) are subtracted
    before a second rounding. Returns ``(analog_steps, digital_steps)``, both
    integer valued (float64).
    """
    acc = bias_accumulator(b, scale_x, scale_weight, xp)  # float32, as in witin_nn
    step = xp.float32(BIAS_ROW_INPUT)
    digital = xp.zeros(acc.shape, dtype=xp.float64)
    if x_quant_bits <= ANALOG_INPUT_BITS:
        if shift_comp is not None:
            acc = acc - _f32(shift_comp, xp)  # float32 difference, rounded like witin_nn's
        steps = _round(acc / step, xp).astype(xp.float64)
    else:
        if bias_d is not None:
            digital = digital + _round(bias_units(bias_d, scale_x, scale_weight, xp), xp)
        comp = 0.0 if shift_comp is None else shift_comp
        steps = _round(_round(acc / step, xp).astype(xp.float64) - digital - comp / BIAS_ROW_INPUT, xp)
    return clip_bias_units(steps, bias_row_N, xp), digital


def split_input(nx, xp, analog_bits: int = ANALOG_INPUT_BITS, twos_complement: bool = False):
    """Split NPU_x into the low ``analog_bits`` (analog array) and the rest (digital), sign-magnitude for PN.

    Guide 2.5: a 10-bit input 0..1023 becomes NPU_x = low 8 bits (0..255) and
    NPU_x_d = the high 2 bits times 256; ``low + high == nx``.
    """
    step = 2.0**analog_bits
    if twos_complement:  # signed inputs: the low bits stay non-negative
        low = nx - xp.floor(nx / step) * step
        return low, nx - low
    mag = xp.abs(nx)
    low = xp.sign(nx) * xp.fmod(mag, step)
    return low, nx - low


def output_divisor(scale_x: float, scale_weight: float, g_algo: float, xp):
    """witin_nn's float32 divisor of an accumulator, ``(scale_x*scale_weight) * G_algo`` (``G_algo``: witin's
    layer_config field, default 1; its scale product times G, see docs/witin.md)."""
    return xp.float32(scale_product(scale_x, scale_weight)) * xp.float32(g_algo)


def output_units(accs, scale_x: float, scale_weight: float, xp, g_algo: float = 1.0):
    """witin_nn's float32 ``acc / (scale_x*scale_weight*G_algo)``; a tuple of accumulators (PN conv passes)
    is divided pass by pass and the quotients are summed in float32."""
    if not isinstance(accs, (list, tuple)):
        accs = (accs,)
    p = output_divisor(scale_x, scale_weight, g_algo, xp)
    total = None
    for acc in accs:
        q = _f32(acc, xp) / p
        total = q if total is None else total + q
    return total


def quantize_output(acc, scale_x: float, scale_weight: float, scale_y: float, y_quant_bits: int, xp,
                    fp_clip: float | None = None, g_algo: float = 1.0):
    """NPU_y = round(clip(acc / (scale_x*scale_weight*G_algo) * scale_y, -2**(yb-1), 2**(yb-1)-1)).

    Computed in float32 in witin_nn's order (divide by the scale product, then
    multiply by scale_y), which is what makes results bit exact when the scales
    are not powers of two (then it is not ``round(acc / g_value)``). ``acc`` may
    be a tuple of accumulators (see :func:`output_units`). ``fp_clip`` (witin's
    ``output_fp_clip``) clips ``acc / (scale_x*scale_weight*G_algo)`` to ``±fp_clip`` first.
    """
    half = 2.0 ** (y_quant_bits - 1)
    units = output_units(acc, scale_x, scale_weight, xp, g_algo)
    if fp_clip is not None:
        units = xp.clip(units, -xp.float32(fp_clip), xp.float32(fp_clip))
    y = units * xp.float32(scale_y)
    return _round(xp.clip(y, -half, half - 1), xp).astype(xp.float64)


def digital_divisor(scale_x: float, scale_weight: float, scale_y: float, g_algo: float = 1.0) -> float:
    """The divisor of the digital part of a split computation: witin_nn rounds ``g_value * G_algo`` (float32)
    to an integer (half to even: 204.8 -> 205, 312.5 -> 312, 0.5 -> 0) before dividing by it in float32."""
    return float(np.round(output_divisor(scale_x, scale_weight, g_algo, np) / np.float32(scale_y)))


def combine_outputs(analog_acc, digital_acc, scale_x: float, scale_weight: float, scale_y: float, y_quant_bits: int, xp,
                    g_algo: float = 1.0):
    """Final NPU_y of a split computation (guide 2.5, step 4).

    The analog part is quantized with :func:`quantize_output` (rounded and
    clipped); the digital part is ``round(acc_d / round(g_value))`` in float32
    (see :func:`digital_divisor`); their sum is clipped to ``y_quant_bits``.
    Where ``round(g_value)`` is 0 witin_nn divides by zero; so does this
    (``acc_d = 0`` gives NaN, other values saturate), to stay bit exact.
    """
    half = 2.0 ** (y_quant_bits - 1)
    ya = quantize_output(analog_acc, scale_x, scale_weight, scale_y, y_quant_bits, xp, g_algo=g_algo)
    g = xp.float32(digital_divisor(scale_x, scale_weight, scale_y, g_algo))
    with np.errstate(divide="ignore", invalid="ignore"):
        yd = _round(_f32(digital_acc, xp) / g, xp).astype(xp.float64)
    return xp.clip(ya + yd, -half, half - 1)


# ----------------------------------------------------------------- noise
#: NORMAL noise model: per-level weight-noise std ``k*|NPU_w| + b`` in weight LSBs (fitted, see docs/witin_noise.md).
NOISE_K_PER_LEVEL = 0.015605
NOISE_B_PER_LEVEL = 0.3145


def noise_coefficients(noise_level: int) -> tuple[float, float]:
    """``(k, b)`` of the NORMAL model: a cell holding NPU_w has read-noise std ``k*|NPU_w| + b``."""
    lvl = int(noise_level)
    if not 0 <= lvl <= 9:
        raise ModelError(f"witin noise_level must be in 0..9, got {noise_level!r}")
    return NOISE_K_PER_LEVEL * lvl, NOISE_B_PER_LEVEL * lvl


def weight_noise_std(nw, noise_level: int, xp):
    k, b = noise_coefficients(noise_level)
    return k * xp.abs(nw) + b


def bias_noise_var(analog_steps, bias_row_N: int, noise_level: int, xp):
    """Output-noise variance from the bias rows: N rows of weight ``steps/N`` driven at 128."""
    k, b = noise_coefficients(noise_level)
    per_row = xp.abs(analog_steps) / bias_row_N
    return bias_row_N * (BIAS_ROW_INPUT * (k * per_row + b)) ** 2
