"""Mapping (possibly non-uniform, asymmetric) weight levels onto conductances.

All conductances are normalized: ``G_max = 1`` and ``G_min = 1 / On_off_ratio``
(``0`` for an infinite ratio). Every function takes the levels (any shape --
the level table of a quantizer or a whole quantized matrix, since the maps are
element-wise) and returns the target conductance(s) of each level, together
with -- documented per function -- the rule that turns conductances back into
weights, which the simulator applies after the MVM:

=====================================  ========================================================
mapping                                 weight from conductances
=====================================  ========================================================
:func:`balanced_unified_reference`      ``w = (G+ - G-) * max|l| / (1 - G_ref)``
:func:`balanced_one_sided`              ``w = (G+ - G-) * max|l| / (1 - G_min)``
:func:`balanced_two_sided`              ``w = (G+ - G-) * max|l| / (1 - G_min)``
:func:`offset_linear`                   ``w = scale * (G - G_min) + offset``
=====================================  ========================================================

(:func:`balanced_weight_scale` returns the BALANCED factor; for an MVM the
rule is applied to the column outputs: ``W x = s * (G+ x - G- x)`` and
``W x = scale * (G x) + (offset - scale * G_min) * sum(x)``.) Reconstruction
is exact up to floating-point round-off for any level set; only the
conductances a simulator then perturbs (programming error, drift, noise) make
it inexact.

When the levels are all zero a BALANCED map puts every device at its zero
conductance (``G_ref`` or mid-range) and the scale is 0.
"""
from __future__ import annotations

from typing import Any, NamedTuple

from simulator.errors import ConfigError
from simulator.quantization._common import array_module, check_gmin

__all__ = [
    "BalancedMapping",
    "OffsetMapping",
    "balanced_unified_reference",
    "balanced_one_sided",
    "balanced_two_sided",
    "balanced_weight_scale",
    "balanced_decode",
    "offset_linear",
    "offset_decode",
]


class BalancedMapping(NamedTuple):
    """Target conductances of the positive and negative device of each level."""

    Gpos: Any
    Gneg: Any


class OffsetMapping(NamedTuple):
    """Conductance of each level and the affine decode ``w = scale * (G - G_min) + offset``."""

    G: Any
    scale: float
    offset: float


def _levels(levels, xp, where: str):
    xp = array_module(levels, xp)
    lv = xp.asarray(levels, dtype=xp.float64)
    if lv.size == 0:
        raise ConfigError(f"{where}: no levels given")
    if not bool(xp.all(xp.isfinite(lv))):
        raise ConfigError(f"{where}: the levels contain NaN or infinite values")
    return lv, xp


def balanced_unified_reference(levels, Gmin: float, G_ref: float | None = None, *, xp=None) -> BalancedMapping:
    """The paper's measured differential mapping with one reference conductance ``G_ref``.

    The levels are normalized by ``m = max|l|``; a positive level is put on the
    positive device at ``G+ = G_ref + (1 - G_ref) * |l| / m`` with the negative
    device at ``G- = G_ref``, a negative level the other way round, zero on both
    devices at ``G_ref``. ``G_ref`` defaults to ``G_min`` (``G_min <= G_ref < 1``).
    In ``seeds/004`` the devices span 2.1-17.85 uS, ``G_ref = 2.1 uS`` and
    ``|l| / m`` is multiplied by 15.75 uS: here ``G_min = G_ref = 2.1 / 17.85``.

    Reconstruction: ``w = (G+ - G-) * m / (1 - G_ref)``
    (:func:`balanced_weight_scale` with the same ``G_ref``).
    """
    where = "balanced_unified_reference"
    lv, xp = _levels(levels, xp, where)
    g_min = check_gmin(Gmin, where)
    g_ref = g_min if G_ref is None else check_gmin(G_ref, where)
    if g_ref < g_min:
        raise ConfigError(f"{where}: G_ref = {G_ref!r} is below Gmin = {Gmin!r}; a device cannot go below Gmin")
    m = float(xp.max(xp.abs(lv)))
    if m == 0.0:
        full = xp.full(lv.shape, g_ref, dtype=xp.float64)
        return BalancedMapping(full, full.copy())
    mag = (1.0 - g_ref) * (xp.abs(lv) / m)
    zero = xp.zeros_like(mag)
    return BalancedMapping(g_ref + xp.where(lv > 0, mag, zero), g_ref + xp.where(lv < 0, mag, zero))


def balanced_one_sided(levels, Gmin: float, *, xp=None) -> BalancedMapping:
    """CrossSim ``BALANCED`` / ``balanced_style = "one_sided"`` (manual 6.5.1).

    The device of the level's sign encodes ``|l| / max|l|`` proportionally in
    ``[G_min, 1]``; the other device sits at ``G_min``; zero is ``G_min`` on both.
    ``max|l|`` maps to ``G_max = 1``. Identical to
    :func:`balanced_unified_reference` with ``G_ref = G_min``.

    Reconstruction: ``w = (G+ - G-) * max|l| / (1 - G_min)``.
    """
    return balanced_unified_reference(levels, Gmin, None, xp=xp)


def balanced_two_sided(levels, Gmin: float, *, xp=None) -> BalancedMapping:
    """CrossSim ``BALANCED`` / ``balanced_style = "two_sided"`` (manual 6.5.1).

    Zero is the mid-range conductance ``G_mid = (1 + G_min) / 2`` on both
    devices; a level moves them apart symmetrically by half the range:
    ``G+- = G_mid +- (1 - G_min) / 2 * l / max|l|``, so ``+max|l|`` is
    ``(G+, G-) = (1, G_min)`` and ``-max|l|`` is ``(G_min, 1)``.

    Reconstruction: ``w = (G+ - G-) * max|l| / (1 - G_min)``.
    """
    where = "balanced_two_sided"
    lv, xp = _levels(levels, xp, where)
    g_min = check_gmin(Gmin, where)
    g_mid = 0.5 * (1.0 + g_min)
    m = float(xp.max(xp.abs(lv)))
    if m == 0.0:
        full = xp.full(lv.shape, g_mid, dtype=xp.float64)
        return BalancedMapping(full, full.copy())
    d = (0.5 * (1.0 - g_min)) * (lv / m)
    return BalancedMapping(g_mid + d, g_mid - d)


def balanced_weight_scale(levels, Gmin: float, G_ref: float | None = None, *, xp=None) -> float:
    """``s = max|l| / (1 - G_ref)`` (``G_ref`` defaults to ``G_min``): ``w = s * (G+ - G-)``.

    Valid for all three BALANCED maps above (two_sided: ``G_ref = G_min``).
    0 when all levels are zero.
    """
    where = "balanced_weight_scale"
    lv, xp = _levels(levels, xp, where)
    g_min = check_gmin(Gmin, where)
    g_ref = g_min if G_ref is None else check_gmin(G_ref, where)
    return float(xp.max(xp.abs(lv))) / (1.0 - g_ref)


def balanced_decode(Gpos, Gneg, scale: float):
    """Weights (or MVM outputs) from a differential pair: ``scale * (G+ - G-)``."""
    return scale * (Gpos - Gneg)


def offset_linear(levels, Gmin: float, *, xp=None) -> OffsetMapping:
    """Levels mapped linearly (affinely) onto one device per weight, ``OFFSET`` style.

    ``min(l) -> G_min`` and ``max(l) -> G_max = 1``:
    ``G = G_min + (1 - G_min) * (l - min l) / (max l - min l)``. Unlike CrossSim's
    symmetric OFFSET range the whole conductance range is used even for
    asymmetric levels; zero weight sits at ``G_0 = G_min - offset / scale``
    (not necessarily a level).

    Returns ``OffsetMapping(G, scale, offset)`` with ``scale = (max l - min l) /
    (1 - G_min)`` and ``offset = min l``. Reconstruction:
    ``w = scale * (G - G_min) + offset``; for an MVM
    ``W x = scale * (G x) + (offset - scale * G_min) * sum(x)`` (the second term
    digitally or by a unit column). A single distinct level ``l`` maps to
    ``G_min`` with ``scale = 0, offset = l``.
    """
    where = "offset_linear"
    lv, xp = _levels(levels, xp, where)
    g_min = check_gmin(Gmin, where)
    lo, hi = float(xp.min(lv)), float(xp.max(lv))
    if hi == lo:
        return OffsetMapping(xp.full(lv.shape, g_min, dtype=xp.float64), 0.0, lo)
    G = g_min + (1.0 - g_min) * ((lv - lo) / (hi - lo))
    return OffsetMapping(G, (hi - lo) / (1.0 - g_min), lo)


def offset_decode(G, scale: float, offset: float, Gmin: float):
    """Weights from offset-mapped conductances: ``scale * (G - G_min) + offset``."""
    return scale * (G - Gmin) + offset
