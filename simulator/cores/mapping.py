"""Weight quantization and the mapping of weights onto conductance slices (manual ch. 6).

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
"""
from __future__ import annotations

import logging
import math
from dataclasses import dataclass, field

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


def quantize_normalized(w, weight_bits: int, style: str, xp):
    """Integer weight levels ``W_int`` and the divisor ``L`` with ``w_q = W_int / L``."""
    if style == "BALANCED":
        L = 2 ** (weight_bits - 1) - 1
        return xp.rint(w * L), L
    half = 2 ** (weight_bits - 1)
    return xp.clip(xp.rint(w * half), -half, half - 1), half


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
    import dataclasses

    return dataclasses.replace(
        enc, pos=[v[:, cols] for v in enc.pos], neg=None if enc.neg is None else [v[:, cols] for v in enc.neg],
        meta=dict(enc.meta),
    )
