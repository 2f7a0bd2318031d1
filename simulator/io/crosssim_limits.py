"""CrossSim's calibrated limit files (``input_limits_*.npy``, ``adc_limits_*.npy``) mapped onto our MVM layers."""
from __future__ import annotations

from pathlib import Path
from typing import Any

import numpy as np

from simulator.errors import CalibrationError
from simulator.io.loader import load_any
from simulator.models import resolve_model_path
from simulator.network import Network


def load_crosssim_limits(
    input_limits_npy: str | Path | np.ndarray | None,
    adc_limits_npy: str | Path | np.ndarray | None,
    network: Network | str | Path | None = None,
) -> dict:
    """Map CrossSim's calibrated limit arrays onto our MVM layers.

    CrossSim stores one ``(min, max)`` row per MVM layer (Conv2D,
    DepthwiseConv2D, Dense), in the order those layers appear in the Keras
    model (``model.layers`` order, which is also the order of the layer list
    in the file's ``model_config``). ``input_limits_*.npy`` hold the ranges
    of each layer's input activations (DAC range); ``adc_limits_*.npy`` the
    ranges of its ADC, in CrossSim's units, passed through unchanged.

    Assumption: the n-th row belongs to the n-th MVM layer of ``network``
    (:attr:`Network.mvm_layers`), which :func:`~simulator.io.keras_h5.load_keras_h5` keeps in Keras
    order. A model whose MVM-layer count differs from the number of rows is
    refused. Either file may be ``None``.

    Returns ``{layer_name: {"input_range": (min, max), "adc_range": (min, max)}}``
    (only the keys whose file was given), in MVM-layer order; without
    ``network`` the keys are the MVM-layer indices 0, 1, ...
    """
    arrays: dict[str, np.ndarray] = {}
    for key, src in (("input_range", input_limits_npy), ("adc_range", adc_limits_npy)):
        if src is None:
            continue
        if isinstance(src, np.ndarray):
            arr, label = src, f"{key} array"
        else:
            label = str(src)
            try:
                arr = np.load(src, allow_pickle=False)
            except FileNotFoundError:
                raise CalibrationError(f"{src}: CrossSim limits file not found") from None
            except (OSError, ValueError) as exc:
                raise CalibrationError(f"{src}: not a readable .npy file ({str(exc).splitlines()[0]})") from None
        arr = np.asarray(arr, dtype=np.float64)
        if arr.ndim != 2 or arr.shape[1] != 2:
            raise CalibrationError(f"{label}: expected an array of shape (layers, 2) with (min, max) rows, got {arr.shape}")
        if np.any(arr[:, 0] > arr[:, 1]):
            bad = int(np.argmax(arr[:, 0] > arr[:, 1]))
            raise CalibrationError(f"{label}: row {bad} has min {arr[bad, 0]} > max {arr[bad, 1]}")
        arrays[key] = (arr, label)  # type: ignore[assignment]
    if not arrays:
        return {}
    counts = {key: a.shape[0] for key, (a, _) in arrays.items()}  # type: ignore[misc]
    if len(set(counts.values())) != 1:
        raise CalibrationError(f"limit files disagree on the number of layers: {counts}")
    n = next(iter(counts.values()))
    if network is not None:
        if not isinstance(network, Network):
            network = load_any(resolve_model_path(network))
        names: list[Any] = [layer.name for layer in network.mvm_layers]
        if len(names) != n:
            labels = ", ".join(lbl for _, lbl in arrays.values())  # type: ignore[misc]
            raise CalibrationError(
                f"{labels}: {n} rows, but model {network.source or network.name} has {len(names)} MVM layers"
            )
    else:
        names = list(range(n))
    out: dict = {}
    for i, name in enumerate(names):
        out[name] = {key: (float(a[i, 0]), float(a[i, 1])) for key, (a, _) in arrays.items()}  # type: ignore[misc]
    return out
