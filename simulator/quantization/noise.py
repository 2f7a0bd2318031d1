"""Weight-noise injection as in the noise-aware training of ``seeds/004``.

The paper adds to every quantized weight of a layer an independent Gaussian
``N(0, sigma**2)`` with ``sigma = delta * max|W_q|`` -- the largest absolute
quantized weight *of that layer* times a constant relative noise ``delta``
(1-4 % studied, 2 % used). :func:`relative_max_noise` applies exactly that, in
weight units, once per call (call it once per layer and per run). For the
same noise in the conductance domain, as a programming-error device model,
see :class:`devices.relative_max.RelativeMaxModel`.
"""
from __future__ import annotations

from simulator.errors import ConfigError
from simulator.quantization._common import array_module, check_finite_positive, float_dtype

__all__ = ["relative_max_noise"]


def relative_max_noise(wq, delta: float, rng, *, xp=None):
    """Return ``wq + N(0, (delta * max|wq|)**2)``, one independent sample per weight.

    ``max|wq|`` is taken over the whole array (one layer). ``rng`` is a
    ``numpy.random.Generator`` (or CuPy's, for CuPy arrays). The result is a
    new array with ``wq``'s shape and float dtype; ``delta = 0`` (or an
    all-zero ``wq``) returns an unchanged copy.
    """
    xp = array_module(wq, xp)
    delta = check_finite_positive(delta, "delta", "relative_max_noise", allow_zero=True)
    wq = xp.asarray(wq)
    dtype = float_dtype(wq, xp)
    out = wq.astype(dtype, copy=True)
    if out.size == 0:
        return out
    wmax = float(xp.max(xp.abs(out)))
    if wmax != wmax or wmax == float("inf"):
        raise ConfigError("relative_max_noise: the weights contain NaN or infinite values")
    sigma = delta * wmax
    if sigma == 0.0:
        return out
    out += sigma * rng.standard_normal(out.shape, dtype=dtype)
    return out
