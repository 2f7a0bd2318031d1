"""Lloyd-Max weight levels inside the core hierarchy (``weight_quantizer = "lloyd"``).

The levels are fitted once per layer to its normalized weights
``w = W / W_max`` (:func:`~simulator.quantization.lloyd.lloyd_max`), every
weight is replaced by its level, and each level is mapped to conductances by
:mod:`simulator.quantization.mapping` (BALANCED one_sided / two_sided /
unified_reference, OFFSET linear over ``[G_min, G_max]``). The result is a
:class:`~simulator.cores.mapping.SliceEncoding` with one slice, whose gain and
offset invert the mapping after the MVM -- device errors, read noise and ADCs
then apply exactly as for uniform weights.
"""
from __future__ import annotations

import numpy as np

from simulator.cores.mapping import SliceEncoding
from simulator.quantization.lloyd import lloyd_max
from simulator.quantization.mapping import (
    balanced_one_sided,
    balanced_two_sided,
    balanced_unified_reference,
    balanced_weight_scale,
    offset_linear,
)


def fit_levels(w, hw, where: str = ""):
    """Lloyd-Max fit of the layer's normalized weights (host arrays)."""
    data = np.asarray(w.get() if hasattr(w, "get") else w, dtype=np.float64).ravel()
    try:
        return lloyd_max(data, hw.weight_levels, tol=hw.lloyd_tol, allow_degenerate=hw.lloyd_allow_degenerate)
    except Exception as exc:
        from simulator.errors import ConfigError

        if isinstance(exc, ConfigError):
            raise ConfigError(
                f"layer {where!r}: {exc} (set layers.{where}.lloyd_allow_degenerate = true to accept fewer levels)"
            ) from None
        raise


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
