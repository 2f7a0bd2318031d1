"""Rewrites of a network's layer graph before the executor runs it.

* :func:`prepare_graph` -- the executor's copy of the graph: ignored layer
  types dropped (:func:`drop_ignored`), batch norms folded
  (:func:`fold_batchnorm`) when ``fold_batchnorm`` is on;
* :func:`last_use` -- after which layer each tensor can be freed;
* :func:`check_layer_overrides` -- every ``[layers.<name>]`` table names an MVM layer.

The passes work on deep copies: the :class:`~simulator.network.Network` stays unchanged.
"""
from __future__ import annotations

import copy
import difflib
import logging

import numpy as np

from simulator.config import Config
from simulator.errors import ConfigError
from simulator.network import Layer, Network

log = logging.getLogger("xbarsim.simulation")

_FOLDABLE = {"Conv2D", "Dense", "DepthwiseConv2D"}


def fold_batchnorm(layers: list[Layer], outputs: list[str]) -> tuple[list[Layer], list[str]]:
    """Fold BatchNormalization into the preceding linear conv/dense layer (manual eq. 6.1, 6.2).

    A BN is folded when its only input is a Conv2D/Dense/DepthwiseConv2D with
    a linear activation whose only consumer is that BN. The BN layer is then
    removed and its consumers read the conv directly.

    A witin CIM layer (``attrs["witin"]``) and a WitinBatchNorm2d
    (``attrs["witin_digital"]``) are never folded: the chip quantizes the
    layer's weights, bias and output with scales derived from its recorded
    io_max, and witin_nn computes the batch norm after that (digitally), so a
    folded layer would no longer be bit exact. Such batch norms stay separate
    layers (logged once per layer).
    """
    by_name = {l.name: l for l in layers}
    consumers: dict[str, list[str]] = {l.name: [] for l in layers}
    for l in layers:
        for src in l.inputs:
            consumers[src].append(l.name)
    rename: dict[str, str] = {}
    kept = []
    for l in layers:
        l.inputs = [rename.get(s, s) for s in l.inputs]
        if l.type == "BatchNormalization" and len(l.inputs) == 1:
            src = by_name[l.inputs[0]]
            if src.attrs.get("witin") or l.attrs.get("witin_digital") is not None:
                log.info("batch norm %r is not folded into %r: witin layers keep their chip scales "
                         "(the batch norm runs after the layer, as in witin_nn)", l.name, src.name)
            elif (
                src.type in _FOLDABLE
                and src.config.get("activation", "linear") in (None, "linear")
                and consumers[src.name] == [l.name]
                and src.name not in outputs
            ):
                eps = float(l.config.get("epsilon", 1e-3))
                f64 = lambda a: None if a is None else np.asarray(a, dtype=np.float64)  # noqa: E731 - fold exactly
                gamma = f64(l.weights.get("gamma"))
                beta = f64(l.weights.get("beta"))
                mean, var = f64(l.weights["moving_mean"]), f64(l.weights["moving_variance"])
                scale = (gamma if gamma is not None else 1.0) / np.sqrt(var + eps)
                shift = (beta if beta is not None else 0.0) - mean * scale
                key = "depthwise_kernel" if src.type == "DepthwiseConv2D" else "kernel"
                k = src.weights[key].astype(np.float64)
                if src.type == "DepthwiseConv2D":
                    kh, kw, cin, mult = k.shape
                    src.weights[key] = k * scale.reshape(cin, mult)
                else:
                    src.weights[key] = k * scale
                b = src.weights.get("bias")
                src.weights["bias"] = (b * scale if b is not None else 0.0) + shift
                src.config["use_bias"] = True
                rename[l.name] = src.name
                continue
        kept.append(l)
    outs = [rename.get(o, o) for o in outputs]
    return kept, outs


def drop_ignored(layers: list[Layer], outputs: list[str], ignored: set[str]) -> tuple[list[Layer], list[str]]:
    """Remove layers of the ignored types (Dropout, ...), wiring their input to their consumers."""
    rename: dict[str, str] = {}
    kept = []
    for l in layers:
        l.inputs = [rename.get(s, s) for s in l.inputs]
        if l.type in ignored:
            rename[l.name] = l.inputs[0]
        else:
            kept.append(l)
    return kept, [rename.get(o, o) for o in outputs]


def prepare_graph(network: Network, cfg: Config) -> tuple[list[Layer], list[str]]:
    """The layers and outputs the executor runs: copies, ignored types dropped, batch norms folded."""
    layers = [copy.deepcopy(l) for l in network.layers]
    layers, outputs = drop_ignored(layers, list(network.outputs), set(cfg.ignoredLayerTypes) - {"Input"})
    if cfg.fold_batchnorm:
        layers, outputs = fold_batchnorm(layers, outputs)
    return layers, outputs


def last_use(layers: list[Layer], outputs: list[str]) -> dict[str, int]:
    """Index of the last layer reading each tensor (``len(layers)`` for the outputs): it is freed after that."""
    last = {}
    for i, l in enumerate(layers):
        for s in l.inputs:
            last[s] = i
    for o in outputs:
        last[o] = len(layers)
    return last


def check_layer_overrides(cfg: Config, network: Network) -> None:
    """Every ``[layers.<name>]`` table of ``cfg`` names an MVM (or witin) layer of ``network``."""
    names = [l.name for l in network.layers if l.is_mvm or l.attrs.get("witin")]
    for key in cfg.layers:
        if key not in names:
            match = difflib.get_close_matches(key, names, n=1)
            hint = f" (did you mean {match[0]!r}?)" if match else f"; MVM layers: {', '.join(names)}"
            raise ConfigError(f"{cfg.source}: [layers.{key}] names no MVM layer of model {network.name!r}{hint}")
