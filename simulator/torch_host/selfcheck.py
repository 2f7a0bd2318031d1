"""The torch import self-check: the simulated model must compute the module's own function.

Right after import, :func:`check_against_torch` runs the user's module on
the example input and on a seeded variation of it, recording every analog
module's inputs and outputs (for a folded batch norm: that BN's output).
Then it checks two things, each in the module's own precision (float32):

* every analog layer alone: the simulated layer (exact MVMs), given the very
  inputs torch's layer received, must reproduce torch's output to
  :data:`RTOL_LAYER` (norm of the difference over the reference's norm).
  Inputs are torch's, so errors do not compound: float32 rounding stays near
  1e-7 while a translation error (a transpose, padding, bias, stride, fold)
  moves the whole tensor;
* the whole model: the simulated copy's ``ideal_forward`` against the
  module's output to :data:`RTOL_MODEL`, which catches wiring errors no
  single layer shows (a batch norm folded into a conv whose raw output is
  also used elsewhere).

The first failure refuses the model with one line naming the layer (or the
model output) and the difference.
"""
from __future__ import annotations

from simulator.errors import ModelError
from simulator.torch_host.network import TorchNetwork, run_module, torch_module

#: one layer on torch's own inputs (float32 MVM rounding is ~1e-7)
RTOL_LAYER = 1e-5
#: the whole model: float32 differences compound through deep networks (ViT, EfficientNet: ~1e-5)
RTOL_MODEL = 1e-3


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


def _copy(v):
    torch = torch_module()
    return v.detach().clone() if isinstance(v, torch.Tensor) else v


def _reference(net: TorchNetwork, args, kwargs) -> tuple[dict[str, list], object]:
    """Torch's own run: per analog site, every call's (args, kwargs, output) -- for a folded batch norm
    the BN's output -- and the model output."""
    folded_into = {src: bn for bn, src in net.folds.items()}
    calls: dict[str, list] = {}
    outs: dict[str, list] = {}
    handles = []
    for site in net.sites:
        mod = net.module.get_submodule(site.path)

        def pre(mod, a, kw, name=site.name):  # copies: later in-place ops (ReLU(inplace), +=) must not reach them
            calls.setdefault(name, []).append((tuple(map(_copy, a)), {k: _copy(v) for k, v in kw.items()}))

        def post(mod, inp, out, name=site.name):
            outs.setdefault(name, []).append(_tensors(out)[0].detach().clone())

        handles.append(mod.register_forward_pre_hook(pre, with_kwargs=True))
        handles.append(net.module.get_submodule(folded_into.get(site.name, site.path)).register_forward_hook(post))
    try:
        out = run_module(net.module, args, kwargs, net.source or net.name)
    finally:
        for h in handles:
            h.remove()
    return {k: list(zip(calls[k], outs.get(k, []))) for k in calls}, out


def _layer_failure(net: TorchNetwork, sim, ref_calls: dict[str, list]) -> str | None:
    """The first analog layer that, on torch's own inputs, differs from torch's output (a message), else None."""
    for site in net.sites:
        standin = sim.model if site.path == "" else sim.model.get_submodule(site.path)
        for k, ((a, kw), ref) in enumerate(ref_calls.get(site.name, [])):
            with sim.running(ideal=True):
                ours = _tensors(standin(*a, **kw))[0]
            d = relative_difference(ours, ref)
            if d > RTOL_LAYER:
                return (f"layer {site.name!r} ({site.module_class}, call {k + 1}) differs from torch by {d:.3g} on "
                        f"torch's own inputs (relative; tolerance {RTOL_LAYER:g})")
    return None


def check_against_torch(net: TorchNetwork, n_inputs: int = 2, seed: int = 0) -> float:
    """Refuse ``net`` (ModelError) unless every analog layer and the whole model equal torch; returns the worst
    whole-model difference."""
    from simulator.torch_host.simulation import TorchSimulation  # imports torch: only when a check runs

    sim = TorchSimulation(net, {}, seed=0, cores=False)  # ideal MVMs only: no arrays are programmed
    where = net.source or net.name
    worst = 0.0
    for args, kwargs in check_inputs(net, n_inputs, seed):
        ref_calls, ref_out = _reference(net, args, kwargs)
        failure = _layer_failure(net, sim, ref_calls)
        if failure is not None:
            raise ModelError(f"{where}: import self-check failed: {failure}; "
                             "set check = false (--no-check) only if you know why")
        ours_out = sim.ideal_forward(dict(kwargs) if kwargs and not args else args)
        ref_t, ours_t = _tensors(ref_out), _tensors(ours_out)
        diffs = [relative_difference(o, r) for o, r in zip(ours_t, ref_t)] or [0.0]
        if len(ref_t) != len(ours_t):
            diffs.append(float("inf"))
        if max(diffs) > RTOL_MODEL:
            raise ModelError(
                f"{where}: import self-check failed: every analog layer matches torch on its own inputs but the "
                f"model output differs by {max(diffs):.3g} (relative; tolerance {RTOL_MODEL:g}); "
                "set check = false (--no-check) only if you know why")
        worst = max(worst, max(diffs))
    return worst
