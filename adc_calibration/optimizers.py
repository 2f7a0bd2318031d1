"""ADC and activation range optimizers (manual 9.4.2, 9.6, Fig. 9.4).

A range ``(lo, hi)`` of a uniform quantizer trades quantization error (a wide
range has coarse levels) against clipping error (a narrow range clips the
tails). :func:`optimize_range` picks the range that minimizes the expected
squared error of the quantizer over the profiled distribution of its inputs,
computed from a :class:`~adc_calibration.collectors.StreamingHistogram`
(bounded memory: the cost does not depend on how many values were profiled).

The quantizer modelled is the simulator's ADC
(:class:`simulator.quantization.uniform.UniformQuantizer`, whose levels
:func:`~simulator.quantization.uniform.quantizer_levels` lists): ``2**nbits`` levels
from ``lo`` to ``hi`` when ``lo >= 0``; when ``lo < 0``, ``2**nbits - 1``
levels ``k * step`` with ``step = (hi - lo) / (2**nbits - 2)`` and one level
exactly at zero (the grid is shifted by less than half a step; manual 9.3.1,
"range zero-centering").

The expected error of a candidate range is computed exactly for the density
the histogram describes: each bin's values spread uniformly over the bin
(the first bin starting at the profiled minimum, the last ending at the
maximum). The bins are cut at the quantizer's decision thresholds, and every
piece contributes ``mass * ((centre - level)**2 + width**2 / 12)``.
"""
from __future__ import annotations

import math
from typing import Any, Callable, Optional, Sequence, Union

import numpy as np

from adc_calibration.collectors import StreamingHistogram
from simulator.errors import CalibrationError
from simulator.quantization.uniform import quantizer_levels

__all__ = [
    "expected_error",
    "optimize_range",
    "minmax_range",
    "percentile_range",
    "sliced_range_exponents",
    "sliced_limits",
    "activation_range",
    "get_optimizer",
    "register_optimizer",
    "OPTIMIZERS",
]

HistLike = Union[StreamingHistogram, np.ndarray, Sequence[float]]


def _as_hist(data: Any) -> StreamingHistogram:
    """A StreamingHistogram of ``data`` (returned as is if it already is one)."""
    if isinstance(data, StreamingHistogram):
        return data
    return StreamingHistogram.from_values(data)


# ---------------------------------------------------------------------------
# quantizer model and its expected error
# ---------------------------------------------------------------------------
class _Density:
    """Piecewise-uniform density of a histogram, for exact expected-error evaluation."""

    def __init__(self, hist: StreamingHistogram) -> None:
        lo, hi, c = hist.bins(clamp=True)
        self.count = float(hist.count)
        width = hi - lo
        cont = width > 0
        # point masses: bins clamped to zero width (e.g. constant data)
        self.px = lo[~cont & (c > 0)]
        self.pc = c[~cont & (c > 0)].astype(np.float64)
        self.lo = lo[cont]
        self.hi = hi[cont]
        self.dens = c[cont] / width[cont]
        self.edges = np.concatenate([self.lo, self.hi[-1:]]) if self.lo.size else np.zeros(0)

    def error(self, levels: np.ndarray) -> float:
        """Mean squared error of quantizing to the nearest of ``levels`` (sorted), clipping at the ends."""
        if self.count == 0:
            return 0.0
        thr = 0.5 * (levels[:-1] + levels[1:])
        total = 0.0
        if self.lo.size:
            e0, e1 = self.edges[0], self.edges[-1]
            cuts = thr[(thr > e0) & (thr < e1)]
            # bins are contiguous: every interior edge is both an upper and a lower edge
            pts = np.sort(np.concatenate([self.lo, self.hi, cuts]))
            a, b = pts[:-1], pts[1:]
            w = b - a
            keep = w > 0
            a, w = a[keep], w[keep]
            mid = a + 0.5 * w
            k = np.searchsorted(self.lo, mid, side="right") - 1
            inside = (k >= 0) & (mid < self.hi[np.clip(k, 0, None)])
            d = np.where(inside, self.dens[np.clip(k, 0, None)], 0.0)
            lev = levels[np.searchsorted(thr, mid)]
            total += float(np.sum(d * w * ((mid - lev) ** 2 + w * w / 12.0)))
        if self.px.size:
            lev = levels[np.searchsorted(thr, self.px)]
            total += float(np.sum(self.pc * (self.px - lev) ** 2))
        return total / self.count


def expected_error(hist: HistLike, lo: float, hi: float, nbits: int, *, zero_centred: bool = True) -> float:
    """Expected squared quantization + clipping error (MSE) of range ``(lo, hi)`` on ``hist``."""
    return _Density(_as_hist(hist)).error(quantizer_levels(lo, hi, nbits, zero_centred))


# ---------------------------------------------------------------------------
# the range search (manual Fig. 9.4)
# ---------------------------------------------------------------------------
def _candidates(h: StreamingHistogram, upper: bool, n_tail: int = 64, n_lin: int = 96) -> np.ndarray:
    """Candidate limits drawn from the histogram: tail percentiles (log-spaced
    tail probabilities down to below 1/count) and a linear grid from the median
    to the extreme."""
    med = float(h.quantile(0.5))
    ext = h.max if upper else h.min
    p = np.logspace(math.log10(0.5), math.log10(0.1 / max(h.count, 1)), n_tail)
    tail = h.quantile(1.0 - p if upper else p)
    lin = med + (ext - med) * np.linspace(1.0 / n_lin, 1.0, n_lin)
    c = np.unique(np.concatenate([tail, lin, [ext]]))
    return c[np.isfinite(c)]


def _argmin(f: Callable[[float], float], cands: np.ndarray) -> tuple[float, float, int]:
    errs = np.array([f(float(c)) for c in cands])
    i = int(np.argmin(errs))
    return float(cands[i]), float(errs[i]), i


def _zoom(f: Callable[[float], float], cands: np.ndarray, i: int, best: float, err: float,
          lower: float, upper: float, levels: int = 3, npts: int = 25) -> tuple[float, float]:
    """Refine the 1-D minimum ``best`` (near ``cands[i]``) on nested grids between its
    neighbouring candidates, keeping strictly inside ``(lower, upper)``."""
    gap = float(np.max(np.diff(cands))) if cands.size > 1 else abs(best) * 0.1 + 1e-300
    a = float(cands[i - 1]) if i > 0 else best - gap
    b = float(cands[i + 1]) if i + 1 < cands.size else best + gap
    for _ in range(levels):
        grid = np.linspace(a, b, npts)
        grid = grid[(grid > lower) & (grid < upper)]
        if grid.size == 0:
            break
        x, e, _ = _argmin(f, grid)
        if e < err:
            best, err = x, e
        step = (b - a) / (npts - 1)
        a, b = best - step, best + step
    return best, err


def optimize_range(
    hist: HistLike,
    nbits: int,
    *,
    relu_aware: bool = False,
    min_fixed: Optional[float] = None,
    zero_centred: bool = True,
    max_rounds: int = 8,
) -> tuple[float, float]:
    """Range ``(lo, hi)`` minimizing the expected quantization + clipping squared error.

    The algorithm of the manual's Fig. 9.4 on a histogram: a coordinate search
    over candidate limits drawn from the histogram's percentiles (and a linear
    grid up to the extremes) -- best ``hi`` for the current ``lo``, then best
    ``lo`` for that ``hi``, until neither changes -- followed by a refinement
    of each limit on nested fine grids between its neighbouring candidates.
    ``lo`` and ``hi`` are optimized independently (the range need not be
    symmetric). A signed zero-centred result is returned in canonical form,
    ``lo`` and ``hi`` being the outer levels of the quantizer it defines
    (ranges that differ by less than half a step give the same levels).

    Parameters
    ----------
    hist:
        A StreamingHistogram of the profiled values (or raw values).
    nbits:
        Quantizer resolution used in the optimization (need not equal the ADC
        resolution of the inference run; manual 9.4.2).
    relu_aware:
        Optimize only ``hi``; ``lo`` is the smallest profiled value (use with
        ReLU-aware profiling, manual 9.4).
    min_fixed:
        Optimize only ``hi`` with ``lo = min_fixed`` (e.g. 0 after a ReLU).
    zero_centred:
        Model the simulator's zero-centred signed ADC (default); False models
        a plain quantizer with ``2**nbits`` levels from ``lo`` to ``hi``.
    """
    nbits = int(nbits)
    if nbits < 1:
        raise ValueError(f"nbits must be >= 1, got {nbits}")
    h = _as_hist(hist)
    if h.empty:
        raise ValueError("cannot optimize a range from an empty histogram")
    if relu_aware and min_fixed is None:
        min_fixed = h.min
    fix_lo = min_fixed is not None
    if h.max == h.min:  # constant data: any range with a level at the value
        return _constant_range(h.min, min_fixed)
    dens = _Density(h)

    def err(lo: float, hi: float) -> float:
        if not hi > lo:
            return math.inf
        return dens.error(quantizer_levels(lo, hi, nbits, zero_centred))

    hi_c = _candidates(h, upper=True)
    lo_c = _candidates(h, upper=False)
    lo = float(min_fixed) if fix_lo else h.min
    hi_c = hi_c[hi_c > lo]
    if hi_c.size == 0:  # all data at or below a fixed lower limit
        span = max(abs(lo), h.max - h.min, 1e-30)
        return float(lo), float(lo + span)
    lo, hi, best = _coordinate_search(err, lo, h.max, hi_c, lo_c, fix_lo, max_rounds)
    lo, hi = _refine(err, lo, hi, best, hi_c, lo_c, fix_lo)
    if zero_centred and lo < 0 and not fix_lo:
        # a signed range only fixes the levels up to a shift of less than half a
        # step; report the canonical one whose ends are the outer levels
        lev = quantizer_levels(lo, hi, nbits, zero_centred)
        lo, hi = float(lev[0]), float(lev[-1])
    return float(lo), float(hi)


def _constant_range(v: float, min_fixed: Optional[float]) -> tuple[float, float]:
    """A range for constant data ``v`` with a level at ``v`` (``lo = min_fixed`` when given)."""
    lo = float(min_fixed) if min_fixed is not None else min(v, 0.0)
    hi = max(v, 0.0, lo)
    if hi <= lo:
        hi = lo + (abs(lo) if lo != 0 else 1.0)
    return float(lo), float(hi)


def _coordinate_search(err: Callable[[float, float], float], lo: float, hi: float, hi_c: np.ndarray,
                       lo_c: np.ndarray, fix_lo: bool, max_rounds: int) -> tuple[float, float, float]:
    """Best ``hi`` for the current ``lo``, then best ``lo`` for that ``hi``, until neither changes."""
    best = err(lo, hi)
    for _ in range(max_rounds):
        prev = (lo, hi)
        x, e, _ = _argmin(lambda c: err(lo, c), hi_c)
        if e < best:
            hi, best = x, e
        if not fix_lo:
            x, e, _ = _argmin(lambda c: err(c, hi), lo_c[lo_c < hi])
            if e < best:
                lo, best = x, e
        if (lo, hi) == prev:
            break
    return lo, hi, best


def _refine(err: Callable[[float, float], float], lo: float, hi: float, best: float, hi_c: np.ndarray,
            lo_c: np.ndarray, fix_lo: bool) -> tuple[float, float]:
    """Refinement of each limit on nested fine grids between its neighbouring candidates."""
    for _ in range(2):
        hi_c2 = hi_c[hi_c > lo]
        i_hi = int(np.argmin(np.abs(hi_c2 - hi)))
        hi, best = _zoom(lambda c: err(lo, c), hi_c2, i_hi, hi, best, lower=lo, upper=math.inf)
        if not fix_lo:
            lo_c2 = lo_c[lo_c < hi]
            i_lo = int(np.argmin(np.abs(lo_c2 - lo)))
            lo, best = _zoom(lambda c: err(c, hi), lo_c2, i_lo, lo, best, lower=-math.inf, upper=hi)
    return lo, hi


def minmax_range(hist: HistLike, nbits: int = 0, **_: Any) -> tuple[float, float]:
    """The full profiled range ``(min, max)`` (no clipping)."""
    h = _as_hist(hist)
    lo, hi = h.min, h.max
    if not hi > lo:
        hi = lo + (abs(lo) if lo != 0 else 1.0)
    return float(lo), float(hi)


def percentile_range(hist: HistLike, nbits: int = 0, *, pct: float = 99.99, **_: Any) -> tuple[float, float]:
    """``(percentile(100 - pct), percentile(pct))`` of the profiled values."""
    h = _as_hist(hist)
    lo, hi = float(h.percentile(100.0 - pct)), float(h.percentile(pct))
    if not hi > lo:
        return minmax_range(h)
    return lo, hi


# ---------------------------------------------------------------------------
# bit-sliced layers (manual 9.3.1, Eq. 9.1-9.2)
# ---------------------------------------------------------------------------
def sliced_range_exponents(
    hists_per_slice: Sequence[HistLike],
    y_max: float,
    pct: float,
    signed: bool,
    *,
    c_max: int = 62,
) -> list[int]:
    """Integer exponents ``C_i`` of the ADC limits of each weight bit slice.

    Slice ``i`` gets limits ``(-y_max * 2**-C_i, y_max * 2**-C_i)`` when
    ``signed`` (or ``(0, y_max * 2**-C_i)`` for non-negative ADC inputs).
    ``C_i`` is the largest integer for which the limits still contain the
    ``pct`` and ``100 - pct`` percentiles of the slice's profiled inputs, so
    the limits of different slices differ only by powers of two
    (shift-and-add stays possible). A slice whose covered values are all 0
    gets ``c_max``. ``C_i`` may be negative if the data exceed ``y_max``.
    """
    if not (y_max > 0 and math.isfinite(y_max)):
        raise ValueError(f"y_max must be a positive finite number, got {y_max}")
    if not 50.0 < pct <= 100.0:
        raise ValueError(f"pct must be in (50, 100], got {pct}")
    out = []
    for i, data in enumerate(hists_per_slice):
        h = _as_hist(data)
        if h.empty:
            raise ValueError(f"slice {i} has no profiled values")
        hi_p = float(h.percentile(pct))
        lo_p = float(h.percentile(100.0 - pct))
        if signed:
            a = max(abs(hi_p), abs(lo_p))
        else:
            if lo_p < 0:
                raise ValueError(
                    f"slice {i}: signed=False but its {100 - pct:g}th percentile is negative ({lo_p:.6g})"
                )
            a = hi_p
        if a <= 0:
            out.append(int(c_max))
            continue
        c = math.floor(math.log2(y_max / a))
        while math.ldexp(y_max, -(c + 1)) >= a:
            c += 1
        while math.ldexp(y_max, -c) < a:
            c -= 1
        out.append(int(min(c, c_max)))
    return out


def sliced_limits(exponents: Sequence[int], y_max: float, signed: bool) -> np.ndarray:
    """``(Nslices, 2)`` ADC limits from exponents ``C_i`` (Eq. 9.1-9.2)."""
    top = np.ldexp(float(y_max), -np.asarray(exponents, dtype=np.int64))
    return np.stack([-top if signed else np.zeros_like(top), top], axis=1)


# ---------------------------------------------------------------------------
# activations (manual 9.5, 9.6)
# ---------------------------------------------------------------------------
def activation_range(hist: HistLike, nbits: int, after_relu: bool, **kw: Any) -> tuple[float, float]:
    """Input-activation (DAC) range: ``lo = 0`` after a ReLU (only ``hi`` optimized), else both."""
    if after_relu:
        h = _as_hist(hist)
        if h.min < 0:
            raise ValueError(f"after_relu=True but the profiled activations go down to {h.min:.6g}")
        return optimize_range(h, nbits, min_fixed=0.0, **kw)
    return optimize_range(hist, nbits, **kw)


# ---------------------------------------------------------------------------
# pluggable optimizers
# ---------------------------------------------------------------------------
RangeOptimizer = Callable[..., tuple[float, float]]

#: built-in optimizers by name
OPTIMIZERS: dict[str, RangeOptimizer] = {
    "mse": optimize_range,
    "minmax": minmax_range,
    "percentile": percentile_range,
}


def register_optimizer(name: str, func: RangeOptimizer) -> None:
    """Make ``func(hist, nbits, **kw) -> (lo, hi)`` available as ``get_optimizer(name)``."""
    if not callable(func):
        raise TypeError(f"optimizer {name!r} must be callable")
    OPTIMIZERS[str(name)] = func


def _describe(func: Any) -> str:
    mod = getattr(func, "__module__", None)
    name = getattr(func, "__qualname__", None) or repr(func)
    return f"{mod}.{name}" if mod else str(name)


def get_optimizer(name_or_callable: Union[str, RangeOptimizer, None] = "mse") -> RangeOptimizer:
    """A range optimizer ``f(hist, nbits, **kw) -> (lo, hi)`` with validated output.

    ``name_or_callable`` is a name in :data:`OPTIMIZERS` (``"mse"`` -- the
    default, :func:`optimize_range` --, ``"minmax"``, ``"percentile"``), a
    ``"module:function"`` path, or a callable. The returned function raises
    :class:`~simulator.errors.CalibrationError` unless the result is two
    finite numbers with ``lo < hi``.
    """
    if name_or_callable is None:
        name_or_callable = "mse"
    if isinstance(name_or_callable, str):
        name = name_or_callable
        if name in OPTIMIZERS:
            func = OPTIMIZERS[name]
        elif ":" in name:
            import importlib

            mod, _, attr = name.partition(":")
            try:
                func = getattr(importlib.import_module(mod), attr)
            except (ImportError, AttributeError) as exc:
                raise CalibrationError(f"range optimizer {name!r} cannot be imported: {exc}") from None
        else:
            import difflib

            close = difflib.get_close_matches(name, list(OPTIMIZERS), n=1)
            hint = f" (did you mean {close[0]!r}?)" if close else ""
            raise CalibrationError(
                f"unknown range optimizer {name!r}{hint}; expected one of {', '.join(sorted(OPTIMIZERS))} "
                f"or 'module:function'"
            )
    elif callable(name_or_callable):
        func = name_or_callable
    else:
        raise CalibrationError(f"range optimizer must be a name or a callable, got {type(name_or_callable).__name__}")
    label = _describe(func)

    def validated(hist: HistLike, nbits: int, **kw: Any) -> tuple[float, float]:
        res = func(hist, nbits, **kw)
        try:
            lo, hi = res
            lo, hi = float(lo), float(hi)
        except (TypeError, ValueError):
            raise CalibrationError(
                f"range optimizer {label} returned {res!r}; expected a (lo, hi) pair of numbers"
            ) from None
        if not (math.isfinite(lo) and math.isfinite(hi)):
            raise CalibrationError(f"range optimizer {label} returned non-finite limits ({lo}, {hi})")
        if not lo < hi:
            raise CalibrationError(f"range optimizer {label} returned ({lo}, {hi}); expected lo < hi")
        return lo, hi

    validated.__wrapped__ = func  # type: ignore[attr-defined]
    validated.__name__ = getattr(func, "__name__", "optimizer")
    validated.__doc__ = getattr(func, "__doc__", None)
    return validated
