"""The array backend: NumPy on the CPU, CuPy on a GPU (``useGPU = true``).

All simulation array math goes through ``backend.xp``; nothing else imports
NumPy or CuPy for array math, so the same code runs on both. Results leave
the simulator as NumPy arrays (:meth:`Backend.asnumpy`).
"""
from __future__ import annotations

from dataclasses import dataclass
from typing import Any

import numpy

from simulator.errors import BackendError


@dataclass(frozen=True)
class Backend:
    name: str  # "numpy" or "cupy"
    xp: Any  # the array module

    def asarray(self, a, dtype=None):
        return self.xp.asarray(a, dtype=dtype)

    def asnumpy(self, a) -> numpy.ndarray:
        if self.name == "cupy":
            return self.xp.asnumpy(a)
        return numpy.asarray(a)

    def rng(self, seed: int | None):
        """A random Generator of this backend seeded with ``seed``."""
        return self.xp.random.default_rng(seed)


NUMPY = Backend("numpy", numpy)


def get_backend(use_gpu: bool = False, gpu_num: int = 0) -> Backend:
    """NumPy, or CuPy on GPU ``gpu_num`` when ``use_gpu``; BackendError when CuPy or a GPU is missing."""
    if not use_gpu:
        return NUMPY
    try:
        import cupy
    except ImportError:
        raise BackendError(
            "useGPU = true needs CuPy: install the GPU extra (pip install 'xbarsim[gpu]') on a machine with a CUDA GPU"
        ) from None
    try:
        count = cupy.cuda.runtime.getDeviceCount()
    except Exception as exc:  # CUDA driver missing or broken
        raise BackendError(f"useGPU = true but no CUDA GPU is usable ({exc.__class__.__name__}: {exc})") from None
    if gpu_num >= count:
        raise BackendError(f"gpu_num = {gpu_num} but only {count} GPU(s) are visible")
    cupy.cuda.Device(gpu_num).use()
    return Backend("cupy", cupy)
