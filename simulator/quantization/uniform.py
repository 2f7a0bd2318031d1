"""Uniform (equally spaced, symmetric) weight quantization (manual 6.2.1).

``n`` levels are spread evenly over ``[-wmax, wmax]``::

    levels[k] = -wmax + k * 2 * wmax / (n - 1),   k = 0 .. n-1

so both end points are levels and an odd ``n`` has a level exactly at 0 (an
even ``n`` has none). ``n = 1`` is the single level ``0``. A weight is rounded
to the nearest level (ties to the even level index, as ``rint`` does) and
weights outside the range are clipped to the end levels. With ``wmax =
max|W|`` this is CrossSim's ``weight_percentile = 100`` quantizer; for
``weight_bits = B`` the BALANCED style uses ``n = 2**B - 1`` and OFFSET uses
``2**B`` levels (see :mod:`simulator.cores.mapping` for those exact rules).
"""
from __future__ import annotations

from simulator.errors import ConfigError
from simulator.quantization._common import array_module, check_finite_positive, check_n_levels, float_dtype

__all__ = ["uniform_levels", "quantize_uniform"]


def uniform_levels(w, n_levels: int, wmax: float, *, xp=None):
    """The ``n_levels`` equally spaced levels over ``[-wmax, wmax]`` (float64, sorted).

    ``w`` only selects the array module (NumPy or CuPy) of the result.
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
