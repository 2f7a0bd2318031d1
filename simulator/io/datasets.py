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

The readers of each file family: :mod:`simulator.io.dataset_idx` (IDX),
:mod:`simulator.io.dataset_cifar` (pickles), :mod:`simulator.io.dataset_arrays`
(``.npy`` / ``.npz`` and in-memory arrays, the :class:`Source` interface).
"""
from __future__ import annotations

import logging
import os
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Iterator, Mapping

import numpy as np

from simulator.errors import DataError
from simulator.io.dataset_arrays import IMAGENET_FILES, ArraySource, Source, labels_vector, npy_source, npz_file, npz_source
from simulator.io.dataset_cifar import CIFAR10_FILES, CIFAR100_FILES, cifar_source
from simulator.io.dataset_idx import IDX_FILES, idx_source
from simulator.validation import check_finite_batch

log = logging.getLogger("xbarsim.datasets")

TASKS = ("digits", "mnist", "fashion", "cifar10", "cifar100", "imagenet", "npz")
NUM_CLASSES = {"digits": 10, "mnist": 10, "fashion": 10, "cifar10": 10, "cifar100": 100, "imagenet": 1000}
SUBFOLDER = {"mnist": "mnist", "fashion": "fashion", "cifar10": "cifar10", "cifar100": "cifar100",
             "imagenet": "imagenet", "npz": "npz"}
_NESTED = {"cifar10": "cifar-10-batches-py", "cifar100": "cifar-100-python"}
NORMALIZATIONS = ("none", "unsigned_8b", "signed_8b")
ENV_VAR = "XBARSIM_DATA"


def expected_files(task: str, split: str = "test") -> list[str]:
    """File names ``task`` needs for ``split`` (``"test"`` or ``"calibration"``)."""
    train = split != "test"
    if task in ("mnist", "fashion"):
        return [f"{n}[.gz]" for n in IDX_FILES["train" if train else "test"]]
    if task == "cifar10":
        return list(CIFAR10_FILES["train" if train else "test"])
    if task == "cifar100":
        return list(CIFAR100_FILES["train" if train else "test"])
    if task == "imagenet":
        return list(IMAGENET_FILES["calibration" if train else "test"])
    if task == "npz":
        return ["<file>.npz with x_calib/y_calib or x_train/y_train" if train else "<file>.npz with x_test/y_test"]
    return []


def _get(cfg: Any, key: str, default: Any = None) -> Any:
    if isinstance(cfg, Mapping):
        value = cfg.get(key, default)
    else:
        value = getattr(cfg, key, default)
    return default if value is None else value


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


# ===================================================================== sources
def _sources(task: str, cfg: Any, split: str) -> tuple[Source, Source | None, dict]:
    """(source of the requested split, source of the pixel-mean set or None, extras)."""
    if task == "digits":
        from simulator.io.digits import load_digits_split

        x, y = load_digits_split("test" if split == "test" else "calibration")
        src = ArraySource(x, labels_vector(y, len(x), "digits"), f"digits ({split} split)")

        def mean_src():
            xt, yt = load_digits_split("train")
            return ArraySource(xt, labels_vector(yt, len(xt), "digits"), "digits (train split)")

        return src, mean_src, {}
    folder = _folder(task, cfg, split)
    if task in ("mnist", "fashion"):
        part = "test" if split == "test" else "train"
        return idx_source(task, folder, part), (lambda: idx_source(task, folder, "train")), {}
    if task in ("cifar10", "cifar100"):
        part = "test" if split == "test" else "train"
        return cifar_source(task, folder, part), (lambda: cifar_source(task, folder, "train")), {}
    if task == "imagenet":
        xn, yn = IMAGENET_FILES["test" if split == "test" else "calibration"]
        cx, cy = IMAGENET_FILES["calibration"]
        return npy_source(task, folder, xn, yn), (lambda: npy_source(task, folder, cx, cy)), {}
    if task == "npz":
        path = npz_file(folder)
        src, extras = npz_source(path, split)
        return src, (lambda: npz_source(path, "train")[0]), extras
    raise DataError(f"unknown task {task!r}; available: {', '.join(TASKS)}")  # pragma: no cover


def _normalize(x: np.ndarray, mode: str) -> np.ndarray:
    x = np.asarray(x, dtype=np.float32)
    if mode == "unsigned_8b":
        return x / np.float32(255.0)
    if mode == "signed_8b":
        return x / np.float32(127.5) - np.float32(1.0)
    return x


_MEAN_CACHE: dict[tuple, np.ndarray] = {}


def _mtime(source: Source) -> int:
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
    source: Source = field(default=None, repr=False)  # type: ignore[assignment]

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


def _task(cfg: Any) -> str:
    task = str(_get(cfg, "task", "digits"))
    if task not in TASKS:
        import difflib

        close = difflib.get_close_matches(task, TASKS, n=1)
        hint = f" (did you mean {close[0]!r}?)" if close else ""
        raise DataError(f"task: unknown dataset {task!r}{hint}; available: {', '.join(TASKS)}")
    return task


def _indices(source: Source, task: str, split: str, ntest: int, nstart: int, random: bool, seed: int) -> np.ndarray:
    """Positions of the selected images in the split (module notes: Selection)."""
    N = source.n
    if N == 0:
        raise DataError(f"task {task!r}: the {split} split ({source.description}) holds no images")
    if random:
        n = ntest or N
        if n > N:
            raise DataError(f"ntest = {n} exceeds the {N} images of the {split} split of task {task!r} ({source.description})")
        return np.random.default_rng(seed).choice(N, size=n, replace=False).astype(np.int64)
    if nstart >= N:
        raise DataError(f"nstart = {nstart} is beyond the {N} images of the {split} split of task {task!r}")
    n = ntest or (N - nstart)
    if nstart + n > N:
        raise DataError(
            f"nstart + ntest = {nstart + n} exceeds the {N} images of the {split} split of task {task!r} "
            f"({source.description})"
        )
    return np.arange(nstart, nstart + n, dtype=np.int64)


def _num_classes(source: Source, task: str, extras: dict) -> int:
    """The task's class count (npz: its ``num_classes`` entry, else the largest label + 1), every label checked."""
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
    return num_classes


def _layout(source: Source, extras: dict) -> str:
    if "input_layout" not in extras:
        return "NHWC"
    layout = str(np.asarray(extras["input_layout"]).reshape(-1)[0])
    if layout not in ("NHWC", "NCHW"):
        raise DataError(f"{source.description}: input_layout entry must be 'NHWC' or 'NCHW', got {layout!r}")
    return layout


def load_dataset(cfg: Any, split: str = "test") -> Dataset:
    """The images of ``split`` (``"test"`` or ``"calibration"``) selected by config ``cfg``.

    ``cfg`` is a mapping or an object with the keys task, dataset_path,
    ntest, nstart, randomSampling, ntest_batch, dataset_normalization,
    subtract_pixel_mean, seed (and calibration_ntest for the calibration
    split); missing keys take their defaults. See the module docstring.
    """
    if split not in ("test", "calibration"):
        raise DataError(f"split must be 'test' or 'calibration', got {split!r}")
    task = _task(cfg)
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
    indices = _indices(source, task, split, ntest, nstart, random, seed)
    num_classes = _num_classes(source, task, extras)
    layout = _layout(source, extras)
    pixel_mean = None
    if bool(_get(cfg, "subtract_pixel_mean", False)):
        key = (task, source.description, _mtime(source), normalization)
        pixel_mean = _pixel_mean(mean_source, normalization, key)
        if pixel_mean.shape != tuple(source.image_shape):
            raise DataError(
                f"task {task!r}: the pixel-mean set has images of shape {pixel_mean.shape}, the {split} split "
                f"{tuple(source.image_shape)}"
            )
    n = len(indices)
    log.info("dataset %s/%s: %d images from %s", task, split, n, source.description)
    return Dataset(task=task, split=split, indices=indices, batch_size=batch or n, normalization=normalization,
                   num_classes=num_classes, input_layout=layout, pixel_mean=pixel_mean, source=source)
