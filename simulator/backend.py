"""The array backend: NumPy on the CPU, CuPy on a GPU (``useGPU = true``).

All simulation array math goes through ``backend.xp``; nothing else imports
NumPy or CuPy for array math, so the same code runs on both. Results leave
the simulator as NumPy arrays (:meth:`Backend.asnumpy`).
"""
from __future__ import annotations

import hashlib
import math
import sys
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

    def streams(self, seed: int) -> "RandomStreams":
        """Keyed random streams of this backend for simulation seed ``seed`` (see :class:`RandomStreams`)."""
        return RandomStreams(seed, self)


NUMPY = Backend("numpy", numpy)


def backend_of(xp) -> Backend:
    """The Backend whose array module is ``xp`` (NumPy or CuPy)."""
    if xp is numpy:
        return NUMPY
    return Backend("cupy" if getattr(xp, "__name__", "") == "cupy" else "numpy", xp)


_TORCH = None  # torch, False when it is not installed, None before the first look


def has_int8_matmul() -> bool:
    """Whether :func:`int8_matmul` can run here (torch is installed); looked up once per process."""
    global _TORCH
    if _TORCH is None:
        try:
            import torch

            _TORCH = torch
        except ImportError:
            _TORCH = False
    return bool(_TORCH)


def int8_matmul(a, b):
    """Exact ``a @ b`` of int8 NumPy arrays as int32 (torch's CPU int8 GEMM), or None without torch.

    The product of integer codes: DAC codes times weight codes, with int32
    accumulation (exact while ``rows * 127**2 < 2**31``). torch (an optional
    dependency) runs it on the CPU's int8 units (VNNI / AMX where present),
    several times the float32 GEMM rate; the arrays are shared, not copied
    (``a`` is made C-contiguous first when it is a view).
    """
    if not has_int8_matmul():
        return None
    torch = _TORCH
    return torch._int_mm(torch.from_numpy(numpy.ascontiguousarray(a)), torch.from_numpy(b)).numpy()


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


# ---------------------------------------------------------------------------
# keyed random streams
# ---------------------------------------------------------------------------
_GOLDEN = 0x9E3779B97F4A7C15  # SplitMix64 increment (2**64 / golden ratio)
_MIX1, _MIX2 = 0xBF58476D1CE4E5B9, 0x94D049BB133111EB  # SplitMix64 finalizer multipliers
_NORMAL_BLOCK = 1 << 14  # Box-Muller pairs per block on the CPU (the block's temporaries stay in the L1/L2 cache)
_ADD_BLOCK = 1 << 17  # values per block of add_normal on the CPU (its draws stay in the L2 cache)


def _key_words(parts: tuple) -> list[int]:
    """Fixed-width 32-bit words for a key of ints and strings (two words per part: no ambiguity)."""
    words: list[int] = []
    for p in parts:
        if isinstance(p, bool) or not isinstance(p, (int, str)):
            raise TypeError(f"random stream keys are ints and strings, got {type(p).__name__}")
        tag = f"i:{p}" if isinstance(p, int) else f"s:{p}"
        h = int.from_bytes(hashlib.blake2b(tag.encode(), digest_size=8).digest(), "little")
        words += [h & 0xFFFFFFFF, h >> 32]
    return words


class RandomStreams:
    """Random numbers keyed by what they belong to, never by the order they are drawn in.

    A stream is named by the simulation seed and a key tuple of ints and
    strings, e.g. ``("program", "conv1/part0/slice1", "pos")``. Its 128-bit key
    comes from :class:`numpy.random.SeedSequence` (entropy = seed, spawn key =
    the hashed key parts), so streams of different keys are independent.

    * :meth:`generator` -- a Generator of the backend for draws made once
      (programming errors, drift): NumPy ``Generator(Philox(...))``; CuPy's
      ``default_rng`` seeded from the same key.
    * :meth:`normal` / :meth:`uniform` -- counter-based draws: value number
      ``p`` of a stream is a fixed function of (key, p) (Philox4x64 on the
      CPU, a keyed SplitMix64 hash on the GPU, see :meth:`bits`; Box-Muller
      for normals), so any sub-range is drawn without the values before it.
      Callers map
      what a value belongs to (an image's row of an MVM batch and a column) to
      its position ``p``; then chunking or batching cannot change it.
    * :meth:`draws` -- a Generator-like object (``standard_normal``,
      ``normal``, ``random``, ``uniform``) whose arrays are positioned by
      their leading axis (MVM rows), for device-model read-noise samplers.
    """

    def __init__(self, seed: int, backend: "Backend | None" = None) -> None:
        self.seed = int(seed)
        self.backend = backend or NUMPY
        self.xp = self.backend.xp
        self._keys: dict[tuple, tuple[int, int]] = {}

    def seed_sequence(self, *key) -> numpy.random.SeedSequence:
        return numpy.random.SeedSequence(self.seed, spawn_key=tuple(_key_words(key)))

    def key128(self, *key) -> tuple[int, int]:
        """The stream's key as two 64-bit integers (cached)."""
        k = self._keys.get(key)
        if k is None:
            state = self.seed_sequence(*key).generate_state(2, numpy.uint64)
            k = self._keys[key] = (int(state[0]), int(state[1]))
        return k

    def generator(self, *key):
        """A fresh backend Generator for stream ``key`` (same key -> same draws)."""
        if self.backend.name == "cupy":
            k0, _ = self.key128(*key)
            return self.xp.random.default_rng(k0 % 2**63)  # an int seed every CuPy version takes
        return numpy.random.Generator(numpy.random.Philox(self.seed_sequence(*key)))

    def bits(self, key: tuple, start: int, count: int):
        """Raw 64-bit values number ``start .. start+count-1`` of stream ``key`` (uint64 array of ``xp``).

        NumPy: Philox4x64 with the stream's 128-bit key, its counter set to
        ``start // 4`` (one counter value gives four raw values). CuPy: two
        SplitMix64 rounds of ``p * golden + k0``, xor ``k1`` (a keyed bijection
        of the position ``p``), computed on the GPU -- other numbers than the
        CPU's, keyed the same way.
        """
        xp = self.xp
        k0, k1 = self.key128(*key)
        if self.backend.name == "numpy":
            c0 = start // 4
            raw = numpy.random.Philox(key=[k0, k1], counter=c0).random_raw(start - 4 * c0 + count)
            return raw[start - 4 * c0 :]
        u64 = xp.uint64
        z = xp.arange(count, dtype=u64)
        z += u64(start % 2**64)
        z *= u64(_GOLDEN)
        z += u64(k0)
        _mix(z, xp)
        z ^= u64(k1)
        _mix(z, xp)
        return z

    def uniform(self, key: tuple, start: int, count: int, dtype="float64"):
        """Uniform [0, 1) values number ``start ..`` of stream ``key`` (24 bits in float32, 53 in float64)."""
        xp = self.xp
        b = self.bits(key, start, count)
        if xp.dtype(dtype) == xp.float32:
            return (b >> xp.uint64(40)).astype(xp.float32) * xp.float32(2.0**-24)
        return (b >> xp.uint64(11)).astype(xp.float64) * (2.0**-53)

    def normal(self, key: tuple, start: int, count: int, dtype="float64"):
        """Standard normal values number ``start .. start+count-1`` of stream ``key`` (1-D array of ``dtype``).

        Box-Muller on pairs: values ``2q`` and ``2q+1`` are ``r cos(t)`` and
        ``r sin(t)`` of pair ``q``, whose two uniforms are the low and high
        32-bit halves of raw value ``q`` (``r = sqrt(-2 ln u1)`` with
        ``u1 >= 2**-33``, so ``|z| < 6.8``; computed in ``dtype``).
        """
        xp = self.xp
        dt = xp.dtype(dtype)
        if dt not in (xp.float32, xp.float64):
            dt = xp.dtype(xp.float64)
        if count <= 0:
            return xp.empty(0, dtype=dt)
        q0, q1 = start // 2, (start + count + 1) // 2
        b = self.bits(key, q0, q1 - q0)
        if sys.byteorder == "little":
            halves = b.view(xp.uint32).reshape(-1, 2)
            lo, hi = halves[:, 0], halves[:, 1]
        else:  # pragma: no cover - big-endian hosts
            lo, hi = (b & xp.uint64(0xFFFFFFFF)).astype(xp.uint32), (b >> xp.uint64(32)).astype(xp.uint32)
        out = xp.empty((q1 - q0, 2), dtype=dt)
        step = _NORMAL_BLOCK if self.backend.name == "numpy" else q1 - q0  # CPU: temporaries stay in cache
        r = xp.empty(min(step, q1 - q0), dtype=dt)
        t, c = xp.empty_like(r), xp.empty_like(r)
        for s in range(0, q1 - q0, step):
            n = min(step, q1 - q0 - s)
            rs, ts, cs = r[:n], t[:n], c[:n]
            xp.multiply(lo[s : s + n], dt.type(2.0**-32), out=rs, dtype=dt)  # the cast rounds as astype does
            rs += dt.type(2.0**-33)
            xp.log(rs, out=rs)
            rs *= dt.type(-2.0)
            xp.sqrt(rs, out=rs)
            xp.multiply(hi[s : s + n], dt.type(2.0 * math.pi * 2.0**-32), out=ts, dtype=dt)
            xp.cos(ts, out=cs)
            xp.multiply(rs, cs, out=out[s : s + n, 0])
            xp.sin(ts, out=cs)
            xp.multiply(rs, cs, out=out[s : s + n, 1])
        return out.reshape(-1)[start - 2 * q0 : start - 2 * q0 + count]

    def add_normal(self, out, scale, key: tuple, start: int) -> None:
        """``out += scale * z`` in place: ``z`` = :meth:`normal` values ``start ..`` of stream ``key``, laid out like ``out``.

        ``out``: C-contiguous (M, ...); ``scale`` broadcasts against it with a
        leading axis of M or 1 (e.g. one std per row, (M, 1)). The numbers are
        those of ``normal(key, start, out.size)``, drawn a block of rows at a
        time on the CPU, so the draws never exist whole and stay in cache.
        """
        M = out.shape[0]
        per_row = math.prod(out.shape[1:])
        rows = max(1, _ADD_BLOCK // max(per_row, 1)) if self.backend.name == "numpy" else max(M, 1)
        for r in range(0, M, rows):
            n = min(rows, M - r)
            z = self.normal(key, start + r * per_row, n * per_row, out.dtype).reshape((n,) + out.shape[1:])
            z *= scale if scale.shape[0] == 1 else scale[r : r + n]
            out[r : r + n] += z

    def draws(self, *key, row0: int = 0) -> "KeyedDraws":
        """A Generator-like view of stream ``key`` whose arrays start at MVM row ``row0``."""
        return KeyedDraws(self, key, row0)


def _mix(z, xp) -> None:
    """SplitMix64 finalizer, in place on a uint64 array (a bijection of 64-bit values)."""
    u64 = xp.uint64
    z ^= z >> u64(30)
    z *= u64(_MIX1)
    z ^= z >> u64(27)
    z *= u64(_MIX2)
    z ^= z >> u64(31)


class KeyedDraws:
    """Generator-like draws from a keyed stream, positioned by the arrays' leading axis.

    An array of shape ``(m, *rest)`` drawn at row ``row0`` holds the values of
    rows ``row0 .. row0+m-1`` (``prod(rest)`` values per row): the same row gets
    the same numbers whichever chunk it is drawn in. Every call draws from its
    own sub-stream (the call number is part of the key), so a sampler making
    several draws gets independent numbers, and the same ones for every chunk.
    """

    def __init__(self, streams: RandomStreams, key: tuple, row0: int = 0) -> None:
        self.streams, self.key, self.row0, self._calls = streams, tuple(key), int(row0), 0

    def _positions(self, size) -> tuple[tuple, int, int, tuple]:
        shape = (size,) if isinstance(size, int) else tuple(size)
        per_row = math.prod(shape[1:]) if len(shape) > 1 else 1
        key = self.key + (self._calls,)
        self._calls += 1
        return key, self.row0 * per_row, math.prod(shape), shape

    def standard_normal(self, size, dtype="float64"):
        key, start, n, shape = self._positions(size)
        return self.streams.normal(key, start, n, dtype).reshape(shape)

    def normal(self, loc=0.0, scale=1.0, size=None, dtype="float64"):
        return loc + scale * self.standard_normal(size, dtype)

    def random(self, size, dtype="float64"):
        key, start, n, shape = self._positions(size)
        return self.streams.uniform(key, start, n, dtype).reshape(shape)

    def uniform(self, low=0.0, high=1.0, size=None, dtype="float64"):
        return low + (high - low) * self.random(size, dtype)


def as_streams(rng, backend: "Backend | None" = None) -> RandomStreams:
    """``rng`` as :class:`RandomStreams`: itself, a seed (int), or a Generator (one seed drawn from it)."""
    if isinstance(rng, RandomStreams):
        return rng
    if rng is None:
        return RandomStreams(int(numpy.random.SeedSequence().entropy % 2**63), backend)
    if isinstance(rng, int) and not isinstance(rng, bool):
        return RandomStreams(rng, backend)
    return RandomStreams(int(rng.integers(0, 2**63)), backend)
