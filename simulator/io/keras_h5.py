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

The translation of each Keras class is :data:`simulator.io.keras_layers.TRANSLATIONS`.

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
from simulator.io.keras_layers import CLASS_ALIASES, MODEL_CLASSES, translate
from simulator.network import Layer, Network

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


def _text(value: Any) -> str:
    if isinstance(value, bytes):
        return value.decode("utf-8")
    if isinstance(value, np.ndarray) and value.shape == ():
        return _text(value.item())
    return str(value)


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
    if cls not in MODEL_CLASSES:
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


class _Graph:
    """The Keras layer list translated in file order (step 1 of :func:`_load`).

    ``entries``: ``{name, type, config, roles, srcs, cls, keras_name, resolved}``
    per layer of ours; ``alias``: Keras layer name -> our layer producing its
    output (an ignored layer: its input, resolved by :meth:`resolve`).
    """

    def __init__(self, path: Path, ctx: _Ctx, model_cls: str, klayers: list, ignored: set[str]):
        self.path, self.ctx, self.model_cls, self.klayers, self.ignored = path, ctx, model_cls, klayers, ignored
        self.names = {k.get("name") for k in klayers if isinstance(k, Mapping)}
        self.entries: list[dict] = []
        self.alias: dict[str, str] = {}
        self.input_shape: tuple | None = None
        self.prev: str | None = None
        for index, kl in enumerate(klayers):
            self._add(index, kl)
        if self.input_shape is None:
            raise ModelError(f"{path}: the model has no InputLayer")

    def _input(self, name: str, cls: str, shape: Any) -> None:
        self.input_shape = tuple(None if s is None else int(s) for s in shape[1:])
        self.entries.append({"name": name, "type": "Input", "config": {}, "roles": [], "srcs": [], "cls": cls})
        self.alias[name] = name

    def _add(self, index: int, kl: Any) -> None:
        if not isinstance(kl, Mapping) or "class_name" not in kl:
            raise ModelError(f"{self.path}: model_config layer #{index} is malformed")
        cls = CLASS_ALIASES.get(kl["class_name"], kl["class_name"])
        conf = kl.get("config") or {}
        name = str(kl.get("name") or conf.get("name") or f"{cls.lower()}_{index}")
        where = self.ctx.at(name, cls)
        sequential = self.model_cls == "Sequential"
        if sequential:
            srcs = [self.prev] if self.prev is not None else []
        else:
            srcs = _parse_inbound(kl.get("inbound_nodes"), where)
        if cls == "InputLayer":
            shape = conf.get("batch_input_shape", conf.get("batch_shape"))
            if shape is None:
                raise ModelError(f"{where}: InputLayer has no batch_input_shape")
            if self.input_shape is not None:
                raise ModelError(f"{self.path}: the model has more than one input; only single-input models are supported")
            self._input(name, cls, shape)
            self.prev = name
            return
        if sequential and self.prev is None:
            shape = conf.get("batch_input_shape", conf.get("batch_shape"))
            if shape is None:
                raise ModelError(f"{self.path}: the Sequential model has no InputLayer and its first layer {name!r} "
                                 "has no batch_input_shape; the input shape is unknown")
            in_name = "input" if "input" not in self.names else f"{name}_input"
            self._input(in_name, "InputLayer", shape)
            srcs = [in_name]
        self.prev = name
        if cls in self.ignored:
            if len(srcs) != 1:
                raise ModelError(f"{where}: ignored layer must have exactly one input, has {len(srcs)}")
            self.alias[name] = srcs[0]  # resolved once every layer is known
            return
        for src in srcs:
            if src not in self.alias and src not in self.names:
                raise ModelError(f"{where}: input {src!r} is not a layer of the model")
        if not srcs:
            raise ModelError(f"{where}: layer has no inputs (only InputLayer may)")
        parts = translate(cls, name, conf, str(self.path))
        for i, (our_name, our_type, our_cfg, roles) in enumerate(parts):
            self.entries.append({"name": our_name, "type": our_type, "config": our_cfg, "roles": roles,
                                 "srcs": srcs if i == 0 else [parts[i - 1][0]], "cls": cls, "keras_name": name,
                                 "resolved": i > 0})
        self.alias[name] = parts[-1][0]

    def resolve(self, src: str, where: str) -> str:
        """Our layer computing Keras tensor ``src`` (through ignored layers, which may follow their consumers)."""
        seen = set()
        while src in self.alias and self.alias[src] != src:
            if src in seen:
                raise ModelError(f"{where}: cyclic input {src!r}")
            seen.add(src)
            src = self.alias[src]
        if src not in self.alias:
            raise ModelError(f"{where}: input {src!r} is not a layer of the model")
        return src


def _weights(e: dict, wroot: Any, where: str) -> dict[str, np.ndarray]:
    """The weights of entry ``e`` under our names (batch norms: gamma / beta filled with 1 / 0 when absent)."""
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
        return weights
    weights = _assign(e["roles"], found, where)
    if e["cls"] == "BatchNormalization":
        n = weights["moving_mean"].shape
        weights.setdefault("gamma", np.ones(n, dtype=weights["moving_mean"].dtype))
        weights.setdefault("beta", np.zeros(n, dtype=weights["moving_mean"].dtype))
        weights = {k: weights[k] for k in ("gamma", "beta", "moving_mean", "moving_variance")}
    return weights


def _load(f: Any, path: Path, ctx: _Ctx, ignored: set[str], override: Any) -> Network:
    config = _read_model_config(f, path, override)
    wroot = f["model_weights"] if "model_weights" in f else f  # save_weights layout: layer groups at the root
    model_cls, klayers, in_names, out_names = _layer_list(config, ctx)
    model_name = str((config.get("config") or {}).get("name", path.stem)) if isinstance(config.get("config"), Mapping) else path.stem
    graph = _Graph(path, ctx, model_cls, klayers, ignored)  # 1. translate each Keras layer
    for e in graph.entries:  # 2. inputs through the aliases of ignored layers
        if not e.get("resolved"):
            e["srcs"] = [graph.resolve(s, ctx.at(e["name"], e["cls"])) for s in e["srcs"]]
    layers: list[Layer] = []
    for e in _toposort(graph.entries, path):  # 3. stable topological order (the file's whenever it is valid)
        where = ctx.at(e.get("keras_name", e["name"]), e["cls"])
        weights = _weights(e, wroot, where) if e["roles"] else {}  # 4. weights
        layer = Layer(name=e["name"], type=e["type"], inputs=list(e["srcs"]), config=e["config"], weights=weights)
        if weights:
            _check_shapes(layer, where)
        layers.append(layer)
    if out_names is None:  # 5. outputs
        outputs = [graph.alias[graph.prev]] if graph.prev is not None else []
    else:
        outputs = [graph.resolve(o, f"{path}: output") for o in out_names]
    if in_names is not None and len(in_names) > 1:
        raise ModelError(f"{path}: the model has {len(in_names)} inputs; only single-input models are supported")
    metadata = {
        "source_format": "keras_h5",
        "keras_model_class": model_cls,
        "keras_version": _text(f.attrs.get("keras_version", "")),
        "backend": _text(f.attrs.get("backend", "")),
    }
    return Network(name=model_name, layers=layers, outputs=outputs, input_layout="NHWC",
                   input_shape=graph.input_shape, metadata=metadata, source=str(path))


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
