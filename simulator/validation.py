"""Checks of user inputs that cut across modules (issue 15: nothing silent).

* :func:`check_weights` -- every weight of a model: a real numeric dtype,
  finite values, the shape its layer type needs (and consistent biases),
  batch-norm variances >= 0. :meth:`simulator.network.Network.validate` runs
  it, so every importer's result is checked.
* :func:`check_labels` -- dataset labels are class indices of the model.
* :func:`check_finite_batch` -- input pixels are finite.
* :func:`config_notes` -- parameters that do nothing for this model: an error
  where the user clearly meant something (witin parameters on a model without
  witin layers), a warning line otherwise.
* :func:`check_output_file` / :func:`check_output_dir` -- an output location
  can be written, checked before any work starts.
* :func:`mkstemp_normal` -- temporary files (renamed into results files) get
  the umask's normal permissions (0644 under the usual umask 022), not 0600.

Every failure is one :class:`~simulator.errors.XbarsimError` line naming the
file, the field and what was expected.
"""
from __future__ import annotations

import logging
import os
import tempfile
from pathlib import Path
from typing import Any, Iterable

import numpy as np

from simulator.errors import ConfigError, DataError, ModelError

log = logging.getLogger("xbarsim.validation")

# weight name -> number of dimensions, per layer type (required weights first)
_WEIGHT_DIMS: dict[str, dict[str, int]] = {
    "Dense": {"kernel": 2, "bias": 1},
    "Conv2D": {"kernel": 4, "bias": 1},
    "DepthwiseConv2D": {"depthwise_kernel": 4, "bias": 1},
    "Conv2DTranspose": {"kernel": 4, "bias": 1},
    "GRUCell": {"weight_ih": 2, "weight_hh": 2, "bias_ih": 1, "bias_hh": 1},
    "BatchNormalization": {"moving_mean": 1, "moving_variance": 1, "gamma": 1, "beta": 1},
}
_REQUIRED = {"Dense": ("kernel",), "Conv2D": ("kernel",), "DepthwiseConv2D": ("depthwise_kernel",),
             "Conv2DTranspose": ("kernel",), "GRUCell": ("weight_ih", "weight_hh"),
             "BatchNormalization": ("moving_mean", "moving_variance")}


def _n_out(layer) -> int | None:
    """Number of outputs the layer's bias must have."""
    w = layer.weights
    t = layer.type
    if t == "Dense":
        return int(w["kernel"].shape[1])
    if t == "Conv2D":
        return int(w["kernel"].shape[3])
    if t == "DepthwiseConv2D":
        k = w["depthwise_kernel"]
        return int(k.shape[2] * k.shape[3])
    if t == "Conv2DTranspose":
        return int(w["kernel"].shape[2])
    return None


def check_weights(network, where: str) -> None:
    """Refuse non-numeric, non-finite or mis-shaped weights of ``network`` (one ModelError line)."""
    for layer in network.layers:
        dims = _WEIGHT_DIMS.get(layer.type, {})
        for key in _REQUIRED.get(layer.type, ()):
            if key not in layer.weights:
                raise ModelError(f"{where}: layer {layer.name!r} ({layer.type}) has no weight {key!r}")
        for key, arr in layer.weights.items():
            what = f"{where}: layer {layer.name!r} weight {key!r}"
            a = np.asarray(arr)
            if a.dtype == bool or not (np.issubdtype(a.dtype, np.integer) or np.issubdtype(a.dtype, np.floating)):
                raise ModelError(f"{what} has dtype {a.dtype}, expected real numbers (float or int)")
            if key in dims and a.ndim != dims[key]:
                raise ModelError(f"{what} has shape {a.shape}, expected {dims[key]} dimensions for {layer.type}")
            if a.size and not np.all(np.isfinite(a)):
                bad = int(np.size(a) - np.count_nonzero(np.isfinite(a)))
                raise ModelError(f"{what} holds {bad} NaN or infinite value(s); expected finite numbers")
        rng = layer.attrs.get("input_range")
        if rng is not None:
            try:
                lo, hi = (float(v) for v in rng)
            except (TypeError, ValueError):
                raise ModelError(f"{where}: layer {layer.name!r} input_range = {rng!r}: expected [min, max]") from None
            if not (np.isfinite(lo) and np.isfinite(hi) and lo < hi):
                raise ModelError(f"{where}: layer {layer.name!r} input_range = {rng!r}: expected finite min < max")
        for key, value in (layer.attrs.get("witin") or {}).items():
            if isinstance(value, float) and not np.isfinite(value):
                raise ModelError(f"{where}: layer {layer.name!r} witin parameter {key} = {value!r}: expected a "
                                 "finite number")
        t = layer.type
        if t in ("Dense", "Conv2D", "DepthwiseConv2D", "Conv2DTranspose"):
            n = _n_out(layer)
            b = layer.weights.get("bias")
            if b is not None and np.asarray(b).shape != (n,):
                raise ModelError(f"{where}: layer {layer.name!r} bias has shape {np.asarray(b).shape}, expected ({n},)")
            k = layer.config.get("kernel_size")
            kernel = layer.weights.get("kernel", layer.weights.get("depthwise_kernel"))
            if t != "Dense" and k is not None and tuple(kernel.shape[:2]) != tuple(k):
                raise ModelError(f"{where}: layer {layer.name!r} kernel has shape {kernel.shape}, "
                                 f"expected kernel_size {tuple(k)} in its first two dimensions")
        if t == "GRUCell":
            wi, wh = layer.weights["weight_ih"], layer.weights["weight_hh"]
            H = wh.shape[0]
            if wh.shape != (H, 3 * H) or wi.shape[1] != 3 * H:
                raise ModelError(f"{where}: layer {layer.name!r} GRU weights {wi.shape}, {wh.shape}: expected "
                                 f"(inputs, 3H) and (H, 3H)")
            for bk in ("bias_ih", "bias_hh"):
                if bk in layer.weights and np.asarray(layer.weights[bk]).shape != (3 * H,):
                    raise ModelError(f"{where}: layer {layer.name!r} {bk} has shape "
                                     f"{np.asarray(layer.weights[bk]).shape}, expected ({3 * H},)")
        if t == "BatchNormalization":
            n = np.asarray(layer.weights["moving_mean"]).shape
            for key in ("moving_variance", "gamma", "beta"):
                if key in layer.weights and np.asarray(layer.weights[key]).shape != n:
                    raise ModelError(f"{where}: layer {layer.name!r} {key} has shape "
                                     f"{np.asarray(layer.weights[key]).shape}, expected {n} like moving_mean")
            var = np.asarray(layer.weights["moving_variance"], dtype=np.float64)
            eps = float(layer.config.get("epsilon", 1e-3))
            if np.any(var < 0) or not eps >= 0:
                raise ModelError(f"{where}: layer {layer.name!r} moving_variance has negative values "
                                 f"(min {var.min():g}) or epsilon < 0; expected variances >= 0")


def check_finite_batch(x, source: str, start: int) -> None:
    """Refuse NaN or infinite input values (``start``: index of the batch's first image in ``source``)."""
    a = np.asarray(x)
    if not (np.issubdtype(a.dtype, np.number) and a.dtype != bool):
        raise DataError(f"{source}: inputs have dtype {a.dtype}, expected real numbers")
    ok = np.isfinite(a.reshape(len(a), -1)).all(axis=1) if a.size else np.ones(len(a), bool)
    if not ok.all():
        first = int(np.argmin(ok))
        raise DataError(f"{source}: image {start + first} holds NaN or infinite values; expected finite pixels")


def check_labels(y, n_classes: int, source: str, start: int = 0) -> None:
    """Refuse labels that are not integer class indices in ``[0, n_classes)``."""
    y = np.asarray(y)
    if y.size == 0:
        return
    if not np.issubdtype(y.dtype, np.integer):
        if not (np.issubdtype(y.dtype, np.floating) and np.all(np.isfinite(y)) and np.all(y == np.round(y))):
            raise DataError(f"{source}: labels have dtype {y.dtype} and non-integer values; expected class indices")
    bad = (y < 0) | (y >= n_classes)
    if bad.any():
        k = int(np.argmax(bad))
        raise DataError(f"{source}: label {y.reshape(-1)[k].item()!r} of image {start + k} is outside the model's "
                        f"{n_classes} classes (expected 0..{n_classes - 1})")


#: witin_nn parameters of the config (they act only on layers of a witin-trained model)
WITIN_KEYS = ("noise_level", "x_quant_bits", "y_quant_bits", "weight_quant_bits", "scale_x", "scale_y", "scale_weight",
              "use_auto_scale", "bias_row_N", "handle_neg_in", "shift_num", "w_clip", "bias_d", "noise_mode")


def _set_keys(cfg) -> Iterable[tuple[str, str]]:
    """(where, key) of every witin key set globally or in a [layers.*] table."""
    for key in WITIN_KEYS:
        if getattr(cfg, key, None) is not None:
            yield "", key
    for name, ov in cfg.layers.items():
        for key in WITIN_KEYS:
            if getattr(ov, key, None) is not None:
                yield f"layers.{name}.", key


def config_notes(cfg, network) -> list[str]:
    """Check parameters that would have no effect on ``network``; returns the warning lines (also logged).

    Errors (the user clearly meant something): witin parameters on a model
    without witin layers. Warnings: ``witin_mode`` there, ``t_drift > 0`` with
    ``drift_model = "none"`` (and no device_data), ``x_par``/``y_par`` (every
    MVM is batched anyway).
    """
    src = cfg.source
    witin = any(layer.attrs.get("witin") for layer in network.layers)
    notes: list[str] = []
    if not witin:
        keys = [f"{w}{k}" for w, k in _set_keys(cfg)]
        if keys:
            raise ConfigError(f"{src}: {', '.join(keys)} set, but model {network.name!r} has no witin layers "
                              "(witin parameters act only on witin_nn-trained layers); remove them")
        if cfg.witin_mode != type(cfg).model_fields["witin_mode"].default:
            notes.append(f"{src}: witin_mode = {cfg.witin_mode!r} has no effect: model {network.name!r} has no witin layers")
    if cfg.task == "digits" and cfg.dataset_path:
        raise ConfigError(f"{src}: dataset_path = {cfg.dataset_path!r} is not read by task = 'digits' (the bundled "
                          "data set); set task = 'npz' (or mnist, cifar10, ...) to use that file")
    times = getattr(cfg, "drift_times", None) or [cfg.t_drift]
    uses_drift = cfg.drift_model != "none" or bool(getattr(cfg, "device_data", None)) or any(
        getattr(ov, "drift_model", None) not in (None, "none") or getattr(ov, "device_data", None)
        for ov in cfg.layers.values())
    if max(times) > 0 and not uses_drift:
        notes.append(f"{src}: t_drift = {cfg.t_drift!r} has no effect with drift_model = 'none' (set a drift model)")
    for key in ("x_par", "y_par"):
        if getattr(cfg, key) != 1:
            notes.append(f"{src}: {key} = {getattr(cfg, key)} is accepted for CrossSim compatibility and has no "
                         "effect: every MVM is batched over all images and sliding windows")
    for line in notes:
        log.warning(line)
    return notes


# --------------------------------------------------------------------- outputs
def _nearest_existing(path: Path) -> Path:
    p = path
    while not p.exists() and p != p.parent:
        p = p.parent
    return p


def check_output_dir(path: "str | Path", what: str, error=ConfigError) -> Path:
    """Refuse a folder that cannot be created or written (before any work starts); returns it."""
    p = Path(path).expanduser()
    if p.exists() and not p.is_dir():
        raise error(f"{what} {str(p)!r} exists and is not a folder")
    base = _nearest_existing(p.resolve() if not p.is_absolute() else p)
    if not base.is_dir():
        raise error(f"{what} {str(p)!r}: {str(base)!r} is a file, so the folder cannot be created")
    if not os.access(base, os.W_OK | os.X_OK):
        raise error(f"{what} {str(p)!r} cannot be written (no write permission in {str(base)!r})")
    return p


def check_output_file(path: "str | Path", what: str, error=ConfigError, *, create_parents: bool = False) -> Path:
    """Refuse an output file whose folder is missing (unless ``create_parents``) or not writable; returns it."""
    p = Path(path).expanduser()
    if p.exists() and p.is_dir():
        raise error(f"{what} {str(p)!r} is a folder, expected a file name")
    parent = p.parent if str(p.parent) else Path(".")
    if create_parents:
        check_output_dir(parent, f"{what} folder", error)
    elif not parent.is_dir():
        raise error(f"{what} {str(p)!r}: folder {str(parent)!r} does not exist")
    elif not os.access(parent, os.W_OK | os.X_OK):
        raise error(f"{what} {str(p)!r} cannot be written (no write permission in {str(parent)!r})")
    if p.exists() and not os.access(p, os.W_OK):
        raise error(f"{what} {str(p)!r} exists and is read-only")
    return p


def normal_mode() -> int:
    """File mode a plain ``open(path, "w")`` would give: 0o666 minus the process umask."""
    mask = os.umask(0)
    os.umask(mask)
    return 0o666 & ~mask


def mkstemp_normal(**kwargs: Any) -> tuple[int, str]:
    """:func:`tempfile.mkstemp` (which creates mode 0600), then the umask's normal mode for the final file."""
    fd, name = tempfile.mkstemp(**kwargs)
    os.chmod(name, normal_mode())
    return fd, name
