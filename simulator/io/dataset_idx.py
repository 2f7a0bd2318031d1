"""MNIST-style IDX files (``t10k-images-idx3-ubyte`` ...; optionally gzip): :class:`IdxSource`."""
from __future__ import annotations

import gzip
import struct
from pathlib import Path

import numpy as np

from simulator.errors import DataError
from simulator.io.dataset_arrays import Source

#: image and label files per part of the data set
IDX_FILES = {
    "test": ("t10k-images-idx3-ubyte", "t10k-labels-idx1-ubyte"),
    "train": ("train-images-idx3-ubyte", "train-labels-idx1-ubyte"),
}


def open_maybe_gz(path: Path):
    return gzip.open(path, "rb") if path.suffix == ".gz" else open(path, "rb")


def idx_header(path: Path) -> tuple[np.dtype, tuple[int, ...], int]:
    types = {0x08: np.uint8, 0x09: np.int8, 0x0B: ">i2", 0x0C: ">i4", 0x0D: ">f4", 0x0E: ">f8"}
    try:
        with open_maybe_gz(path) as f:
            head = f.read(4)
            if len(head) < 4 or head[0] != 0 or head[1] != 0 or head[2] not in types:
                raise DataError(f"{path}: not an IDX file (bad magic number {head.hex() or 'empty'})")
            ndim = head[3]
            dims_raw = f.read(4 * ndim)
            if len(dims_raw) < 4 * ndim:
                raise DataError(f"{path}: truncated IDX header")
    except (OSError, EOFError, gzip.BadGzipFile) as exc:
        raise DataError(f"{path}: cannot read IDX file ({exc.__class__.__name__}: {exc})") from None
    dims = struct.unpack(f">{ndim}I", dims_raw)
    return np.dtype(types[head[2]]), tuple(int(d) for d in dims), 4 + 4 * ndim


class IdxSource(Source):
    """MNIST-style IDX images (memory-mapped, or streamed from gzip) + IDX labels."""

    def __init__(self, images: Path, labels: Path):
        self.path = images
        dtype, dims, offset = idx_header(images)
        if len(dims) != 3:
            raise DataError(f"{images}: expected 3-D IDX images (N, rows, cols), got dims {dims}")
        self.dtype, self.offset = dtype, offset
        self.n = dims[0]
        self.image_shape = (dims[1], dims[2], 1)
        self.row_bytes = dims[1] * dims[2] * dtype.itemsize
        size = images.stat().st_size
        if images.suffix != ".gz" and size < offset + self.n * self.row_bytes:
            raise DataError(f"{images}: truncated IDX file ({size} bytes, header announces {self.n} images)")
        ldtype, ldims, loff = idx_header(labels)
        if len(ldims) != 1:
            raise DataError(f"{labels}: expected 1-D IDX labels, got dims {ldims}")
        try:
            with open_maybe_gz(labels) as f:
                f.seek(loff)
                raw = f.read()
        except (OSError, EOFError, gzip.BadGzipFile) as exc:
            raise DataError(f"{labels}: cannot read IDX labels ({exc.__class__.__name__}: {exc})") from None
        lab = np.frombuffer(raw, dtype=ldtype)
        if len(lab) < ldims[0]:
            raise DataError(f"{labels}: truncated IDX file ({len(lab)} of {ldims[0]} labels)")
        self.labels = lab[: ldims[0]].astype(np.int64)
        self.description = f"{images} + {labels.name}"
        self._hmm = None
        self._hgz = None

    def read(self, idx: np.ndarray) -> np.ndarray:
        shape = (self.image_shape[0], self.image_shape[1])
        if self.path.suffix != ".gz":
            if self._hmm is None:
                self._hmm = np.memmap(self.path, dtype=self.dtype, mode="r", offset=self.offset, shape=(self.n,) + shape)
            return np.asarray(self._hmm[idx])[..., None]
        out = np.empty((len(idx),) + shape, dtype=self.dtype)
        if self._hgz is None:
            self._hgz = gzip.open(self.path, "rb")
        f = self._hgz
        try:
            i = 0
            while i < len(idx):  # read runs of consecutive indices
                j = i
                while j + 1 < len(idx) and idx[j + 1] == idx[j] + 1:
                    j += 1
                f.seek(self.offset + int(idx[i]) * self.row_bytes)
                count = j - i + 1
                raw = f.read(count * self.row_bytes)
                if len(raw) < count * self.row_bytes:
                    raise DataError(f"{self.path}: truncated gzip IDX file (image {int(idx[j])} missing)")
                out[i : j + 1] = np.frombuffer(raw, dtype=self.dtype).reshape((count,) + shape)
                i = j + 1
        except (OSError, EOFError, gzip.BadGzipFile) as exc:
            self._hgz = None
            raise DataError(f"{self.path}: cannot read gzip IDX file ({exc.__class__.__name__}: {exc})") from None
        return out[..., None]


def _find(folder: Path, name: str, gz_ok: bool) -> Path | None:
    for cand in ([name, name + ".gz"] if gz_ok else [name]):
        if (folder / cand).is_file():
            return folder / cand
    return None


def idx_source(task: str, folder: Path, part: str) -> IdxSource:
    img_name, lab_name = IDX_FILES[part]
    img, lab = _find(folder, img_name, True), _find(folder, lab_name, True)
    missing = [n for n, p in ((img_name, img), (lab_name, lab)) if p is None]
    if missing:
        raise DataError(
            f"task {task!r}: {folder} lacks {' and '.join(m + '[.gz]' for m in missing)} "
            f"(expected {img_name}[.gz] and {lab_name}[.gz] there)"
        )
    src = IdxSource(img, lab)
    if len(src.labels) != src.n:
        raise DataError(f"{lab}: {len(src.labels)} labels for the {src.n} images of {img.name} (lengths must match)")
    return src
