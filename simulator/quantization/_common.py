"""Small helpers shared by the quantization modules (array module, validation)."""
from __future__ import annotations

import math
import numbers

import numpy

from simulator.errors import ConfigError


def array_module(a, xp=None):
    """The array module of ``a``: CuPy for a CuPy array, else NumPy (``xp`` overrides)."""
    if xp is not None:
        return xp
    if type(a).__module__.split(".")[0] == "cupy":  # no CuPy import unless given a CuPy array
        import cupy

        return cupy
    return numpy


def to_host(a):
    """A NumPy copy/view of ``a`` (CuPy arrays are copied to the host)."""
    if type(a).__module__.split(".")[0] == "cupy":
        return a.get()
    return numpy.asarray(a)


def float_dtype(a, xp):
    """``a``'s dtype if it is a float32/float64 array, else float64."""
    dt = getattr(a, "dtype", None)
    if dt is not None and dt in (xp.float32, xp.float64):
        return dt
    return xp.float64


def check_n_levels(n_levels, where: str) -> int:
    if isinstance(n_levels, bool) or not isinstance(n_levels, numbers.Integral) or n_levels < 1:
        raise ConfigError(f"{where}: n_levels must be an integer >= 1, got {n_levels!r}")
    return int(n_levels)


def check_finite_positive(value, name: str, where: str, *, allow_zero: bool = False) -> float:
    try:
        v = float(value)
    except (TypeError, ValueError):
        raise ConfigError(f"{where}: {name} must be a number, got {value!r}") from None
    if not math.isfinite(v) or v < 0 or (v == 0 and not allow_zero):
        expected = ">= 0" if allow_zero else "> 0"
        raise ConfigError(f"{where}: {name} must be a finite number {expected}, got {value!r}")
    return v


def check_gmin(Gmin, where: str) -> float:
    """``G_min`` in normalized units: ``0 <= G_min < 1`` (``1 / On_off_ratio``, 0 = infinite ratio)."""
    try:
        g = float(Gmin)
    except (TypeError, ValueError):
        raise ConfigError(f"{where}: Gmin must be a number, got {Gmin!r}") from None
    if not math.isfinite(g) or g < 0 or g >= 1:
        raise ConfigError(
            f"{where}: Gmin must satisfy 0 <= Gmin < 1 (Gmin = 1/On_off_ratio in units of Gmax), got {Gmin!r}"
        )
    return g
