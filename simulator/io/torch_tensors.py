"""torch as an optional dependency, and the tensor conversions every torch importer shares."""
from __future__ import annotations

from typing import Any

import numpy as np

from simulator.errors import ModelError


def torch_module():
    """The ``torch`` package (ModelError naming the extra when it is not installed)."""
    try:
        import torch
    except ImportError:
        raise ModelError(
            "importing PyTorch models needs torch: install the extra with pip install 'xbarsim[torch]'"
        ) from None
    return torch


def to_numpy(t) -> np.ndarray:
    """A tensor as a float32 NumPy array (a copy: imported weights never alias the model's tensors)."""
    return t.detach().cpu().float().numpy().copy()


def pair(v) -> list[int]:
    """An int or a 2-sequence (kernel sizes, strides, ...) as ``[a, b]``."""
    if isinstance(v, (tuple, list)):
        return [int(v[0]), int(v[1])]
    return [int(v), int(v)]


def _enum_name(v: Any) -> Any:
    if hasattr(v, "name") and not isinstance(v, (str, int, float, bool)):
        return v.name
    return v


def scalar(v: Any) -> Any:
    """A config value as plain Python: one-element tensors as float, tensors as lists, enums by name."""
    torch = torch_module()
    if isinstance(v, torch.Tensor):
        if v.numel() == 1:
            return float(v.detach().cpu().reshape(-1)[0])
        return [float(a) for a in v.detach().cpu().reshape(-1)]
    return _enum_name(v)
