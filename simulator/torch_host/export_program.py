"""``torch.export`` programs (``.pt2`` files from ``torch.export.save``) as torch models.

An exported program holds an ATen graph, not the user's modules: linear
layers are ``aten.linear`` nodes and convolutions ``aten.conv2d`` (or
``aten.convolution``) nodes whose weights are parameters of the program.
:func:`load_torch_export` unlifts the program to a ``GraphModule`` and turns
each such node back into the ``nn.Linear`` / ``nn.Conv*`` /
``nn.ConvTranspose*`` module it came from, at the original module path (the
parameter ``features.3.conv.weight`` gives the layer ``features.3.conv``), so
the program then runs through the same torch host as any module: no user
source code is needed. A parameter used in any other product (``aten.mm``,
``aten.addmm``, ``aten.matmul`` of a decomposed program) would silently stay
digital, so it is refused.

A program exported with a static batch size runs any batch in chunks of
that size (the last chunk padded), since its graph is specialized to it.

Programs of witin_nn models are refused by name (:func:`refuse_witin`): the
program keeps a witin layer only as ATen ops (a plain ``aten.conv2d`` in float
mode; ``round`` / ``clip`` around it with the scales as constants in
quantization mode), not its ``layer_config`` (bit widths, scales, noise,
hardware), so it cannot become a witin chip layer. witin models are imported
from their ``state_dict`` and module class instead.
"""
from __future__ import annotations

import logging
import re
from pathlib import Path

from simulator.errors import ModelError
from simulator.torch_host.importer import from_torch
from simulator.torch_host.network import TorchNetwork, torch_module

#: products of a constant weight that we cannot map back to a module
_UNMAPPED_PRODUCTS = ("mm", "addmm", "matmul", "bmm", "baddbmm", "einsum", "conv3d", "conv_transpose3d")


def _attr(gm, node, getter: str):
    """The parameter (``getter = "get_parameter"``) or buffer a get_attr node reads; None for no node; False
    for any other node or attribute."""
    if node is None:
        return None
    if getattr(node, "op", None) != "get_attr":
        return False
    try:
        return getattr(gm, getter)(node.target)
    except AttributeError:
        return False


def _param(gm, node):
    return _attr(gm, node, "get_parameter")


def _ints(v, n: int) -> tuple[int, ...]:
    if isinstance(v, (list, tuple)):
        return tuple(int(a) for a in v) if len(v) == n else tuple(int(v[0]) for _ in range(n))
    return tuple(int(v) for _ in range(n))


def _module_for(name: str, node, weight, bias):
    """The nn module equivalent to one aten linear/conv node ``name``, sharing its parameters."""
    torch = torch_module()
    nn = torch.nn
    a = list(node.args) + [None] * 9
    if name == "convolution":
        transposed = bool(a[6])
        n = weight.dim() - 2
        name = (f"conv_transpose{n}d" if transposed else f"conv{n}d")
        stride, padding, dilation, output_padding, groups = a[3], a[4], a[5], a[7], a[8]
    elif name.startswith("conv_transpose"):
        stride, padding, output_padding, groups, dilation = a[3], a[4], a[5], a[6], a[7]
    elif name.startswith("conv"):
        stride, padding, dilation, groups = a[3], a[4], a[5], a[6]
        output_padding = 0
    if name == "linear":
        mod = nn.Linear(weight.shape[1], weight.shape[0], bias=bias is not None)
    elif name in ("conv1d", "conv2d"):
        n = 1 if name == "conv1d" else 2
        klass = nn.Conv1d if n == 1 else nn.Conv2d
        pad = padding if isinstance(padding, str) else _ints(padding if padding is not None else 0, n)
        g = int(groups or 1)
        mod = klass(weight.shape[1] * g, weight.shape[0], tuple(weight.shape[2:]), stride=_ints(stride or 1, n),
                    padding=pad, dilation=_ints(dilation or 1, n), groups=g, bias=bias is not None)
    elif name in ("conv_transpose1d", "conv_transpose2d"):
        n = 1 if name.endswith("1d") else 2
        klass = nn.ConvTranspose1d if n == 1 else nn.ConvTranspose2d
        g = int(groups or 1)
        mod = klass(weight.shape[0], weight.shape[1] * g, tuple(weight.shape[2:]), stride=_ints(stride or 1, n),
                    padding=_ints(padding or 0, n), output_padding=_ints(output_padding or 0, n), groups=g,
                    bias=bias is not None, dilation=_ints(dilation or 1, n))
    mod.weight = weight
    if bias is not None:
        mod.bias = bias
    return mod.eval()


def _place(gm, path: str, mod, owned: set[str]) -> bool:
    """Put ``mod`` at ``path``: a new path, or a plain container of the program holding only ``owned`` tensors."""
    torch = torch_module()
    try:
        existing = gm.get_submodule(path)
    except AttributeError:
        gm.add_submodule(path, mod)
        return True
    own = {k for k, _ in existing.named_parameters(recurse=False)} | {k for k, _ in existing.named_buffers(recurse=False)}
    if type(existing) is not torch.nn.Module or next(existing.children(), None) is not None or not own <= owned:
        return False
    parent, _, leaf = path.rpartition(".")
    gm.get_submodule(parent)._modules[leaf] = mod
    return True


def _install(gm, weight_target: str, mod) -> str:
    """Put ``mod`` at the module path its weight came from (or a fresh one) and return that path."""
    if weight_target.endswith(".weight") and _place(gm, weight_target[: -len(".weight")], mod, {"weight", "bias"}):
        return weight_target[: -len(".weight")]
    path = weight_target.replace(".", "_") + "_mvm"
    gm.add_submodule(path, mod)
    return path


def _call_instead(gm, node, path: str, x) -> None:
    """Replace ``node`` by a call of the module at ``path`` on ``x``."""
    with gm.graph.inserting_before(node):
        new = gm.graph.call_module(path, (x,))
    new.meta = dict(node.meta)
    node.replace_all_uses_with(new)
    gm.graph.erase_node(node)


def _restore_batch_norm(gm, node) -> bool:
    """``aten.batch_norm`` in inference form with parameter/buffer statistics -> an ``nn.BatchNorm1d/2d`` call.

    Restoring the module lets ``fold_batchnorm`` fold it into the MVM layer before it, as for any torch model.
    """
    torch = torch_module()
    a = list(node.args) + [None] * 9
    x, weight, bias, mean, var, training, eps = a[0], a[1], a[2], a[3], a[4], a[5], a[7]
    val = x.meta.get("val") if hasattr(x, "meta") else None
    rm, rv = _attr(gm, mean, "get_buffer"), _attr(gm, var, "get_buffer")
    w, b = _param(gm, weight), _param(gm, bias)
    if training or not isinstance(rm, torch.Tensor) or not isinstance(rv, torch.Tensor) or w is False or b is False or val is None or val.dim() not in (2, 3, 4):
        return False
    klass = torch.nn.BatchNorm2d if val.dim() == 4 else torch.nn.BatchNorm1d
    mod = klass(rm.shape[0], eps=float(eps), affine=w is not None).eval()
    mod.running_mean, mod.running_var = rm, rv
    if w is not None:
        mod.weight, mod.bias = w, b
    path = mean.target[: -len(".running_mean")] if mean.target.endswith(".running_mean") else mean.target + "_bn"
    if not _place(gm, path, mod, {"weight", "bias", "running_mean", "running_var", "num_batches_tracked"}):
        return False
    _call_instead(gm, node, path, x)
    return True


def restore_modules(gm, where: str) -> int:
    """Replace every aten linear/conv node of ``gm`` that has a parameter weight by a call of its module."""
    count = 0
    installed: dict[tuple, str] = {}
    for node in list(gm.graph.nodes):
        if node.op != "call_function" or not hasattr(node.target, "_schema"):
            continue
        op = node.target._schema.name.split("::")[-1]
        if op == "batch_norm" and _restore_batch_norm(gm, node):
            continue
        if op not in ("linear", "conv1d", "conv2d", "conv_transpose1d", "conv_transpose2d", "convolution"):
            if op in _UNMAPPED_PRODUCTS and any(_param(gm, a) is not False and _param(gm, a) is not None
                                                for a in node.args[:3] if hasattr(a, "op")):
                raise ModelError(f"{where}: node {node.name!r} ({op}) multiplies by a parameter in a form xbarsim does not "
                                 "map onto arrays; export without run_decompositions() so linear/conv nodes stay whole")
            continue
        weight = _param(gm, node.args[1])
        bias = _param(gm, node.args[2] if len(node.args) > 2 else None)
        if weight is None or weight is False or bias is False:
            raise ModelError(f"{where}: node {node.name!r} ({op}) has a weight that is not a parameter of the program "
                             "(a computed weight cannot be programmed onto arrays)")
        key = (node.args[1].target, None if bias is None else node.args[2].target, op, tuple(map(str, node.args[3:])))
        if key not in installed:
            mod = _module_for(op, node, weight, bias)
            installed[key] = _install(gm, node.args[1].target, mod)
        _call_instead(gm, node, installed[key], node.args[0])
        count += 1
    gm.graph.eliminate_dead_code()
    gm.recompile()
    return count


#: parameters every witin_nn 0.1.3 layer owns (its auto-scale objects), also in programs without module metadata
_WITIN_PARAM = re.compile(r"^(.*?)\.?autoscale_\w+_obj\.io_max$")


def refuse_witin(ep, where: str) -> None:
    """ModelError naming the witin_nn layers of program ``ep`` and the state_dict route, if it has any."""
    layers: dict[str, str] = {}
    root = "Model"
    for node in ep.graph.nodes:
        for path, cls in (node.meta.get("nn_module_stack") or {}).values():
            cls = str(cls)
            if path == "":
                root = cls.rsplit(".", 1)[-1]
            elif cls.startswith("witin_nn.") and not any(path.startswith(p + ".") for p in layers):
                layers.setdefault(path, cls.rsplit(".", 1)[-1])
    for name in ep.state_dict:
        m = _WITIN_PARAM.match(name)
        if m and not any(m.group(1) == p or m.group(1).startswith(p + ".") for p in layers):
            layers[m.group(1) or "(root)"] = "witin layer"
    if not layers:
        return
    names = ", ".join(f"{p} ({c})" for p, c in list(layers.items())[:4]) + (f" and {len(layers) - 4} more"
                                                                           if len(layers) > 4 else "")
    raise ModelError(f"{where}: {names} are witin_nn layers, which a torch.export program keeps only as ATen ops "
                     "without their layer_config (bit widths, scales, noise, hardware), so they cannot be simulated "
                     "as witin chip layers; save model.state_dict() and import it with its class: `xbarsim convert "
                     f"state.pt model.h5 --module package.module:{root} --input-shape ...` (see docs/witin.md)")


def _static_batch(ep) -> int | None:
    for spec in ep.graph_signature.input_specs:
        if spec.kind.name == "USER_INPUT":
            node = next((n for n in ep.graph.nodes if n.op == "placeholder" and n.name == spec.arg.name), None)
            val = node.meta.get("val") if node is not None else None
            if val is not None and hasattr(val, "shape") and len(val.shape) and isinstance(val.shape[0], int):
                return int(val.shape[0])
            return None
    return None


def load_torch_export(path, check: bool = True) -> TorchNetwork:
    """Read a ``torch.export.save`` file as a :class:`TorchNetwork` (its stored example inputs trace it)."""
    torch = torch_module()
    path = Path(path)
    quiet = logging.getLogger("torch.export")  # it logs a traceback for a broken archive, then fails anyway
    level = quiet.level
    quiet.setLevel(logging.CRITICAL)
    try:
        ep = torch.export.load(str(path))
    except Exception as exc:  # noqa: BLE001 - any unreadable archive
        first = (str(exc).strip().splitlines() or [""])[0][:200]
        raise ModelError(f"{path}: not a readable torch.export program ({exc.__class__.__name__}: {first})") from None
    finally:
        quiet.setLevel(level)
    example = ep.example_inputs
    if example is None:
        raise ModelError(f"{path}: the program stores no example inputs; save it with torch.export.save from torch >= 2.3")
    refuse_witin(ep, str(path))
    args, kwargs = example
    gm = ep.module()
    n = restore_modules(gm, str(path))
    if n == 0:
        raise ModelError(f"{path}: the program has no linear or convolution node with parameter weights")
    static = _static_batch(ep)
    inputs = kwargs if kwargs and not args else tuple(args)
    net = from_torch(gm, inputs if not isinstance(inputs, tuple) or len(inputs) != 1 else inputs[0],
                     name=path.stem, check=check, source=str(path))
    net.metadata.update({"source": "torch.export", "static_batch": static})
    return net
