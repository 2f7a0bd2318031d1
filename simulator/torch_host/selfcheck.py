"""The torch import self-check: the simulated model must compute the module's own function.

Right after import, :func:`check_against_torch` runs the user's module
(torch, float32) and the simulated copy's ``ideal_forward`` (exact float64
MVMs, batch norms folded as ``fold_batchnorm`` does by default) on the
example input and on seeded random variations of it, and compares every
analog layer's output and the model outputs. A difference beyond
:data:`RTOL` (norm of the difference over the reference's norm) refuses the model with one line naming the first layer that differs.
"""
from __future__ import annotations

import copy

from simulator.errors import ModelError
from simulator.torch_host.network import TorchNetwork, run_module, torch_module

#: relative tolerance in float64: rounding differences of two float64 computations are ~1e-14
RTOL = 1e-7
#: relative tolerance when the module only runs in float32 (torch's own float32 error reaches ~1e-5 on deep nets)
RTOL_FLOAT32 = 1e-3


def _tensors(obj) -> list:
    torch = torch_module()
    if isinstance(obj, torch.Tensor):
        return [obj]
    if isinstance(obj, dict):
        return [t for v in obj.values() for t in _tensors(v)]
    if isinstance(obj, (tuple, list)):
        return [t for v in obj for t in _tensors(v)]
    return []


def relative_difference(ours, ref) -> float:
    """||ours - ref|| / ||ref|| over all elements (2-norm; 0 for two zero tensors; inf for a shape mismatch).

    A norm, not the largest element: single elements near a cancellation carry
    float32 rounding far above the tensor's, while a translation error (a wrong
    transpose, padding, bias or fold) moves the whole tensor.
    """
    torch = torch_module()
    if tuple(ours.shape) != tuple(ref.shape):
        return float("inf")
    a, b = ours.detach().double().cpu(), ref.detach().double().cpu()
    if not bool(torch.isfinite(a).all()) or not bool(torch.isfinite(b).all()):
        return 0.0 if bool(torch.equal(torch.nan_to_num(a), torch.nan_to_num(b))) else float("inf")
    scale = float(torch.linalg.vector_norm(b)) if b.numel() else 0.0
    diff = float(torch.linalg.vector_norm(a - b)) if b.numel() else 0.0
    return diff / scale if scale > 0 else diff


def check_inputs(net: TorchNetwork, n: int = 2, seed: int = 0):
    """The example input, then ``n - 1`` seeded variations (floats: + N(0, std); integers: uniform in range)."""
    torch = torch_module()
    g = torch.Generator().manual_seed(seed)

    def vary(t):
        if not isinstance(t, torch.Tensor):
            return t
        if t.is_floating_point():
            std = float(t.std()) if t.numel() > 1 and float(t.std()) > 0 else 1.0
            return t + torch.randn(t.shape, generator=g, dtype=t.dtype) * std
        if t.dtype == torch.bool:
            return t
        lo, hi = int(t.min()), int(t.max())
        return torch.randint(lo, hi + 1, t.shape, generator=g, dtype=t.dtype)

    yield net.example_args, net.example_kwargs
    for _ in range(n - 1):
        yield tuple(vary(a) for a in net.example_args), {k: vary(v) for k, v in net.example_kwargs.items()}


def _double(t):
    torch = torch_module()
    return t.double() if isinstance(t, torch.Tensor) and t.is_floating_point() else t


def _float64_copy(net: TorchNetwork):
    """A float64 deep copy of the module that runs on the example input, or None."""
    torch = torch_module()
    try:
        exact = copy.deepcopy(net.module).double()
        with torch.no_grad():
            exact(*map(_double, net.example_args), **{k: _double(v) for k, v in net.example_kwargs.items()})
        return exact
    except Exception:  # noqa: BLE001 - any failure means: compare in float32
        return None


def _reference(module, net: TorchNetwork, args, kwargs) -> tuple[dict[str, list], object]:
    """The module's own outputs per analog site (after the BN folded into it) and its model output."""
    folded_into = {src: bn for bn, src in net.folds.items()}
    record: dict[str, list] = {}
    handles = []
    for site in net.sites:
        mod = module.get_submodule(folded_into.get(site.name, site.path))

        def hook(mod, inp, out, name=site.name):
            record.setdefault(name, []).append(_tensors(out)[0].detach().clone())

        handles.append(mod.register_forward_hook(hook))
    try:
        out = run_module(module, args, kwargs, net.source or net.name)
    finally:
        for h in handles:
            h.remove()
    return record, out


def check_against_torch(net: TorchNetwork, n_inputs: int = 2, seed: int = 0) -> float:
    """Refuse ``net`` (ModelError) unless its simulated ideal forward equals torch's; returns the worst difference."""
    from simulator.simulation import Simulation

    sim = Simulation(net, {}, seed=0, cores=False)  # ideal MVMs only: no arrays are programmed
    exact = _float64_copy(net)
    rtol = RTOL if exact is not None else RTOL_FLOAT32
    if exact is not None:
        sim.model.double()
    worst = 0.0
    for args, kwargs in check_inputs(net, n_inputs, seed):
        if exact is not None:
            args, kwargs = tuple(map(_double, args)), {k: _double(v) for k, v in kwargs.items()}
        ref_sites, ref_out = _reference(exact if exact is not None else net.module, net, args, kwargs)
        sim._record = {}
        try:
            ours_out = sim.ideal_forward(dict(kwargs) if kwargs and not args else args)
            ours_sites = sim._record
        finally:
            sim._record = None
        ref_t, ours_t = _tensors(ref_out), _tensors(ours_out)
        diffs = [relative_difference(o, r) for o, r in zip(ours_t, ref_t)] or [0.0]
        if len(ref_t) != len(ours_t):
            diffs.append(float("inf"))
        if max(diffs) <= rtol:
            worst = max(worst, max(diffs))
            continue
        precision = "float64" if exact is not None else "float32"
        for site in net.sites:
            for call, (o, r) in enumerate(zip(ours_sites.get(site.name, []), ref_sites.get(site.name, []))):
                d = relative_difference(o, r)
                if d > rtol:
                    raise ModelError(
                        f"{net.source or net.name}: import self-check failed: layer {site.name!r} ({site.module_class}, "
                        f"call {call + 1}) differs from torch by {d:.3g} (relative, {precision}; tolerance {rtol:g}); "
                        "set check = false (--no-check) only if you know why")
        raise ModelError(
            f"{net.source or net.name}: import self-check failed: every analog layer matches torch but the model "
            f"output differs by {max(diffs):.3g} (relative, {precision}; tolerance {rtol:g}); "
            "set check = false (--no-check) only if you know why")
    return worst
