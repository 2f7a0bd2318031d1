"""Bounded-memory statistics of profiled ADC inputs and activations (manual 9.4, 9.6).

CrossSim keeps every profiled ADC input in memory and writes them to ``.npy``
files, which can exhaust memory on large calibration sets. Here each stream of
values (one per layer, weight bit slice and input bit) goes into a
:class:`StreamingHistogram`: exact ``min``/``max``/``count``/``sum``/``sumsq``
plus a fine histogram whose bin width is a power of two that grows (merging
adjacent bins) when new extremes arrive. Its memory does not depend on how many
values it has seen, and the range optimizers in
:mod:`adc_calibration.optimizers` work from it directly.

Bins are anchored at zero: bin ``j`` covers ``[j * 2**e, (j + 1) * 2**e)``.
Re-binning from exponent ``e`` to ``e + s`` maps bin ``j`` to ``j >> s``, which
is exact, so the final histogram depends only on the data (not on the order of
the updates or on how the data was split before :meth:`StreamingHistogram.merge`).

Raw samples are kept only when asked: a :class:`ReservoirSample` of fixed size,
or a dump of every value to disk (``ProfileStore(raw_dir=...)``,
:mod:`adc_calibration.profile_store`, which holds one histogram per stream).
"""
from __future__ import annotations

import math
from collections.abc import Mapping
from typing import Any, Optional

import numpy as np

__all__ = ["StreamingHistogram", "ReservoirSample", "to_numpy"]

#: keep bin indices (x / 2**e) below 2**52 so they are exact in float64 and int64
_INDEX_BITS = 52
#: bin exponent used while every value seen is exactly zero
_ZERO_EXPONENT = -1074


def to_numpy(values: Any) -> np.ndarray:
    """A float64 1-D NumPy view/copy of ``values`` (NumPy, CuPy via ``.get()``, lists, scalars)."""
    if hasattr(values, "get") and not isinstance(values, (np.ndarray, Mapping)):
        values = values.get()  # CuPy array -> NumPy
    return np.asarray(values, dtype=np.float64).reshape(-1)


def _frexp_exp(x: float) -> int:
    """The integer ``k`` with ``2**(k-1) <= |x| < 2**k`` (``x != 0``)."""
    return math.frexp(x)[1]


class StreamingHistogram:
    """Streaming histogram with exact extremes and moments, in constant memory.

    Parameters
    ----------
    nbins:
        Number of fine bins (a power of two, at least 64; default 4096). The
        occupied span of bins is always at most ``nbins``, so quantiles are
        resolved to ``(max - min) / nbins`` or better (up to a factor of 2,
        the price of power-of-two bin widths).

    Attributes
    ----------
    min, max:
        Exact extremes of the finite values seen (``nan`` while empty).
    count:
        Number of finite values seen.
    sum, sumsq:
        Sum and sum of squares of the finite values (float64).
    nonfinite:
        Number of NaN/inf values passed to :meth:`update`; they are not
        binned and do not enter the statistics.
    """

    def __init__(self, nbins: int = 4096) -> None:
        nbins = int(nbins)
        if nbins < 64 or nbins & (nbins - 1):
            raise ValueError(f"nbins must be a power of two >= 64, got {nbins}")
        self.nbins = nbins
        self.counts = np.zeros(nbins, dtype=np.int64)
        self.exponent = _ZERO_EXPONENT  # bin width = 2**exponent
        self.offset = 0  # absolute index of counts[0]
        self.min = math.nan
        self.max = math.nan
        self.count = 0
        self.sum = 0.0
        self.sumsq = 0.0
        self.nonfinite = 0

    # ------------------------------------------------------------ properties
    @property
    def bin_width(self) -> float:
        return math.ldexp(1.0, self.exponent)

    @property
    def nbytes(self) -> int:
        """Bytes held by the histogram (constant: independent of the data seen)."""
        return int(self.counts.nbytes)

    @property
    def empty(self) -> bool:
        return self.count == 0

    @property
    def mean(self) -> float:
        return self.sum / self.count if self.count else math.nan

    @property
    def var(self) -> float:
        if not self.count:
            return math.nan
        m = self.mean
        return max(self.sumsq / self.count - m * m, 0.0)

    @property
    def std(self) -> float:
        return math.sqrt(self.var)

    @property
    def edges(self) -> np.ndarray:
        """The ``nbins + 1`` bin edges of the stored window (float64)."""
        j = np.arange(self.offset, self.offset + self.nbins + 1, dtype=np.float64)
        return np.ldexp(j, self.exponent)

    def bins(self, clamp: bool = True) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
        """``(lo_edges, hi_edges, counts)`` of the occupied bins, first to last non-empty.

        With ``clamp`` the first bin starts at :attr:`min` and the last ends at
        :attr:`max`, so a piecewise-uniform density built from them has the
        exact support of the data.
        """
        if self.empty:
            z = np.zeros(0)
            return z, z, np.zeros(0, dtype=np.int64)
        nz = np.flatnonzero(self.counts)
        a, b = int(nz[0]), int(nz[-1]) + 1
        j = np.arange(self.offset + a, self.offset + b + 1, dtype=np.float64)
        e = np.ldexp(j, self.exponent)
        lo, hi = e[:-1].copy(), e[1:].copy()
        if clamp:
            lo[0] = self.min
            hi[-1] = self.max
            lo = np.minimum(np.maximum(lo, self.min), self.max)
            hi = np.minimum(np.maximum(hi, self.min), self.max)
        return lo, hi, self.counts[a:b].copy()

    def centers(self) -> tuple[np.ndarray, np.ndarray]:
        """``(centres, counts)`` of the occupied bins (centres clamped to [min, max])."""
        lo, hi, c = self.bins(clamp=True)
        return 0.5 * (lo + hi), c

    # --------------------------------------------------------------- binning
    def _required_exponent(self, lo: float, hi: float) -> int:
        """Smallest exponent (>= current) whose grid spans [lo, hi] in <= nbins bins."""
        amax = max(abs(lo), abs(hi))
        if amax == 0.0:
            return max(self.exponent, _ZERO_EXPONENT)
        e = max(self.exponent, _frexp_exp(amax) - _INDEX_BITS)
        if hi > lo:
            e = max(e, _frexp_exp((hi - lo) / self.nbins) - 1)
        while math.floor(math.ldexp(hi, -e)) - math.floor(math.ldexp(lo, -e)) + 1 > self.nbins:
            e += 1
        return e

    def _rebin(self, exponent: int, lo: float) -> None:
        """Re-bin stored counts to ``exponent`` and move the window to start at ``lo``'s bin."""
        new_offset = math.floor(math.ldexp(lo, -exponent))
        if exponent == self.exponent and new_offset == self.offset:
            return
        new = np.zeros(self.nbins, dtype=np.int64)
        nz = np.flatnonzero(self.counts)
        if nz.size:
            j = nz.astype(np.int64) + self.offset
            j = np.right_shift(j, min(exponent - self.exponent, 63))
            np.add.at(new, j - new_offset, self.counts[nz])
        self.counts = new
        self.exponent = exponent
        self.offset = new_offset

    def _add_indices(self, x: np.ndarray) -> None:
        j = np.floor(np.ldexp(x, -self.exponent)).astype(np.int64) - self.offset
        self.counts += np.bincount(j, minlength=self.nbins)[: self.nbins]

    def update(self, values: Any) -> "StreamingHistogram":
        """Add ``values`` (any shape; NumPy, CuPy or array-like). Returns ``self``."""
        x = to_numpy(values)
        if x.size == 0:
            return self
        finite = np.isfinite(x)
        if not finite.all():
            self.nonfinite += int(x.size - np.count_nonzero(finite))
            x = x[finite]
            if x.size == 0:
                return self
        xmin, xmax = float(x.min()), float(x.max())
        lo = xmin if self.empty else min(self.min, xmin)
        hi = xmax if self.empty else max(self.max, xmax)
        e = self._required_exponent(lo, hi)
        self._rebin(e, lo)
        self._add_indices(x)
        self.min, self.max = lo, hi
        self.count += int(x.size)
        self.sum += float(np.sum(x))
        self.sumsq += float(np.dot(x, x))
        return self

    def merge(self, other: "StreamingHistogram") -> "StreamingHistogram":
        """Add the data of ``other`` (same ``nbins``) into ``self``; equals updating with it. Returns ``self``."""
        if other.nbins != self.nbins:
            raise ValueError(f"cannot merge histograms with {self.nbins} and {other.nbins} bins")
        self.nonfinite += other.nonfinite
        if other.empty:
            return self
        lo = other.min if self.empty else min(self.min, other.min)
        hi = other.max if self.empty else max(self.max, other.max)
        # both exponents are the required ones of sub-ranges of [lo, hi], so
        # this is the exponent a single histogram of all the data would have
        e = max(self._required_exponent(lo, hi), other.exponent)
        self._rebin(e, lo)
        nz = np.flatnonzero(other.counts)
        j = np.right_shift(nz.astype(np.int64) + other.offset, min(e - other.exponent, 63))
        np.add.at(self.counts, j - self.offset, other.counts[nz])
        self.min, self.max = lo, hi
        self.count += other.count
        self.sum += other.sum
        self.sumsq += other.sumsq
        return self

    def copy(self) -> "StreamingHistogram":
        return StreamingHistogram.from_dict(self.to_dict())

    # -------------------------------------------------------------- quantiles
    def quantile(self, q: Any) -> Any:
        """Quantile(s) ``q`` in [0, 1], interpolated linearly within bins.

        ``q = 0`` and ``q = 1`` return the exact :attr:`min` and :attr:`max`.
        Follows NumPy's default (linear) definition, to within one bin width.
        """
        qa = np.asarray(q, dtype=np.float64)
        if np.any((qa < 0) | (qa > 1)) or np.any(np.isnan(qa)):
            raise ValueError(f"quantiles must lie in [0, 1], got {q!r}")
        if self.empty:
            out = np.full(qa.shape, np.nan)
            return float(out) if out.ndim == 0 else out
        lo, hi, c = self.bins(clamp=True)
        cum = np.concatenate([[0.0], np.cumsum(c, dtype=np.float64)])
        # rank (0-based, fractional) of NumPy's linear method; the sample of
        # rank r is taken to sit where the cumulative count reaches r + 1/2
        target = qa * (self.count - 1) + 0.5
        k = np.clip(np.searchsorted(cum, target, side="left") - 1, 0, c.size - 1)
        frac = np.clip((target - cum[k]) / np.maximum(c[k], 1), 0.0, 1.0)
        out = lo[k] + frac * (hi[k] - lo[k])
        out = np.clip(out, self.min, self.max)
        out = np.where(qa <= 0.0, self.min, np.where(qa >= 1.0, self.max, out))
        return float(out) if out.ndim == 0 else out

    def percentile(self, p: Any) -> Any:
        """Percentile(s) ``p`` in [0, 100]; see :meth:`quantile`."""
        return self.quantile(np.asarray(p, dtype=np.float64) / 100.0)

    # ---------------------------------------------------------- persistence
    def to_dict(self) -> dict[str, Any]:
        """Plain dict (NumPy array + Python scalars) that :meth:`from_dict` restores exactly."""
        return {
            "nbins": self.nbins,
            "exponent": self.exponent,
            "offset": self.offset,
            "counts": self.counts.copy(),
            "min": self.min,
            "max": self.max,
            "count": self.count,
            "sum": self.sum,
            "sumsq": self.sumsq,
            "nonfinite": self.nonfinite,
        }

    @classmethod
    def from_dict(cls, d: Mapping[str, Any]) -> "StreamingHistogram":
        h = cls(int(d["nbins"]))
        counts = np.asarray(d["counts"], dtype=np.int64).reshape(-1)
        if counts.size != h.nbins:
            raise ValueError(f"histogram has {counts.size} counts, expected nbins = {h.nbins}")
        h.counts = counts.copy()
        h.exponent = int(d["exponent"])
        h.offset = int(d["offset"])
        h.min = float(d["min"])
        h.max = float(d["max"])
        h.count = int(d["count"])
        h.sum = float(d["sum"])
        h.sumsq = float(d["sumsq"])
        h.nonfinite = int(d.get("nonfinite", 0))
        if int(counts.sum()) != h.count:
            raise ValueError(f"histogram counts sum to {int(counts.sum())}, expected count = {h.count}")
        return h

    @classmethod
    def from_values(cls, values: Any, nbins: int = 4096) -> "StreamingHistogram":
        return cls(nbins).update(values)

    def __repr__(self) -> str:
        return (
            f"StreamingHistogram(count={self.count}, min={self.min:.6g}, max={self.max:.6g}, "
            f"bin_width={self.bin_width:.3g}, nbins={self.nbins})"
        )


class ReservoirSample:
    """Uniform random sample of at most ``k`` values of a stream (Algorithm R).

    Every value seen has the same probability ``k / n_seen`` of being in
    :attr:`values`; memory is ``k`` floats.
    """

    def __init__(self, k: int, seed: Optional[int] = None) -> None:
        if int(k) < 1:
            raise ValueError(f"reservoir size k must be >= 1, got {k}")
        self.k = int(k)
        self.seen = 0
        self._buf = np.empty(self.k, dtype=np.float64)
        self._rng = np.random.default_rng(seed)

    @property
    def values(self) -> np.ndarray:
        """The current sample (a copy, ``min(k, seen)`` values)."""
        return self._buf[: min(self.k, self.seen)].copy()

    @property
    def nbytes(self) -> int:
        return int(self._buf.nbytes)

    def update(self, values: Any) -> "ReservoirSample":
        x = to_numpy(values)
        n = x.size
        if n == 0:
            return self
        fill = max(0, min(self.k - self.seen, n))
        if fill:
            self._buf[self.seen : self.seen + fill] = x[:fill]
        rest = x[fill:]
        if rest.size:
            # element with global index i replaces slot j ~ U{0..i} if j < k
            idx = np.arange(self.seen + fill, self.seen + n, dtype=np.float64)
            j = np.floor(self._rng.random(rest.size) * (idx + 1)).astype(np.int64)
            keep = j < self.k
            # sequential semantics: among repeated slots the last value wins
            self._buf[j[keep]] = rest[keep]
        self.seen += n
        return self


# ---------------------------------------------------------------------------
# ProfileStore
