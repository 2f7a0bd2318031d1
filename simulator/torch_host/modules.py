"""The torch modules that stand in for a model's MVM modules in a simulated copy.

:class:`AnalogMVM` replaces one Linear / Conv / ConvTranspose / GRUCell /
witin CIM / ``transformers`` Conv1D module and
:class:`AnalogMultiheadAttention` one ``nn.MultiheadAttention``. Both only
reshape and hand their inputs to the host simulation
(:class:`~simulator.torch_host.simulation.TorchSimulation`), which runs the
layer's cores; the attention products between activations (``q k^T``,
``softmax(.) v``) stay digital, in torch.

Tensors cross to the backend's ``xp`` without copies where the layouts
allow: ``Tensor.numpy()`` / ``torch.from_numpy`` on the CPU, DLPack with
CuPy. Convolutions go through the executor's NHWC im2col path, so an
NCHW activation is transposed once on the way in and once on the way out.
"""
from __future__ import annotations

import math
from typing import Any

import numpy as np

from simulator.torch_host.network import AnalogSite, torch_module

torch = torch_module()
nn = torch.nn
F = torch.nn.functional


# ------------------------------------------------------------------ tensors <-> xp arrays
def to_xp(t, xp):
    """A float tensor as a backend array (a view on the CPU; DLPack on CUDA)."""
    t = t.detach()
    if t.dtype not in (torch.float32, torch.float64):
        t = t.float()
    if xp is np:
        return t.cpu().numpy()
    if t.is_cuda:
        return xp.from_dlpack(t.contiguous())
    return xp.asarray(t.numpy())


def from_xp(a, like):
    """A backend array as a tensor with ``like``'s dtype and device."""
    if isinstance(a, np.ndarray):
        if any(s < 0 for s in a.strides):
            a = np.ascontiguousarray(a)
        t = torch.from_numpy(a)
    else:
        t = torch.from_dlpack(a)
    return t.to(device=like.device, dtype=like.dtype)


class _HostRef:
    """Holds the host without registering it as a submodule (no cycles in named_modules)."""

    __slots__ = ("host",)

    def __init__(self, host) -> None:
        self.host = host


# ------------------------------------------------------------------ one MVM module
class AnalogMVM(nn.Module):
    """Stands in for one MVM module; the arithmetic happens in the host's NeuralCore(s)."""

    def __init__(self, host, site: AnalogSite, original) -> None:
        super().__init__()
        self._ref = _HostRef(host)
        self.site_name = site.name
        self.kind = site.kind
        self.layer_name = site.layers[0].name
        self.layer_type = site.layers[0].type
        self.padding_mode = getattr(original, "padding_mode", "zeros")
        self._mode_pad = tuple(getattr(original, "_reversed_padding_repeated_twice", ()))
        conv_t = self.layer_type == "Conv2DTranspose"
        self._convt = None
        if conv_t:  # for forward(..., output_size=...)
            self._convt = dict(stride=tuple(original.stride), padding=tuple(original.padding),
                               kernel_size=tuple(original.kernel_size), dilation=tuple(original.dilation),
                               method=original._output_padding, n=len(original.kernel_size))
        self.in_features = getattr(original, "in_features", None)
        self.out_features = getattr(original, "out_features", None)

    def extra_repr(self) -> str:
        return f"{self.site_name!r}, kind={self.kind}"

    def forward(self, x, *rest, **kwargs):
        host = self._ref.host
        if self.layer_type == "GRUCell":
            out = host.run_gru(self, x, rest[0] if rest else kwargs.get("hx"))
        elif self.layer_type == "Dense":
            out = host.run_dense(self.layer_name, x)
        elif self.layer_type == "Conv2DTranspose":
            output_size = rest[0] if rest else kwargs.get("output_size")
            out = host.run_conv(self, x, self._output_padding(x, output_size))
        else:
            if self.padding_mode != "zeros":
                x = F.pad(x, self._mode_pad, mode=self.padding_mode)
            out = host.run_conv(self, x, None)
        return out

    def _output_padding(self, x, output_size):
        if output_size is None:
            return None
        c = self._convt
        return list(c["method"](x, output_size, list(c["stride"]), list(c["padding"]), list(c["kernel_size"]),
                                c["n"], list(c["dilation"])))


# ------------------------------------------------------------------ attention
def _additive_mask(mask, dtype):
    """A boolean mask (True = masked out) as an additive float mask; float masks unchanged."""
    if mask is None:
        return None
    if mask.dtype == torch.bool:
        return torch.zeros(mask.shape, dtype=dtype, device=mask.device).masked_fill(mask, float("-inf"))
    return mask.to(dtype)


class AnalogMultiheadAttention(nn.Module):
    """``nn.MultiheadAttention`` (eval mode) with its q/k/v and output projections on analog cores.

    The scaled dot products and the softmax-weighted sum of values are
    digital (activation x activation). Masks follow torch's conventions:
    boolean True = not allowed, float masks are added to the scores.
    """

    def __init__(self, host, site: AnalogSite, original) -> None:
        super().__init__()
        self._ref = _HostRef(host)
        self.site_name = site.name
        self.embed_dim, self.num_heads = original.embed_dim, original.num_heads
        self.head_dim = original.head_dim
        self.kdim, self.vdim = original.kdim, original.vdim
        self.batch_first = original.batch_first
        self._qkv_same_embed_dim = original._qkv_same_embed_dim
        self.dropout = original.dropout
        self.bias_k = self.bias_v = None
        self.add_zero_attn = False
        self.packed = self._qkv_same_embed_dim
        self.names = [layer.name for layer in site.layers]

    def _project(self, x, which: int):
        host = self._ref.host
        if self.packed:
            E = self.embed_dim
            return host.run_dense(self.names[0], x)[..., which * E:(which + 1) * E]
        return host.run_dense(self.names[which], x)

    def forward(self, query, key, value, key_padding_mask=None, need_weights: bool = True, attn_mask=None,
                average_attn_weights: bool = True, is_causal: bool = False):
        unbatched = query.dim() == 2
        if unbatched:
            query, key, value = query.unsqueeze(1), key.unsqueeze(1), value.unsqueeze(1)
            if key_padding_mask is not None:
                key_padding_mask = key_padding_mask.unsqueeze(0)
        if not self.batch_first:  # (L, N, E) -> (N, L, E)
            query, key, value = query.transpose(0, 1), key.transpose(0, 1), value.transpose(0, 1)
        host = self._ref.host
        if self.packed and query is key and key is value:
            qkv = host.run_dense(self.names[0], query)
            q, k, v = qkv.chunk(3, dim=-1)
        else:
            q, k, v = self._project(query, 0), self._project(key, 1), self._project(value, 2)
        N, L, E = q.shape
        S = k.shape[1]
        h, d = self.num_heads, self.head_dim
        q = q.reshape(N, L, h, d).transpose(1, 2)
        k = k.reshape(N, S, h, d).transpose(1, 2)
        v = v.reshape(N, S, h, d).transpose(1, 2)
        mask = self._mask(attn_mask, key_padding_mask, is_causal, N, L, S, q.dtype, q.device)
        if need_weights:
            scores = (q @ k.transpose(-2, -1)) / math.sqrt(d)
            if mask is not None:
                scores = scores + mask
            weights = torch.softmax(scores, dim=-1)
            out = weights @ v
            weights = weights.mean(dim=1) if average_attn_weights else weights
        else:
            out = F.scaled_dot_product_attention(q, k, v, attn_mask=mask)
            weights = None
        out = out.transpose(1, 2).reshape(N, L, E)
        out = host.run_dense(self.names[-1], out)
        if not self.batch_first:
            out = out.transpose(0, 1)
        if unbatched:
            out = out.squeeze(1)
            weights = weights.squeeze(0) if weights is not None else None
        return out, weights

    def _mask(self, attn_mask, key_padding_mask, is_causal, N, L, S, dtype, device):
        if attn_mask is None and is_causal:
            attn_mask = torch.ones(L, S, dtype=torch.bool, device=device).triu(1)
        mask = _additive_mask(attn_mask, dtype)
        if mask is not None:
            mask = mask.reshape(N, self.num_heads, L, S) if mask.dim() == 3 else mask.reshape(1, 1, L, S)
        kpm = _additive_mask(key_padding_mask, dtype)
        if kpm is not None:
            kpm = kpm.reshape(N, 1, 1, S)
            mask = kpm if mask is None else mask + kpm
        return mask


def make_replacement(host, site: AnalogSite, original) -> Any:
    """The stand-in module for one analog site."""
    if site.kind == "mha":
        return AnalogMultiheadAttention(host, site, original)
    return AnalogMVM(host, site, original)
