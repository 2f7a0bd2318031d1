"""A torch model as the simulator sees it: :class:`TorchNetwork`.

:func:`discover` (run by :func:`~simulator.torch_host.importer.from_torch`)
runs the module once on the example input (eval mode, no gradients) with
forward hooks, and records every MVM module that the forward pass calls: its qualified name (``features.3.conv``: the name per-layer
overrides ``[layers."features.3.conv"]`` and calibration files use), kind,
input/output shapes and call count. Each becomes one or more
:class:`~simulator.network.Layer` objects holding its weights in the
executor's (Keras) conventions, so the cores, calibration files, Lloyd
quantizer and ``inspect`` treat them as they treat any MVM layer.

Batch norms that directly consume an MVM module's output are recorded as
``BatchNormalization`` layers fed by that module, so ``fold_batchnorm``
folds them exactly as the graph executor does (the folded torch BN then
becomes an identity in the simulated copy). A fold the trace cannot prove
safe is refused by the import self-check, which compares the simulated
model's ideal forward with the module's own forward.

Nothing here modifies the user's module: simulations deep-copy it.
"""
from __future__ import annotations

import copy
import functools
from dataclasses import dataclass, field
from typing import Any

import numpy as np

from simulator.errors import ModelError
from simulator.io.torch_modules import GraphBuilder
from simulator.io.torch_tensors import to_numpy, torch_module
from simulator.io.witin_params import CIM_CLASSES
from simulator.network import Layer, LayerLookup

#: torch modules whose weights live in fused kernels we do not map (refused, not silently digital)
UNMAPPED_MVM = ("RNN", "LSTM", "GRU", "LSTMCell", "RNNCell", "Conv3d", "ConvTranspose3d", "Bilinear",
                "LazyLinear", "LazyConv1d", "LazyConv2d", "LazyConv3d")


@dataclass
class AnalogSite:
    """One MVM module of the model that runs on analog cores."""

    name: str  # qualified module name
    kind: str  # linear | conv1d | conv2d | conv_transpose1d | conv_transpose2d | gpt2_conv1d | gru_cell | mha | witin
    module_class: str
    layers: list[Layer]  # the MVM layer(s) it maps to (MHA: its projections)
    calls: int = 0
    input_shape: tuple = ()
    output_shape: tuple = ()
    path: str = ""  # attribute path in the module ("" = the module itself)


def mvm_kind(mod) -> str | None:
    """The analog kind of a module, None for modules that stay digital; ModelError for unmapped MVMs."""
    torch = torch_module()
    nn = torch.nn
    cls = type(mod).__name__
    if cls in CIM_CLASSES:
        return "witin"
    for klass, kind in ((nn.MultiheadAttention, "mha"), (nn.Linear, "linear"), (nn.Conv1d, "conv1d"),
                        (nn.Conv2d, "conv2d"), (nn.ConvTranspose1d, "conv_transpose1d"),
                        (nn.ConvTranspose2d, "conv_transpose2d"), (nn.GRUCell, "gru_cell")):
        if isinstance(mod, klass):
            return kind
    if cls == "Conv1D" and type(mod).__module__.startswith("transformers") and hasattr(mod, "nf"):
        return "gpt2_conv1d"
    return None


def set_eval(module) -> None:
    """Eval mode; programs unlifted from torch.export refuse ``eval()`` and are already in their exported mode."""
    try:
        module.eval()
    except NotImplementedError:
        pass


def _unmapped(mod) -> str | None:
    torch = torch_module()
    for name in UNMAPPED_MVM:
        klass = getattr(torch.nn, name, None)
        if klass is not None and isinstance(mod, klass):
            return name
    return None


# ------------------------------------------------------------------ weights -> Layer
def _dense(name: str, kernel: np.ndarray, bias) -> Layer:
    weights = {"kernel": np.ascontiguousarray(kernel)}
    if bias is not None:
        weights["bias"] = to_numpy(bias)
    return Layer(name, "Dense", [], {"units": int(kernel.shape[1]), "use_bias": bias is not None}, weights)


def _conv1d_layer(name: str, mod) -> Layer:
    w = to_numpy(mod.weight)  # (cout, cin/g, k)
    pad = mod.padding if mod.padding_mode == "zeros" else (0,)
    padding: Any = pad if isinstance(pad, str) else [[0, 0], [int(pad[0]), int(pad[0])]]
    cfg = {"filters": int(mod.out_channels), "kernel_size": [1, int(mod.kernel_size[0])], "strides": [1, int(mod.stride[0])],
           "padding": padding, "dilation_rate": [1, int(mod.dilation[0])], "use_bias": mod.bias is not None,
           "groups": int(mod.groups)}
    weights = {"kernel": np.ascontiguousarray(w.transpose(2, 1, 0)[None])}  # (1, k, cin/g, cout)
    if mod.bias is not None:
        weights["bias"] = to_numpy(mod.bias)
    return Layer(name, "Conv2D", [], cfg, weights)


def _conv_transpose1d_layer(name: str, mod) -> Layer:
    if int(mod.groups) != 1:
        raise ModelError(f"module {name!r} (ConvTranspose1d): groups = {mod.groups} is not supported")
    w = to_numpy(mod.weight)  # (cin, cout, k)
    p = int(mod.padding[0])
    cfg = {"filters": int(mod.out_channels), "kernel_size": [1, int(mod.kernel_size[0])], "strides": [1, int(mod.stride[0])],
           "padding": [[0, 0], [p, p]], "output_padding": [0, int(mod.output_padding[0])],
           "dilation_rate": [1, int(mod.dilation[0])], "use_bias": mod.bias is not None}
    weights = {"kernel": np.ascontiguousarray(w.transpose(2, 1, 0)[None])}  # (1, k, cout, cin)
    if mod.bias is not None:
        weights["bias"] = to_numpy(mod.bias)
    return Layer(name, "Conv2DTranspose", [], cfg, weights)


def _graph_layer(name: str, mod, rank: int) -> Layer:
    """Conv2d / ConvTranspose2d / Linear / GRUCell / witin CIM layers through the graph importer's conversion."""
    target = mod
    if getattr(mod, "padding_mode", "zeros") != "zeros":  # torch pads with that mode first (see AnalogMVM)
        target = copy.copy(mod)
        target.padding_mode, target.padding = "zeros", (0, 0)
    b = GraphBuilder(mod, name)
    inputs = ["input", "hidden"] if type(mod).__name__ in ("GRUCell", "WitinGruCell", "WitinGRUCell") else ["input"]
    b.module(name, target, inputs, rank, rank)
    layer = b.layers[-1]
    layer.name = name
    layer.inputs = []
    layer.config.pop("hidden_input", None)
    return layer


def site_layers(name: str, mod, kind: str, rank: int) -> list[Layer]:
    """The MVM layers of one analog site, named by the module's qualified name."""
    if kind == "mha":
        return _mha_layers(name, mod)
    if kind == "gpt2_conv1d":
        return [_dense(name, to_numpy(mod.weight), mod.bias)]  # Conv1D keeps weight as (in, out)
    if kind == "conv1d":
        return [_conv1d_layer(name, mod)]
    if kind == "conv_transpose1d":
        return [_conv_transpose1d_layer(name, mod)]
    layer = _graph_layer(name, mod, rank)
    if kind == "gru_cell":
        layer.config["hidden_input"] = True
    return [layer]


def _mha_layers(name: str, mod) -> list[Layer]:
    if mod.bias_k is not None or mod.add_zero_attn:
        raise ModelError(f"module {name!r} (MultiheadAttention): add_bias_kv / add_zero_attn are not supported")
    E = mod.embed_dim
    b = mod.in_proj_bias
    if mod._qkv_same_embed_dim:
        layers = [_dense(f"{name}.in_proj", to_numpy(mod.in_proj_weight).T, b)]
    else:
        layers = [
            _dense(f"{name}.{p}_proj", to_numpy(getattr(mod, f"{p}_proj_weight")).T, None if b is None else b[i * E:(i + 1) * E])
            for i, p in enumerate("qkv")
        ]
    layers.append(_dense(f"{name}.out_proj", to_numpy(mod.out_proj.weight).T, mod.out_proj.bias))
    return layers


def _bn_layer(name: str, mod, source: str) -> Layer:
    weights = {"moving_mean": to_numpy(mod.running_mean), "moving_variance": to_numpy(mod.running_var)}
    if mod.affine:
        weights["gamma"], weights["beta"] = to_numpy(mod.weight), to_numpy(mod.bias)
    return Layer(name, "BatchNormalization", [source], {"epsilon": float(mod.eps), "axis": -1}, weights)


# ------------------------------------------------------------------ discovery
def _first_tensor(obj):
    torch = torch_module()
    if isinstance(obj, torch.Tensor):
        return obj
    if isinstance(obj, (tuple, list)):
        for o in obj:
            t = _first_tensor(o)
            if t is not None:
                return t
    if isinstance(obj, dict):
        for o in obj.values():
            t = _first_tensor(o)
            if t is not None:
                return t
    return None


def run_module(module, args: tuple, kwargs: dict, where: str):
    """``module(*args, **kwargs)`` without gradients; a failure is one ModelError line."""
    torch = torch_module()
    try:
        with torch.no_grad():
            return module(*args, **kwargs)
    except Exception as exc:  # noqa: BLE001 - any failure of user code is reported as bad input
        first = (str(exc).strip().splitlines() or [""])[0][:300]
        shapes = ", ".join(str(tuple(a.shape)) if hasattr(a, "shape") else type(a).__name__ for a in args)
        raise ModelError(f"{where}: the module cannot run with the example input ({shapes}): "
                         f"{exc.__class__.__name__}: {first}") from None


def discover(module, args, kwargs, where: str):
    """(sites in first-call order, BN -> the site it may fold into, those BN modules, names never called)."""
    torch = torch_module()
    nn = torch.nn
    candidates: dict[int, tuple[str, Any, str]] = {}
    claimed: set[int] = set()
    bns: dict[int, tuple[str, Any]] = {}
    for qual, mod in module.named_modules():
        bad = _unmapped(mod)
        if bad is not None:
            raise ModelError(f"{where}: module {qual!r} is an nn.{bad}, whose weights xbarsim does not map onto "
                             "arrays (mapped: Linear, Conv1d/2d, ConvTranspose1d/2d, GRUCell, MultiheadAttention)")
        kind = mvm_kind(mod)
        if kind == "mha":
            claimed.add(id(mod.out_proj))
        if kind is not None:
            candidates[id(mod)] = (qual, mod, kind)
        elif isinstance(mod, (nn.BatchNorm1d, nn.BatchNorm2d)) and mod.track_running_stats and mod.running_mean is not None:
            bns[id(mod)] = (qual, mod)
    for key in claimed:
        candidates.pop(key, None)
    order: list[int] = []
    info: dict[int, dict] = {}
    produced: dict[int, int] = {}  # id(output tensor) -> site key
    bn_source: dict[str, str] = {}
    bn_calls: dict[int, int] = {}

    def site_hook(key):
        def hook(mod, inp, out):
            rec = info.setdefault(key, {"calls": 0})
            if rec["calls"] == 0:
                order.append(key)
                t_in, t_out = _first_tensor(inp), _first_tensor(out)
                rec["in"] = tuple(t_in.shape) if t_in is not None else ()
                rec["out"] = tuple(t_out.shape) if t_out is not None else ()
            rec["calls"] += 1
            t_out = _first_tensor(out)
            if t_out is not None:
                produced[id(t_out)] = key
        return hook

    def bn_hook(key):
        def hook(mod, inp, out):
            bn_calls[key] = bn_calls.get(key, 0) + 1
            src = produced.get(id(inp[0])) if inp else None
            qual = bns[key][0]
            if src is not None and bn_calls[key] == 1:
                bn_source[qual] = src
            else:
                bn_source.pop(qual, None)
        return hook

    handles = [m.register_forward_hook(site_hook(k)) for k, (_, m, _) in candidates.items()]
    handles += [m.register_forward_hook(bn_hook(k)) for k, (_, m) in bns.items()]
    try:
        run_module(module, args, kwargs, where)
    finally:
        for h in handles:
            h.remove()
    sites = []
    site_name: dict[int, str] = {}
    for key in order:
        qual, mod, kind = candidates[key]
        rec = info[key]
        rank = len(rec["in"]) if rec["in"] else 2
        name = site_name[key] = qual or type(mod).__name__
        sites.append(AnalogSite(name, kind, type(mod).__name__, site_layers(name, mod, kind, rank), rec["calls"],
                                rec["in"], rec["out"], qual))
    folds = {}
    for bn_key, (bn_qual, bn_mod) in bns.items():
        src = bn_source.get(bn_qual)
        if src is None or info[src]["calls"] != 1 or candidates[src][2] not in ("conv2d", "linear", "conv1d"):
            continue
        if isinstance(bn_mod, nn.BatchNorm1d) and len(info[src]["out"]) != 2 and candidates[src][2] != "conv1d":
            continue
        folds[bn_qual] = site_name[src]
    unused = [qual for key, (qual, _, _) in candidates.items() if key not in info]
    return sites, folds, {q: m for q, m in bns.values()}, unused


def digital_summary(module, sites: list[AnalogSite]) -> list[tuple[str, str]]:
    """(qualified name, class) of the leaf modules that run in torch."""
    torch = torch_module()
    analog = {s.name for s in sites}
    inside = tuple(s.name + "." for s in sites)
    rows = []
    for qual, mod in module.named_modules():
        if not qual or qual in analog or qual.startswith(inside) or next(mod.children(), None) is not None:
            continue
        if type(mod) is torch.nn.Module or type(mod).__name__ == "GuardsFn":  # containers of an exported program
            continue
        rows.append((qual, type(mod).__name__))
    return rows


# ------------------------------------------------------------------ the network
@dataclass
class TorchNetwork(LayerLookup):
    """A torch module with its example input and the analog layers found in it.

    Duck-types :class:`~simulator.network.Network` where the simulator needs
    it (``name``, ``layers``, ``mvm_layers``, ``input_layout``,
    ``input_shape``, ``outputs``, ``metadata``, ``source``).
    """

    name: str
    module: Any  # the user's module (eval mode); never modified
    example_args: tuple
    example_kwargs: dict
    sites: list[AnalogSite]
    folds: dict[str, str]  # BN qualified name -> MVM layer it may be folded into
    batch_norms: dict[str, Any]
    unused: list[str]
    digital: list[tuple[str, str]]
    source: str = ""
    metadata: dict[str, Any] = field(default_factory=dict)

    is_torch = True
    outputs: tuple = ()

    @functools.cached_property
    def layers(self) -> list[Layer]:
        """Every analog MVM layer, then the batch norms that may fold into them (graph order)."""
        layers = [layer for site in self.sites for layer in site.layers]
        return layers + [_bn_layer(bn, self.batch_norms[bn], src) for bn, src in self.folds.items()]

    @property
    def input_layout(self) -> str | None:
        """"NCHW" when the first input is a 4-D float batch (datasets convert to it), else None (as given)."""
        x = self.example_args[0] if self.example_args else None
        if x is not None and getattr(x, "ndim", 0) == 4 and x.dtype.is_floating_point:
            return "NCHW"
        return None

    @property
    def input_shape(self) -> tuple[int, ...]:
        x = self.example_args[0] if self.example_args else None
        return tuple(int(s) for s in x.shape[1:]) if x is not None and hasattr(x, "shape") else ()

    def summary(self) -> str:
        lines = [f"torch model {self.name}: {len(self.sites)} analog module(s), {len(self.digital)} digital leaf module(s)"]
        for s in self.sites:
            lines.append(f"  {s.name:<36} {s.module_class:<22} in {list(s.input_shape)} out {list(s.output_shape)}"
                         + (f" ({s.calls} calls)" if s.calls > 1 else ""))
        return "\n".join(lines)
