"""Importing a torch model: :func:`from_torch` and :func:`load_state_dict_model`.

The entry points of the torch host: they validate the module and its
example input, find its analog sites (:func:`~simulator.torch_host.network.discover`)
and, unless told otherwise, prove the import with the self-check
(:mod:`simulator.torch_host.selfcheck`). Kept apart from
:mod:`simulator.torch_host.network` (the data model the self-check reads),
so the two never import each other.
"""
from __future__ import annotations

import logging

import numpy as np

from simulator.errors import ModelError
from simulator.torch_host.network import TorchNetwork, digital_summary, discover, set_eval, torch_module
from simulator.torch_host.selfcheck import check_against_torch

log = logging.getLogger("xbarsim.torch")


def _as_args(example_input) -> tuple[tuple, dict]:
    torch = torch_module()
    if isinstance(example_input, dict):
        return (), dict(example_input)
    if isinstance(example_input, (tuple, list)):
        return tuple(example_input), {}
    if isinstance(example_input, np.ndarray):
        example_input = torch.from_numpy(np.ascontiguousarray(example_input))
        if example_input.dtype == torch.float64:
            example_input = example_input.float()
    if not isinstance(example_input, torch.Tensor):
        raise ModelError(f"from_torch: example_input must be a tensor, an array, a tuple of them or a dict of "
                         f"keyword arguments, got {type(example_input).__name__}")
    return (example_input,), {}


def _check_finite(module, where: str) -> None:
    """Refuse NaN / inf in any floating parameter or buffer (weights, biases, batch-norm statistics)."""
    torch = torch_module()
    tensors = list(module.named_parameters()) + list(module.named_buffers())
    for qual, t in tensors:
        if t.is_floating_point() and not bool(torch.isfinite(t).all()):
            n = int((~torch.isfinite(t)).sum())
            raise ModelError(f"{where}: {qual} holds {n} NaN or infinite value(s); a chip cannot be programmed with them")
    for qual, mod in module.named_modules():
        var = getattr(mod, "running_var", None)
        if isinstance(var, torch.Tensor) and bool((var < 0).any()):
            raise ModelError(f"{where}: {qual}.running_var has negative entries (a variance must be >= 0)")


def from_torch(module, example_input, name: str | None = None, *, check: bool = True,
               source: str | None = None) -> TorchNetwork:
    """Wrap ``module`` for simulation: its MVM modules become analog layers, the rest runs in torch.

    ``example_input``: one batch (a tensor or array; a tuple for several
    positional inputs; a dict for keyword inputs such as ``input_ids`` and
    ``attention_mask``). The module is run on it once (eval mode) to find
    which MVM modules the forward pass calls. With ``check`` (default) the
    import proves itself: the simulated model's ideal forward must equal the
    module's own forward on seeded inputs, else ModelError names the first
    layer that differs.
    """
    torch = torch_module()
    if not isinstance(module, torch.nn.Module):
        raise ModelError(f"from_torch expects a torch.nn.Module, got {type(module).__name__}")
    where = name or source or type(module).__name__
    set_eval(module)
    _check_finite(module, where)
    args, kwargs = _as_args(example_input)
    sites, folds, bns, unused = discover(module, args, kwargs, where)
    if not sites:
        raise ModelError(f"{where}: the forward pass calls no MVM module (Linear, Conv, MultiheadAttention, ...); "
                         "nothing would run on analog arrays")
    for qual in unused:
        log.info("module %r is never called by the forward pass: it is not simulated", qual)
    net = TorchNetwork(name=where, module=module, example_args=args, example_kwargs=kwargs, sites=sites, folds=folds,
                       batch_norms={q: bns[q] for q in folds}, unused=unused, digital=digital_summary(module, sites),
                       source=source or where, metadata={"source": "torch", "torch_class": type(module).__name__})
    if check:
        check_against_torch(net)
    return net


def load_state_dict_model(path, module_spec: str, kwargs: dict | None = None, example_input=None,
                          check: bool = True) -> TorchNetwork:
    """Build ``package.module:Class(**kwargs)``, load the state_dict file ``path`` into it, wrap it.

    ``example_input``: a tensor, or a shape (batch axis included) for a zero
    batch of float32 inputs.
    """
    from simulator.io.torch_import import load_state_dict_module

    torch = torch_module()
    cls_name = str(module_spec).partition(":")[2]
    model = load_state_dict_module(path, module_spec, kwargs)
    if example_input is None:
        raise ModelError(f"{path}: a state_dict model needs input_shape in the config (or an example input)")
    if not hasattr(example_input, "shape"):
        example_input = torch.zeros(tuple(int(s) for s in example_input))
    return from_torch(model, example_input, name=cls_name, check=check, source=str(path))
