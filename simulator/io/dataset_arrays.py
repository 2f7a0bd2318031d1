"""Dataset sources: the :class:`Source` interface, in-memory and memory-mapped arrays (``.npy``, ``.npz``).

A source gives random access to one split's raw images (:meth:`Source.read`)
and holds its labels; :mod:`simulator.io.datasets` selects, normalizes and
batches them. The IDX (MNIST) and CIFAR-pickle families live in
:mod:`simulator.io.dataset_idx` and :mod:`simulator.io.dataset_cifar`.
"""
from __future__ import annotations

import functools
import struct
import zipfile
from pathlib import Path
from typing import Any

import numpy as np

from simulator.errors import DataError

#: ImageNet-style pre-processed arrays per split
IMAGENET_FILES = {"test": ("x_val.npy", "y_val.npy"), "calibration": ("x_calib.npy", "y_calib.npy")}


class Source:
    """Random access to one split's raw images; labels are held in memory (small)."""

    n: int
    image_shape: tuple
    labels: np.ndarray
    description: str

    def read(self, idx: np.ndarray) -> np.ndarray:  # idx ascending, unique
        raise NotImplementedError

    def __getstate__(self):  # drop open handles / memory maps when pickled (e.g. to sweep workers)
        state = dict(self.__dict__)
        for key in list(state):
            if key.startswith("_h"):
                state[key] = None
        return state


class ArraySource(Source):
    """Arrays in memory (digits) or opened lazily by ``opener`` (memory-mapped .npy / .npz members)."""

    def __init__(self, x: np.ndarray | None, labels: np.ndarray, description: str, opener=None, image_shape=None,
                 path: Path | None = None):
        self._data = x  # in-memory arrays survive pickling; memory maps (_h*) are reopened
        self._hx = None
        self._opener = opener  # a picklable callable (functools.partial)
        self.labels = labels
        self.description = description
        self.path = path
        self.n = len(labels)
        self.image_shape = tuple(image_shape if image_shape is not None else x.shape[1:])

    def _x(self) -> np.ndarray:
        if self._data is not None:
            return self._data
        if self._hx is None:
            self._hx = self._opener()
        return self._hx

    def read(self, idx: np.ndarray) -> np.ndarray:
        x = self._x()
        if len(idx) and idx[-1] - idx[0] + 1 == len(idx):  # contiguous: one slice
            return np.asarray(x[int(idx[0]) : int(idx[-1]) + 1])
        return np.asarray(x[idx])


def labels_vector(y: Any, n_images: int, where: str) -> np.ndarray:
    """Labels as int64 class indices (``(N, 1)`` columns flattened, one-hot rows converted), checked against ``n_images``."""
    y = np.asarray(y)
    if y.ndim == 2 and y.shape[1] == 1:
        y = y[:, 0]
    elif y.ndim == 2 and y.shape[1] > 1:  # one-hot
        y = np.argmax(y, axis=1)
    if y.ndim != 1:
        raise DataError(f"{where}: labels must be a vector of class indices, got shape {y.shape}")
    if len(y) != n_images:
        raise DataError(f"{where}: {len(y)} labels for {n_images} images (lengths must match)")
    if y.dtype.kind == "f":
        if not np.all(np.equal(np.mod(y, 1), 0)):
            raise DataError(f"{where}: labels must be integer class indices")
    elif y.dtype.kind not in "iub":
        raise DataError(f"{where}: labels have dtype {y.dtype}, expected integers")
    return y.astype(np.int64)


def npy_source(task: str, folder: Path, xname: str, yname: str) -> ArraySource:
    xp, yp = folder / xname, folder / yname
    missing = [p.name for p in (xp, yp) if not p.is_file()]
    if missing:
        raise DataError(f"task {task!r}: {folder} lacks {' and '.join(missing)} (expected {xname} and {yname} there)")
    try:
        x = np.load(xp, mmap_mode="r", allow_pickle=False)
        y = np.load(yp, allow_pickle=False)
    except (OSError, ValueError) as exc:
        raise DataError(f"{folder}: cannot read {xname}/{yname} ({exc.__class__.__name__}: {str(exc).splitlines()[0]})") from None
    labels = labels_vector(y, len(x), f"{yp}")
    shape = x.shape[1:]
    del x
    return ArraySource(None, labels, f"{xp}", opener=functools.partial(np.load, xp, mmap_mode="r", allow_pickle=False),
                        image_shape=shape, path=xp)


def npz_member(path: Path, key: str):
    """A stored (uncompressed) .npz member as a read-only memory map; else the loaded array."""
    name = f"{key}.npy"
    try:
        with zipfile.ZipFile(path) as zf:
            info = zf.getinfo(name)
            if info.compress_type == zipfile.ZIP_STORED:
                with open(path, "rb") as raw:
                    raw.seek(info.header_offset)
                    local = raw.read(30)
                    if local[:4] == b"PK\x03\x04":
                        fn_len, extra_len = struct.unpack("<HH", local[26:30])
                        start = info.header_offset + 30 + fn_len + extra_len
                        raw.seek(start)
                        version = np.lib.format.read_magic(raw)
                        reader = {(1, 0): np.lib.format.read_array_header_1_0,
                                  (2, 0): np.lib.format.read_array_header_2_0}.get(version)
                        shape, fortran, dtype = reader(raw) if reader else (None, None, None)
                        if reader and not dtype.hasobject:
                            return np.memmap(path, dtype=dtype, mode="r", offset=raw.tell(), shape=shape,
                                             order="F" if fortran else "C")
    except (KeyError, zipfile.BadZipFile, ValueError, OSError, struct.error, AttributeError):
        pass  # fall back to reading the member whole
    try:
        with np.load(path, allow_pickle=False) as z:
            return z[key]
    except (OSError, ValueError, KeyError, zipfile.BadZipFile) as exc:
        raise DataError(f"{path}: cannot read {key!r} ({exc.__class__.__name__}: {exc})") from None


def npz_keys(path: Path) -> dict[str, tuple]:
    try:
        with np.load(path, allow_pickle=False, mmap_mode="r") as z:
            keys = list(z.files)
            shapes = {}
            for k in keys:
                if k in ("x_test", "x_calib", "x_train"):
                    shapes[k] = None  # read lazily
                else:
                    shapes[k] = z[k]
            return shapes
    except (OSError, ValueError, zipfile.BadZipFile) as exc:
        raise DataError(f"{path}: not a readable .npz file ({exc.__class__.__name__}: {exc})") from None


def npz_file(folder: Path) -> Path:
    if folder.is_file():
        return folder
    files = sorted(folder.glob("*.npz"))
    if len(files) != 1:
        raise DataError(
            f"task 'npz': {folder} holds {len(files)} .npz files; expected exactly one "
            "(or set dataset_path to the .npz file) with x_test and y_test"
        )
    return files[0]


def npz_source(path: Path, split: str) -> tuple[ArraySource, dict]:
    entries = npz_keys(path)
    extras = {k: v for k, v in entries.items() if v is not None}
    if split == "test":
        pairs = [("x_test", "y_test")]
    elif split == "calibration":
        pairs = [("x_calib", "y_calib"), ("x_train", "y_train")]
    else:  # "train": source of the pixel mean
        pairs = [("x_train", "y_train"), ("x_calib", "y_calib")]
    for xk, yk in pairs:
        if xk in entries and yk in entries:
            x = npz_member(path, xk)
            labels = labels_vector(entries[yk], len(x), f"{path}[{yk}]")
            shape = x.shape[1:]
            del x
            src = ArraySource(None, labels, f"{path}[{xk}]", opener=functools.partial(npz_member, path, xk),
                               image_shape=shape, path=path)
            return src, extras
    want = " or ".join(f"{a}/{b}" for a, b in pairs)
    raise DataError(f"{path}: has no {want} arrays (keys: {', '.join(sorted(entries)) or 'none'})")
