"""Keras layer configs -> our layers: one translation per Keras class, :data:`TRANSLATIONS`.

Each translation ``translate(name, conf, where)`` returns a list of
``(our name, our type, our config, weight roles)``: the weight roles name the
Keras weights each of our layers takes, in order (a SeparableConv2D becomes
two layers). The table of what becomes what is in :mod:`simulator.io.keras_h5`.
"""
from __future__ import annotations

from typing import Any, Callable, Mapping

import numpy as np

from simulator.errors import ModelError
from simulator.network import ACTIVATIONS

#: Keras model classes (a nested one is refused)
MODEL_CLASSES = {"Sequential", "Functional", "Model"}

#: Keras activation names -> ours.
_ACTIVATION_ALIASES = {"silu": "swish", "linear": "linear", None: "linear"}

#: Keras aliases of the class names translated here
CLASS_ALIASES = {
    "MaxPool2D": "MaxPooling2D",
    "AvgPool2D": "AveragePooling2D",
    "GlobalMaxPool2D": "GlobalMaxPooling2D",
    "GlobalAvgPool2D": "GlobalAveragePooling2D",
    "Convolution2D": "Conv2D",
    "Conv2DTranspose": "Conv2DTranspose",
    "Deconvolution2D": "Conv2DTranspose",
    "SeparableConvolution2D": "SeparableConv2D",
}

Part = tuple[str, str, dict, list[str]]


def keras_pair(value: Any, what: str, where: str) -> list[int]:
    """Keras int-or-tuple argument -> 2-list of ints."""
    if isinstance(value, (int, np.integer)):
        return [int(value), int(value)]
    if isinstance(value, (list, tuple)) and len(value) == 2:
        return [int(v) for v in value]
    raise ModelError(f"{where}: {what} must be an int or a pair, got {value!r}")


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
        return [keras_pair(value[0], "padding", where), keras_pair(value[1], "padding", where)]
    raise ModelError(f"{where}: ZeroPadding2D padding {value!r} is not understood")


def _bias(conf: Mapping[str, Any]) -> tuple[bool, list[str]]:
    use_bias = bool(conf.get("use_bias", True))
    return use_bias, (["bias"] if use_bias else [])


# ------------------------------------------------------------------ MVM layers
def _dense(name: str, conf: Mapping[str, Any], where: str) -> list[Part]:
    use_bias, bias = _bias(conf)
    return [(name, "Dense", {"units": int(conf["units"]), "use_bias": use_bias,
                             "activation": _activation(conf.get("activation"), where)}, ["kernel"] + bias)]


def _conv_common(conf: Mapping[str, Any], where: str) -> dict:
    _check_channels_last(conf, where)
    return {
        "kernel_size": keras_pair(conf["kernel_size"], "kernel_size", where),
        "strides": keras_pair(conf.get("strides", 1), "strides", where),
        "padding": _padding_str(conf, where),
        "dilation_rate": keras_pair(conf.get("dilation_rate", 1), "dilation_rate", where),
    }


def _conv2d(name: str, conf: Mapping[str, Any], where: str) -> list[Part]:
    common, (use_bias, bias) = _conv_common(conf, where), _bias(conf)
    cfg = {"filters": int(conf["filters"]), **common, "use_bias": use_bias,
           "activation": _activation(conf.get("activation"), where)}
    groups = int(conf.get("groups", 1) or 1)
    if groups != 1:
        cfg["groups"] = groups
    return [(name, "Conv2D", cfg, ["kernel"] + bias)]


def _conv2d_transpose(name: str, conf: Mapping[str, Any], where: str) -> list[Part]:
    common, (use_bias, bias) = _conv_common(conf, where), _bias(conf)
    cfg = {"filters": int(conf["filters"]), **common, "use_bias": use_bias,
           "activation": _activation(conf.get("activation"), where)}
    if conf.get("output_padding") is not None:
        cfg["output_padding"] = keras_pair(conf["output_padding"], "output_padding", where)
    return [(name, "Conv2DTranspose", cfg, ["kernel"] + bias)]


def _depthwise_conv2d(name: str, conf: Mapping[str, Any], where: str) -> list[Part]:
    common, (use_bias, bias) = _conv_common(conf, where), _bias(conf)
    act = _activation(conf.get("activation"), where)
    cfg = {**common, "depth_multiplier": int(conf.get("depth_multiplier", 1)), "use_bias": use_bias, "activation": act}
    return [(name, "DepthwiseConv2D", cfg, ["depthwise_kernel"] + bias)]


def _separable_conv2d(name: str, conf: Mapping[str, Any], where: str) -> list[Part]:
    """SeparableConv2D = depthwise (no bias, no activation) + pointwise 1x1 conv."""
    common, (use_bias, bias) = _conv_common(conf, where), _bias(conf)
    act = _activation(conf.get("activation"), where)
    dw = {**common, "depth_multiplier": int(conf.get("depth_multiplier", 1)), "use_bias": False, "activation": "linear"}
    pw = {"filters": int(conf["filters"]), "kernel_size": [1, 1], "strides": [1, 1], "padding": "valid",
          "dilation_rate": [1, 1], "use_bias": use_bias, "activation": act}
    return [(f"{name}/depthwise", "DepthwiseConv2D", dw, ["depthwise_kernel"]),
            (name, "Conv2D", pw, ["pointwise_kernel"] + bias)]


# ------------------------------------------------------------------ digital layers
def _pooling(cls: str):
    def translate(name: str, conf: Mapping[str, Any], where: str) -> list[Part]:
        _check_channels_last(conf, where)
        pool = keras_pair(conf.get("pool_size", 2), "pool_size", where)
        strides = conf.get("strides")
        cfg = {"pool_size": pool, "strides": pool if strides is None else keras_pair(strides, "strides", where),
               "padding": _padding_str(conf, where)}
        if cls == "AveragePooling2D":
            cfg["count_include_pad"] = False  # Keras averages over the valid pixels only
        return [(name, cls, cfg, [])]
    return translate


def _global_pooling(cls: str):
    def translate(name: str, conf: Mapping[str, Any], where: str) -> list[Part]:
        _check_channels_last(conf, where)
        return [(name, cls, {"keepdims": bool(conf.get("keepdims", False))}, [])]
    return translate


def _batch_norm(name: str, conf: Mapping[str, Any], where: str) -> list[Part]:
    axis = conf.get("axis", -1)
    if isinstance(axis, (list, tuple)):
        if len(axis) != 1:
            raise ModelError(f"{where}: BatchNormalization over several axes {axis} is not supported")
        axis = axis[0]
    roles = (["gamma"] if conf.get("scale", True) else []) + (["beta"] if conf.get("center", True) else [])
    return [(name, "BatchNormalization", {"epsilon": float(conf.get("epsilon", 1e-3)), "axis": int(axis)},
             roles + ["moving_mean", "moving_variance"])]


def _zero_padding2d(name: str, conf: Mapping[str, Any], where: str) -> list[Part]:
    _check_channels_last(conf, where)
    return [(name, "ZeroPadding2D", {"padding": _zero_padding(conf.get("padding", 1), where)}, [])]


def _flatten(name: str, conf: Mapping[str, Any], where: str) -> list[Part]:
    _check_channels_last(conf, where)
    return [(name, "Flatten", {"order": "NHWC"}, [])]


def _relu(name: str, conf: Mapping[str, Any], where: str) -> list[Part]:
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


def _softmax(name: str, conf: Mapping[str, Any], where: str) -> list[Part]:
    axis = conf.get("axis", -1)
    if axis not in (-1, [-1]):
        raise ModelError(f"{where}: Softmax over axis {axis} is not supported (only the last axis)")
    return [(name, "Activation", {"activation": "softmax"}, [])]


def _plain(type_: str, config: Callable[[Mapping[str, Any], str], dict] = lambda conf, where: {},
           roles: tuple[str, ...] = ()):
    """A layer that keeps its name and takes ``config(conf, where)`` as its config."""
    def translate(name: str, conf: Mapping[str, Any], where: str) -> list[Part]:
        return [(name, type_, config(conf, where), list(roles))]
    return translate


Translation = Callable[[str, Mapping[str, Any], str], list[Part]]

#: Keras class -> its translation (a training-only layer kept in the graph when not ignored: the executor
#: passes Dropout / GaussianNoise through)
TRANSLATIONS: dict[str, Translation] = {
    "Dense": _dense,
    "Conv2D": _conv2d,
    "Conv2DTranspose": _conv2d_transpose,
    "DepthwiseConv2D": _depthwise_conv2d,
    "SeparableConv2D": _separable_conv2d,
    "MaxPooling2D": _pooling("MaxPooling2D"),
    "AveragePooling2D": _pooling("AveragePooling2D"),
    "GlobalMaxPooling2D": _global_pooling("GlobalMaxPooling2D"),
    "GlobalAveragePooling2D": _global_pooling("GlobalAveragePooling2D"),
    **{cls: _plain(cls) for cls in ("Add", "Subtract", "Multiply")},
    "Concatenate": _plain("Concatenate", lambda conf, where: {"axis": int(conf.get("axis", -1))}),
    "BatchNormalization": _batch_norm,
    "ZeroPadding2D": _zero_padding2d,
    "Flatten": _flatten,
    "Reshape": _plain("Reshape", lambda conf, where: {"target_shape": [int(v) for v in conf["target_shape"]],
                                                      "order": "NHWC"}),
    "Activation": _plain("Activation", lambda conf, where: {"activation": _activation(conf.get("activation"), where)}),
    "ReLU": _relu,
    "LeakyReLU": _plain("Activation", lambda conf, where: {
        "activation": "leaky_relu", "alpha": float(conf.get("alpha", conf.get("negative_slope", 0.3)))}),
    "ELU": _plain("Activation", lambda conf, where: {"activation": "elu", "alpha": float(conf.get("alpha", 1.0))}),
    "Softmax": _softmax,
    "PReLU": _plain("PReLU", roles=("alpha",)),
    **{cls: _plain("Dropout", lambda conf, where: {"rate": float(conf.get("rate", 0.0))})
       for cls in ("Dropout", "SpatialDropout2D", "GaussianDropout", "AlphaDropout")},
    "GaussianNoise": _plain("GaussianNoise", lambda conf, where: {"stddev": float(conf.get("stddev", 0.0))}),
}

#: Keras layers with a translation that does something at inference (messages and docs)
SUPPORTED_KERAS_LAYERS = (
    "InputLayer", "Dense", "Conv2D", "DepthwiseConv2D", "SeparableConv2D", "Conv2DTranspose",
    "MaxPooling2D", "AveragePooling2D", "GlobalMaxPooling2D", "GlobalAveragePooling2D",
    "Add", "Subtract", "Multiply", "Concatenate", "BatchNormalization", "ZeroPadding2D",
    "Flatten", "Reshape", "Activation", "ReLU", "LeakyReLU", "Softmax", "ELU", "PReLU",
)


def translate(cls: str, name: str, conf: Mapping[str, Any], path: str) -> list[Part]:
    """Keras layer ``name`` of class ``cls`` -> list of (our name, our type, our config, weight roles)."""
    where = f"{path}: layer {name!r} ({cls})"
    translation = TRANSLATIONS.get(cls)
    if translation is not None:
        return translation(name, conf, where)
    if cls in MODEL_CLASSES:
        raise ModelError(f"{where}: nested models are not supported; save the model with its layers flattened")
    raise ModelError(
        f"{path}: layer {name!r} has unsupported Keras layer type {cls!r}; supported: "
        f"{', '.join(SUPPORTED_KERAS_LAYERS)} (layer types that do nothing at inference can be "
        "skipped with ignored_layer_types)"
    )
