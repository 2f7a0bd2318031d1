"""Uniform quantization: the one module for equally spaced levels (manual 6.2.1, 9.2, 9.3).

Every equally spaced quantizer of the simulator is defined here: the ADCs and
DACs (:class:`UniformQuantizer`), the integer codes of bit-sliced inputs and
of the core hierarchy's weights (:func:`integer_codes`,
:func:`quantize_normalized`), the standalone weight quantizer
(:func:`uniform_levels`, :func:`quantize_uniform`) and the level tables the
calibration optimizers evaluate (:func:`quantizer_levels`).

Conventions shared by all of them
---------------------------------
* Units: a quantizer works in the units of its input, whatever they are --
  column currents in ``G_max * V_full`` for an array's ADC, algorithmic
  activations for a DAC, normalized weights ``w = W / W_max`` for weight codes.
  The range ``(lo, hi)`` and the step are in those same units.
* Rounding: to the nearest level with ``rint`` (ties to the even level index).
* Clipping: inputs outside the range go to the end levels.
* ``bits = 0`` is the identity (no quantization).

Two grids over a range ``(lo, hi)`` with ``bits`` bits:

* zero-centred (``zero_centred=True``, the manual's ADC/DAC, 9.3.1): a signed
  range (``lo < 0``) has ``2**bits - 1`` levels ``k * step``, ``step = (hi -
  lo) / (2**bits - 2)``, shifted by less than half a step so that one level
  sits exactly at zero ("range zero-centering"); an unsigned range
  (``lo >= 0``) has ``2**bits`` levels ``lo + k * step``, ``step = (hi - lo) /
  (2**bits - 1)``;
* plain (``zero_centred=False``, CrossSim's QuantizerADC/DAC): ``2**bits``
  levels ``lo + k * step`` from ``lo`` to ``hi`` inclusive whatever the sign
  of ``lo``.

Weight codes (:func:`quantize_normalized`, normalized weights in ``[-1, 1]``):
BALANCED uses the zero-centred signed grid of ``weight_bits`` bits over
``[-1, 1]`` (``2**B - 1`` levels, ``W_int = rint(w * (2**(B-1) - 1))``), OFFSET
the two's-complement grid ``W_int = clip(rint(w * 2**(B-1)), -2**(B-1),
2**(B-1) - 1)`` (``2**B`` levels). The standalone :func:`quantize_uniform`
spreads any number ``n`` of levels over ``[-wmax, wmax]`` (both ends are
levels; odd ``n`` has one at 0).
"""
from __future__ import annotations

import math
from dataclasses import dataclass

import numpy

from simulator.errors import ConfigError
from simulator.quantization._common import array_module, check_finite_positive, check_n_levels, float_dtype

__all__ = [
    "UniformQuantizer", "quantizer_levels", "symmetric_range", "integer_codes", "quantize_normalized", "uniform_levels",
    "quantize_uniform",
]


@dataclass(frozen=True)
class UniformQuantizer:
    """``bits`` bits over ``(lo, hi)`` (input units), zero-centred or plain (module notes)."""

    bits: int
    lo: float = 0.0
    hi: float = 1.0
    zero_centred: bool = True

    def __post_init__(self) -> None:
        if self.bits > 0 and not self.hi > self.lo:
            raise ValueError(f"quantizer range must have lo < hi, got ({self.lo}, {self.hi})")

    @property
    def enabled(self) -> bool:
        return self.bits > 0

    @property
    def signed(self) -> bool:
        """Zero-centred signed grid (``lo < 0``): ``2**bits - 1`` levels ``k * step``, one at 0."""
        return self.zero_centred and self.lo < 0

    @property
    def n_levels(self) -> int:
        return 2**self.bits - 1 if self.signed else 2**self.bits

    @property
    def step(self) -> float:
        """Distance between adjacent levels (input units)."""
        return (self.hi - self.lo) / (self.n_levels - 1) if self.n_levels > 1 else (self.hi - self.lo)

    @property
    def k_range(self) -> tuple[int, int]:
        """Integer level indices (kmin, kmax): level k sits at ``k * step`` (signed) or ``lo + k * step``."""
        if self.signed:
            kmin = math.floor(self.lo / self.step + 0.5)
            return kmin, kmin + self.n_levels - 1
        return 0, self.n_levels - 1

    def levels(self, xp):
        """All levels, ascending, as a float array of ``xp``."""
        kmin, kmax = self.k_range
        k = xp.arange(kmin, kmax + 1, dtype=float)
        return k * self.step if self.signed else self.lo + k * self.step

    def __call__(self, y, xp, out=None):
        """Quantize ``y`` (any shape) to the nearest level, clipping at the ends.

        The arithmetic runs in place in one buffer: ``out`` when given (``out=y``
        overwrites the input), else a single new array. Results are identical to
        ``clip(rint(y / step), kmin, kmax) * step`` (``+ lo`` when unsigned).
        """
        if not self.enabled:
            return y
        t = self.codes(y, xp, out=out)
        t *= self.step
        if not self.signed:
            t += self.lo
        return t

    def codes(self, y, xp, out=None):
        """The level index ``k`` of every element of ``y`` (float array of integers in :attr:`k_range`).

        ``clip(rint(y / step), kmin, kmax)`` (``(y - lo) / step`` when unsigned),
        in one buffer like :meth:`__call__`, which is ``codes * step (+ lo)``.
        """
        kmin, kmax = self.k_range
        step = self.step
        if self.signed:
            t = xp.divide(y, step, out=out)
        else:
            t = xp.subtract(y, self.lo, out=out)
            t /= step
        xp.rint(t, out=t)
        xp.clip(t, kmin, kmax, out=t)
        return t


def quantizer_levels(lo: float, hi: float, nbits: int, zero_centred: bool = True) -> numpy.ndarray:
    """The levels (NumPy float64, ascending) of ``UniformQuantizer(nbits, lo, hi, zero_centred)``.

    Raises ValueError unless ``lo < hi``.
    """
    if not hi > lo:
        raise ValueError(f"quantizer range needs lo < hi, got ({lo}, {hi})")
    return UniformQuantizer(int(nbits), lo, hi, zero_centred).levels(numpy)


def symmetric_range(lo: float, hi: float) -> tuple[float, float]:
    """``+-max(|lo|, |hi|)``: the range of a sign-magnitude converter."""
    r = max(abs(lo), abs(hi))
    return -r, r


def integer_codes(x, per_unit: float, kmin: float | None, kmax: float | None, xp, out=None):
    """Integer level codes ``clip(rint(x * per_unit), kmin, kmax)`` (float array; a bound None: no clip).

    ``per_unit``: codes per unit of ``x`` (the inverse of the step). The grid
    of bit-sliced inputs (codes ``-L .. L`` or ``0 .. L`` with ``L = 2**bits - 1``
    or ``2**(bits-1) - 1``) and of the weight codes (:func:`quantize_normalized`).
    Runs in one buffer (``out``, else one new array).
    """
    t = xp.multiply(x, per_unit, out=out)
    if out is None and (getattr(t, "ndim", 0) == 0 or t.dtype.kind != "f"):  # scalars, integer inputs
        t = xp.asarray(t, dtype=xp.float64)
    xp.rint(t, out=t)
    if kmin is not None or kmax is not None:
        xp.clip(t, kmin, kmax, out=t)
    return t


def quantize_normalized(w, weight_bits: int, style: str, xp):
    """Integer weight codes ``W_int`` of normalized weights ``w`` and the divisor ``L``: ``w_q = W_int / L``.

    BALANCED: ``L = 2**(B-1) - 1``, ``W_int = rint(w * L)`` (``w`` in ``[-1, 1]``, so
    ``2**B - 1`` codes, zero exact). OFFSET: ``L = 2**(B-1)``, ``W_int =
    clip(rint(w * L), -L, L - 1)`` (``2**B`` codes).
    """
    if style == "BALANCED":
        L = 2 ** (weight_bits - 1) - 1
        return integer_codes(w, L, None, None, xp), L
    half = 2 ** (weight_bits - 1)
    return integer_codes(w, half, -half, half - 1, xp), half


def uniform_levels(w, n_levels: int, wmax: float, *, xp=None):
    """The ``n_levels`` equally spaced levels over ``[-wmax, wmax]`` (float64, sorted, weight units).

    ``levels[k] = -wmax + k * 2 * wmax / (n - 1)``; an odd ``n`` has a level
    exactly at 0, ``n = 1`` is the single level 0. ``w`` only selects the array
    module (NumPy or CuPy) of the result. With ``wmax = max|W|`` this is
    CrossSim's ``weight_percentile = 100`` quantizer (BALANCED uses ``n =
    2**B - 1``, OFFSET ``2**B`` levels: :func:`quantize_normalized`).
    """
    xp = array_module(w, xp)
    n = check_n_levels(n_levels, "uniform_levels")
    wmax = check_finite_positive(wmax, "wmax", "uniform_levels")
    if n == 1:
        return xp.zeros(1, dtype=xp.float64)
    levels = xp.linspace(-wmax, wmax, n, dtype=xp.float64)
    if n % 2 == 1:
        levels[n // 2] = 0.0  # exactly zero, not a rounding residue
    return levels


def quantize_uniform(w, n_levels: int, wmax: float, *, xp=None):
    """Round ``w`` to the nearest of ``uniform_levels(w, n_levels, wmax)``, clipping to the range.

    Returns ``(wq, levels)``; ``wq`` has ``w``'s shape and float dtype (float64
    for integer input) and holds only values of ``levels``.
    """
    xp = array_module(w, xp)
    levels = uniform_levels(w, n_levels, wmax, xp=xp)
    w = xp.asarray(w)
    dtype = float_dtype(w, xp)
    if w.size and not bool(xp.all(xp.isfinite(w))):
        raise ConfigError("quantize_uniform: the weights contain NaN or infinite values")
    n = levels.shape[0]
    if n == 1:
        return xp.zeros(w.shape, dtype=dtype), levels
    step = 2.0 * float(wmax) / (n - 1)
    idx = xp.clip(xp.rint((w.astype(xp.float64) + float(wmax)) / step), 0, n - 1).astype(xp.int64)
    return levels[idx].astype(dtype), levels
