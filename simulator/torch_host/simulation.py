"""One programmed chip for a torch model: :class:`TorchSimulation`.

``Simulation(torch_network, config, seed)`` returns this subclass. Set-up
is the executor's: the analog layers' cores are built (programming errors
sampled once per run), batch norms folded where ``fold_batchnorm`` allows.
Then a deep copy of the module gets its MVM modules replaced by
:mod:`~simulator.torch_host.modules` stand-ins, and ``forward`` runs that
copy in torch: each stand-in converts its input to the executor's layout
(NHWC for convolutions; ``(..., features)`` for dense layers), applies the
layer exactly as the graph executor does (same cores, DAC, ADC,
calibration, witin chip layers) and hands the result back to torch.

Inputs: a tensor, an array, a tuple of them (positional inputs) or a dict
(keyword inputs); arrays are converted to the dtype of the matching example
input (integer token ids stay integers). Outputs keep the model's
structure; with array inputs, tensors in it come back as NumPy arrays.
``ideal_forward`` runs the same copy with exact float64 MVMs.
"""
from __future__ import annotations

import contextlib
import copy
import logging
import traceback
from pathlib import Path
from typing import Any

import numpy as np

from simulator.errors import DataError, XbarsimError
from simulator.executor.hosts import register_host
from simulator.simulation import Simulation
from simulator.torch_host.modules import from_xp, make_replacement, nn, to_xp, torch
from simulator.torch_host.network import TorchNetwork, set_eval


@contextlib.contextmanager
def _mha_fastpath_off():
    """Torch's fused transformer kernels read projection weights directly: keep them off while simulating."""
    mha = getattr(torch.backends, "mha", None)
    if mha is None or not hasattr(mha, "set_fastpath_enabled"):
        yield
        return
    before = mha.get_fastpath_enabled()
    mha.set_fastpath_enabled(False)
    try:
        yield
    finally:
        mha.set_fastpath_enabled(before)


def _to_numpy_tree(obj):
    if isinstance(obj, torch.Tensor):
        return obj.detach().cpu().numpy()
    if isinstance(obj, dict):
        return {k: _to_numpy_tree(v) for k, v in obj.items()}
    if isinstance(obj, (tuple, list)):
        return type(obj)(_to_numpy_tree(v) for v in obj) if not hasattr(obj, "_fields") else type(obj)(*map(_to_numpy_tree, obj))
    return obj


log = logging.getLogger("xbarsim.torch")

_OUR_CODE = tuple(str(Path(__file__).resolve().parents[2] / d) for d in ("simulator", "devices", "adc_calibration"))


def _raised_in_our_code(exc: BaseException) -> bool:
    """Whether the innermost frame of ``exc`` is xbarsim's (a bug to surface), not the user's model or torch."""
    frames = traceback.extract_tb(exc.__traceback__)
    return bool(frames) and str(Path(frames[-1].filename).resolve()).startswith(_OUR_CODE)


class TorchSimulation(Simulation):
    """A torch model whose MVM modules run on programmed analog arrays."""

    def __init__(self, network, config=None, seed: int | None = None, *, calibration=None, cores: bool = True) -> None:
        super().__init__(network, config, seed, calibration=calibration, cores=cores)
        self._by_name = {layer.name: layer for layer in self.layers}
        self._ideal_mode = False
        self._calls: dict[str, int] = {}  # calls of each layer in the current forward
        #: 2-D convolutions return channels_last tensors (no NHWC -> NCHW copy); off for a model that
        #: cannot take them (e.g. ``.view`` on a conv output), found on its first failing forward
        self._channels_last = True
        self.device = torch.device("cuda") if self.backend.name == "cupy" and torch.cuda.is_available() else torch.device("cpu")
        self.model = self._simulated_copy()

    # ------------------------------------------------------------ set-up
    def _simulated_copy(self):
        net = self.network
        model = copy.deepcopy(net.module)
        set_eval(model)
        kept = {layer.name for layer in self.layers}
        replace: dict[int, Any] = {}
        for site in net.sites:
            original = model.get_submodule(site.path)
            replace[id(original)] = make_replacement(self, site, original)
        for bn in net.folds:
            if bn not in kept:  # folded into its MVM layer: the torch BN becomes an identity
                replace[id(model.get_submodule(bn))] = nn.Identity()
        root = next((s for s in net.sites if s.path == ""), None)
        if root is not None:
            return replace[id(model)]
        for parent in list(model.modules()):
            for child_name, child in list(parent._modules.items()):
                if child is not None and id(child) in replace:
                    parent._modules[child_name] = replace[id(child)]
        return model.to(self.device)

    def output_shapes(self) -> dict[str, tuple[int, ...]]:
        """Native output shape of every analog module's first call, batch axis excluded."""
        return {s.name: tuple(s.output_shape[1:]) for s in self.network.sites}

    # ------------------------------------------------------------ layers (called by the stand-ins)
    @contextlib.contextmanager
    def _call_offset(self, layer_name: str):
        """Read noise keys: the k-th call of a layer in one forward (shared weights, loops) reads as images
        ``offset + k * 2**32 ...``, so repeated calls draw independent noise; the first call keys as the executor."""
        k = self._calls.get(layer_name, 0)
        self._calls[layer_name] = k + 1
        saved = self.batch_offset
        self.batch_offset = saved + k * 2**32
        try:
            yield
        finally:
            self.batch_offset = saved

    def run_dense(self, layer_name: str, x):
        """A dense layer on ``x`` of shape (..., features)."""
        with self._call_offset(layer_name):
            y = self.apply_layer(self._by_name[layer_name], [to_xp(x, self.xp)], self._ideal_mode)
        return from_xp(y, x)

    def run_conv(self, module, x, output_padding):
        """A (transposed) 1-D / 2-D convolution on an N C [H] W tensor through the NHWC im2col path."""
        xp = self.xp
        layer = self._by_name[module.layer_name]
        one_d = module.kind in ("conv1d", "conv_transpose1d")
        if output_padding is not None:
            layer = copy.copy(layer)
            op = [0, int(output_padding[0])] if one_d else [int(v) for v in output_padding]
            layer.config = {**layer.config, "output_padding": op}
        unbatched = x.dim() == (2 if one_d else 3)
        t = x.unsqueeze(0) if unbatched else x
        X = to_xp(t, xp)
        X = X[:, :, None, :] if one_d else X
        with self._call_offset(layer.name):
            Y = self.apply_layer(layer, [xp.ascontiguousarray(X.transpose(0, 2, 3, 1))], self._ideal_mode)
        if one_d or not self._channels_last:
            Y = xp.ascontiguousarray(Y.transpose(0, 3, 1, 2))
            out = from_xp(Y[:, :, 0, :] if one_d else Y, x)
        else:  # NHWC memory as an N C H W tensor in torch's channels_last format: no transpose copy
            out = from_xp(Y, x).permute(0, 3, 1, 2)
        return out.squeeze(0) if unbatched else out

    def run_gru(self, module, x, hx):
        """A GRU cell step (torch.nn.GRUCell semantics)."""
        unbatched = x.dim() == 1
        xt = x.unsqueeze(0) if unbatched else x
        ins = [to_xp(xt, self.xp)]
        if hx is not None:
            ins.append(to_xp(hx.unsqueeze(0) if unbatched else hx, self.xp))
        with self._call_offset(module.layer_name):
            y = from_xp(self.apply_layer(self._by_name[module.layer_name], ins, self._ideal_mode), x)
        return y.squeeze(0) if unbatched else y

    # ------------------------------------------------------------ running
    def _inputs(self, x) -> tuple[tuple, dict, bool]:
        net = self.network
        if isinstance(x, dict):
            items = {k: self._tensor(v, net.example_kwargs.get(k), k) for k, v in x.items()}
            return (), items, any(isinstance(v, np.ndarray) for v in x.values())
        seq = tuple(x) if isinstance(x, (tuple, list)) else (x,)
        examples = list(net.example_args) + [None] * len(seq)
        args = tuple(self._tensor(v, examples[i], f"input {i}") for i, v in enumerate(seq))
        return args, {}, any(isinstance(v, np.ndarray) for v in seq)

    def _tensor(self, value, example, what: str):
        """An input as a tensor on the model's device (arrays take the matching example input's dtype)."""
        if isinstance(value, np.ndarray):
            value = torch.from_numpy(np.ascontiguousarray(value))
            cast = example.dtype if isinstance(example, torch.Tensor) else torch.float32 if value.dtype == torch.float64 else None
        elif isinstance(value, torch.Tensor):
            cast = None
        else:
            return value
        if value.is_floating_point() and not bool(torch.isfinite(value).all()):  # checked before any cast
            raise DataError(f"model {self.network.name!r}: {what} holds NaN or infinite values")
        return (value if cast is None else value.to(cast)).to(self.device)

    def forward(self, x, image_offset: int | None = None):
        """Simulated outputs (the model's output structure; arrays in -> arrays out).

        ``image_offset``: global index of the batch's first image (it keys the
        read noise); None continues after the previous call's images.
        """
        offset = getattr(self, "_images_seen", 0) if image_offset is None else int(image_offset)
        if offset < 0:
            raise ValueError(f"image_offset must be >= 0, got {offset}")
        first = x[0] if isinstance(x, (tuple, list)) else next(iter(x.values())) if isinstance(x, dict) else x
        self._images_seen = offset + (len(first) if hasattr(first, "__len__") else 1)
        self.batch_offset = offset
        return self._torch_forward(x, ideal=False)

    def ideal_forward(self, x, dtype: str = "float64"):
        """The same torch model with exact MVMs in ``dtype`` (float64; float32 for timing): the reference."""
        saved, self.ideal_dtype = self.ideal_dtype, str(np.dtype(dtype))
        try:
            return self._torch_forward(x, ideal=True)
        finally:
            self.ideal_dtype = saved

    def _torch_forward(self, x, ideal: bool):
        args, kwargs, as_numpy = self._inputs(x)
        static = self.network.metadata.get("static_batch")
        if static and args and isinstance(args[0], torch.Tensor) and args[0].shape[0] != static:
            out = self._in_static_chunks(args, kwargs, int(static), ideal)
        else:
            out = self._call_model(args, kwargs, ideal)
        return _to_numpy_tree(out) if as_numpy else out

    def _in_static_chunks(self, args, kwargs, B: int, ideal: bool):
        """A program specialized to batch B: run chunks of B (the last padded by repeating its first row)."""
        N = int(args[0].shape[0])
        outs = []
        base = self.batch_offset
        for s in range(0, N, B):
            self.batch_offset = base + s  # chunk s..s+B holds images base+s.. (read-noise keys)
            part = []
            for a in args:
                c = a[s:s + B]
                if c.shape[0] < B:
                    c = torch.cat([c, c[:1].expand(B - c.shape[0], *c.shape[1:])])
                part.append(c)
            y = self._call_model(tuple(part), kwargs, ideal)
            if not isinstance(y, torch.Tensor):
                raise DataError(f"model {self.network.name!r} was exported for batch {B}; run it with batches of {B}")
            outs.append(y[: min(B, N - s)])
        self.batch_offset = base
        return torch.cat(outs)

    @contextlib.contextmanager
    def running(self, ideal: bool):
        """Stand-ins compute ideally (exact MVMs in ``ideal_forward``'s dtype) or on the arrays while inside."""
        self._calls = {}
        saved = self.dtype
        self._ideal_mode = ideal
        if ideal:
            self.dtype = self.xp.dtype(self.ideal_dtype)
        try:
            with torch.no_grad(), _mha_fastpath_off():
                yield
        finally:
            self.dtype = saved
            self._ideal_mode = False

    def _call_model(self, args, kwargs, ideal: bool):
        try:
            with self.running(ideal):
                try:
                    out = self.model(*args, **kwargs)
                except Exception as exc:  # noqa: BLE001
                    if not self._channels_last or isinstance(exc, XbarsimError) or _raised_in_our_code(exc):
                        raise
                    self._channels_last = False  # the model needs contiguous NCHW conv outputs: retry with them
                    log.info("model %r: channels_last conv outputs failed (%s); using contiguous NCHW",
                             self.network.name, exc.__class__.__name__)
                    self._calls = {}
                    out = self.model(*args, **kwargs)
        except XbarsimError:
            raise
        except Exception as exc:  # noqa: BLE001 - the user's model rejected the input
            if _raised_in_our_code(exc):
                raise
            first = (str(exc).strip().splitlines() or [""])[0][:300]
            shapes = ", ".join(str(tuple(a.shape)) for a in args if hasattr(a, "shape"))
            raise DataError(f"model {self.network.name!r}: forward failed on input ({shapes}): "
                            f"{exc.__class__.__name__}: {first}") from None
        return out


register_host(TorchNetwork, TorchSimulation)  # Simulation(torch_network, ...) is a TorchSimulation
