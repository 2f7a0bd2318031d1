"""The bundled default dataset: scikit-learn's 8x8 handwritten digits.

``sklearn.datasets.load_digits`` ships inside scikit-learn, so nothing is
downloaded. The 1797 images are split once, by a fixed permutation
(``numpy.random.default_rng(2024)``), into 1257 training images and 540 test
images; the calibration split is the last 300 training images, so it never
overlaps the test split. Pixels are scaled from 0..16 to [0, 1].

Images come as float32 NHWC arrays of shape (N, 8, 8, 1); labels are int64.
"""
from __future__ import annotations

import numpy as np

N_TRAIN = 1257
N_CALIBRATION = 300
SPLITS = ("train", "test", "calibration")


def load_digits_split(split: str = "test") -> tuple[np.ndarray, np.ndarray]:
    """Return ``(x, y)`` for ``split`` in ``"train"``, ``"test"``, ``"calibration"``."""
    from sklearn.datasets import load_digits

    if split not in SPLITS:
        raise ValueError(f"split must be one of {SPLITS}, got {split!r}")
    data = load_digits()
    x = (data.images.astype(np.float32) / 16.0)[..., None]
    y = data.target.astype(np.int64)
    order = np.random.default_rng(2024).permutation(len(y))
    train, test = order[:N_TRAIN], order[N_TRAIN:]
    idx = {"train": train, "test": test, "calibration": train[-N_CALIBRATION:]}[split]
    return x[idx], y[idx]
