"""Digital (error-free) layer operations and the im2col transform, on NHWC arrays.

Every function takes the array module ``xp`` so it runs on NumPy or CuPy.
Sliding windows are gathered with one strided slice per kernel offset
(``kh * kw`` slices), never a Python loop over windows or images.
"""
from __future__ import annotations

import math
from typing import Any


# ------------------------------------------------------------------ padding
def same_padding(size: int, k: int, stride: int, dilation: int = 1) -> tuple[int, int]:
    """Keras/TensorFlow 'same' padding (extra pixel at the end)."""
    eff = (k - 1) * dilation + 1
    out = math.ceil(size / stride)
    total = max((out - 1) * stride + eff - size, 0)
    return total // 2, total - total // 2


def resolve_padding(padding: Any, H: int, W: int, kh: int, kw: int, sh: int, sw: int, dh: int = 1, dw: int = 1):
    """((top, bottom), (left, right)) from 'same' / 'valid' / explicit [[t, b], [l, r]] / int."""
    if padding in ("valid", None):
        return (0, 0), (0, 0)
    if padding == "same":
        return same_padding(H, kh, sh, dh), same_padding(W, kw, sw, dw)
    if isinstance(padding, int):
        return (padding, padding), (padding, padding)
    (t, b), (l, r) = padding
    return (int(t), int(b)), (int(l), int(r))


def pad_nhwc(x, pads, xp, value: float = 0.0):
    """``x`` (N, H, W, C) padded with ``value``: ((top, bottom), (left, right)) pixels (x itself when all are 0).

    One copy of the interior and fills of the four borders (what ``xp.pad``
    does in constant mode, without its generic set-up: faster on small maps).
    """
    (t, b), (l, r) = pads
    if t == b == l == r == 0:
        return x
    if min(t, b, l, r) < 0:
        return xp.pad(x, ((0, 0), (t, b), (l, r), (0, 0)), mode="constant", constant_values=value)
    N, H, W, C = x.shape
    out = xp.empty((N, t + H + b, l + W + r, C), dtype=x.dtype)
    out[:, :t] = value
    out[:, t + H :] = value
    out[:, t : t + H, :l] = value
    out[:, t : t + H, l + W :] = value
    out[:, t : t + H, l : l + W] = x
    return out


# ------------------------------------------------------------------- im2col
def conv_output_size(size: int, k: int, stride: int, dilation: int) -> int:
    return (size - ((k - 1) * dilation + 1)) // stride + 1


def windows(x, kh: int, kw: int, sh: int, sw: int, dh: int, dw: int, xp):
    """Sliding windows of a padded NHWC array: (N, Ho, Wo, kh, kw, C)."""
    N, H, W, C = x.shape
    Ho = conv_output_size(H, kh, sh, dh)
    Wo = conv_output_size(W, kw, sw, dw)
    if Ho <= 0 or Wo <= 0:
        raise ValueError(f"kernel {kh}x{kw} does not fit the {H}x{W} input")
    if dw == 1 and x.flags.c_contiguous:
        # One strided view (a window row of kw*C elements is contiguous in memory) and one copy.
        # strides from the shape: a C-contiguous view may carry any stride on a size-1 axis (e.g. C = 1)
        sC = x.dtype.itemsize
        sW, sH, sN = C * sC, W * C * sC, H * W * C * sC
        view = xp.lib.stride_tricks.as_strided(
            x, shape=(N, Ho, Wo, kh, kw * C), strides=(sN, sH * sh, sW * sw, sH * dh, sC)
        )
        return xp.ascontiguousarray(view).reshape(N, Ho, Wo, kh, kw, C)
    out = xp.empty((N, Ho, Wo, kh, kw, C), dtype=x.dtype)
    for i in range(kh):
        for j in range(kw):
            out[:, :, :, i, j, :] = x[:, i * dh : i * dh + sh * (Ho - 1) + 1 : sh, j * dw : j * dw + sw * (Wo - 1) + 1 : sw, :]
    return out


def im2col(x, kh: int, kw: int, sh: int, sw: int, dh: int, dw: int, xp):
    """(N*Ho*Wo, kh*kw*C) matrix of sliding windows (row order kh, kw, C = Keras kernel order) and (Ho, Wo).

    A 1x1 kernel needs no window copies: the (strided) pixels themselves, a
    free reshape of a C-contiguous input at stride 1. Callers must not write
    into the result.
    """
    if kh == 1 and kw == 1:
        v = x[:, ::sh, ::sw, :] if (sh, sw) != (1, 1) else x
        N, Ho, Wo, C = v.shape
        return xp.ascontiguousarray(v).reshape(N * Ho * Wo, C), (Ho, Wo)
    win = windows(x, kh, kw, sh, sw, dh, dw, xp)
    N, Ho, Wo = win.shape[:3]
    return win.reshape(N * Ho * Wo, -1), (Ho, Wo)


def conv_transpose_input(x, kernel_size, strides, dilation, padding, output_padding, xp):
    """The input of the stride-1 convolution equal to a transposed convolution of NHWC ``x``.

    ``x`` zero-upsampled by the strides, padded by ``dilation*(k-1)`` less
    the crops of ``padding`` ('valid', 'same' or torch's explicit
    ``[[t, b], [l, r]]``) and extended by ``output_padding`` at the
    bottom/right; convolving it (stride 1, same dilation) with
    :func:`transpose_kernel_as_conv` of the kernel gives the transposed convolution.
    """
    kh, kw = kernel_size
    sh, sw = strides
    dh, dw = dilation
    oph, opw = output_padding or (0, 0)
    N, H, W, C = x.shape
    up = xp.zeros((N, (H - 1) * sh + 1, (W - 1) * sw + 1, C), dtype=x.dtype)
    up[:, ::sh, ::sw, :] = x
    if padding == "valid":
        crop = ((0, 0), (0, 0))
    elif padding == "same":
        th, tw = max(kh - sh, 0), max(kw - sw, 0)
        crop = ((th // 2, th - th // 2), (tw // 2, tw - tw // 2))
    else:
        crop = resolve_padding(padding, H, W, kh, kw, sh, sw)
    eh, ew = dh * (kh - 1), dw * (kw - 1)
    (ct, cb), (cl, cr) = crop
    (pt, pb), (pl, pr) = (eh - ct, eh - cb + oph), (ew - cl, ew - cr + opw)  # negative pads crop
    up = pad_nhwc(up, ((max(pt, 0), max(pb, 0)), (max(pl, 0), max(pr, 0))), xp)
    return up[:, max(-pt, 0) : up.shape[1] - max(-pb, 0), max(-pl, 0) : up.shape[2] - max(-pr, 0), :]


def transpose_kernel_as_conv(kernel):
    """A Keras Conv2DTranspose kernel (kh, kw, cout, cin) as the flipped conv kernel (kh, kw, cin, cout)."""
    return kernel[::-1, ::-1].transpose(0, 1, 3, 2)


def gru_cell(gi, gh, h, xp):
    """torch.nn.GRUCell's gates (order r, z, n) from the two products ``gi = W_ih x + b_ih``, ``gh = W_hh h + b_hh``."""
    H = h.shape[-1]
    r = activation(gi[:, :H] + gh[:, :H], "sigmoid", xp)
    z = activation(gi[:, H : 2 * H] + gh[:, H : 2 * H], "sigmoid", xp)
    n = xp.tanh(gi[:, 2 * H :] + r * gh[:, 2 * H :])
    return (1 - z) * n + z * h


# ------------------------------------------------------------------ pooling
def _ceil_extra(size: int, lo: int, hi: int, k: int, s: int, d: int) -> int:
    """Extra end padding for ceil_mode output sizes (a last window starting in the end pad is dropped)."""
    eff = (k - 1) * d + 1
    span = size + lo + hi
    out = -(-(span - eff) // s) + 1
    if (out - 1) * s >= size + lo:
        out -= 1
    return max((out - 1) * s + eff - span, 0)


def pool2d(x, kind: str, pool, strides, padding, xp, count_include_pad: bool = False, dilation=(1, 1),
           ceil_mode: bool = False):
    """Max / average pooling of an NHWC array.

    ``padding`` as :func:`resolve_padding`; ``ceil_mode`` rounds the output
    size up (ONNX / torch rule). Averages divide by the number of window
    elements inside the input, or inside input plus explicit padding when
    ``count_include_pad`` (the ceil_mode extension never counts).
    """
    kh, kw = pool
    sh, sw = strides
    dh, dw = dilation
    N, H, W, C = x.shape
    (t, b), (l, r) = resolve_padding(padding, H, W, kh, kw, sh, sw, dh, dw)
    eb = _ceil_extra(H, t, b, kh, sh, dh) if ceil_mode else 0
    er = _ceil_extra(W, l, r, kw, sw, dw) if ceil_mode else 0
    pads = ((t, b + eb), (l, r + er))
    if kind == "max":
        win = windows(pad_nhwc(x, pads, xp, value=-float("inf")), kh, kw, sh, sw, dh, dw, xp)
        return win.max(axis=(3, 4))
    total = windows(pad_nhwc(x, pads, xp), kh, kw, sh, sw, dh, dw, xp).sum(axis=(3, 4))
    if pads == ((0, 0), (0, 0)):
        return total / (kh * kw)
    if count_include_pad:
        mask = pad_nhwc(xp.ones((1, H + t + b, W + l + r, 1), dtype=x.dtype), ((0, eb), (0, er)), xp)
    else:
        mask = pad_nhwc(xp.ones((1, H, W, 1), dtype=x.dtype), pads, xp)
    counts = windows(mask, kh, kw, sh, sw, dh, dw, xp).sum(axis=(3, 4))
    return total / counts


# -------------------------------------------------------------- activations
def _erf(x, xp):
    if xp.__name__ == "cupy":
        from cupyx.scipy.special import erf
    else:
        from scipy.special import erf
    return erf(x)


def activation(x, name: str | None, xp, alpha: float | None = None):
    """Apply a named activation (softmax over the last axis)."""
    if name in (None, "linear"):
        return x
    if name == "relu":
        return xp.maximum(x, 0)
    if name == "relu6":
        return xp.clip(x, 0, 6)
    if name == "sigmoid":
        return 1.0 / (1.0 + xp.exp(-x))
    if name == "hard_sigmoid":
        return xp.clip(0.2 * x + 0.5, 0, 1)
    if name == "tanh":
        return xp.tanh(x)
    if name == "softmax":
        e = xp.exp(x - x.max(axis=-1, keepdims=True))
        return e / e.sum(axis=-1, keepdims=True)
    if name == "gelu":
        return 0.5 * x * (1.0 + _erf(x / math.sqrt(2.0), xp))
    if name == "leaky_relu":
        a = 0.3 if alpha is None else alpha
        return xp.where(x >= 0, x, a * x)
    if name == "elu":
        a = 1.0 if alpha is None else alpha
        return xp.where(x >= 0, x, a * (xp.exp(xp.minimum(x, 0)) - 1))
    if name == "swish":
        return x / (1.0 + xp.exp(-x))
    raise ValueError(f"unsupported activation {name!r}")


# ----------------------------------------------------------------- layouts
def nchw_to_nhwc(x, xp):
    return xp.ascontiguousarray(x.transpose(0, 2, 3, 1)) if x.ndim == 4 else x


def nhwc_to_nchw(x, xp):
    return xp.ascontiguousarray(x.transpose(0, 3, 1, 2)) if x.ndim == 4 else x


def flatten(x, order: str, xp):
    if x.ndim == 4 and order == "NCHW":
        x = x.transpose(0, 3, 1, 2)
    return x.reshape(x.shape[0], -1)


def reshape(x, target_shape, order: str, xp):
    """Reshape as the native framework would (target_shape in native layout, no batch axis)."""
    if x.ndim == 4 and order == "NCHW":
        x = x.transpose(0, 3, 1, 2)
    y = x.reshape((x.shape[0],) + tuple(int(s) for s in target_shape))
    if y.ndim == 4 and order == "NCHW":
        y = y.transpose(0, 2, 3, 1)
    return y


# ----------------------------------------------------------- conv matrices
def conv_matrix(kernel, groups: int, xp):
    """(kh*kw*cin, cout) MVM matrix of a (possibly grouped) Conv2D kernel (kh, kw, cin/groups, cout).

    Grouped convolutions map onto one array as a block-diagonal matrix: the
    zero blocks are cells at the zero-weight state (they see device errors).
    """
    kh, kw, cin_g, cout = kernel.shape
    if groups == 1:
        return kernel.reshape(kh * kw * cin_g, cout)
    cout_g = cout // groups
    cin = cin_g * groups
    M = xp.zeros((kh, kw, cin, cout), dtype=kernel.dtype)
    for g in range(groups):
        M[:, :, g * cin_g : (g + 1) * cin_g, g * cout_g : (g + 1) * cout_g] = kernel[:, :, :, g * cout_g : (g + 1) * cout_g]
    return M.reshape(kh * kw * cin, cout)


def depthwise_matrix(kernel, xp):
    """Block-diagonal (kh*kw*cin, cin*mult) matrix of a depthwise kernel (kh, kw, cin, mult)."""
    kh, kw, cin, mult = kernel.shape
    M = xp.zeros((kh, kw, cin, cin * mult), dtype=kernel.dtype)
    for c in range(cin):
        M[:, :, c, c * mult : (c + 1) * mult] = kernel[:, :, c, :]
    return M.reshape(kh * kw * cin, cin * mult)


def depthwise_conv(x, kernel, bias, strides, dilation, xp):
    """Exact depthwise convolution of a padded NHWC array with a (kh, kw, cin, mult) kernel.

    Output channel ``c * mult + m`` (Keras order), as :func:`depthwise_matrix` maps it onto an array.
    """
    kh, kw, cin, mult = kernel.shape
    k = xp.asarray(kernel, dtype=x.dtype)
    N, H, W, C = x.shape
    Ho = conv_output_size(H, kh, strides[0], dilation[0])
    Wo = conv_output_size(W, kw, strides[1], dilation[1])
    y = xp.zeros((N, Ho, Wo, cin, mult), dtype=x.dtype)
    for i in range(kh):
        for j in range(kw):
            h0, w0 = i * dilation[0], j * dilation[1]
            tap = x[:, h0 : h0 + strides[0] * (Ho - 1) + 1 : strides[0], w0 : w0 + strides[1] * (Wo - 1) + 1 : strides[1], :]
            y += tap[..., None] * k[i, j]
    y = y.reshape(N, Ho, Wo, cin * mult)
    return y if bias is None else y + xp.asarray(bias, dtype=x.dtype)

