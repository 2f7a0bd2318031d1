"""Test and calibration datasets (CrossSim manual 4.1).

``load_dataset(cfg, split)`` returns a :class:`Dataset` that yields
``(x, y)`` batches of at most ``ntest_batch`` images; only the current batch
is held in memory (uncompressed IDX and ``.npy`` files are memory-mapped,
gzip files are streamed, stored ``.npz`` members are memory-mapped).

Tasks, their files and where they are looked for
-------------------------------------------------
The folder is the config key ``dataset_path`` or, when it is not set,
``$XBARSIM_DATA/<subfolder>``. A ``dataset_path`` that holds the task's
subfolder (e.g. the ``$XBARSIM_DATA`` root itself) works too.

============  ============  ==========================================================
task          subfolder     files
============  ============  ==========================================================
digits        (bundled)     scikit-learn's 8x8 digits, shipped with scikit-learn
mnist         mnist         t10k-images-idx3-ubyte, t10k-labels-idx1-ubyte (test);
                            train-images-idx3-ubyte, train-labels-idx1-ubyte
                            (calibration); each optionally ``.gz``
fashion       fashion       same file names as mnist (Fashion-MNIST)
cifar10       cifar10       python pickles test_batch (test); data_batch_1..5
                            (calibration); also inside ``cifar-10-batches-py/``
cifar100      cifar100      python pickles test, train (fine labels); also inside
                            ``cifar-100-python/``
imagenet      imagenet      pre-processed x_val.npy (N, H, W, C) + y_val.npy (test);
                            x_calib.npy + y_calib.npy (calibration)
npz           npz           one ``.npz`` file (``dataset_path`` may name it) with
                            x_test, y_test; calibration from x_calib/y_calib, else
                            x_train/y_train; optional ``input_layout`` ("NHWC"/"NCHW")
                            and ``num_classes`` entries
============  ============  ==========================================================

Images come as float32, NHWC (MNIST-type images get a channel axis:
(N, 28, 28, 1)); ``npz`` arrays come as stored. Labels are int64 class
indices (``(N, 1)`` columns are flattened, one-hot rows are converted).

Selection (manual 4.1.1)
------------------------
* ``ntest`` images (0 = the whole split) starting at ``nstart``
  (test split only), in file order; ``nstart + ntest`` beyond the split is
  an error.
* ``randomSampling``: ``ntest`` images drawn without replacement from the
  whole split with ``numpy.random.default_rng(seed)`` (``seed`` None -> 0);
  ``nstart`` is ignored. Unlike CrossSim, batches of ``ntest_batch`` still
  apply, so memory stays bounded.
* ``ntest_batch`` images per batch (0 = all selected images at once).
* The calibration split (``split="calibration"``) never overlaps the test
  split: mnist/fashion/cifar draw it from the training files, imagenet and
  npz from their calibration arrays, digits from its bundled calibration
  split. Its size is ``calibration_ntest`` (0 = ``ntest``; both 0 = the
  whole split).

Pre-processing
--------------
``dataset_normalization``: ``"none"`` keeps the stored values (0..255 for
the 8-bit formats mnist/fashion/cifar); ``"unsigned_8b"`` maps 8-bit pixels
to [0, 1] (x / 255); ``"signed_8b"`` to [-1, 1] (x / 127.5 - 1).
``subtract_pixel_mean`` then subtracts the per-pixel mean (one value per
(h, w, c)) of the training set (mnist/fashion/cifar/digits), of the
calibration set (imagenet; npz without x_train), computed after the same
normalization, as the CIFAR-10 ResNets expect.

CIFAR pickles cannot be read partially: one pickle file (10000 images for
CIFAR-10) is held in memory at a time. Pickles are read with an unpickler
that only accepts NumPy arrays and plain Python containers.
"""
from __future__ import annotations

import functools
import gzip
import logging
import os
import pickle
import struct
import zipfile
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Iterator, Mapping

import numpy as np

from simulator.errors import DataError
from simulator.validation import check_finite_batch

log = logging.getLogger("xbarsim.datasets")

TASKS = ("digits", "mnist", "fashion", "cifar10", "cifar100", "imagenet", "npz")
NUM_CLASSES = {"digits": 10, "mnist": 10, "fashion": 10, "cifar10": 10, "cifar100": 100, "imagenet": 1000}
SUBFOLDER = {"mnist": "mnist", "fashion": "fashion", "cifar10": "cifar10", "cifar100": "cifar100",
             "imagenet": "imagenet", "npz": "npz"}
_NESTED = {"cifar10": "cifar-10-batches-py", "cifar100": "cifar-100-python"}
NORMALIZATIONS = ("none", "unsigned_8b", "signed_8b")
ENV_VAR = "XBARSIM_DATA"

_IDX_FILES = {
    "test": ("t10k-images-idx3-ubyte", "t10k-labels-idx1-ubyte"),
    "train": ("train-images-idx3-ubyte", "train-labels-idx1-ubyte"),
}
_CIFAR10_FILES = {"test": ("test_batch",), "train": tuple(f"data_batch_{i}" for i in range(1, 6))}
_CIFAR100_FILES = {"test": ("test",), "train": ("train",)}
_IMAGENET_FILES = {"test": ("x_val.npy", "y_val.npy"), "calibration": ("x_calib.npy", "y_calib.npy")}


def expected_files(task: str, split: str = "test") -> list[str]:
    """File names ``task`` needs for ``split`` (``"test"`` or ``"calibration"``)."""
    train = split != "test"
    if task in ("mnist", "fashion"):
        return [f"{n}[.gz]" for n in _IDX_FILES["train" if train else "test"]]
    if task == "cifar10":
        return list(_CIFAR10_FILES["train" if train else "test"])
    if task == "cifar100":
        return list(_CIFAR100_FILES["train" if train else "test"])
    if task == "imagenet":
        return list(_IMAGENET_FILES["calibration" if train else "test"])
    if task == "npz":
        return ["<file>.npz with x_calib/y_calib or x_train/y_train" if train else "<file>.npz with x_test/y_test"]
    return []


# ======================================================================= sources
class _Source:
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


class _ArraySource(_Source):
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


def _open_maybe_gz(path: Path):
    return gzip.open(path, "rb") if path.suffix == ".gz" else open(path, "rb")


def _idx_header(path: Path) -> tuple[np.dtype, tuple[int, ...], int]:
    types = {0x08: np.uint8, 0x09: np.int8, 0x0B: ">i2", 0x0C: ">i4", 0x0D: ">f4", 0x0E: ">f8"}
    try:
        with _open_maybe_gz(path) as f:
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


class _IdxSource(_Source):
    """MNIST-style IDX images (memory-mapped, or streamed from gzip) + IDX labels."""

    def __init__(self, images: Path, labels: Path):
        self.path = images
        dtype, dims, offset = _idx_header(images)
        if len(dims) != 3:
            raise DataError(f"{images}: expected 3-D IDX images (N, rows, cols), got dims {dims}")
        self.dtype, self.offset = dtype, offset
        self.n = dims[0]
        self.image_shape = (dims[1], dims[2], 1)
        self.row_bytes = dims[1] * dims[2] * dtype.itemsize
        size = images.stat().st_size
        if images.suffix != ".gz" and size < offset + self.n * self.row_bytes:
            raise DataError(f"{images}: truncated IDX file ({size} bytes, header announces {self.n} images)")
        ldtype, ldims, loff = _idx_header(labels)
        if len(ldims) != 1:
            raise DataError(f"{labels}: expected 1-D IDX labels, got dims {ldims}")
        try:
            with _open_maybe_gz(labels) as f:
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


class _SafeUnpickler(pickle.Unpickler):
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


def _load_pickle(path: Path) -> dict:
    try:
        with open(path, "rb") as f:
            obj = _SafeUnpickler(f, encoding="bytes").load()
    except (OSError, EOFError, pickle.UnpicklingError, ValueError, struct.error) as exc:
        raise DataError(f"{path}: not a readable CIFAR python pickle ({exc.__class__.__name__}: {exc})") from None
    if not isinstance(obj, dict):
        raise DataError(f"{path}: expected a pickled dict with 'data' and labels, got {type(obj).__name__}")
    return {k.decode() if isinstance(k, bytes) else str(k): v for k, v in obj.items()}


class _CifarSource(_Source):
    """CIFAR python pickles: ``data`` (N, 3072) uint8 rows, channel-major 3x32x32."""

    def __init__(self, files: list[Path], label_key: str):
        self.files = files
        self.label_key = label_key
        labels, counts = [], []
        for path in files:
            d = _load_pickle(path)
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
            self._hcache = (k, np.asarray(_load_pickle(self.files[k])["data"], dtype=np.uint8))
        return self._hcache[1]

    def read(self, idx: np.ndarray) -> np.ndarray:
        out = np.empty((len(idx), 3072), dtype=np.uint8)
        which = np.searchsorted(self.starts, idx, side="right") - 1
        for k in np.unique(which):
            sel = which == k
            out[sel] = self._file_data(int(k))[idx[sel] - self.starts[k]]
        return out.reshape(-1, 3, 32, 32).transpose(0, 2, 3, 1)


def _npz_member(path: Path, key: str):
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


def _npz_keys(path: Path) -> dict[str, tuple]:
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


# ===================================================================== helpers
def _get(cfg: Any, key: str, default: Any = None) -> Any:
    if isinstance(cfg, Mapping):
        value = cfg.get(key, default)
    else:
        value = getattr(cfg, key, default)
    return default if value is None else value


def _labels(y: Any, n_images: int, where: str) -> np.ndarray:
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


def _find(folder: Path, name: str, gz_ok: bool) -> Path | None:
    for cand in ([name, name + ".gz"] if gz_ok else [name]):
        if (folder / cand).is_file():
            return folder / cand
    return None


def _folder(task: str, cfg: Any, split: str) -> Path:
    """Resolve the dataset folder (or .npz file) of ``task``; raise DataError naming the expected files."""
    want = ", ".join(expected_files(task, split))
    given = _get(cfg, "dataset_path")
    if given:
        base = Path(str(given)).expanduser()
        origin = f"dataset_path {str(given)!r}"
    else:
        env = os.environ.get(ENV_VAR)
        if not env:
            raise DataError(
                f"task {task!r}: no dataset location: set dataset_path in the config or the {ENV_VAR} environment "
                f"variable (files expected in ${ENV_VAR}/{SUBFOLDER[task]}/: {want})"
            )
        base = Path(env).expanduser() / SUBFOLDER[task]
        origin = f"${ENV_VAR}/{SUBFOLDER[task]}"
    if task == "npz" and base.is_file():
        return base
    if not base.exists():
        raise DataError(f"task {task!r}: dataset folder {base} ({origin}) does not exist; expected there: {want}")
    if not base.is_dir():
        raise DataError(f"task {task!r}: {base} ({origin}) is not a folder; expected a folder with: {want}")
    # accept the XBARSIM_DATA root or the archive's own folder name
    for sub in (_NESTED.get(task), SUBFOLDER[task]):
        if sub and (base / sub).is_dir():
            base = base / sub
            if task in _NESTED and (base / _NESTED[task]).is_dir():
                base = base / _NESTED[task]
    return base


# ===================================================================== loaders
def _idx_source(task: str, folder: Path, part: str) -> _IdxSource:
    img_name, lab_name = _IDX_FILES[part]
    img, lab = _find(folder, img_name, True), _find(folder, lab_name, True)
    missing = [n for n, p in ((img_name, img), (lab_name, lab)) if p is None]
    if missing:
        raise DataError(
            f"task {task!r}: {folder} lacks {' and '.join(m + '[.gz]' for m in missing)} "
            f"(expected {img_name}[.gz] and {lab_name}[.gz] there)"
        )
    src = _IdxSource(img, lab)
    if len(src.labels) != src.n:
        raise DataError(f"{lab}: {len(src.labels)} labels for the {src.n} images of {img.name} (lengths must match)")
    return src


def _cifar_source(task: str, folder: Path, part: str) -> _CifarSource:
    names = (_CIFAR10_FILES if task == "cifar10" else _CIFAR100_FILES)[part]
    files = [folder / n for n in names]
    missing = [f.name for f in files if not f.is_file()]
    if missing:
        raise DataError(f"task {task!r}: {folder} lacks {', '.join(missing)} (expected {', '.join(names)} there)")
    return _CifarSource(files, "labels" if task == "cifar10" else "fine_labels")


def _npy_source(task: str, folder: Path, xname: str, yname: str) -> _ArraySource:
    xp, yp = folder / xname, folder / yname
    missing = [p.name for p in (xp, yp) if not p.is_file()]
    if missing:
        raise DataError(f"task {task!r}: {folder} lacks {' and '.join(missing)} (expected {xname} and {yname} there)")
    try:
        x = np.load(xp, mmap_mode="r", allow_pickle=False)
        y = np.load(yp, allow_pickle=False)
    except (OSError, ValueError) as exc:
        raise DataError(f"{folder}: cannot read {xname}/{yname} ({exc.__class__.__name__}: {str(exc).splitlines()[0]})") from None
    labels = _labels(y, len(x), f"{yp}")
    shape = x.shape[1:]
    del x
    return _ArraySource(None, labels, f"{xp}", opener=functools.partial(np.load, xp, mmap_mode="r", allow_pickle=False),
                        image_shape=shape, path=xp)


def _npz_file(folder: Path) -> Path:
    if folder.is_file():
        return folder
    files = sorted(folder.glob("*.npz"))
    if len(files) != 1:
        raise DataError(
            f"task 'npz': {folder} holds {len(files)} .npz files; expected exactly one "
            "(or set dataset_path to the .npz file) with x_test and y_test"
        )
    return files[0]


def _npz_source(path: Path, split: str) -> tuple[_ArraySource, dict]:
    entries = _npz_keys(path)
    extras = {k: v for k, v in entries.items() if v is not None}
    if split == "test":
        pairs = [("x_test", "y_test")]
    elif split == "calibration":
        pairs = [("x_calib", "y_calib"), ("x_train", "y_train")]
    else:  # "train": source of the pixel mean
        pairs = [("x_train", "y_train"), ("x_calib", "y_calib")]
    for xk, yk in pairs:
        if xk in entries and yk in entries:
            x = _npz_member(path, xk)
            labels = _labels(entries[yk], len(x), f"{path}[{yk}]")
            shape = x.shape[1:]
            del x
            src = _ArraySource(None, labels, f"{path}[{xk}]", opener=functools.partial(_npz_member, path, xk),
                               image_shape=shape, path=path)
            return src, extras
    want = " or ".join(f"{a}/{b}" for a, b in pairs)
    raise DataError(f"{path}: has no {want} arrays (keys: {', '.join(sorted(entries)) or 'none'})")


def _sources(task: str, cfg: Any, split: str) -> tuple[_Source, _Source | None, dict]:
    """(source of the requested split, source of the pixel-mean set or None, extras)."""
    if task == "digits":
        from simulator.io.digits import load_digits_split

        x, y = load_digits_split("test" if split == "test" else "calibration")
        src = _ArraySource(x, _labels(y, len(x), "digits"), f"digits ({split} split)")

        def mean_src():
            xt, yt = load_digits_split("train")
            return _ArraySource(xt, _labels(yt, len(xt), "digits"), "digits (train split)")

        return src, mean_src, {}
    folder = _folder(task, cfg, split)
    if task in ("mnist", "fashion"):
        part = "test" if split == "test" else "train"
        return _idx_source(task, folder, part), (lambda: _idx_source(task, folder, "train")), {}
    if task in ("cifar10", "cifar100"):
        part = "test" if split == "test" else "train"
        return _cifar_source(task, folder, part), (lambda: _cifar_source(task, folder, "train")), {}
    if task == "imagenet":
        xn, yn = _IMAGENET_FILES["test" if split == "test" else "calibration"]
        cx, cy = _IMAGENET_FILES["calibration"]
        return _npy_source(task, folder, xn, yn), (lambda: _npy_source(task, folder, cx, cy)), {}
    if task == "npz":
        path = _npz_file(folder)
        src, extras = _npz_source(path, split)
        return src, (lambda: _npz_source(path, "train")[0]), extras
    raise DataError(f"unknown task {task!r}; available: {', '.join(TASKS)}")  # pragma: no cover


def _normalize(x: np.ndarray, mode: str) -> np.ndarray:
    x = np.asarray(x, dtype=np.float32)
    if mode == "unsigned_8b":
        return x / np.float32(255.0)
    if mode == "signed_8b":
        return x / np.float32(127.5) - np.float32(1.0)
    return x


_MEAN_CACHE: dict[tuple, np.ndarray] = {}


def _mtime(source: _Source) -> int:
    path = getattr(source, "path", None) or (getattr(source, "files", None) or [None])[0]
    try:
        return os.stat(path).st_mtime_ns if path is not None else 0
    except OSError:
        return 0


def _pixel_mean(make_source, normalization: str, key: tuple, chunk: int = 2000) -> np.ndarray:
    if key in _MEAN_CACHE:
        return _MEAN_CACHE[key]
    src = make_source()
    total = np.zeros(src.image_shape, dtype=np.float64)
    for s in range(0, src.n, chunk):
        idx = np.arange(s, min(s + chunk, src.n))
        total += _normalize(src.read(idx), normalization).sum(axis=0, dtype=np.float64)
    mean = (total / max(src.n, 1)).astype(np.float32)
    if len(_MEAN_CACHE) > 16:
        _MEAN_CACHE.clear()
    _MEAN_CACHE[key] = mean
    return mean


# ===================================================================== Dataset
@dataclass
class Dataset:
    """A selection of images from one split, read batch by batch."""

    task: str
    split: str
    indices: np.ndarray  # positions in the split, in iteration order
    batch_size: int
    normalization: str
    num_classes: int
    input_layout: str = "NHWC"
    pixel_mean: np.ndarray | None = None
    source: _Source = field(default=None, repr=False)  # type: ignore[assignment]

    @property
    def n(self) -> int:
        return int(len(self.indices))

    def __len__(self) -> int:
        return self.n

    @property
    def input_shape(self) -> tuple:
        return tuple(self.source.image_shape)

    @property
    def labels(self) -> np.ndarray:
        return self.source.labels[self.indices]

    def iter_batches(self, batch_size: int | None = None, layout: str | None = None) -> Iterator[tuple[np.ndarray, np.ndarray]]:
        """Yield ``(x, y)``: float32 images and int64 labels, at most ``batch_size`` (default ``ntest_batch``) at a time.

        ``layout="NCHW"`` (or ``"NHWC"``) converts 4-D batches from the dataset's layout.
        """
        bs = int(batch_size or self.batch_size or max(self.n, 1))
        for s in range(0, self.n, bs):
            idx = self.indices[s : s + bs]
            order = np.argsort(idx, kind="stable")
            raw = self.source.read(idx[order])
            if raw.dtype.kind not in "fiub":  # complex, object, strings: not pixels
                raise DataError(f"{getattr(self.source, 'description', self.split)}: images have dtype {raw.dtype}, "
                                "expected real numbers")
            x = np.empty(raw.shape, dtype=np.float32)
            x[order] = _normalize(raw, self.normalization)
            del raw
            if self.pixel_mean is not None:
                x -= self.pixel_mean
            check_finite_batch(x, getattr(self.source, "description", self.split), s)
            if layout is not None and layout != self.input_layout and x.ndim == 4:
                x = np.ascontiguousarray(x.transpose(0, 3, 1, 2) if layout == "NCHW" else x.transpose(0, 2, 3, 1))
            yield x, self.source.labels[idx]

    def load_all(self) -> tuple[np.ndarray, np.ndarray]:
        """All selected images at once (small datasets, tests)."""
        xs, ys = zip(*self.iter_batches(batch_size=max(self.n, 1))) if self.n else ((), ())
        if not xs:
            return np.empty((0,) + self.input_shape, np.float32), np.empty(0, np.int64)
        return xs[0], ys[0]


def load_dataset(cfg: Any, split: str = "test") -> Dataset:
    """The images of ``split`` (``"test"`` or ``"calibration"``) selected by config ``cfg``.

    ``cfg`` is a mapping or an object with the keys task, dataset_path,
    ntest, nstart, randomSampling, ntest_batch, dataset_normalization,
    subtract_pixel_mean, seed (and calibration_ntest for the calibration
    split); missing keys take their defaults. See the module docstring.
    """
    if split not in ("test", "calibration"):
        raise DataError(f"split must be 'test' or 'calibration', got {split!r}")
    task = str(_get(cfg, "task", "digits"))
    if task not in TASKS:
        import difflib

        close = difflib.get_close_matches(task, TASKS, n=1)
        hint = f" (did you mean {close[0]!r}?)" if close else ""
        raise DataError(f"task: unknown dataset {task!r}{hint}; available: {', '.join(TASKS)}")
    normalization = str(_get(cfg, "dataset_normalization", "none"))
    if normalization not in NORMALIZATIONS:
        raise DataError(f"dataset_normalization: {normalization!r} is not one of {', '.join(NORMALIZATIONS)}")
    ntest = int(_get(cfg, "ntest", 0))
    nstart = int(_get(cfg, "nstart", 0))
    batch = int(_get(cfg, "ntest_batch", 0))
    random = bool(_get(cfg, "randomSampling", False))
    seed = int(_get(cfg, "seed", 0))
    if min(ntest, nstart, batch) < 0:
        raise DataError(f"ntest, nstart and ntest_batch must be >= 0 (got {ntest}, {nstart}, {batch})")
    if split == "calibration":
        ntest = int(_get(cfg, "calibration_ntest", 0)) or ntest
        nstart = 0

    source, mean_source, extras = _sources(task, cfg, split)
    N = source.n
    if N == 0:
        raise DataError(f"task {task!r}: the {split} split ({source.description}) holds no images")
    if random:
        n = ntest or N
        if n > N:
            raise DataError(f"ntest = {n} exceeds the {N} images of the {split} split of task {task!r} ({source.description})")
        indices = np.random.default_rng(seed).choice(N, size=n, replace=False).astype(np.int64)
    else:
        if nstart >= N:
            raise DataError(f"nstart = {nstart} is beyond the {N} images of the {split} split of task {task!r}")
        n = ntest or (N - nstart)
        if nstart + n > N:
            raise DataError(
                f"nstart + ntest = {nstart + n} exceeds the {N} images of the {split} split of task {task!r} "
                f"({source.description})"
            )
        indices = np.arange(nstart, nstart + n, dtype=np.int64)

    if task in NUM_CLASSES:
        num_classes = NUM_CLASSES[task]
    elif "num_classes" in extras:
        num_classes = int(np.asarray(extras["num_classes"]).reshape(-1)[0])
    else:
        num_classes = int(source.labels.max()) + 1
    bad = (source.labels < 0) | (source.labels >= num_classes)
    if bad.any():
        i = int(np.argmax(bad))
        raise DataError(
            f"{source.description}: label {int(source.labels[i])} at position {i} is outside 0..{num_classes - 1}"
        )
    layout = "NHWC"
    if "input_layout" in extras:
        layout = str(np.asarray(extras["input_layout"]).reshape(-1)[0])
        if layout not in ("NHWC", "NCHW"):
            raise DataError(f"{source.description}: input_layout entry must be 'NHWC' or 'NCHW', got {layout!r}")

    pixel_mean = None
    if bool(_get(cfg, "subtract_pixel_mean", False)):
        key = (task, source.description, _mtime(source), normalization)
        pixel_mean = _pixel_mean(mean_source, normalization, key)
        if pixel_mean.shape != tuple(source.image_shape):
            raise DataError(
                f"task {task!r}: the pixel-mean set has images of shape {pixel_mean.shape}, the {split} split "
                f"{tuple(source.image_shape)}"
            )
    log.info("dataset %s/%s: %d images from %s", task, split, n, source.description)
    return Dataset(task=task, split=split, indices=indices, batch_size=batch or n, normalization=normalization,
                   num_classes=num_classes, input_layout=layout, pixel_mean=pixel_mean, source=source)
