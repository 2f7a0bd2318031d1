"""GroupedCore: a grouped or depthwise convolution as one NeuralCore per group.

With ``grouped_conv = "per_group"`` each group of a grouped convolution
(each channel of a depthwise one) gets its own arrays: a
``(kh*kw*cin/groups, cout/groups)`` matrix instead of one block-diagonal
``(kh*kw*cin, cout)`` array whose off-diagonal cells hold zero weights. The
groups share the layer's DAC (its input range) and weight scale ``W_max``
(from the whole kernel), so without device errors the result equals the
block-diagonal mapping; with errors or read noise the zero cells of the
block-diagonal array no longer contribute. Memory and MVM work drop by the
number of groups.

Inputs are the executor's im2col rows, columns in (kh, kw, C) order.
"""
from __future__ import annotations

import numpy as np


def group_blocks(kernel: np.ndarray, groups: int, depthwise: bool):
    """[(input columns, output columns, W_g)] of every group, in im2col (kh, kw, C) column order.

    ``kernel``: Conv2D ``(kh, kw, cin/groups, cout)`` or DepthwiseConv2D
    ``(kh, kw, cin, multiplier)`` (outputs ``c * multiplier + m``).
    """
    kh, kw = kernel.shape[:2]
    if depthwise:
        cin, mult = kernel.shape[2:]
        C, cin_g, cout_g, groups = cin, 1, mult, cin
    else:
        cin_g, cout = kernel.shape[2:]
        C, cout_g = cin_g * groups, cout // groups
    taps = np.arange(kh * kw)[:, None] * C
    blocks = []
    for g in range(groups):
        cols = (taps + g * cin_g + np.arange(cin_g)[None, :]).reshape(-1)
        outs = np.arange(g * cout_g, (g + 1) * cout_g)
        W = kernel[:, :, g, :] if depthwise else kernel[:, :, :, g * cout_g:(g + 1) * cout_g]
        blocks.append((cols, outs, np.ascontiguousarray(W.reshape(kh * kw * cin_g, cout_g))))
    return blocks


class GroupedCore:
    """Calls one core per group on its input columns and places the outputs."""

    def __init__(self, name: str, cores: list, columns: list, outputs: list, n_out: int, xp) -> None:
        self.name, self.cores, self.n_out, self.xp = name, cores, n_out, xp
        self.columns = [xp.asarray(c) for c in columns]
        self.outputs = [xp.asarray(o) for o in outputs]

    @property
    def can_prequantize(self) -> bool:
        return all(getattr(c, "can_prequantize", False) for c in self.cores)

    @property
    def takes_codes(self) -> bool:
        """Whether every group takes int8 DAC codes (NeuralCore.takes_codes)."""
        return all(c.takes_codes for c in self.cores)

    def prequantize(self, X):
        """The shared DAC on the activations (every group has the layer's input range); int8 codes when all take them."""
        return self.cores[0].prequantize(X, codes=self.takes_codes)

    def prequantized_zero(self, X) -> float:
        return self.cores[0].prequantized_zero(X)

    def __call__(self, X, **kwargs):
        xp = self.xp
        out = None
        for core, cols, outs in zip(self.cores, self.columns, self.outputs):
            y = core(X[:, cols], **kwargs)
            if out is None:
                out = xp.empty((X.shape[0], self.n_out), dtype=y.dtype)
            out[:, outs] = y
        return out
