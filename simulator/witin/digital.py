"""witin_nn's quantized digital operators (eval mode, ``use_quantization = True``).

witin_nn 0.1.3 runs the operators that are not CIM products (WitinSigmoid,
WitinTanh, WitinGELU, WitinPReLU, WitinElementAdd / Mul / Divide, WitinSqrt,
WitinMean, WitinCat, WitinBatchNorm2d, WitinMatMul, WitinHypot, WitinInvSqrt,
WitinClnBn2d) on integers too: every input is quantized with its own
auto scale, the operator works on the integers (or on their dequantized
float32 values), and the result is quantized to ``y_quant_bits``. The rules
below were found by tracing witin_nn's torch calls and are pinned by
``tests/fixtures/witin_digital.npz`` (``scripts/make_witin_fixtures.py``).

Notation (all arithmetic in float32 like witin_nn, rounding half to even):

* ``s(io, b) = 2**(b-1) / 2**ceil(log2(io))`` a signed auto scale of ``b``
  bits, ``u(io, b) = 2 * s(io, b)`` an unsigned one;
* ``Q(x, s, b) = clip(round(x*s), -2**(b-1), 2**(b-1)-1)`` (signed) and
  ``U(x, s, b) = clip(round(x*s), 0, 2**b-1)`` (unsigned);
* ``xb, yb, wb`` = x_quant_bits, y_quant_bits, weight_quant_bits;
  ``lb, rb`` = x_left_quant_bits, x_right_quant_bits (the two inputs of a
  binary operator); ``L`` = sqrt_left_shift_bits.

Operators (``sx = s(io_max_x, xb)``, ``sy = s(io_max_y, yb)`` unless said):

==================  ==========================================================
Sigmoid             ``U(sigmoid(Q(x,sx,xb)/sx), sy, yb) / sy`` (signed scale, unsigned range)
Tanh, GELU          ``Q(f(Q(x,sx,xb)/sx), sy, yb) / sy``; Sigmoid and Tanh clip ``x`` to ``±x_clip``
                    first (also in float mode); GELU with ``gelu_shift_num = k`` (not 0):
                    ``Q(gelu(Q(x,sx,xb)/sx) + k, sy', yb+1) / sy'``, ``sy' = s(io_max_y, yb+1)``
PReLU               slope ``a = Q(w, sw, wb)/sw`` (``sw = s(io_max_weight, wb)``);
                    ``Q(prelu(Q(x)/sx, a), sy, yb) / sy``
ElementAdd          both inputs on the smaller input scale ``s = min(s1, s2)``;
                    ``Q((q1 + q2) / (s/sy), sy, yb) / sy``
ElementMul          ``Q(q1*q2 / (s1*s2/sy), sy, yb) / sy`` (integer product)
ElementDivide       ``r = round(q1 / (q2 + 1e-8))``, ``v = clamp(r/s1*s2, ±8)``;
                    ``Q(v, sy, yb) / sy``
Sqrt                ``q = U(x, ux, xb)`` (``ux = u(io_max_x, xb)``);
                    ``r = isqrt(q * 2**L)``; ``U(r / 2**(L/2) / sqrt(ux), uy, yb) / uy``
InvSqrt             ``q = U(x, ux, xb)``, ``r = isqrt(q * 2**L)``;
                    ``U((2**(L/2+15)/r) / 2**15 * sqrt(ux), uy, yb) / uy`` (0 where q = 0)
Hypot               ``q1, q2 = Q(x1, s1, lb), Q(x2, s1, lb)``;
                    ``t = clip(q1**2 + q2**2, 0, 2**(2*lb) - 1)``, ``r = isqrt(t * 2**L)``;
                    ``U(r / 2**(L/2) / s1, uy, yb) / uy``
Mean                ``round(clip(sum(Q(x)), ±2**(M-1)) / n) / sx`` (M = mean_sum_quant_bits; no
                    output quantization)
Cat                 each input on ``t = max(lb, rb)`` bits: ``k = 2**(t-b)``,
                    ``d = Q(x*k, s, t)/k/s``; ``Q(cat(d1, d2), sy, yb) / sy``
MatMul              ``Q((q1 @ q2) / s1 / s2 * sy, sy, yb) / sy``
BatchNorm2d         ``a = gamma / sqrt(var+eps)``, ``b = beta - mean*gamma/sqrt(var+eps)``;
                    ``qa = Q(a, sw, wb)``, ``qb = clip(round(b*sw*sx), ±2**(xb+wb-1))``;
                    ``Q((qa*q + qb) / (sw*sx/sy), sy, yb) / sy``
ClnBn2d             normalisation of each (n, h) over C and W:
                    ``m = Q(round(sum(q)/n))``, ``v = clip(round(sum((q-m)**2)/n), 0, 2**(2*xb)-1)``,
                    ``r = isqrt(v * 2**L)``, ``Q((q - m) * (2**(L/2)/r), sy, yb) / sy`` (0 where v = 0);
                    ``cln_simple = True``: the same with ``m = 0``
==================  ==========================================================

With ``use_auto_scale = False`` the scales are the layer's fixed ``scale_x``,
``scale_y``, ``scale_weight``, ``scale_x_left``, ``scale_x_right``.
"""
from __future__ import annotations

import math
from typing import Any, Sequence

import numpy as np

from simulator.errors import ModelError

#: witin_nn class name -> our short operator name
OPS = {
    "WitinSigmoid": "sigmoid", "WitinTanh": "tanh", "WitinGELU": "gelu", "WitinPReLU": "prelu",
    "WitinElementAdd": "add", "WitinElementMul": "mul", "WitinElementDivide": "divide", "WitinSqrt": "sqrt",
    "WitinMean": "mean", "WitinCat": "cat", "WitinBatchNorm2d": "batchnorm", "WitinMatMul": "matmul",
    "WitinHypot": "hypot", "WitinInvSqrt": "invsqrt", "WitinClnBn2d": "clnbn",
}

#: layer_config fields a digital operator reads (witin_nn names)
CONFIG_KEYS = (
    "use_quantization", "use_auto_scale", "x_quant_bits", "y_quant_bits", "weight_quant_bits",
    "x_left_quant_bits", "x_right_quant_bits", "scale_x", "scale_y", "scale_weight", "scale_x_left",
    "scale_x_right", "mean_sum_quant_bits", "sqrt_left_shift_bits", "x_clip", "gelu_shift_num", "cln_simple",
)

DEFAULTS: dict[str, Any] = {
    "use_quantization": False, "use_auto_scale": True, "x_quant_bits": 8, "y_quant_bits": 8,
    "weight_quant_bits": 8, "x_left_quant_bits": 8, "x_right_quant_bits": 8, "scale_x": 1.0, "scale_y": 1.0,
    "scale_weight": 1.0, "scale_x_left": 1.0, "scale_x_right": 1.0, "mean_sum_quant_bits": 55,
    "sqrt_left_shift_bits": 8, "x_clip": None, "gelu_shift_num": None, "cln_simple": False,
}

F32 = np.float32

#: WitinElementDivide clamps the dequantized quotient to +-8 (witin_nn 0.1.3, for every bit width and scale)
DIVIDE_LIMIT = 8.0


def _f32(a):
    return np.asarray(a, dtype=F32)


def auto_scale(io_max: float, bits: int, where: str, what: str) -> float:
    """``2**(bits-1) / 2**ceil(log2(io_max))`` with the log in float32 (as witin_nn)."""
    v = float(io_max)
    if not math.isfinite(v) or v <= 0:
        raise ModelError(f"{where}: witin {what} = {v:g} cannot give a scale (a positive, finite max |value| is needed)")
    e = float(np.ceil(np.log2(F32(v))))
    return float(2.0 ** (bits - 1) / 2.0**e)


def q_signed(x, s: float, bits: int):
    half = 2.0 ** (bits - 1)
    return np.clip(np.round(_f32(x) * F32(s)), -half, half - 1).astype(F32)


def q_unsigned(x, s: float, bits: int):
    return np.clip(np.round(_f32(x) * F32(s)), 0, 2.0**bits - 1).astype(F32)


def isqrt(v) -> np.ndarray:
    """Floor integer square root of non-negative integers (int64 array)."""
    v = np.asarray(v, dtype=np.int64)
    r = np.floor(np.sqrt(v.astype(np.float64))).astype(np.int64)
    r = np.where(r * r > v, r - 1, r)  # float rounding guards (exact for v < 2**52)
    r = np.where((r + 1) * (r + 1) <= v, r + 1, r)
    return r


#: operator -> the DigitalOp method computing it in quantization mode
_QUANTIZED = {
    "sigmoid": "_q_activation",
    "tanh": "_q_activation",
    "gelu": "_q_activation",
    "prelu": "_q_prelu",
    "add": "_q_add",
    "mul": "_q_mul",
    "divide": "_q_divide",
    "sqrt": "_q_sqrt",
    "invsqrt": "_q_invsqrt",
    "hypot": "_q_hypot",
    "mean": "_q_mean",
    "cat": "_q_cat",
    "matmul": "_q_matmul",
    "batchnorm": "_q_batchnorm",
    "clnbn": "_q_clnbn",
}


class DigitalOp:
    """One witin digital operator with its resolved scales.

    ``attrs`` holds witin_nn's layer_config values under their names and the
    recorded ``io_max_x`` / ``io_max_x1`` / ``io_max_x2`` / ``io_max_y`` /
    ``io_max_weight``; ``op`` is a key of :data:`OPS` or its value.
    """

    def __init__(self, op: str, attrs: dict, where: str = "witin op"):
        self.op = OPS.get(op, op)
        if self.op not in OPS.values():
            raise ModelError(f"{where}: unknown witin digital operator {op!r}")
        self.where = where
        v = {k: attrs.get(k) if attrs.get(k) is not None else DEFAULTS[k] for k in CONFIG_KEYS}
        self.quantized = bool(v["use_quantization"])
        self.xb, self.yb, self.wb = int(v["x_quant_bits"]), int(v["y_quant_bits"]), int(v["weight_quant_bits"])
        self.lb, self.rb = int(v["x_left_quant_bits"]), int(v["x_right_quant_bits"])
        self.M = int(v["mean_sum_quant_bits"])
        self.L = int(v["sqrt_left_shift_bits"])
        # Sigmoid / Tanh: the float input clipped to +-x_clip first (both modes); GELU in quantization mode:
        # gelu + gelu_shift_num on yb+1 bits (witin_nn 0.1.3 ignores both elsewhere, and a shift of 0)
        self.x_clip = float(v["x_clip"]) if v["x_clip"] is not None and self.op in ("sigmoid", "tanh") else None
        shift = float(v["gelu_shift_num"]) if v["gelu_shift_num"] is not None else 0.0
        self.gelu_shift = shift if shift and self.op == "gelu" and self.quantized else None
        self.gelu_yb = self.yb + 1 if self.gelu_shift is not None else self.yb
        self.cln_simple = bool(v["cln_simple"])  # ClnBn2d without the mean: m = 0
        auto = bool(v["use_auto_scale"])
        self.attrs = attrs

        def scale(io_key, bits, fixed_key, unsigned=False):
            if not auto:
                return float(v[fixed_key])
            if attrs.get(io_key) is None:
                raise ModelError(f"{where}: use_auto_scale needs witin {io_key!r} (the layer's autoscale io_max)")
            s = auto_scale(attrs[io_key], bits, where, io_key)
            return 2 * s if unsigned else s

        op_ = self.op
        self.s = {}
        if not self.quantized:
            return
        if op_ in ("sigmoid", "tanh", "gelu", "prelu", "mean", "batchnorm", "clnbn"):
            self.s["x"] = scale("io_max_x", self.xb, "scale_x")
        if op_ in ("sqrt", "invsqrt"):
            self.s["x"] = scale("io_max_x", self.xb, "scale_x", unsigned=True)
        if op_ in ("add", "mul", "divide", "cat", "matmul", "hypot"):
            self.s["x1"] = scale("io_max_x1", self.lb, "scale_x_left")
        if op_ in ("add", "mul", "divide", "cat", "matmul"):
            self.s["x2"] = scale("io_max_x2", self.rb, "scale_x_right")
        if op_ != "mean":
            self.s["y"] = scale("io_max_y", self.gelu_yb, "scale_y", unsigned=op_ in ("sqrt", "invsqrt", "hypot"))
        if op_ in ("prelu", "batchnorm"):
            self.s["w"] = scale("io_max_weight", self.wb, "scale_weight")

    # ------------------------------------------------------------------
    def _out(self, y, unsigned=False):
        sy = self.s["y"]
        q = q_unsigned(y, sy, self.yb) if unsigned else q_signed(y, sy, self.yb)
        return q / F32(sy)

    def __call__(self, inputs: Sequence, *, weights: dict | None = None, axis=None, eps: float = 1e-5):
        """Apply the operator to float inputs (NumPy arrays); returns float32.

        ``axis``: the reduced axis of Mean, the concatenation axis of Cat, the
        channel axis of BatchNorm2d, ``(channel, width)`` axes of ClnBn2d.
        ``weights``: PReLU ``alpha``; BatchNorm ``gamma``, ``beta``,
        ``moving_mean``, ``moving_variance``.
        """
        xs = [_f32(a) for a in inputs]
        if self.x_clip is not None:
            xs[0] = np.clip(xs[0], -F32(self.x_clip), F32(self.x_clip))
        w = weights or {}
        if not self.quantized:
            return self._float(xs, w, axis, eps)
        return getattr(self, _QUANTIZED[self.op])(self.op, xs, w, axis, eps)

    def _q_activation(self, op: str, xs: list, w: dict, axis, eps: float):
        sx = self.s["x"]
        xd = q_signed(xs[0], sx, self.xb) / F32(sx)
        if op == "sigmoid":
            return q_unsigned(_sigmoid(xd), self.s["y"], self.yb) / F32(self.s["y"])
        if self.gelu_shift is not None:
            sy = self.s["y"]
            return q_signed(_gelu(xd) + F32(self.gelu_shift), sy, self.gelu_yb) / F32(sy)
        return self._out(np.tanh(xd) if op == "tanh" else _gelu(xd))

    def _q_prelu(self, op: str, xs: list, w: dict, axis, eps: float):
        sx, sw = self.s["x"], self.s["w"]
        xd = q_signed(xs[0], sx, self.xb) / F32(sx)
        a = q_signed(w["alpha"], sw, self.wb) / F32(sw)
        a = _bcast_channel(a, xd, axis)
        return self._out(np.where(xd >= 0, xd, a * xd).astype(F32))

    def _q_add(self, op: str, xs: list, w: dict, axis, eps: float):
        s1, s2, sy = self.s["x1"], self.s["x2"], self.s["y"]
        s = min(s1, s2)
        q1, q2 = q_signed(xs[0], s, self.lb), q_signed(xs[1], s, self.rb)
        lim = 2.0 ** (max(self.lb, self.rb) + 8)
        acc = np.clip(q1 + q2, -lim, lim - 1)
        ratio = F32(s) / F32(sy)
        return self._q_div(acc, ratio)

    def _q_mul(self, op: str, xs: list, w: dict, axis, eps: float):
        s1, s2, sy = self.s["x1"], self.s["x2"], self.s["y"]
        q1, q2 = q_signed(xs[0], s1, self.lb), q_signed(xs[1], s2, self.rb)
        prod = q1.astype(np.int64) * q2.astype(np.int64)
        g = (F32(s1) * F32(s2)) / F32(sy)
        return self._q_div(prod, g)

    def _q_divide(self, op: str, xs: list, w: dict, axis, eps: float):
        s1, s2 = self.s["x1"], self.s["x2"]
        q1, q2 = q_signed(xs[0], s1, self.lb), q_signed(xs[1], s2, self.rb)
        with np.errstate(divide="ignore", invalid="ignore"):
            r = np.round(q1 / (q2 + F32(1e-8))).astype(F32)
        v = (r / F32(s1)) * F32(s2)
        c = F32(DIVIDE_LIMIT)
        return self._out(np.clip(v, -c, c))

    def _q_sqrt(self, op: str, xs: list, w: dict, axis, eps: float):
        ux = self.s["x"]
        q = q_unsigned(xs[0], ux, self.xb)
        r = isqrt(q.astype(np.int64) << self.L).astype(F32)
        v = (r / F32(2.0 ** (self.L / 2))) / F32(np.sqrt(F32(ux)))
        return self._out(v, unsigned=True)

    def _q_invsqrt(self, op: str, xs: list, w: dict, axis, eps: float):
        ux = self.s["x"]
        q = q_unsigned(xs[0], ux, self.xb)
        r = isqrt(q.astype(np.int64) << self.L).astype(F32)
        num = F32(2.0 ** (self.L / 2 + 15))
        with np.errstate(divide="ignore", invalid="ignore"):
            t = (num / r) / F32(2.0**15)
        v = t * F32(np.sqrt(F32(ux)))
        out = q_unsigned(v, self.s["y"], self.yb)
        out[q == 0] = 0
        return out / F32(self.s["y"])

    def _q_hypot(self, op: str, xs: list, w: dict, axis, eps: float):
        s1 = self.s["x1"]
        q1, q2 = q_signed(xs[0], s1, self.lb), q_signed(xs[1], s1, self.lb)
        t = np.clip(q1 * q1 + q2 * q2, 0, 2.0 ** (2 * self.lb) - 1)
        r = isqrt(t.astype(np.int64) << self.L).astype(F32)
        v = (r / F32(2.0 ** (self.L / 2))) / F32(s1)
        return self._out(v, unsigned=True)

    def _q_mean(self, op: str, xs: list, w: dict, axis, eps: float):
        sx = self.s["x"]
        q = q_signed(xs[0], sx, self.xb)
        lim = 2.0 ** (self.M - 1)
        ssum = np.clip(q.sum(axis=axis, keepdims=True, dtype=F32), -lim, lim - 1)
        n = q.shape[axis]
        return np.round(ssum / F32(n)).astype(F32) / F32(sx)

    def _q_cat(self, op: str, xs: list, w: dict, axis, eps: float):
        s1, s2 = self.s["x1"], self.s["x2"]
        top = max(self.lb, self.rb)
        parts = []
        for x, s, bits in ((xs[0], s1, self.lb), (xs[1], s2, self.rb)):
            k = F32(2.0 ** (top - bits))  # the narrower input is widened to the wider one's bits
            parts.append((q_signed(x * k, s, top) / k) / F32(s))
        a, b = parts
        return self._out(np.concatenate([a, b], axis=axis))

    def _q_matmul(self, op: str, xs: list, w: dict, axis, eps: float):
        s1, s2 = self.s["x1"], self.s["x2"]  # the output scale is applied by _out
        q1, q2 = q_signed(xs[0], s1, self.lb), q_signed(xs[1], s2, self.rb)
        acc = np.matmul(q1.astype(np.float64), q2.astype(np.float64)).astype(F32)
        return self._out((acc / F32(s1)) / F32(s2))

    def _q_batchnorm(self, op: str, xs: list, w: dict, axis, eps: float):
        sx, sw, sy = self.s["x"], self.s["w"], self.s["y"]
        a, b = bn_affine(w, eps)
        q = q_signed(xs[0], sx, self.xb)
        qa = q_signed(a, sw, self.wb)
        lim = 2.0 ** (self.xb + self.wb - 1)
        qb = np.clip(np.round((b * F32(sw)) * F32(sx)), -lim, lim - 1).astype(F32)
        acc = _bcast_channel(qa, q, axis) * q + _bcast_channel(qb, q, axis)
        g = (F32(sw) * F32(sx)) / F32(sy)
        return self._q_div(acc, g)

    def _q_clnbn(self, op: str, xs: list, w: dict, axis, eps: float):
        sx = self.s["x"]
        q = q_signed(xs[0], sx, self.xb)
        ax = tuple(axis)
        n = int(np.prod([q.shape[a] for a in ax]))
        half = 2.0 ** (self.xb - 1)
        m = np.clip(np.round(q.sum(axis=ax, keepdims=True, dtype=F32) / F32(n)), -half, half - 1).astype(F32)
        d = q if self.cln_simple else q - m
        var = np.clip(np.round((d * d).sum(axis=ax, keepdims=True, dtype=F32) / F32(n)), 0, 2.0 ** (2 * self.xb) - 1)
        r = isqrt(var.astype(np.int64) << self.L).astype(F32)
        with np.errstate(divide="ignore", invalid="ignore"):
            inv = (F32(2.0 ** (self.L / 2 + 19)) / r) / F32(2.0**19)
        inv = np.where(var == 0, F32(0), inv).astype(F32)
        return self._out(d * inv)

    def _q_div(self, acc, g):
        """``Q(acc / g, sy, yb) / sy`` where ``acc`` is already in output-scale integer units times g."""
        sy = self.s["y"]
        half = 2.0 ** (self.yb - 1)
        with np.errstate(divide="ignore", invalid="ignore"):
            v = np.asarray(acc).astype(F32) / F32(g) if np.asarray(acc).dtype != np.int64 else (np.asarray(acc) / F32(g)).astype(F32)
        return np.clip(np.round(v), -half, half - 1).astype(F32) / F32(sy)

    def _float(self, xs, w, axis, eps):
        """``use_quantization = False``: the plain float32 operator."""
        op = self.op
        x = xs[0]
        if op == "sigmoid":
            return _sigmoid(x)
        if op == "tanh":
            return np.tanh(x)
        if op == "gelu":
            return _gelu(x)
        if op == "prelu":
            a = _bcast_channel(_f32(w["alpha"]), x, axis)
            return np.where(x >= 0, x, a * x).astype(F32)
        if op == "add":
            return xs[0] + xs[1]
        if op == "mul":
            return xs[0] * xs[1]
        if op == "divide":
            return xs[0] / xs[1]
        if op == "sqrt":
            return np.sqrt(x)
        if op == "invsqrt":
            return F32(1) / np.sqrt(x)
        if op == "hypot":
            return np.hypot(xs[0], xs[1])
        if op == "mean":
            return x.mean(axis=axis, keepdims=True, dtype=F32)
        if op == "cat":
            return np.concatenate(xs, axis=axis)
        if op == "matmul":
            return np.matmul(xs[0], xs[1])
        if op == "batchnorm":
            a, b = bn_affine(w, eps)
            return _bcast_channel(a, x, axis) * x + _bcast_channel(b, x, axis)
        if op == "clnbn":
            ax = tuple(axis)
            if self.cln_simple:  # witin_nn 0.1.3's float cln_simple: x / sqrt(mean(x**2) + eps)
                return x / np.sqrt((x * x).mean(axis=ax, keepdims=True) + F32(eps))
            m = x.mean(axis=ax, keepdims=True)
            v = ((x - m) ** 2).mean(axis=ax, keepdims=True)
            return (x - m) / np.sqrt(v)
        raise ModelError(f"{self.where}: witin operator {op!r} is not implemented")  # pragma: no cover


def bn_affine(w: dict, eps: float):
    """Batch norm as ``a*x + b`` in witin_nn's float32 order."""
    var = _f32(w["moving_variance"])
    mean = _f32(w["moving_mean"])
    gamma = _f32(w["gamma"]) if w.get("gamma") is not None else np.ones_like(var)
    beta = _f32(w["beta"]) if w.get("beta") is not None else np.zeros_like(var)
    sd = np.power(var + F32(eps), F32(0.5)).astype(F32)
    a = gamma / sd
    b = beta - (mean * gamma) / sd
    return a.astype(F32), b.astype(F32)


def _bcast_channel(v, x, axis):
    v = _f32(v).reshape(-1)
    if v.size == 1 or axis is None:
        return v.reshape(()) if v.size == 1 else v
    shape = [1] * x.ndim
    shape[axis % x.ndim] = v.size
    return v.reshape(shape)


def _sigmoid(x):
    x = _f32(x)
    return (1.0 / (1.0 + np.exp(-x.astype(np.float64)))).astype(F32)


def _gelu(x):
    from scipy.special import erf

    x64 = _f32(x).astype(np.float64)
    return (0.5 * x64 * (1.0 + erf(x64 / math.sqrt(2.0)))).astype(F32)


# ------------------------------------------------------------ executor glue
#: layer types that exist only for witin operators (float versions come from :meth:`DigitalOp._float`)
WITIN_ONLY_TYPES = {"MatMul": "matmul", "Hypot": "hypot", "InvSqrt": "invsqrt", "ClnBn2d": "clnbn"}


def layer_op(layer, where: str | None = None) -> DigitalOp:
    """The :class:`DigitalOp` of an imported witin digital layer (``attrs["witin_digital"]``)."""
    attrs = dict(layer.attrs.get("witin_digital") or {})
    name = layer.attrs.get("witin_op") or WITIN_ONLY_TYPES.get(layer.type)
    return DigitalOp(name, attrs, where or f"layer {layer.name!r} ({name})")


def run_layer(layer, ins: list, xp, ideal: bool = False):
    """Execute a witin digital layer on internal (NHWC) activations.

    ``ideal`` gives the float operator (the ideal reference of a simulation);
    otherwise the operator runs as witin_nn computes it (quantized when the
    layer's ``use_quantization`` is true). Computed with NumPy on the host
    (these are small element-wise operators); the result has the inputs' dtype.
    """
    op = layer_op(layer)
    dtype = ins[0].dtype
    host = [np.asarray(a.get() if hasattr(a, "get") else a) for a in ins]
    c = layer.config
    t = layer.type
    axis = None
    if t == "Mean":
        ax = c.get("axis")
        if isinstance(ax, (list, tuple)):
            if len(ax) != 1:
                raise ModelError(f"layer {layer.name!r}: a witin mean reduces one axis, got {ax}")
            ax = ax[0]
        axis = int(ax)
    elif t == "Concatenate":
        axis = int(c.get("axis", -1))
    elif t in ("BatchNormalization", "PReLU"):
        axis = -1
    elif t == "ClnBn2d":
        axis = (3, 2)  # NCHW (C, W) in the internal NHWC layout
    weights = dict(layer.weights)
    four_d_matmul = t == "MatMul" and host[0].ndim == 4
    if four_d_matmul:  # torch multiplies the last two NCHW axes (H, W)
        host = [a.transpose(0, 3, 1, 2) for a in host]
    if ideal or not op.quantized:
        out = op._float([_f32(a) for a in host], weights, axis, float(c.get("epsilon", 1e-5)))
    else:
        out = op(host, weights=weights, axis=axis, eps=float(c.get("epsilon", 1e-5)))
    if four_d_matmul:
        out = out.transpose(0, 2, 3, 1)
    if t == "Mean" and not c.get("keepdims", False):
        out = np.squeeze(out, axis=axis)
    return xp.asarray(np.ascontiguousarray(out), dtype=dtype)
