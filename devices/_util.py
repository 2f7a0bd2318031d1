"""Helpers shared by the built-in device models (not a model module itself).

Normalized <-> physical units
-----------------------------
Every built-in device fit is expressed in physical units (uS, nS or nA) over
the device's range ``[G_phys_max / On_off_ratio, G_phys_max]``. The normalized
range is ``[1 / On_off_ratio, 1]``, so the linear map between the two ranges
reduces to a single scale factor: ``G_phys = G_phys_max * G`` and a physical
standard deviation ``s_phys`` becomes ``s_phys / G_phys_max`` (this also holds
for an infinite ratio, where both minima are 0).
"""
from __future__ import annotations

import logging
from typing import Any, Sequence

from simulator.errors import DeviceModelError

log = logging.getLogger("xbarsim.devices")

SECONDS_PER_DAY = 86400.0

_warned: set = set()


def warn_once(key, message: str, *args) -> None:
    """Log ``message`` at WARNING level once per process for ``key``."""
    if key in _warned:
        return
    _warned.add(key)
    log.warning(message, *args)


def extra_float(params, key: str, default: float, *, lo: float | None = None, hi: float | None = None,
                lo_open: bool = True) -> float:
    """Read ``device_params.<key>`` as a float with range checks (default when absent)."""
    if key not in params.extra:
        return float(default)
    value = params.extra[key]
    if isinstance(value, bool) or not isinstance(value, (int, float)):
        raise DeviceModelError(f"device_params.{key} = {value!r}: expected a number")
    value = float(value)
    if lo is not None and (value <= lo if lo_open else value < lo):
        raise DeviceModelError(f"device_params.{key} = {value!r}: expected a value {'>' if lo_open else '>='} {lo:g}")
    if hi is not None and value > hi:
        raise DeviceModelError(f"device_params.{key} = {value!r}: expected a value <= {hi:g} (the range of the fitted data)")
    return value


def extra_floats(params, key: str, default: Sequence[float], n: int) -> tuple[float, ...]:
    """Read ``device_params.<key>`` as a list of ``n`` numbers (default when absent)."""
    if key not in params.extra:
        return tuple(float(v) for v in default)
    value: Any = params.extra[key]
    if (
        not isinstance(value, (list, tuple))
        or len(value) != n
        or any(isinstance(v, bool) or not isinstance(v, (int, float)) for v in value)
    ):
        raise DeviceModelError(f"device_params.{key} = {value!r}: expected a list of {n} numbers")
    return tuple(float(v) for v in value)


def add_gaussian(G, sigma, xp, rng):
    """``G + sigma * N(0, 1)``, drawn from ``rng`` in ``G``'s dtype."""
    return G + sigma * rng.standard_normal(G.shape, dtype=G.dtype)


def lerp_table(t: float, ts: Sequence[float], rows: Sequence[Sequence[float]]) -> list[float]:
    """Linear interpolation in ``t`` between table rows (linear extrapolation outside ``ts``).

    Scalar host-side math on small constant tables (no array module needed).
    """
    n = len(ts)
    k = 0
    while k < n - 2 and t > ts[k + 1]:
        k += 1
    w = (t - ts[k]) / (ts[k + 1] - ts[k])
    return [a + w * (b - a) for a, b in zip(rows[k], rows[k + 1])]


def interp_extrap(x, xs: Sequence[float], ys: Sequence[float], xp):
    """Piecewise-linear ``y(x)`` through the points ``(xs, ys)`` (``xs`` increasing).

    Outside ``[xs[0], xs[-1]]`` the end segments are extended linearly (unlike
    ``xp.interp``, which holds the end values).
    """
    xa = xp.asarray(xs, dtype=x.dtype)
    ya = xp.asarray(ys, dtype=x.dtype)
    idx = xp.clip(xp.searchsorted(xa, x) - 1, 0, len(xs) - 2)
    x0, x1 = xa[idx], xa[idx + 1]
    y0, y1 = ya[idx], ya[idx + 1]
    return y0 + (x - x0) * (y1 - y0) / (x1 - x0)
