"""The network graph and our HDF5 model format.

A :class:`Network` is a directed acyclic graph of :class:`Layer` objects in
topological order. Every importer (Keras ``.h5``, ONNX, PyTorch, witin) builds
one; :func:`save_model` / :func:`read_xbarsim_h5` store it in one HDF5 file
(:func:`simulator.load_model` reads any model file, :mod:`simulator.model_files`).
This module is the data model only: it imports no importer.

Conventions
-----------
* Internal activation layout is **NHWC** (channels last) for 4-D tensors and
  ``(N, features)`` for 2-D ones. Models whose native layout is NCHW
  (PyTorch, ONNX) record ``input_layout = "NCHW"``; :class:`~simulator.Simulation`
  transposes inputs once at the boundary, and ``Flatten`` layers carry an
  ``order`` so flattening reproduces the native element order.
* ``internal_layout = "native"`` (the ONNX importer) keeps every tensor in
  the model's own layout instead, so operators of any rank (Transpose,
  Reshape, Gather, Softmax on an axis, ...) keep their meaning unchanged; the
  layers that compute on channels-last windows (Conv2D, DepthwiseConv2D,
  pooling) carry ``data_format = "channels_first"`` and transpose around
  themselves only. Generic tensor operators are listed in
  :mod:`simulator.tensor_ops`.
* ``batch_size`` (None: any) is set when a graph mixes the batch axis with
  others (a reshape folding it into heads, a transpose moving it); the
  executor then feeds it exactly that many images at a time.
* Weights are stored in Keras conventions: Dense ``kernel`` is ``(in, out)``,
  Conv2D ``kernel`` is ``(kh, kw, cin, cout)``, DepthwiseConv2D
  ``depthwise_kernel`` is ``(kh, kw, cin, multiplier)``.

HDF5 layout (``format = "xbarsim-model"``, ``format_version = 1``)
------------------------------------------------------------------
* root attributes: ``format``, ``format_version``, ``name``, ``input_layout``,
  ``input_shape`` (JSON list, native layout, no batch axis), ``internal_layout``,
  ``batch_size`` (JSON int or null; both optional, defaults NHWC / null), ``graph`` (JSON
  list of ``{"name", "type", "inputs", "config"}``), ``outputs`` (JSON list),
  ``metadata`` (JSON object, free-form: dataset name, input range, ...).
* group ``weights/<layer name>/<param>``: one dataset per weight array.
"""
from __future__ import annotations

import json
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np

from simulator.errors import ModelError
from simulator.tensor_ops import TENSOR_OPS

FORMAT_NAME = "xbarsim-model"
FORMAT_VERSION = 1

#: Layer types the executor understands, with the config keys each accepts.
LAYER_TYPES: dict[str, set[str]] = {
    "Input": set(),
    "Dense": {"units", "use_bias", "activation"},
    "Conv2D": {"filters", "kernel_size", "strides", "padding", "dilation_rate", "use_bias", "activation", "groups",
               "data_format"},
    "DepthwiseConv2D": {"kernel_size", "strides", "padding", "dilation_rate", "depth_multiplier", "use_bias", "activation",
                        "data_format"},
    "Conv2DTranspose": {"filters", "kernel_size", "strides", "padding", "output_padding", "dilation_rate", "use_bias", "activation"},
    "GRUCell": {"units", "use_bias", "hidden_input"},
    "MaxPooling2D": {"pool_size", "strides", "padding", "dilation_rate", "ceil_mode", "data_format"},
    "AveragePooling2D": {"pool_size", "strides", "padding", "count_include_pad", "dilation_rate", "ceil_mode",
                         "data_format"},
    "GlobalMaxPooling2D": {"keepdims"},
    "GlobalAveragePooling2D": {"keepdims"},
    "Add": set(),
    "Subtract": set(),
    "Multiply": set(),
    "Divide": set(),
    "Concatenate": {"axis"},
    "BatchNormalization": {"epsilon", "axis"},
    "ZeroPadding2D": {"padding"},
    "Flatten": {"order"},
    "Reshape": {"target_shape", "order", "shape"},
    "Activation": {"activation", "alpha"},
    "PReLU": set(),
    "Sqrt": set(),
    "Mean": {"axis", "keepdims"},
    # witin_nn operators without a Keras counterpart (simulator/witin/digital.py)
    "MatMul": set(),
    "Hypot": set(),
    "InvSqrt": set(),
    "ClnBn2d": set(),
    "Dropout": {"rate"},
    "GaussianNoise": {"stddev"},
}
LAYER_TYPES.update({name: set(op.keys) for name, op in TENSOR_OPS.items()})

#: Layers computed by analog arrays (they get a NeuralCore).
MVM_LAYER_TYPES = {"Dense", "Conv2D", "DepthwiseConv2D", "Conv2DTranspose", "GRUCell"}

ACTIVATIONS = {"linear", "relu", "relu6", "sigmoid", "tanh", "softmax", "gelu", "leaky_relu", "hard_sigmoid", "swish", "elu"}


@dataclass
class Layer:
    """One node of the graph.

    ``inputs`` names the layers feeding this one (``[]`` for ``Input``);
    ``config`` holds the type's hyper-parameters; ``weights`` maps parameter
    names to NumPy arrays; ``attrs`` holds extra per-layer metadata such as
    calibrated ``input_range`` or witin quantization parameters.
    """

    name: str
    type: str
    inputs: list[str] = field(default_factory=list)
    config: dict[str, Any] = field(default_factory=dict)
    weights: dict[str, np.ndarray] = field(default_factory=dict)
    attrs: dict[str, Any] = field(default_factory=dict)

    @property
    def is_mvm(self) -> bool:
        return self.type in MVM_LAYER_TYPES


class LayerLookup:
    """Access by layer name for anything with a ``layers`` list (Network, the torch host's TorchNetwork)."""

    layers: list

    def __getitem__(self, name: str) -> Layer:
        for layer in self.layers:
            if layer.name == name:
                return layer
        raise KeyError(name)

    @property
    def layer_names(self) -> list[str]:
        return [layer.name for layer in self.layers]

    @property
    def mvm_layers(self) -> list[Layer]:
        return [layer for layer in self.layers if layer.is_mvm]


@dataclass
class Network(LayerLookup):
    """A model: layers in topological order plus its input convention."""

    name: str
    layers: list[Layer]
    outputs: list[str]
    input_layout: str = "NHWC"  # native layout of 4-D inputs: "NHWC" or "NCHW"
    input_shape: tuple[int, ...] = ()  # native, without batch axis
    internal_layout: str = "NHWC"  # "NHWC": 4-D tensors channels-last inside; "native": as input_layout
    batch_size: int | None = None  # images per forward pass the graph requires (None: any number)
    metadata: dict[str, Any] = field(default_factory=dict)
    source: str = ""  # file the model came from, for messages

    def __post_init__(self) -> None:
        self.validate()

    # ------------------------------------------------------------------ access
    def consumers(self, name: str) -> list[Layer]:
        """Layers that take ``name`` as an input."""
        return [layer for layer in self.layers if name in layer.inputs]

    # -------------------------------------------------------------- validation
    def validate(self) -> None:
        """Check names, types, config keys and topological order."""
        where = self.source or self.name
        seen: set[str] = set()
        if self.input_layout not in ("NHWC", "NCHW"):
            raise ModelError(f"{where}: input_layout must be 'NHWC' or 'NCHW', got {self.input_layout!r}")
        if self.internal_layout not in ("NHWC", "native"):
            raise ModelError(f"{where}: internal_layout must be 'NHWC' or 'native', got {self.internal_layout!r}")
        if self.batch_size is not None and (not isinstance(self.batch_size, int) or self.batch_size < 1):
            raise ModelError(f"{where}: batch_size must be a positive integer or None, got {self.batch_size!r}")
        for layer in self.layers:
            if layer.name in seen:
                raise ModelError(f"{where}: duplicate layer name {layer.name!r}")
            if layer.type not in LAYER_TYPES:
                raise ModelError(
                    f"{where}: layer {layer.name!r} has unsupported type {layer.type!r}; "
                    f"supported: {', '.join(sorted(LAYER_TYPES))}"
                )
            unknown = set(layer.config) - LAYER_TYPES[layer.type]
            if unknown:
                raise ModelError(
                    f"{where}: layer {layer.name!r} ({layer.type}) has unknown config keys {sorted(unknown)}; "
                    f"allowed: {sorted(LAYER_TYPES[layer.type])}"
                )
            for src in layer.inputs:
                if src not in seen:
                    raise ModelError(
                        f"{where}: layer {layer.name!r} takes input {src!r}, which is not defined before it"
                    )
            if layer.type == "Input" and layer.inputs:
                raise ModelError(f"{where}: Input layer {layer.name!r} cannot have inputs")
            if layer.type != "Input" and not layer.inputs:
                raise ModelError(f"{where}: layer {layer.name!r} ({layer.type}) has no inputs")
            act = layer.config.get("activation")
            if act is not None and act not in ACTIVATIONS:
                raise ModelError(f"{where}: layer {layer.name!r} has unsupported activation {act!r}")
            seen.add(layer.name)
        inputs = [layer for layer in self.layers if layer.type == "Input"]
        if len(inputs) != 1:
            raise ModelError(f"{where}: expected exactly one Input layer, found {len(inputs)}")
        for out in self.outputs:
            if out not in seen:
                raise ModelError(f"{where}: output {out!r} is not a layer")
        if not self.outputs:
            raise ModelError(f"{where}: the model names no output layer")
        from simulator.validation import check_weights

        check_weights(self, where)  # dtypes, shapes, finite values, batch-norm variances

    def summary(self) -> str:
        lines = [f"Model {self.name} (input {self.input_layout} {list(self.input_shape)})"]
        for layer in self.layers:
            shapes = ", ".join(f"{k}{list(v.shape)}" for k, v in layer.weights.items())
            lines.append(f"  {layer.name:<28} {layer.type:<22} <- {','.join(layer.inputs) or '-':<20} {shapes}")
        return "\n".join(lines)


# ---------------------------------------------------------------------- files
def _jsonable(value: Any) -> Any:
    if isinstance(value, dict):
        return {str(k): _jsonable(v) for k, v in value.items()}
    if isinstance(value, (list, tuple)):
        return [_jsonable(v) for v in value]
    if isinstance(value, np.ndarray):
        return value.tolist()
    if isinstance(value, np.generic):
        return value.item()
    return value


def save_model(network: Network, path: str | Path) -> Path:
    """Write ``network`` to ``path`` in our HDF5 format."""
    import h5py

    path = Path(path)
    graph = [
        {"name": l.name, "type": l.type, "inputs": list(l.inputs), "config": _jsonable(l.config), "attrs": _jsonable(l.attrs)}
        for l in network.layers
    ]
    with h5py.File(path, "w") as f:
        f.attrs["format"] = FORMAT_NAME
        f.attrs["format_version"] = FORMAT_VERSION
        f.attrs["name"] = network.name
        f.attrs["input_layout"] = network.input_layout
        f.attrs["input_shape"] = json.dumps(list(network.input_shape))
        f.attrs["internal_layout"] = network.internal_layout
        f.attrs["batch_size"] = json.dumps(network.batch_size)
        f.attrs["graph"] = json.dumps(graph)
        f.attrs["outputs"] = json.dumps(list(network.outputs))
        f.attrs["metadata"] = json.dumps(_jsonable(network.metadata))
        wgrp = f.create_group("weights")
        for layer in network.layers:
            if layer.weights:
                g = wgrp.create_group(layer.name)
                for key, arr in layer.weights.items():
                    g.create_dataset(key, data=np.asarray(arr))
    return path


def read_xbarsim_h5(path: Path) -> Network:
    """Read a file in our own HDF5 model format."""
    import h5py

    try:
        f = h5py.File(path, "r")
    except (OSError, ValueError) as exc:
        raise ModelError(f"{path}: not a readable HDF5 file ({exc.__class__.__name__}: {str(exc).splitlines()[0]})") from None
    with f:
        fmt = f.attrs.get("format")
        if isinstance(fmt, bytes):
            fmt = fmt.decode()
        if fmt != FORMAT_NAME:
            raise ModelError(
                f"{path}: not an xbarsim model (root attribute 'format' is {fmt!r}, expected {FORMAT_NAME!r}); "
                "convert it with `xbarsim convert`"
            )
        try:
            version = int(f.attrs["format_version"])
            if version > FORMAT_VERSION:
                raise ModelError(f"{path}: format_version {version} is newer than this xbarsim reads ({FORMAT_VERSION})")
            graph = json.loads(f.attrs["graph"])
            layers = []
            for entry in graph:
                weights = {}
                if "weights" in f and entry["name"] in f["weights"]:
                    grp = f["weights"][entry["name"]]
                    weights = {k: np.array(grp[k]) for k in grp.keys()}
                layers.append(
                    Layer(
                        name=entry["name"],
                        type=entry["type"],
                        inputs=list(entry.get("inputs", [])),
                        config=dict(entry.get("config", {})),
                        weights=weights,
                        attrs=dict(entry.get("attrs", {})),
                    )
                )
            net = Network(
                name=str(f.attrs.get("name", Path(path).stem)),
                layers=layers,
                outputs=json.loads(f.attrs["outputs"]),
                input_layout=str(f.attrs.get("input_layout", "NHWC")),
                input_shape=tuple(json.loads(f.attrs.get("input_shape", "[]"))),
                internal_layout=str(f.attrs.get("internal_layout", "NHWC")),
                batch_size=json.loads(f.attrs.get("batch_size", "null")),
                metadata=json.loads(f.attrs.get("metadata", "{}")),
                source=str(path),
            )
        except ModelError:
            raise
        except (KeyError, json.JSONDecodeError, TypeError, OSError, ValueError) as exc:
            raise ModelError(f"{path}: corrupt xbarsim model file ({exc.__class__.__name__}: {exc})") from None
    return net
