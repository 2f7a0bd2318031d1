"""Uniform quantizers for ADCs and DACs (manual 9.2, 9.3).

Levels are equally spaced. When the range is signed (``lo < 0``) there are
``2**bits - 1`` levels and the grid is shifted (by less than half a step) so
that one level sits exactly at zero ("range zero-centering", 9.3.1); when
``lo >= 0`` there are ``2**bits`` levels from ``lo`` to ``hi``. Values outside
the range clip to the end levels. ``bits = 0`` is the identity.
"""
from __future__ import annotations

import math
from dataclasses import dataclass


@dataclass(frozen=True)
class UniformQuantizer:
    bits: int
    lo: float = 0.0
    hi: float = 1.0

    def __post_init__(self) -> None:
        if self.bits > 0 and not self.hi > self.lo:
            raise ValueError(f"quantizer range must have lo < hi, got ({self.lo}, {self.hi})")

    @property
    def enabled(self) -> bool:
        return self.bits > 0

    @property
    def signed(self) -> bool:
        return self.lo < 0

    @property
    def n_levels(self) -> int:
        return 2**self.bits - 1 if self.signed else 2**self.bits

    @property
    def step(self) -> float:
        return (self.hi - self.lo) / (self.n_levels - 1) if self.n_levels > 1 else (self.hi - self.lo)

    @property
    def k_range(self) -> tuple[int, int]:
        """Integer level indices (kmin, kmax): level k sits at ``k * step`` (signed) or ``lo + k * step``."""
        if self.signed:
            kmin = math.floor(self.lo / self.step + 0.5)
            return kmin, kmin + self.n_levels - 1
        return 0, self.n_levels - 1

    def levels(self, xp):
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
        kmin, kmax = self.k_range
        step = self.step
        if self.signed:
            t = xp.divide(y, step, out=out)
        else:
            t = xp.subtract(y, self.lo, out=out)
            t /= step
        xp.rint(t, out=t)
        xp.clip(t, kmin, kmax, out=t)
        t *= step
        if not self.signed:
            t += self.lo
        return t
