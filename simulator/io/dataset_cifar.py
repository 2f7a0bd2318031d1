"""CIFAR-10 / CIFAR-100 python pickles, read with an unpickler that accepts NumPy arrays only: :class:`CifarSource`.

CIFAR pickles cannot be read partially: one pickle file (10000 images for
CIFAR-10) is held in memory at a time.
"""
from __future__ import annotations

import pickle
import struct
from pathlib import Path

import numpy as np

from simulator.errors import DataError
from simulator.io.dataset_arrays import Source

CIFAR10_FILES = {"test": ("test_batch",), "train": tuple(f"data_batch_{i}" for i in range(1, 6))}
CIFAR100_FILES = {"test": ("test",), "train": ("train",)}


class SafeUnpickler(pickle.Unpickler):
    """Accepts NumPy arrays/dtypes and builtins only (the CIFAR pickles need no more)."""

    def find_class(self, module: str, name: str):
        if module.split(".")[0] == "numpy":
            if name == "_reconstruct":
                try:
                    from numpy._core.multiarray import _reconstruct
                except ImportError:  # pragma: no cover - NumPy < 2
                    from numpy.core.multiarray import _reconstruct
                return _reconstruct
            if name == "scalar":
                try:
                    from numpy._core.multiarray import scalar
                except ImportError:  # pragma: no cover
                    from numpy.core.multiarray import scalar
                return scalar
            if name in ("ndarray", "dtype"):
                return getattr(np, name)
        if module == "_codecs" and name == "encode":  # bytes in protocol-2 pickles written by Python 3
            import codecs

            return codecs.encode
        if module in ("builtins", "__builtin__") and name in ("list", "dict", "tuple", "set", "bytes", "str"):
            import builtins

            return getattr(builtins, name)
        raise pickle.UnpicklingError(f"refusing to load {module}.{name} from a dataset pickle")


def load_pickle(path: Path) -> dict:
    try:
        with open(path, "rb") as f:
            obj = SafeUnpickler(f, encoding="bytes").load()
    except (OSError, EOFError, pickle.UnpicklingError, ValueError, struct.error) as exc:
        raise DataError(f"{path}: not a readable CIFAR python pickle ({exc.__class__.__name__}: {exc})") from None
    if not isinstance(obj, dict):
        raise DataError(f"{path}: expected a pickled dict with 'data' and labels, got {type(obj).__name__}")
    return {k.decode() if isinstance(k, bytes) else str(k): v for k, v in obj.items()}


class CifarSource(Source):
    """CIFAR python pickles: ``data`` (N, 3072) uint8 rows, channel-major 3x32x32."""

    def __init__(self, files: list[Path], label_key: str):
        self.files = files
        self.label_key = label_key
        labels, counts = [], []
        for path in files:
            d = load_pickle(path)
            if "data" not in d or label_key not in d:
                raise DataError(f"{path}: pickle lacks 'data' or '{label_key}' (keys: {sorted(d)})")
            data = np.asarray(d["data"])
            lab = np.asarray(d[label_key]).reshape(-1)
            if data.ndim != 2 or data.shape[1] != 3072:
                raise DataError(f"{path}: 'data' has shape {data.shape}, expected (N, 3072)")
            if len(lab) != len(data):
                raise DataError(f"{path}: {len(lab)} labels for {len(data)} images")
            labels.append(lab.astype(np.int64))
            counts.append(len(data))
        self.labels = np.concatenate(labels)
        self.starts = np.concatenate([[0], np.cumsum(counts)])
        self.n = int(self.starts[-1])
        self.image_shape = (32, 32, 3)
        self.description = ", ".join(str(p) for p in files)
        self._hcache: tuple[int, np.ndarray] | None = None

    def _file_data(self, k: int) -> np.ndarray:
        if self._hcache is None or self._hcache[0] != k:
            self._hcache = None  # release the previous file first
            self._hcache = (k, np.asarray(load_pickle(self.files[k])["data"], dtype=np.uint8))
        return self._hcache[1]

    def read(self, idx: np.ndarray) -> np.ndarray:
        out = np.empty((len(idx), 3072), dtype=np.uint8)
        which = np.searchsorted(self.starts, idx, side="right") - 1
        for k in np.unique(which):
            sel = which == k
            out[sel] = self._file_data(int(k))[idx[sel] - self.starts[k]]
        return out.reshape(-1, 3, 32, 32).transpose(0, 2, 3, 1)


def cifar_source(task: str, folder: Path, part: str) -> CifarSource:
    names = (CIFAR10_FILES if task == "cifar10" else CIFAR100_FILES)[part]
    files = [folder / n for n in names]
    missing = [f.name for f in files if not f.is_file()]
    if missing:
        raise DataError(f"task {task!r}: {folder} lacks {', '.join(missing)} (expected {', '.join(names)} there)")
    return CifarSource(files, "labels" if task == "cifar10" else "fine_labels")
