"""PyTorch / witin_nn models -> :class:`~simulator.network.Network`.

``from_torch(module, example_input)`` traces the module with ``torch.fx``
(witin_nn layers and standard layers are leaves), propagates the example
input's shapes through the graph and maps every node to one of our layer
types. When fx cannot trace the module (data-dependent Python control flow),
the module is run once with forward hooks on its leaf modules and the graph is
rebuilt from which tensor each leaf received; that fallback sees only module
calls, so functional operations between modules are then an error.

Layouts: the network records ``input_layout = "NCHW"``; internally
activations are NHWC, so conv kernels are converted to Keras layout,
``Flatten``/``Reshape`` carry ``order = "NCHW"`` (same element order as
torch) and channel axes of concatenation / mean are remapped.

witin layers are recognised by class name. CIM layers (WitinLinear,
WitinConv2d, WitinConvTranspose2d, WitinGruCell) get ``attrs["witin"]``:
the layer_config values under witin_nn's names plus the ``io_max`` buffers
(:mod:`simulator.io.witin_params`). Digital witin ops (WitinGELU,
WitinSigmoid, ...) become ordinary layers computed exactly, with their class
name in ``attrs["witin_op"]``.

Where things are: the translation of each module in
:mod:`simulator.io.torch_modules`, the fx walk and the hook fallback in
:mod:`simulator.io.torch_trace`, torch itself and tensor conversion in
:mod:`simulator.io.torch_tensors`.

torch is an optional dependency (``pip install 'xbarsim[torch]'``).
"""
from __future__ import annotations

import warnings

from simulator.errors import ModelError
from simulator.io.torch_modules import GraphBuilder
from simulator.io.torch_tensors import torch_module
from simulator.io.torch_trace import from_fx, from_hooks, trace
from simulator.io.witin_params import unrecorded_io_max
from simulator.network import Network


def load_state_dict_module(path, module_spec: str, kwargs: dict | None = None, label: str | None = None):
    """Build ``package.module:Class(**kwargs)`` and load the state_dict file ``path`` into it (strict).

    ``label`` names the option in error messages (default ``module = '<spec>'``).
    Returns the torch module; bad specs, files and mismatches raise :class:`ModelError`.
    """
    import importlib

    torch = torch_module()
    label = label or f"module = {module_spec!r}"
    mod_name, _, cls_name = str(module_spec).partition(":")
    if not mod_name or not cls_name:
        raise ModelError(f"{label}: expected 'package.module:Class'")
    try:
        klass = getattr(importlib.import_module(mod_name), cls_name)
    except (ImportError, AttributeError) as exc:
        raise ModelError(f"{label}: cannot import it ({exc.__class__.__name__}: {exc})") from None
    try:
        model = klass(**(kwargs or {}))
    except Exception as exc:  # noqa: BLE001 - user code
        raise ModelError(f"{label}: {cls_name}(**module_kwargs) failed ({exc.__class__.__name__}: {exc})") from None
    if not isinstance(model, torch.nn.Module):
        raise ModelError(f"{label}: {cls_name}() is a {type(model).__name__}, not a torch.nn.Module")
    try:
        state = torch.load(str(path), map_location="cpu", weights_only=True)
    except Exception as exc:  # noqa: BLE001 - torch raises many kinds of errors for bad files
        first = (str(exc).splitlines() or [""])[0][:200]
        raise ModelError(f"{path}: not a readable state_dict file ({exc.__class__.__name__}: {first})") from None
    if not isinstance(state, dict):
        raise ModelError(f"{path}: holds a {type(state).__name__}, expected a state_dict (a dict of tensors)")
    try:
        model.load_state_dict(state, strict=True)
    except RuntimeError as exc:
        raise ModelError(f"{path}: does not match {module_spec}: {' '.join(str(exc).split())[:300]}") from None
    return model


def from_state_dict(path, module_spec: str, example_input, kwargs: dict | None = None,
                    name: str | None = None) -> Network:
    """Import ``package.module:Class(**kwargs)`` with the state_dict file ``path`` (what witin users save).

    witin_nn convolutions cannot be pickled whole (``torch.save(model)``
    fails), so witin models are saved as ``torch.save(model.state_dict())``;
    the io_max values are parameters of the state_dict. The state_dict must
    match the class exactly (``strict``). ``example_input``: a tensor or a
    shape with the batch axis.
    """
    torch = torch_module()
    model = load_state_dict_module(path, module_spec, kwargs, label=f"--module {module_spec!r}")
    if not isinstance(example_input, torch.Tensor):
        example_input = torch.zeros(tuple(int(v) for v in example_input))
    return from_torch(model, example_input, name=name or str(module_spec).partition(":")[2])


def from_torch(module, example_input, name: str | None = None) -> Network:
    """Import a torch (or witin_nn) module as a :class:`Network` (input_layout ``"NCHW"``).

    ``example_input`` is one batch (any batch size) with which the module is
    traced and shapes are propagated. The module is put in eval mode.
    """
    torch = torch_module()
    if not isinstance(module, torch.nn.Module):
        raise ModelError(f"from_torch expects a torch.nn.Module, got {type(module).__name__}")
    if not isinstance(example_input, torch.Tensor):
        raise ModelError("from_torch: example_input must be one torch.Tensor batch")
    module.eval()
    where = name or type(module).__name__
    b = GraphBuilder(module, where)
    input_name = b.add("input", "Input", [], rank=example_input.dim())
    try:
        gm = trace(module, example_input, torch)
    except ModelError:
        raise
    except Exception:  # noqa: BLE001 - fx raises many kinds of errors for untraceable code
        gm = None
    if gm is not None:
        placeholders = [n for n in gm.graph.nodes if n.op == "placeholder"]
        if len(placeholders) != 1:
            raise ModelError(f"{where}: the model takes {len(placeholders)} inputs; exactly one is supported")
        b.value[placeholders[0]] = input_name
        outputs = from_fx(gm, b, torch)
    else:
        outputs = from_hooks(module, example_input, b, torch, input_name)
    metadata = {"source": "torch", "torch_class": type(module).__name__}
    if any(l.attrs.get("witin") for l in b.layers):
        metadata["witin"] = True
    stale = unrecorded_io_max(b.layers)
    if stale:
        msg = (f"{where}: witin layer(s) {', '.join(stale)} carry witin_nn's initial io_max values (never recorded: "
               "the model was trained in float mode or not trained); their auto scales are placeholders. Record "
               "io_max with quantization-aware training, or set fixed scales (use_auto_scale = false)")
        warnings.warn(msg, UserWarning, stacklevel=2)
        metadata["witin_unrecorded_io_max"] = stale
    net = Network(
        name=where,
        layers=b.layers,
        outputs=outputs,
        input_layout="NCHW" if example_input.dim() == 4 else "NHWC",
        input_shape=tuple(int(s) for s in example_input.shape[1:]),
        metadata=metadata,
        source=where,
    )
    return net
