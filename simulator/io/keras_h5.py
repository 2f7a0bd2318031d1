"""Read Keras 2.x ``.h5`` model files with h5py alone (no TensorFlow).

A Keras HDF5 model file holds the architecture as the JSON root attribute
``model_config`` and the weights in the group ``model_weights/<layer>``
(each layer group lists its datasets in the attribute ``weight_names``).
Files written by ``model.save_weights`` keep the layer groups at the root and
have no architecture; pass the architecture (``model.to_json()``) as
``model_config`` to read those.

Supported Keras layers (CrossSim manual 5.1.1 and a few close relatives) and
what they become in our graph (:data:`simulator.network.LAYER_TYPES`):

================================  =============================================
Keras                             xbarsim
================================  =============================================
InputLayer                        Input
Dense                             Dense (``kernel`` (in, out), ``bias``)
Conv2D                            Conv2D (``kernel`` (kh, kw, cin/groups, cout))
DepthwiseConv2D                   DepthwiseConv2D (``depthwise_kernel``)
SeparableConv2D                   DepthwiseConv2D ``<name>/depthwise`` + 1x1 Conv2D ``<name>``
Conv2DTranspose                   Conv2DTranspose (Keras ``kernel`` (kh, kw, cout, cin))
MaxPooling2D, AveragePooling2D    same (``count_include_pad`` False, as in Keras)
GlobalMax/AveragePooling2D        same (``keepdims``)
Add, Subtract, Multiply           same
Concatenate                       Concatenate (Keras ``axis``, channels last)
BatchNormalization                BatchNormalization (``gamma``, ``beta``, ``moving_mean``,
                                  ``moving_variance``; missing ones filled with 1 / 0)
ZeroPadding2D                     ZeroPadding2D (``[[top, bottom], [left, right]]``)
Flatten, Reshape                  same, ``order = "NHWC"``
Activation, ReLU, LeakyReLU,      Activation (``relu``, ``relu6``, ``leaky_relu``, ``softmax``,
Softmax, ELU                      ``elu``, ...)
PReLU                             PReLU (``alpha``)
Dropout, GaussianNoise, ...       removed (``ignored_layer_types``; their consumers read
                                  the layer's input instead)
================================  =============================================

Fused activations (``activation`` of Dense / Conv2D / DepthwiseConv2D) stay
in the layer config. Padding ``"same"``/``"valid"`` strings are kept as they
are: the executor implements Keras' ``same`` rule (extra row/column at the
bottom/right). Layers keep their Keras names and the Keras layer order (a
stable topological sort only moves a layer when the file lists it before one
of its inputs), so the n-th MVM layer of the Network is the n-th Conv2D /
DepthwiseConv2D / Dense of the Keras model — the order CrossSim's calibrated
limit files use (see :func:`simulator.io.crosssim_limits.load_crosssim_limits`).
"""
from __future__ import annotations

import json
from pathlib import Path
from typing import Any, Iterable, Mapping

import numpy as np

from simulator.errors import ModelError
from simulator.network import ACTIVATIONS, Layer, Network

#: Keras layer types that do nothing at inference time and are removed.
DEFAULT_IGNORED_LAYER_TYPES: tuple[str, ...] = (
    "Dropout",
    "GaussianNoise",
    "GaussianDropout",
    "AlphaDropout",
    "SpatialDropout1D",
    "SpatialDropout2D",
    "SpatialDropout3D",
    "ActivityRegularization",
)

_MODEL_CLASSES = {"Sequential", "Functional", "Model"}

#: Keras activation names -> ours.
_ACTIVATION_ALIASES = {"silu": "swish", "linear": "linear", None: "linear"}

SUPPORTED_KERAS_LAYERS = (
    "InputLayer", "Dense", "Conv2D", "DepthwiseConv2D", "SeparableConv2D", "Conv2DTranspose",
    "MaxPooling2D", "AveragePooling2D", "GlobalMaxPooling2D", "GlobalAveragePooling2D",
    "Add", "Subtract", "Multiply", "Concatenate", "BatchNormalization", "ZeroPadding2D",
    "Flatten", "Reshape", "Activation", "ReLU", "LeakyReLU", "Softmax", "ELU", "PReLU",
)
# Keras aliases of the class names above
_CLASS_ALIASES = {
    "MaxPool2D": "MaxPooling2D",
    "AvgPool2D": "AveragePooling2D",
    "GlobalMaxPool2D": "GlobalMaxPooling2D",
    "GlobalAvgPool2D": "GlobalAveragePooling2D",
    "Convolution2D": "Conv2D",
    "Conv2DTranspose": "Conv2DTranspose",
    "Deconvolution2D": "Conv2DTranspose",
    "SeparableConvolution2D": "SeparableConv2D",
}


def _text(value: Any) -> str:
    if isinstance(value, bytes):
        return value.decode("utf-8")
    if isinstance(value, np.ndarray) and value.shape == ():
        return _text(value.item())
    return str(value)


def _pair(value: Any, what: str, where: str) -> list[int]:
    """Keras int-or-tuple argument -> 2-list of ints."""
    if isinstance(value, (int, np.integer)):
        return [int(value), int(value)]
    if isinstance(value, (list, tuple)) and len(value) == 2:
        return [int(v) for v in value]
    raise ModelError(f"{where}: {what} must be an int or a pair, got {value!r}")


class _Ctx:
    """Where we are, for error messages."""

    def __init__(self, path: str):
        self.path = path

    def at(self, name: str, cls: str) -> str:
        return f"{self.path}: layer {name!r} ({cls})"


# --------------------------------------------------------------------- config
def _parse_inbound(nodes: Any, where: str) -> list[str]:
    """Names of the layers feeding one Keras layer (Keras 2 list or Keras 3 dict format)."""
    if not nodes:
        return []
    if len(nodes) > 1:
        raise ModelError(f"{where}: the layer is called {len(nodes)} times (shared layer); shared layers are not supported")
    node = nodes[0]
    names: list[str] = []
    if isinstance(node, Mapping):  # Keras 3: {"args": [...], "kwargs": {...}}
        def walk(obj: Any) -> None:
            if isinstance(obj, Mapping):
                cfg = obj.get("config")
                if obj.get("class_name") == "__keras_tensor__" and isinstance(cfg, Mapping):
                    hist = cfg.get("keras_history")
                    if hist:
                        names.append(str(hist[0]))
                    return
                for v in obj.values():
                    walk(v)
            elif isinstance(obj, (list, tuple)):
                for v in obj:
                    walk(v)

        walk(node.get("args", []))
        return names
    for entry in node:  # Keras 2: [[name, node_index, tensor_index, kwargs], ...]
        if not isinstance(entry, (list, tuple)) or not entry:
            raise ModelError(f"{where}: malformed inbound_nodes entry {entry!r}")
        if len(entry) > 2 and int(entry[2]) != 0:
            raise ModelError(f"{where}: takes output {entry[2]} of multi-output layer {entry[0]!r}; not supported")
        names.append(str(entry[0]))
    return names


def _layer_list(model_config: Mapping[str, Any], ctx: _Ctx) -> tuple[str, list[dict], list[str] | None, list[str] | None]:
    """Return (class, layers, input layer names, output layer names) from a model_config."""
    cls = model_config.get("class_name")
    cfg = model_config.get("config")
    if cls not in _MODEL_CLASSES:
        raise ModelError(f"{ctx.path}: model_config describes a {cls!r}, expected a Sequential or Functional model")
    if cls == "Sequential":
        layers = cfg if isinstance(cfg, list) else (cfg or {}).get("layers")
        if not isinstance(layers, list):
            raise ModelError(f"{ctx.path}: model_config of the Sequential model has no layer list")
        return cls, layers, None, None
    if not isinstance(cfg, Mapping) or not isinstance(cfg.get("layers"), list):
        raise ModelError(f"{ctx.path}: model_config of the functional model has no layer list")

    def names(key: str) -> list[str]:
        val = cfg.get(key) or []
        if val and isinstance(val[0], str):  # single tensor [name, 0, 0]
            val = [val]
        return [str(v[0]) for v in val]

    return cls, cfg["layers"], names("input_layers"), names("output_layers")


def _activation(value: Any, where: str) -> str:
    if isinstance(value, Mapping):  # serialized activation object
        value = (value.get("config") or {}).get("name") or value.get("class_name")
    name = _ACTIVATION_ALIASES.get(value, value)
    if name not in ACTIVATIONS:
        raise ModelError(f"{where}: activation {value!r} is not supported; supported: {', '.join(sorted(ACTIVATIONS))}")
    return str(name)


def _check_channels_last(conf: Mapping[str, Any], where: str) -> None:
    fmt = conf.get("data_format") or "channels_last"
    if fmt != "channels_last":
        raise ModelError(f"{where}: data_format {fmt!r} is not supported (only channels_last)")


def _padding_str(conf: Mapping[str, Any], where: str) -> str:
    pad = str(conf.get("padding", "valid")).lower()
    if pad not in ("same", "valid"):
        raise ModelError(f"{where}: padding {pad!r} is not supported (only 'same' and 'valid')")
    return pad


def _zero_padding(value: Any, where: str) -> list[list[int]]:
    if isinstance(value, (int, np.integer)):
        return [[int(value)] * 2, [int(value)] * 2]
    if isinstance(value, (list, tuple)) and len(value) == 2:
        if all(isinstance(v, (int, np.integer)) for v in value):
            return [[int(value[0])] * 2, [int(value[1])] * 2]
        return [_pair(value[0], "padding", where), _pair(value[1], "padding", where)]
    raise ModelError(f"{where}: ZeroPadding2D padding {value!r} is not understood")


def _translate(cls: str, name: str, conf: Mapping[str, Any], ctx: _Ctx) -> list[tuple[str, str, dict, list[str]]]:
    """Keras layer -> list of (our name, our type, our config, weight roles).

    Weight roles name the Keras weights each of our layers takes, in order.
    """
    where = ctx.at(name, cls)
    if cls == "Dense":
        use_bias = bool(conf.get("use_bias", True))
        return [(name, "Dense", {"units": int(conf["units"]), "use_bias": use_bias,
                                 "activation": _activation(conf.get("activation"), where)},
                 ["kernel"] + (["bias"] if use_bias else []))]
    if cls in ("Conv2D", "DepthwiseConv2D", "SeparableConv2D", "Conv2DTranspose"):
        _check_channels_last(conf, where)
        use_bias = bool(conf.get("use_bias", True))
        common = {
            "kernel_size": _pair(conf["kernel_size"], "kernel_size", where),
            "strides": _pair(conf.get("strides", 1), "strides", where),
            "padding": _padding_str(conf, where),
            "dilation_rate": _pair(conf.get("dilation_rate", 1), "dilation_rate", where),
        }
        act = _activation(conf.get("activation"), where)
        if cls == "Conv2D":
            cfg = {"filters": int(conf["filters"]), **common, "use_bias": use_bias, "activation": act}
            groups = int(conf.get("groups", 1) or 1)
            if groups != 1:
                cfg["groups"] = groups
            return [(name, "Conv2D", cfg, ["kernel"] + (["bias"] if use_bias else []))]
        if cls == "Conv2DTranspose":
            cfg = {"filters": int(conf["filters"]), **common, "use_bias": use_bias, "activation": act}
            if conf.get("output_padding") is not None:
                cfg["output_padding"] = _pair(conf["output_padding"], "output_padding", where)
            return [(name, "Conv2DTranspose", cfg, ["kernel"] + (["bias"] if use_bias else []))]
        mult = int(conf.get("depth_multiplier", 1))
        if cls == "DepthwiseConv2D":
            cfg = {**common, "depth_multiplier": mult, "use_bias": use_bias, "activation": act}
            return [(name, "DepthwiseConv2D", cfg, ["depthwise_kernel"] + (["bias"] if use_bias else []))]
        # SeparableConv2D = depthwise (no bias, no activation) + pointwise 1x1 conv
        dw = {**common, "depth_multiplier": mult, "use_bias": False, "activation": "linear"}
        pw = {"filters": int(conf["filters"]), "kernel_size": [1, 1], "strides": [1, 1], "padding": "valid",
              "dilation_rate": [1, 1], "use_bias": use_bias, "activation": act}
        return [(f"{name}/depthwise", "DepthwiseConv2D", dw, ["depthwise_kernel"]),
                (name, "Conv2D", pw, ["pointwise_kernel"] + (["bias"] if use_bias else []))]
    if cls in ("MaxPooling2D", "AveragePooling2D"):
        _check_channels_last(conf, where)
        pool = _pair(conf.get("pool_size", 2), "pool_size", where)
        strides = conf.get("strides")
        cfg = {"pool_size": pool, "strides": pool if strides is None else _pair(strides, "strides", where),
               "padding": _padding_str(conf, where)}
        if cls == "AveragePooling2D":
            cfg["count_include_pad"] = False  # Keras averages over the valid pixels only
        return [(name, cls, cfg, [])]
    if cls in ("GlobalMaxPooling2D", "GlobalAveragePooling2D"):
        _check_channels_last(conf, where)
        return [(name, cls, {"keepdims": bool(conf.get("keepdims", False))}, [])]
    if cls in ("Add", "Subtract", "Multiply"):
        return [(name, cls, {}, [])]
    if cls == "Concatenate":
        return [(name, "Concatenate", {"axis": int(conf.get("axis", -1))}, [])]
    if cls == "BatchNormalization":
        axis = conf.get("axis", -1)
        if isinstance(axis, (list, tuple)):
            if len(axis) != 1:
                raise ModelError(f"{where}: BatchNormalization over several axes {axis} is not supported")
            axis = axis[0]
        roles = (["gamma"] if conf.get("scale", True) else []) + (["beta"] if conf.get("center", True) else [])
        return [(name, "BatchNormalization", {"epsilon": float(conf.get("epsilon", 1e-3)), "axis": int(axis)},
                 roles + ["moving_mean", "moving_variance"])]
    if cls == "ZeroPadding2D":
        _check_channels_last(conf, where)
        return [(name, "ZeroPadding2D", {"padding": _zero_padding(conf.get("padding", 1), where)}, [])]
    if cls == "Flatten":
        _check_channels_last(conf, where)
        return [(name, "Flatten", {"order": "NHWC"}, [])]
    if cls == "Reshape":
        return [(name, "Reshape", {"target_shape": [int(v) for v in conf["target_shape"]], "order": "NHWC"}, [])]
    if cls == "Activation":
        return [(name, "Activation", {"activation": _activation(conf.get("activation"), where)}, [])]
    if cls == "ReLU":
        max_value = conf.get("max_value")
        slope = float(conf.get("negative_slope", 0.0) or 0.0)
        threshold = float(conf.get("threshold", 0.0) or 0.0)
        if threshold != 0.0:
            raise ModelError(f"{where}: ReLU with threshold {threshold} is not supported")
        if max_value is None and slope == 0.0:
            return [(name, "Activation", {"activation": "relu"}, [])]
        if max_value is not None and float(max_value) == 6.0 and slope == 0.0:
            return [(name, "Activation", {"activation": "relu6"}, [])]
        if max_value is None:
            return [(name, "Activation", {"activation": "leaky_relu", "alpha": slope}, [])]
        raise ModelError(f"{where}: ReLU with max_value={max_value}, negative_slope={slope} is not supported")
    if cls == "LeakyReLU":
        alpha = conf.get("alpha", conf.get("negative_slope", 0.3))
        return [(name, "Activation", {"activation": "leaky_relu", "alpha": float(alpha)}, [])]
    if cls == "ELU":
        return [(name, "Activation", {"activation": "elu", "alpha": float(conf.get("alpha", 1.0))}, [])]
    if cls == "Softmax":
        axis = conf.get("axis", -1)
        if axis not in (-1, [-1]):
            raise ModelError(f"{where}: Softmax over axis {axis} is not supported (only the last axis)")
        return [(name, "Activation", {"activation": "softmax"}, [])]
    if cls == "PReLU":
        return [(name, "PReLU", {}, ["alpha"])]
    # training-only layers kept in the graph when not ignored (the executor passes them through)
    if cls in ("Dropout", "SpatialDropout2D", "GaussianDropout", "AlphaDropout"):
        return [(name, "Dropout", {"rate": float(conf.get("rate", 0.0))}, [])]
    if cls == "GaussianNoise":
        return [(name, "GaussianNoise", {"stddev": float(conf.get("stddev", 0.0))}, [])]
    if cls in _MODEL_CLASSES:
        raise ModelError(f"{where}: nested models are not supported; save the model with its layers flattened")
    raise ModelError(
        f"{ctx.path}: layer {name!r} has unsupported Keras layer type {cls!r}; supported: "
        f"{', '.join(SUPPORTED_KERAS_LAYERS)} (layer types that do nothing at inference can be "
        "skipped with ignored_layer_types)"
    )


# -------------------------------------------------------------------- weights
def _layer_weights(wroot: Any, name: str) -> list[tuple[str, np.ndarray]]:
    """(base name, array) for each weight of Keras layer ``name`` in file order."""
    if name not in wroot:
        return []
    grp = wroot[name]
    wnames = grp.attrs.get("weight_names")
    out = []
    if wnames is not None and len(wnames):
        for wn in wnames:
            wn = _text(wn)
            base = wn.rsplit("/", 1)[-1].split(":", 1)[0]
            out.append((base, np.array(grp[wn])))
        return out
    # no index: collect every dataset below the group
    found: list[tuple[str, np.ndarray]] = []

    def visit(key: str, obj: Any) -> None:
        if hasattr(obj, "shape") and hasattr(obj, "dtype"):
            found.append((key.rsplit("/", 1)[-1].split(":", 1)[0], np.array(obj)))

    grp.visititems(visit)
    return found


def _assign(roles: list[str], weights: list[tuple[str, np.ndarray]], where: str) -> dict[str, np.ndarray]:
    by_name = {base: arr for base, arr in weights}
    if set(roles) <= set(by_name):
        return {r: by_name[r] for r in roles}
    if len(weights) == len(roles):  # unusual names: fall back to Keras' fixed order
        return {r: arr for r, (_, arr) in zip(roles, weights)}
    have = [b for b, _ in weights]
    raise ModelError(f"{where}: expected weights {roles}, the file has {have or 'none'}")


def _check_shapes(layer: Layer, where: str) -> None:
    w, cfg = layer.weights, layer.config

    def bad(msg: str) -> None:
        raise ModelError(f"{where}: {msg}")

    if layer.type == "Dense":
        k = w["kernel"]
        if k.ndim != 2 or k.shape[1] != cfg["units"]:
            bad(f"kernel shape {k.shape} does not match units={cfg['units']}")
        if "bias" in w and w["bias"].shape != (cfg["units"],):
            bad(f"bias shape {w['bias'].shape} does not match units={cfg['units']}")
    elif layer.type in ("Conv2D", "Conv2DTranspose"):
        k = w["kernel"]
        out_axis = 3 if layer.type == "Conv2D" else 2
        if k.ndim != 4 or list(k.shape[:2]) != cfg["kernel_size"] or k.shape[out_axis] != cfg["filters"]:
            bad(f"kernel shape {k.shape} does not match kernel_size={cfg['kernel_size']}, filters={cfg['filters']}")
        if "bias" in w and w["bias"].shape != (cfg["filters"],):
            bad(f"bias shape {w['bias'].shape} does not match filters={cfg['filters']}")
    elif layer.type == "DepthwiseConv2D":
        k = w["depthwise_kernel"]
        if k.ndim != 4 or list(k.shape[:2]) != cfg["kernel_size"] or k.shape[3] != cfg["depth_multiplier"]:
            bad(f"depthwise_kernel shape {k.shape} does not match kernel_size={cfg['kernel_size']}, "
                f"depth_multiplier={cfg['depth_multiplier']}")
        if "bias" in w and w["bias"].shape != (k.shape[2] * k.shape[3],):
            bad(f"bias shape {w['bias'].shape} does not match {k.shape[2] * k.shape[3]} output channels")
    elif layer.type == "BatchNormalization":
        shapes = {key: v.shape for key, v in w.items()}
        if len(set(shapes.values())) != 1 or len(next(iter(shapes.values()))) != 1:
            bad(f"BatchNormalization parameters must be vectors of one length, got {shapes}")


# ---------------------------------------------------------------------- main
def load_keras_h5(
    path: str | Path,
    ignored_layer_types: Iterable[str] = DEFAULT_IGNORED_LAYER_TYPES,
    *,
    model_config: str | Mapping[str, Any] | Path | None = None,
) -> Network:
    """Read a Keras 2.x HDF5 model file into a :class:`~simulator.network.Network`.

    ``ignored_layer_types`` are removed from the graph (CrossSim's
    ``ignoredLayerTypes``). ``model_config`` supplies the architecture for a
    weights-only file (a JSON string, a parsed dict, or the path of a
    ``.json`` file written from ``model.to_json()``); it overrides the
    file's own ``model_config``.

    Raises :class:`~simulator.errors.ModelError` with one line naming the
    file (and layer) for anything it cannot read.
    """
    import h5py

    path = Path(path)
    ctx = _Ctx(str(path))
    if not path.exists():
        raise ModelError(f"{path}: Keras model file not found")
    ignored = set(ignored_layer_types or ())
    try:
        f = h5py.File(path, "r")
    except (OSError, ValueError) as exc:
        first = str(exc).splitlines()[0] if str(exc) else exc.__class__.__name__
        raise ModelError(f"{path}: not a readable HDF5 file (truncated or corrupt? {first})") from None
    try:
        with f:
            return _load(f, path, ctx, ignored, model_config)
    except ModelError:
        raise
    except (OSError, KeyError, ValueError, TypeError, json.JSONDecodeError) as exc:
        first = str(exc).splitlines()[0] if str(exc) else ""
        raise ModelError(
            f"{path}: corrupt or truncated Keras model file ({exc.__class__.__name__}: {first})"
        ) from None


def _read_model_config(f: Any, path: Path, override: Any) -> dict:
    if override is not None:
        if isinstance(override, Mapping):
            return dict(override)
        text = str(override)
        if not text.lstrip().startswith("{"):
            try:
                text = Path(text).read_text()
            except OSError as exc:
                raise ModelError(f"{override}: cannot read model_config file ({exc.strerror})") from None
        try:
            return json.loads(text)
        except json.JSONDecodeError as exc:
            raise ModelError(f"{path}: model_config given is not valid JSON ({exc.msg} at position {exc.pos})") from None
    if "model_config" in f.attrs:
        raw = _text(f.attrs["model_config"])
        try:
            return json.loads(raw)
        except json.JSONDecodeError as exc:
            raise ModelError(f"{path}: root attribute 'model_config' is not valid JSON ({exc.msg})") from None
    if "layer_names" in f.attrs:
        raise ModelError(
            f"{path}: Keras weights-only file (no 'model_config' attribute); pass the architecture "
            "(model.to_json()) as model_config"
        )
    fmt = f.attrs.get("format")
    hint = " (it is an xbarsim model: use simulator.load_model)" if fmt is not None and _text(fmt) == "xbarsim-model" else ""
    raise ModelError(
        f"{path}: not a Keras model file: HDF5 root has no 'model_config' attribute "
        f"(root keys: {sorted(f.keys()) or 'none'}){hint}"
    )


def _load(f: Any, path: Path, ctx: _Ctx, ignored: set[str], override: Any) -> Network:
    config = _read_model_config(f, path, override)
    if "model_weights" in f:
        wroot = f["model_weights"]
    else:
        wroot = f  # save_weights layout: layer groups at the root
    model_cls, klayers, in_names, out_names = _layer_list(config, ctx)
    model_name = str((config.get("config") or {}).get("name", path.stem)) if isinstance(config.get("config"), Mapping) else path.stem

    # 1. translate each Keras layer; resolve ignored layers to their input
    entries: list[dict] = []  # in file order: {name, type, config, roles, inputs(keras), keras_name}
    alias: dict[str, str] = {}  # keras layer name -> our layer name producing its output
    input_shape: tuple | None = None
    prev: str | None = None
    for index, kl in enumerate(klayers):
        if not isinstance(kl, Mapping) or "class_name" not in kl:
            raise ModelError(f"{path}: model_config layer #{index} is malformed")
        cls = _CLASS_ALIASES.get(kl["class_name"], kl["class_name"])
        conf = kl.get("config") or {}
        name = str(kl.get("name") or conf.get("name") or f"{cls.lower()}_{index}")
        where = ctx.at(name, cls)
        if model_cls == "Sequential":
            srcs = [prev] if prev is not None else []
        else:
            srcs = _parse_inbound(kl.get("inbound_nodes"), where)
        if cls == "InputLayer":
            shape = conf.get("batch_input_shape", conf.get("batch_shape"))
            if shape is None:
                raise ModelError(f"{where}: InputLayer has no batch_input_shape")
            if input_shape is not None:
                raise ModelError(f"{path}: the model has more than one input; only single-input models are supported")
            input_shape = tuple(None if s is None else int(s) for s in shape[1:])
            entries.append({"name": name, "type": "Input", "config": {}, "roles": [], "srcs": [], "cls": cls})
            alias[name] = name
            prev = name
            continue
        if model_cls == "Sequential" and prev is None:
            shape = conf.get("batch_input_shape", conf.get("batch_shape"))
            if shape is None:
                raise ModelError(f"{path}: the Sequential model has no InputLayer and its first layer {name!r} "
                                 "has no batch_input_shape; the input shape is unknown")
            input_shape = tuple(None if s is None else int(s) for s in shape[1:])
            in_name = "input" if all(_n != "input" for _n in (k.get("name") for k in klayers)) else f"{name}_input"
            entries.append({"name": in_name, "type": "Input", "config": {}, "roles": [], "srcs": [], "cls": "InputLayer"})
            alias[in_name] = in_name
            srcs = [in_name]
        if cls in ignored:
            if len(srcs) != 1:
                raise ModelError(f"{where}: ignored layer must have exactly one input, has {len(srcs)}")
            alias[name] = srcs[0]  # resolved below, once every layer is known
            prev = name
            continue
        for src in srcs:
            if src not in alias and not any(k.get("name") == src for k in klayers):
                raise ModelError(f"{where}: input {src!r} is not a layer of the model")
        if not srcs:
            raise ModelError(f"{where}: layer has no inputs (only InputLayer may)")
        parts = _translate(cls, name, conf, ctx)
        chain_src = srcs
        for i, (our_name, our_type, our_cfg, roles) in enumerate(parts):
            entries.append({"name": our_name, "type": our_type, "config": our_cfg, "roles": roles,
                            "srcs": chain_src if i == 0 else [parts[i - 1][0]], "cls": cls, "keras_name": name,
                            "resolved": i > 0})
        alias[name] = parts[-1][0]
        prev = name
    if input_shape is None:
        raise ModelError(f"{path}: the model has no InputLayer")

    # 2. resolve inputs through aliases (ignored layers may come after their consumers in the list)
    def resolve(src: str, where: str) -> str:
        seen = set()
        while src in alias and alias[src] != src:
            if src in seen:
                raise ModelError(f"{where}: cyclic input {src!r}")
            seen.add(src)
            src = alias[src]
        if src not in alias:
            raise ModelError(f"{where}: input {src!r} is not a layer of the model")
        return src

    for e in entries:
        if not e.get("resolved"):
            e["srcs"] = [resolve(s, ctx.at(e["name"], e["cls"])) for s in e["srcs"]]

    # 3. stable topological order (keeps the file's order whenever it is already valid)
    order = _toposort(entries, path)

    # 4. weights
    layers: list[Layer] = []
    for e in order:
        where = ctx.at(e.get("keras_name", e["name"]), e["cls"])
        weights: dict[str, np.ndarray] = {}
        if e["roles"]:
            found = _layer_weights(wroot, e["keras_name"])
            if not found:
                raise ModelError(f"{where}: no weights in the file for this layer (expected {e['roles']})")
            if e["cls"] == "SeparableConv2D":
                by_name = dict(found)
                missing = [r for r in e["roles"] if r not in by_name]
                if missing:
                    raise ModelError(f"{where}: missing weights {missing}")
                weights = {r: by_name[r] for r in e["roles"]}
                if "pointwise_kernel" in weights:
                    weights["kernel"] = weights.pop("pointwise_kernel")
            elif e["cls"] == "BatchNormalization":
                weights = _assign(e["roles"], found, where)
                n = weights["moving_mean"].shape
                weights.setdefault("gamma", np.ones(n, dtype=weights["moving_mean"].dtype))
                weights.setdefault("beta", np.zeros(n, dtype=weights["moving_mean"].dtype))
                weights = {k: weights[k] for k in ("gamma", "beta", "moving_mean", "moving_variance")}
            else:
                weights = _assign(e["roles"], found, where)
        layer = Layer(name=e["name"], type=e["type"], inputs=list(e["srcs"]), config=e["config"], weights=weights)
        if weights:
            _check_shapes(layer, where)
        layers.append(layer)

    # 5. outputs
    if out_names is None:
        outputs = [alias[prev]] if prev is not None else []
    else:
        outputs = [resolve(o, f"{path}: output") for o in out_names]
    if in_names is not None and len(in_names) > 1:
        raise ModelError(f"{path}: the model has {len(in_names)} inputs; only single-input models are supported")
    metadata = {
        "source_format": "keras_h5",
        "keras_model_class": model_cls,
        "keras_version": _text(f.attrs.get("keras_version", "")),
        "backend": _text(f.attrs.get("backend", "")),
    }
    return Network(
        name=model_name,
        layers=layers,
        outputs=outputs,
        input_layout="NHWC",
        input_shape=input_shape,
        metadata=metadata,
        source=str(path),
    )


def _toposort(entries: list[dict], path: Path) -> list[dict]:
    import heapq

    index = {e["name"]: i for i, e in enumerate(entries)}
    if len(index) != len(entries):
        seen: set[str] = set()
        for e in entries:
            if e["name"] in seen:
                raise ModelError(f"{path}: duplicate layer name {e['name']!r}")
            seen.add(e["name"])
    pending = [len(set(e["srcs"])) for e in entries]
    consumers: dict[str, list[int]] = {}
    for i, e in enumerate(entries):
        for s in set(e["srcs"]):
            consumers.setdefault(s, []).append(i)
    ready = [i for i, p in enumerate(pending) if p == 0]
    heapq.heapify(ready)
    out = []
    while ready:
        i = heapq.heappop(ready)
        out.append(entries[i])
        for j in consumers.get(entries[i]["name"], []):
            pending[j] -= 1
            if pending[j] == 0:
                heapq.heappush(ready, j)
    if len(out) != len(entries):
        stuck = [e["name"] for i, e in enumerate(entries) if pending[i] > 0]
        raise ModelError(f"{path}: the layer graph has a cycle or dangling inputs at {stuck[:5]}")
    return out
