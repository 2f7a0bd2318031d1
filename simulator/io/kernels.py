"""Convolution kernels of channels-first frameworks (ONNX, PyTorch) in our Keras layouts.

Both store a 2-D convolution weight as ``(out, in / groups, kh, kw)``; we
store ``kernel`` as ``(kh, kw, in / groups, out)`` and a depthwise kernel as
``(kh, kw, channels, multiplier)`` (output channel ``c * multiplier + m``),
see :mod:`simulator.network`.
"""
from __future__ import annotations

import numpy as np


def conv_kernel(w: np.ndarray) -> np.ndarray:
    """``(O, I/g, kh, kw)`` -> ``(kh, kw, I/g, O)`` (a transposed convolution's ``(I, O, kh, kw)`` -> ``(kh, kw, O, I)``)."""
    return np.ascontiguousarray(np.asarray(w).transpose(2, 3, 1, 0))


def depthwise_kernel(w: np.ndarray, channels: int) -> np.ndarray:
    """``(channels * multiplier, 1, kh, kw)`` -> ``(kh, kw, channels, multiplier)``."""
    w = np.asarray(w)
    return np.ascontiguousarray(w.reshape(channels, w.shape[0] // channels, *w.shape[2:]).transpose(2, 3, 0, 1))
