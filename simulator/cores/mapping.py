"""The one weight -> normalized conductance mapping of the core hierarchy (manual ch. 6).

Owns ``W_max`` (:func:`weight_range`), the BALANCED / OFFSET encodings of
uniformly quantized weights with bit slicing (:func:`encode`; the integer codes
come from :func:`simulator.quantization.uniform.quantize_normalized`), the maps
of arbitrary (Lloyd-Max) levels onto conductances and the encoder that puts
Lloyd levels into the hierarchy (:func:`lloyd_encoder`).

Units: *algorithmic* weights ``W`` are the model's values; *normalized*
weights ``w = W / W_max`` lie in ``[-1, 1]`` (``W_max`` from
``weight_percentile``, 6.2.1); a *conductance fraction* ``v`` in ``[0, 1]``
maps to the normalized conductance ``G = G_min + (1 - G_min) * v``.

A :class:`SliceEncoding` stores ``w`` in one or more slices of conductance
fractions (``pos`` and, for BALANCED, ``neg``) and the digital gains that
recombine the slices' column outputs ``D_i`` (differences of the two devices,
or offset-corrected single-device currents, divided by ``1 - G_min``)::

    w . x = sum_i gains[i] * D_i  -  offset * sum(x)

Quantized encodings (``weight_bits = B``):

* BALANCED: ``W_int = rint(w * (2**(B-1) - 1))`` -- ``2**B - 1`` levels, zero
  on both devices at ``G_min`` (one_sided) or at mid-range (two_sided). The
  ``B - 1`` magnitude bits are split into ``Nslices`` slices of
  ``ceil((B-1)/Nslices)`` bits; the sign picks the device in every slice.
* OFFSET: ``W_int = clip(rint(w * 2**(B-1)), -2**(B-1), 2**(B-1) - 1)`` --
  ``2**B`` levels; the offset-encoded ``W_int + 2**(B-1)`` in ``[0, 2**B - 1]``
  is split into slices of ``ceil(B/Nslices)`` bits and
  ``2**(B-1) * sum(x)`` is subtracted after aggregation (eq. 6.8).

Lloyd-Max levels (``weight_quantizer = "lloyd"``)
-----------------------------------------------
The levels are fitted once per layer to its normalized weights
(:func:`~simulator.quantization.lloyd.lloyd_max`), every weight is replaced
by its level, and each level is mapped to conductances by the level maps
below. :func:`lloyd_encoder` returns the encoding with one slice whose gain and
offset invert the map after the MVM -- device errors, read noise and ADCs then
apply exactly as for uniform weights.

Non-uniform levels onto conductances
------------------------------------
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

import dataclasses
import logging
import math
from dataclasses import dataclass, field
from typing import Any, NamedTuple

import numpy as np

from simulator.errors import ConfigError
from simulator.quantization._common import array_module, check_gmin
from simulator.quantization.lloyd import lloyd_max
from simulator.quantization.uniform import quantize_normalized

log = logging.getLogger("xbarsim.mapping")


def weight_range(W, percentile: float, xp) -> float:
    """``W_max`` of manual 6.2.1 for percentile ``P`` (symmetric range ``[-W_max, W_max]``)."""
    absmax = float(xp.max(xp.abs(W))) if W.size else 0.0
    if percentile == 100:
        wmax = absmax
    elif percentile > 100:
        wmax = percentile / 100.0 * absmax
    else:
        hi = float(xp.percentile(W, percentile))
        lo = float(xp.percentile(W, 100 - percentile))
        wmax = max(abs(hi), abs(lo))
    return wmax if wmax > 0 else 1.0


@dataclass
class SliceEncoding:
    """Conductance fractions of every slice and the digital recombination constants."""

    style: str
    pos: list  # per slice: conductance fractions (R, C) of the positive (or only) device
    neg: list | None  # per slice, BALANCED only
    gains: list[float]
    offset: float = 0.0  # OFFSET: subtract offset * sum(x)
    device_levels: int | None = None  # 2**bits_per_slice - 1 (None: continuous)
    bits_per_slice: int | None = None
    weight_levels: int | None = None  # distinct weight levels (for messages / tests)
    meta: dict = field(default_factory=dict)

    @property
    def n_slices(self) -> int:
        return len(self.pos)


def encode(w, *, weight_bits: int, Nslices: int, style: str, balanced_style: str, xp, layer: str = "") -> SliceEncoding:
    """Encode normalized weights ``w`` (R, C) in ``[-1, 1]`` into conductance slices."""
    if weight_bits == 0:
        if style == "BALANCED":
            if balanced_style == "two_sided":
                return SliceEncoding(style, [(1 + w) / 2], [(1 - w) / 2], [1.0])
            return SliceEncoding(style, [xp.maximum(w, 0)], [xp.maximum(-w, 0)], [1.0])
        return SliceEncoding(style, [(w + 1) / 2], None, [2.0], offset=1.0)

    W_int, L = quantize_normalized(w, weight_bits, style, xp)
    if style == "BALANCED":
        mag_bits = weight_bits - 1
        if balanced_style == "two_sided":  # unsliced only (validated in the config)
            return SliceEncoding(
                style, [(1 + W_int / L) / 2], [(1 - W_int / L) / 2], [1.0],
                device_levels=2 * L, bits_per_slice=weight_bits, weight_levels=2 * L + 1,
            )
        b = math.ceil(mag_bits / Nslices)
        if mag_bits % Nslices:
            log.warning(
                "%s: weight_bits - 1 = %d is not divisible by Nslices = %d: the top slice uses only part of the "
                "device range (BALANCED is fully used when weight_bits - 1 is a multiple of Nslices, manual 6.6.1)",
                layer or "layer", mag_bits, Nslices,
            )
        mag = xp.abs(W_int)
        positive = W_int > 0
        negative = W_int < 0
        pos, neg, gains = [], [], []
        top = 2**b - 1
        for i in range(Nslices):
            s = xp.floor(mag / 2 ** (b * i)) % 2**b
            pos.append(xp.where(positive, s, 0) / top)
            neg.append(xp.where(negative, s, 0) / top)
            gains.append(2 ** (b * i) * top / L)
        return SliceEncoding(style, pos, neg, gains, device_levels=top, bits_per_slice=b, weight_levels=2 * L + 1)

    b = math.ceil(weight_bits / Nslices)
    if weight_bits % Nslices:
        log.warning(
            "%s: weight_bits = %d is not divisible by Nslices = %d: the top slice uses only part of the device "
            "range (OFFSET is fully used when weight_bits is a multiple of Nslices, manual 6.6.2)",
            layer or "layer", weight_bits, Nslices,
        )
    enc = W_int + L  # L = 2**(B-1): offset-encoded value in [0, 2**B - 1]
    top = 2**b - 1
    pos, gains = [], []
    for i in range(Nslices):
        s = xp.floor(enc / 2 ** (b * i)) % 2**b
        pos.append(s / top)
        gains.append(2 ** (b * i) * top / L)
    return SliceEncoding(style, pos, None, gains, offset=1.0, device_levels=top, bits_per_slice=b, weight_levels=2 * L)


def partition_sizes(n_rows: int, nrows_max: int) -> list[int]:
    """Rows per array for ``n_rows`` matrix rows (manual 8.1).

    ``NrowsMax = 0`` means unlimited. A multiple of NrowsMax gives full arrays;
    otherwise rows are spread evenly (sizes differ by at most one), e.g.
    100 rows with NrowsMax 72 -> [50, 50].
    """
    if nrows_max <= 0 or n_rows <= nrows_max:
        return [n_rows]
    n_parts = math.ceil(n_rows / nrows_max)
    base, extra = divmod(n_rows, n_parts)
    return [base + 1] * extra + [base] * (n_parts - extra)


def slice_columns(enc: SliceEncoding, cols: slice) -> SliceEncoding:
    """The encoding of the columns ``cols`` only (for column partitions, NcolsMax)."""
    return dataclasses.replace(
        enc, pos=[v[:, cols] for v in enc.pos], neg=None if enc.neg is None else [v[:, cols] for v in enc.neg],
        meta=dict(enc.meta),
    )


# ---------------------------------------------------------------- level maps
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


# ---------------------------------------------------------------- Lloyd levels
def fit_levels(w, hw, where: str = ""):
    """Lloyd-Max fit of the layer's normalized weights (host arrays)."""
    data = np.asarray(w.get() if hasattr(w, "get") else w, dtype=np.float64).ravel()
    try:
        return lloyd_max(data, hw.weight_levels, tol=hw.lloyd_tol, allow_degenerate=hw.lloyd_allow_degenerate)
    except ConfigError as exc:
        raise ConfigError(
            f"layer {where!r}: {exc} (set layers.{where}.lloyd_allow_degenerate = true to accept fewer levels)"
        ) from None


def lloyd_encoder(hw, config, xp, name: str, structure=None):
    """Callable ``w -> (w_q, encoding_for(rows))`` used by NeuralCore for Lloyd levels.

    ``structure`` (optional bool array, the MVM matrix's shape without extra
    rows) marks the real weights of a block-diagonal matrix (depthwise or
    grouped convolution). Only those are fitted and quantized; the structural
    zeros stay exact zeros (cells at the zero-weight state), so they neither
    pull a level towards zero nor leak between channels. Rows beyond
    ``structure`` (an analog bias row) are weights.
    """
    Gmin = 0.0 if config.On_off_ratio == 0 else 1.0 / config.On_off_ratio

    def encode(w):
        w_host = np.asarray(w.get() if hasattr(w, "get") else w, dtype=np.float64)
        mask = None
        if structure is not None:
            mask = np.ones(w_host.shape, dtype=bool)
            mask[: structure.shape[0]] = np.asarray(structure, dtype=bool)
        result = fit_levels(w_host[mask] if mask is not None else w_host, hw, name)
        levels = np.asarray(result.levels, dtype=np.float64)
        idx_h = np.searchsorted(result.thresholds, w_host, side="left")
        if mask is not None:  # one extra table entry, 0.0, for the structural zeros
            levels = np.append(levels, 0.0)
            idx_h = np.where(mask, idx_h, levels.shape[0] - 1)
        idx = xp.asarray(idx_h)
        wq = xp.asarray(levels)[idx]
        if hw.style == "BALANCED":
            if hw.balanced_style == "two_sided":
                Gp, Gn = balanced_two_sided(levels, Gmin)
                scale = balanced_weight_scale(levels, Gmin)
            elif hw.balanced_style == "unified_reference":
                g_ref = Gmin if hw.G_ref is None else hw.G_ref
                Gp, Gn = balanced_unified_reference(levels, Gmin, g_ref)
                scale = balanced_weight_scale(levels, Gmin, g_ref)
            else:
                Gp, Gn = balanced_one_sided(levels, Gmin)
                scale = balanced_weight_scale(levels, Gmin)
            vp = xp.asarray((np.asarray(Gp) - Gmin) / (1 - Gmin))[idx]
            vn = xp.asarray((np.asarray(Gn) - Gmin) / (1 - Gmin))[idx]
            gain, offset = scale * (1 - Gmin), 0.0
        else:
            mapping = offset_linear(levels, Gmin)
            vp = xp.asarray((np.asarray(mapping.G) - Gmin) / (1 - Gmin))[idx]
            vn = None
            gain, offset = mapping.scale * (1 - Gmin), -mapping.offset

        def for_rows(rows: slice) -> SliceEncoding:
            return SliceEncoding(
                hw.style, [vp[rows]], None if vn is None else [vn[rows]], [gain], offset=offset,
                weight_levels=len(result.levels), meta={"levels": np.asarray(result.levels), "lloyd_mse": result.mse},
            )

        return wq, for_rows

    return encode
