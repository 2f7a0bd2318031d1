"""witin quantization formulas, exact chip-layer semantics, NORMAL noise and the torch importer.

Self-contained: nothing here needs the witin_nn package (its classes are
imitated by small stand-ins where the importer is tested). The bit-exact
comparison with witin_nn itself is scripts/compare_witin_nn.py.
"""
from __future__ import annotations

import math
import types

import numpy as np
import pytest

from simulator.errors import ModelError
from simulator.network import Layer
from simulator.witin import quant
from simulator.witin.chip import WitinChipLayer

R = np.round  # round half to even, like torch.round


# ------------------------------------------------------------------ formulas
def test_auto_scale_guide_example():
    # guide 2.6: x_max = 1.7309 at 8 bits -> scale_x = 128 (the input is unsigned: all 8 bits for magnitude)
    assert quant.input_scale(1.7309, 8, "FALSE") == 128
    assert quant.input_scale(1.7309, 8, "PN") == 128
    # the plain formula 2**(bits-1) / 2**ceil(log2(max)) for signed data
    assert quant.auto_scale(1.7309, 8) == 64
    assert quant.input_scale(1.7309, 8, "Shift") == 64
    assert quant.weight_scale(0.5, 8) == 256
    assert quant.output_scale(4.0, 8) == 32
    assert quant.output_scale(3.0, 10) == 128
    assert quant.auto_scale(1.0, 8) == 128  # exact powers of two are not rounded up


@pytest.mark.parametrize("bad", [0.0, -1.0, float("nan")])
def test_auto_scale_io_max_zero_is_one_line_model_error(bad):
    with pytest.raises(ModelError) as exc:
        quant.auto_scale(bad, 8, "the input (io_max_x)")
    msg = str(exc.value)
    assert "Unable to determine quant scale" in msg and "\n" not in msg


def test_chip_layer_io_max_zero_names_layer():
    layer = Layer("fc1", "Dense", ["in"], {"units": 2}, {"kernel": np.ones((3, 2), np.float32)},
                  {"witin": {"io_max_x": 0.0, "io_max_weight": 1.0, "io_max_y": 1.0}})
    with pytest.raises(ModelError) as exc:
        WitinChipLayer(layer, None, np, np.random.default_rng(0))
    assert "fc1" in str(exc.value) and "Unable to determine quant scale" in str(exc.value)
    assert "\n" not in str(exc.value)


def test_quantize_input_false_pn_shift():
    x = np.array([-1.0, -0.5 / 256, 0.5 / 256, 1.5 / 256, 2.5 / 256, 0.3, 0.999, 1.2], np.float32)
    nx = quant.quantize_input(x, 256.0, 8, "FALSE", np)
    assert nx.tolist() == [0, 0, 0, 2, 2, 77, 255, 255]  # half to even, negatives -> 0, clip 255
    nx = quant.quantize_input(-x, 256.0, 8, "PN", np)
    assert nx.tolist() == [255, 0, 0, -2, -2, -77, -255, -255]  # sign-magnitude, symmetric clip
    # Shift: offset round(min(shift_num, 2**xb/scale_x) * scale_x), then unsigned clip
    assert quant.shift_offset(1.0, 128.0, 8) == 128
    assert quant.shift_offset(0.3, 128.0, 8) == 38
    assert quant.shift_offset(3.0, 128.0, 8) == 256  # limited to the whole input range
    nx = quant.quantize_input(np.array([-1.5, -1.0, 0.0, 0.3, 1.2], np.float32), 128.0, 8, "Shift", np, shift=128)
    assert nx.tolist() == [0, 0, 128, 166, 255]


def test_quantize_weight_and_bias():
    w = np.array([-300, -128.5, -5.5, -4.5, 0.5, 1.5, 126.6, 127.5, 200], np.float32) / 128
    assert quant.quantize_weight(w, 128.0, 8, np).tolist() == [-128, -128, -6, -4, 0, 2, 127, 127, 127]
    assert quant.quantize_weight(w, 8.0, 4, np).tolist() == [-8, -8, 0, 0, 0, 0, 7, 7, 7]
    assert quant.quantize_weight(w, 128.0, 8, np, w_clip=0.25).tolist() == [-32, -32, -6, -4, 0, 2, 32, 32, 32]
    # bias: multiples of 128, clipped to bias_row_N rows of [-128, 127]
    sx, sw = 256.0, 128.0  # b * sx * sw / 128 = b * 256
    b = np.array([-3.5, -2.5, -0.5, 0.5, 1.5, 1016.6, 2000], np.float32) / 256
    assert (quant.quantize_bias(b, sx, sw, 8, np) / 128).tolist() == [-4, -2, 0, 0, 2, 1016, 1016]
    assert (quant.quantize_bias(b, sx, sw, 1, np) / 128).tolist() == [-4, -2, 0, 0, 2, 127, 127]
    assert quant.g_value(256, 128, 32) == 1024


def test_ten_bit_split_guide_example():
    # guide 2.5: 10-bit input, low 8 bits analog, high 2 bits digital; 10-bit output
    x = np.array([0.1, 0.7, 0.999], np.float32)
    nx = quant.quantize_input(x, 1024.0, 10, "FALSE", np)
    assert nx.tolist() == [102, 717, 1023]
    low, high = quant.split_input(nx, np)
    assert low.tolist() == [102, 205, 255] and high.tolist() == [0, 512, 768]
    assert (low + high).tolist() == nx.tolist()
    low, high = quant.split_input(np.array([-300.0, 300.0]), np)  # PN: sign-magnitude
    assert low.tolist() == [-44, 44] and high.tolist() == [-256, 256]
    # analog and digital parts are rounded separately, then summed and clipped to int10
    # (scale_x * scale_weight / scale_y = 64 * 2 / 2 = g_value 64)
    y = quant.combine_outputs(np.array([0.5 * 64, 1.5 * 64, -700 * 64.0]), np.array([0.5 * 64, 0, 0.0]), 64.0, 2.0, 2.0, 10, np)
    assert y.tolist() == [0, 2, -512]


# -------------------------------------------------------- reference pipeline
def _ref_linear(W, b, x, xb, yb, sx, sw, sy, neg="FALSE", N=8, shift_num=1.0, wb=8):
    """Straightforward numpy version of one WitinLinear (eval, noise 0), W as (out, in)."""
    W = np.asarray(W, np.float64)
    nw = np.clip(R(np.float32(W) * np.float32(sw)), -(2 ** (wb - 1)), 2 ** (wb - 1) - 1)
    bp = np.float32(b) * np.float32(sx) * np.float32(sw) / np.float32(128)
    xs = np.float32(x) * np.float32(sx)
    if neg == "FALSE":
        nx = np.clip(R(xs), 0, 2**xb - 1)
        steps = R(bp)
    elif neg == "PN":
        nx = np.clip(R(xs), -(2**xb - 1), 2**xb - 1)
        steps = R(bp)
    else:
        S = R(min(shift_num, 2**xb / sx) * sx)
        nx = np.clip(R(xs + np.float32(S)), 0, 2**xb - 1)
        comp = S * nw.sum(axis=1) / 128
        steps = R(bp - comp) if xb == 8 else R(R(bp) - comp)
    nb = np.clip(steps, -128 * N, 127 * N) * 128
    g = sx * sw / sy
    out = np.zeros((x.shape[0], W.shape[0]))
    for n in range(x.shape[0]):
        for j in range(W.shape[0]):
            lo_sum = hi_sum = 0.0
            for i in range(W.shape[1]):
                v = nx[n, i]
                lo = math.copysign(abs(v) % 256, v) if xb > 8 else v
                lo_sum += lo * nw[j, i]
                hi_sum += (v - lo) * nw[j, i]
            a = np.clip(R((lo_sum + nb[j]) / g), -(2 ** (yb - 1)), 2 ** (yb - 1) - 1)
            out[n, j] = np.clip(a + R(hi_sum / g), -(2 ** (yb - 1)), 2 ** (yb - 1) - 1)
    return out / sy


def _witin(io_x, io_w, io_y, **kw):
    d = {"io_max_x": io_x, "io_max_weight": io_w, "io_max_y": io_y, "use_auto_scale": True}
    d.update(kw)
    return d


def _sc(bits, io):
    return 2.0 ** (bits - 1) / 2.0 ** math.ceil(math.log2(io))


@pytest.mark.parametrize("neg", ["FALSE", "PN", "Shift"])
@pytest.mark.parametrize("xb,yb", [(8, 8), (10, 10), (12, 9)])
def test_linear_matches_reference(neg, xb, yb):
    rng = np.random.default_rng(xb * 7 + yb + len(neg))
    nin, nout = 13, 5
    W = (rng.standard_normal((nout, nin)) * 0.4).astype(np.float32)
    b = (rng.standard_normal(nout) * 2).astype(np.float32)
    x = (rng.uniform(-0.6, 1.3, (7, nin))).astype(np.float32)
    io = (1.0, 0.7, 3.0)
    attrs = _witin(*io, x_quant_bits=xb, y_quant_bits=yb, handle_neg_in=neg, shift_num=0.5, bias_row_N=4)
    layer = Layer("fc", "Dense", ["in"], {"units": nout}, {"kernel": W.T.copy(), "bias": b}, {"witin": attrs})
    chip = WitinChipLayer(layer, None, np, np.random.default_rng(0))
    sx = _sc(xb if neg == "Shift" else xb + 1, io[0])
    sw, sy = _sc(8, io[1]), _sc(yb, io[2])
    ref = _ref_linear(W, b, x, xb, yb, sx, sw, sy, neg, N=4, shift_num=0.5)
    np.testing.assert_array_equal(chip.forward(x), ref)


def test_linear_fixed_scales_and_overrides():
    rng = np.random.default_rng(3)
    W = (rng.standard_normal((4, 6)) * 0.2).astype(np.float32)
    b = rng.standard_normal(4).astype(np.float32)
    x = rng.uniform(0, 1, (5, 6)).astype(np.float32)
    attrs = {"use_auto_scale": False, "scale_x": 64.0, "scale_weight": 32.0, "scale_y": 8.0}
    layer = Layer("fc", "Dense", ["in"], {"units": 4}, {"kernel": W.T.copy(), "bias": b}, {"witin": attrs})
    chip = WitinChipLayer(layer, None, np, np.random.default_rng(0))
    np.testing.assert_array_equal(chip.forward(x), _ref_linear(W, b, x, 8, 8, 64, 32, 8))
    # user overrides: None keeps the model's value
    params = types.SimpleNamespace(scale_y=16.0, y_quant_bits=10, noise_level=None, x_quant_bits=None)
    chip = WitinChipLayer(layer, params, np, np.random.default_rng(0))
    np.testing.assert_array_equal(chip.forward(x), _ref_linear(W, b, x, 8, 10, 64, 32, 16))


def _ref_conv_npu(nx, nw, stride, dil):
    """Naive cross-correlation: nx (N,H,W,C) already padded, nw (kh,kw,C,O)."""
    N, H, Wd, C = nx.shape
    kh, kw, _, O = nw.shape
    Ho = (H - (kh - 1) * dil - 1) // stride + 1
    Wo = (Wd - (kw - 1) * dil - 1) // stride + 1
    out = np.zeros((N, Ho, Wo, O))
    for n in range(N):
        for i in range(Ho):
            for j in range(Wo):
                for o in range(O):
                    s = 0.0
                    for a in range(kh):
                        for c_ in range(kw):
                            s += nx[n, i * stride + a * dil, j * stride + c_ * dil, :] @ nw[a, c_, :, o]
                    out[n, i, j, o] = s
    return out


def test_conv2d_matches_reference():
    # WitinConv2d with handle_neg_in FALSE: signed (xb-1)-bit input scale, inputs clipped to
    # [-2**(xb-1), 2**(xb-1)-1], computed in one pass (no analog/digital input split)
    rng = np.random.default_rng(5)
    kern = (rng.standard_normal((3, 3, 2, 4)) * 0.3).astype(np.float32)
    b = rng.standard_normal(4).astype(np.float32)
    x = rng.uniform(-1.2, 1.2, (2, 6, 5, 2)).astype(np.float32)
    for xb in (8, 10):
        attrs = _witin(1.0, 0.5, 4.0, x_quant_bits=xb, y_quant_bits=9)
        cfg = {"filters": 4, "kernel_size": [3, 3], "strides": [2, 2], "padding": [[1, 1], [1, 1]], "dilation_rate": [1, 1]}
        layer = Layer("c", "Conv2D", ["in"], cfg, {"kernel": kern, "bias": b}, {"witin": attrs})
        chip = WitinChipLayer(layer, None, np, np.random.default_rng(0))
        sx, sw, sy = _sc(xb, 1.0), _sc(8, 0.5), _sc(9, 4.0)
        half = 2 ** (xb - 1)
        nx = np.clip(R(np.pad(x, ((0, 0), (1, 1), (1, 1), (0, 0))) * sx), -half, half - 1)
        nw = np.clip(R(kern * sw), -128, 127)
        nb = np.clip(R(b * sx * sw / 128), -1024, 1016) * 128
        acc = _ref_conv_npu(nx, nw, 2, 1) + nb
        ref = np.clip(R(acc / (sx * sw / sy)), -256, 255) / sy
        np.testing.assert_array_equal(chip.forward(x), ref)


def test_conv_transpose_matches_reference():
    rng = np.random.default_rng(6)
    kern = (rng.standard_normal((3, 3, 2, 3)) * 0.3).astype(np.float32)  # (kh, kw, cout, cin)
    b = rng.standard_normal(2).astype(np.float32)
    x = rng.uniform(-0.2, 1.2, (2, 3, 4, 3)).astype(np.float32)
    attrs = _witin(1.0, 0.5, 2.0)
    cfg = {"filters": 2, "kernel_size": [3, 3], "strides": [2, 2], "padding": [[1, 1], [1, 1]], "output_padding": [1, 1]}
    layer = Layer("ct", "Conv2DTranspose", ["in"], cfg, {"kernel": kern, "bias": b}, {"witin": attrs})
    y = WitinChipLayer(layer, None, np, np.random.default_rng(0)).forward(x)
    sx, sw, sy = _sc(9, 1.0), _sc(8, 0.5), _sc(8, 2.0)
    nx = np.clip(R(x * sx), 0, 255)
    nw = np.clip(R(kern * sw), -128, 127)
    nb = np.clip(R(b * sx * sw / 128), -1024, 1016) * 128
    N, H, W, _ = x.shape
    full = np.zeros((N, (H - 1) * 2 + 3 + 1, (W - 1) * 2 + 3 + 1, 2))  # +1: output_padding
    for n in range(N):
        for i in range(H):
            for j in range(W):
                for a in range(3):
                    for c_ in range(3):
                        full[n, 2 * i + a, 2 * j + c_] += nw[a, c_] @ nx[n, i, j]
    acc = full[:, 1 : 1 + 2 * H, 1 : 1 + 2 * W] + nb  # torch: (H-1)*2 - 2*1 + 3 + 1 = 2H
    ref = np.clip(R(acc / (sx * sw / sy)), -128, 127) / sy
    assert y.shape == (2, 6, 8, 2)
    np.testing.assert_array_equal(y, ref)


# ------------------------------------- witin_nn 0.1.3 rules for conv PN / Shift and float32 order
def _fixed(sx, sw, sy, **kw):
    d = {"use_auto_scale": False, "scale_x": float(sx), "scale_weight": float(sw), "scale_y": float(sy)}
    d.update(kw)
    return d


def _conv1x1(kind, w, attrs, use_bias=False):
    """A 1x1 Conv2D (kernel (1,1,cin,cout)) / Conv2DTranspose (kernel (1,1,cout,cin)) / Dense (kernel (in,out))."""
    w = np.asarray(w, np.float32)
    if kind == "Dense":
        return Layer("d", "Dense", ["in"], {"units": w.shape[1], "use_bias": use_bias}, {"kernel": w}, {"witin": attrs})
    cfg = {"filters": w.shape[1], "kernel_size": [1, 1], "strides": [1, 1], "padding": "valid", "use_bias": use_bias}
    kern = w[None, None] if kind == "Conv2D" else w.T[None, None]
    return Layer("c", kind, ["in"], cfg, {"kernel": kern}, {"witin": attrs})


def _run(layer, x):
    x = np.asarray(x, np.float32)
    if layer.type != "Dense":
        x = x.reshape(x.shape[0], 1, 1, -1)
    return WitinChipLayer(layer, None, np, np.random.default_rng(0)).forward(x).reshape(x.shape[0], -1)


@pytest.mark.parametrize("kind", ["Conv2D", "Conv2DTranspose"])
def test_conv_pn_quantizes_negated_weights_separately(kind):
    # Conv PN runs two passes: positive inputs with NPU_w = clip(round(w*sw)), magnitudes of negative inputs
    # with clip(round(-w*sw)) -- quantized on its own, so it can reach -2**(wb-1) where NPU_w saturated at
    # 2**(wb-1)-1. wb = 6, sw = 32: w*sw = 45.2 -> NPU_w = 31 but the negated copy is -32 (not -31).
    attrs = _fixed(16, 32, 16, handle_neg_in="PN", weight_quant_bits=6)  # sx*sw/sy = 32
    y = _run(_conv1x1(kind, [[45.2 / 32]], attrs), [[1.25], [-1.25]])  # NPU_x = +-20
    # +20 * 31 = 620 -> 620/32 = 19.375 -> 19;  20 * -32 = -640 -> -20 (with clip(-NPU_w) = -31: -19)
    assert (y[:, 0] * 16).tolist() == [19, -20]
    # w*sw = -45.2: NPU_w = -32, negated copy clip(45.2) = 31
    y = _run(_conv1x1(kind, [[-45.2 / 32]], attrs), [[1.25], [-1.25]])
    assert (y[:, 0] * 16).tolist() == [-20, 19]


def test_linear_pn_uses_unclipped_negated_weights():
    # WitinLinear PN concatenates [NPU_w; -NPU_w] without clipping again: NPU_w = -32 (wb = 6) gives +32
    attrs = _fixed(16, 32, 16, handle_neg_in="PN", weight_quant_bits=6)
    y = _run(_conv1x1("Dense", [[-45.2 / 32]], attrs), [[1.25], [-1.25]])
    assert (y[:, 0] * 16).tolist() == [-20, 20]  # 20 * 32 = 640 -> 20 (a conv gives 19, see above)


def test_conv_shift_offset_clamped_to_128():
    # Shift offset: round(clamp(shift_num * scale_x, 0, limit)); limit = 2**xb for WitinLinear but 128 for
    # WitinConv2d whatever x_quant_bits is
    assert quant.shift_offset(2.0, 128.0, 8) == 256
    assert quant.shift_offset(2.0, 128.0, 8, quant.CONV_SHIFT_LIMIT) == 128
    assert quant.shift_offset(0.3, 512.0, 10) == 154  # 153.6
    assert quant.shift_offset(0.3, 512.0, 10, quant.CONV_SHIFT_LIMIT) == 128
    assert quant.shift_offset(0.1, 128.0, 8, quant.CONV_SHIFT_LIMIT) == 13  # 12.8
    # a 10-bit conv with shift_num 0.3, scale_x 512: NPU_x = clip(round(x*512 + 128), 0, 1023).
    # w = 0.5, sw = 128 -> NPU_w = 64; bias steps = round((0 - 128*64)/128) = -64.
    # x = -0.27: round(-138.24 + 128) = -10 -> 0; acc = 0*64 - 64*128 = -8192; / (512*128) * 128 = -16
    attrs = _fixed(512, 128, 128, handle_neg_in="Shift", x_quant_bits=10, shift_num=0.3)
    y = _run(_conv1x1("Conv2D", [[0.5]], attrs), [[-0.27], [0.5]])
    assert (y[:, 0] * 128).tolist() == [-16, 32]  # x = 0.5: (256+128)*64 - 8192 = 16384 -> 32
    # the same Dense layer uses offset 154: round(15.76) = 16; bias round((-154*64)/128) = -77 (x = 10 bits:
    # the bias is rounded before the compensation is subtracted, -9856); acc = 1024 - 9856 = -8832 -> -17.25
    y = _run(_conv1x1("Dense", [[0.5]], attrs), [[-0.27]])
    assert (y[:, 0] * 128).tolist() == [-17]


def test_output_is_divided_by_scale_product_then_multiplied_in_float32():
    # NPU_y = round(clip(f32(f32(acc / (sx*sw)) * sy))), not round(acc / g_value):
    # -136000 / 3200 = -42.5, * 3 = -127.5 -> half to even -128; acc / g with g = 1066.67 is -127.49999...
    assert quant.quantize_output(np.array([-136000.0]), 16.0, 200.0, 3.0, 9, np).tolist() == [-128]
    assert R(-136000.0 / quant.g_value(16, 200, 3)) == -127


def test_conv_pn_passes_divided_separately_in_float32():
    # witin_nn divides each PN pass by sx*sw in float32 and adds the quotients:
    # f32(1120/800) + f32(-1000/800) = 1.3999999762 - 1.25 -> * 10 = 1.4999998 -> 1 (one pass: 120/80 = 1.5 -> 2)
    assert quant.quantize_output((np.array([1120.0]), np.array([-1000.0])), 16.0, 50.0, 10.0, 8, np).tolist() == [1]
    assert quant.quantize_output(np.array([120.0]), 16.0, 50.0, 10.0, 8, np).tolist() == [2]
    # through a 1x1 conv: x = (1.0, -0.5) at sx = 16 -> NPU_x = (16, -8); w = (1.4, 2.5) at sw = 50 -> (70, 125);
    # positive pass 16*70 = 1120, negative pass 8*(-125) = -1000
    attrs = _fixed(16, 50, 10, handle_neg_in="PN")
    y = _run(_conv1x1("Conv2D", [[1.4], [2.5]], attrs), [[1.0, -0.5]])
    assert (y[:, 0] * 10).round().tolist() == [1]


def test_bias_uses_one_float32_product_with_scale_product():
    # b * (sx*sw) in float32 (the scale product is exact), not (b*sx)*sw:
    # f32(-76.6592) * 5000 = -383296.0 -> /128 = -2994.5 -> -2994;  (b*100)*50 = -383296.03125 -> -2995
    b = np.array([-76.6592], np.float32)
    assert (quant.quantize_bias(b, 100.0, 50.0, 24, np) / 128).tolist() == [-2994]
    assert R((b * np.float32(100)) * np.float32(50) / 128).tolist() == [-2995]


def test_shift_compensation_subtracted_in_float32():
    # 8-bit inputs: steps = round(f32(f32(b*sx*sw) - shift*sum(NPU_w)) / 128); the float32 difference drops
    # the fraction of b*sx*sw when the compensation is large: (64 + 2**-17) - 2**19 -> -524224 -> -4095.5 -> -4096
    b = np.array([np.nextafter(np.float32(64), np.float32(100)) / 16384], np.float32)
    steps, _ = quant.analog_bias_units(b, 128.0, 128.0, 32, 8, np, shift_comp=np.array([2.0**19]))
    assert steps.tolist() == [-4096]  # float64 arithmetic would give round(-4095.49999994) = -4095


def test_digital_part_divided_by_rounded_g_value():
    # x_quant_bits > 8 (WitinLinear): the digital part is divided by round(g_value) (half to even), in float32
    assert quant.digital_divisor(64, 32, 10) == 205  # 204.8
    assert quant.digital_divisor(100, 50, 16) == 312  # 312.5
    assert quant.digital_divisor(7, 1, 2) == 4 and quant.digital_divisor(9, 1, 2) == 4
    assert quant.combine_outputs(np.array([0.0]), np.array([20602.0]), 64.0, 32.0, 10.0, 10, np).tolist() == [100]
    # a Dense layer, x = 10 bits, sx = 64: x = 4.0 -> NPU_x = 256 (all digital); w = 14/32 -> NPU_w = 14;
    # digital acc = 3584; 3584 / 205 = 17.48 -> 17 (3584 / 204.8 = 17.5 -> 18)
    attrs = _fixed(64, 32, 10, x_quant_bits=10)
    y = _run(_conv1x1("Dense", [[14 / 32]], attrs), [[4.0]])
    assert (y[:, 0] * 10).round().tolist() == [17]


def test_gru_cell_matches_reference():
    rng = np.random.default_rng(7)
    nin, H = 5, 3
    w = {
        "weight_ih": (rng.standard_normal((nin, 3 * H)) * 0.4).astype(np.float32),
        "weight_hh": (rng.standard_normal((H, 3 * H)) * 0.4).astype(np.float32),
        "bias_ih": rng.standard_normal(3 * H).astype(np.float32) * 0.3,
        "bias_hh": rng.standard_normal(3 * H).astype(np.float32) * 0.3,
    }
    attrs = {"use_auto_scale": True, "handle_neg_in": "PN",
             "ih": {"io_max_x": 1.0, "io_max_weight": 1.0, "io_max_y": 2.0},
             "hh": {"io_max_x": 1.0, "io_max_weight": 1.0, "io_max_y": 4.0}}
    layer = Layer("gru", "GRUCell", ["x", "h"], {"units": H, "hidden_input": True}, w, {"witin": attrs})
    chip = WitinChipLayer(layer, None, np, np.random.default_rng(0))
    x = rng.uniform(-1, 1, (4, nin)).astype(np.float32)
    h = rng.uniform(-1, 1, (4, H)).astype(np.float32)
    gi = _ref_linear(w["weight_ih"].T, w["bias_ih"], x, 8, 8, 256, 128, _sc(8, 2.0), "PN")
    gh = _ref_linear(w["weight_hh"].T, w["bias_hh"], h, 8, 8, 256, 128, _sc(8, 4.0), "PN")
    sig = lambda v: 1 / (1 + np.exp(-v))
    r = sig(gi[:, :H] + gh[:, :H])
    z = sig(gi[:, H : 2 * H] + gh[:, H : 2 * H])
    n = np.tanh(gi[:, 2 * H :] + r * gh[:, 2 * H :])
    np.testing.assert_allclose(chip.forward(x, h), (1 - z) * n + z * h, rtol=0, atol=1e-12)


# --------------------------------------------------------------------- noise
@pytest.mark.parametrize("level", range(1, 10))
def test_noise_std_matches_model(level):
    rng = np.random.default_rng(level)
    nin, nout = 32, 6
    nw = rng.integers(-128, 128, (nin, nout)).astype(np.float32)
    sw = 128.0
    W = nw / sw
    xq = rng.integers(0, 256, nin).astype(np.float32)
    x = np.repeat((xq / 256.0)[None], 3000, axis=0)  # io_max_x = 1 -> scale_x 256
    b = np.full(nout, 40 * 128 / (256 * 128), np.float32)  # 40 bias steps
    # g = 128: io_max_y chosen so that scale_y = scale_x * scale_w / 128
    g = 128.0
    sy = 256 * 128.0 / g
    attrs = _witin(1.0, 1.0, 2**11 / sy, y_quant_bits=12, noise_level=level, bias_row_N=8)
    layer = Layer("fc", "Dense", ["in"], {"units": nout}, {"kernel": W, "bias": b}, {"witin": attrs})
    # per-element mode: every row of the batch is an independent sample of the per-output marginal
    chip = WitinChipLayer(layer, {"noise_mode": "output"}, np, np.random.default_rng(level + 100))
    out = chip.npu(x)
    k, bb = quant.noise_coefficients(level)
    acc_var = (xq**2) @ ((k * np.abs(nw) + bb) ** 2) + 8 * (128 * (k * 40 / 8 + bb)) ** 2
    var = acc_var / g**2 + 1 / 12  # in output steps, plus the rounding
    clean = (xq @ nw + 40 * 128).astype(np.float64) / g
    assert np.all(np.abs(clean) + 5 * np.sqrt(var) < 2047), "test setup must not saturate"
    ratio = out.std(axis=0) / np.sqrt(var)
    # 3000 samples: the std estimate has a relative standard error 1/sqrt(2*3000) = 1.3 %; 0.06 is 4.6 of them
    # (largest of the 54 seeded deviations: 3.6 %), where 0.15 would have passed a model off by 15 %
    assert np.all(np.abs(ratio - 1) < 0.06), ratio
    assert np.all(np.abs(out.mean(axis=0) - clean) < 4 * np.sqrt(var / out.shape[0]) + 0.5)


def test_noise_modes_agree_in_distribution():
    rng = np.random.default_rng(11)
    nw = rng.integers(-128, 128, (16, 3)).astype(np.float32)
    xq = rng.integers(0, 256, 16).astype(np.float32)
    x = np.repeat((xq / 256.0)[None], 1, axis=0)
    attrs = _witin(1.0, 1.0, 2**11 / (256 * 128.0), y_quant_bits=12, noise_level=6)
    layer = Layer("fc", "Dense", ["in"], {"units": 3, "use_bias": False}, {"kernel": nw / 128}, {"witin": attrs})
    out_mode = WitinChipLayer(layer, {"noise_mode": "output"}, np, np.random.default_rng(1))
    w_mode = WitinChipLayer(layer, None, np, np.random.default_rng(2))  # default: weight
    a = np.concatenate([out_mode.npu(x) for _ in range(1500)])
    bw = np.concatenate([w_mode.npu(x) for _ in range(1500)])
    np.testing.assert_allclose(a.std(axis=0), bw.std(axis=0), rtol=0.12)
    np.testing.assert_allclose(a.mean(axis=0), bw.mean(axis=0), atol=4 * a.std(axis=0).max() / math.sqrt(1500) + 1)


def test_default_noise_is_shared_across_batch_and_windows():
    """witin_nn draws one weight perturbation per forward call: identical inputs in one batch (and identical
    windows of a convolution) get identical noisy outputs; a new call draws new noise."""
    rng = np.random.default_rng(5)
    k = rng.uniform(-1, 1, (3, 3, 1, 2)).astype(np.float32)
    attrs = _witin(1.0, 1.0, 4.0, y_quant_bits=12, noise_level=7)
    layer = Layer("c", "Conv2D", ["in"], {"filters": 2, "kernel_size": [3, 3], "padding": "valid", "use_bias": False},
                  {"kernel": k}, {"witin": attrs})
    chip = WitinChipLayer(layer, None, np, np.random.default_rng(0))
    x = np.tile(rng.uniform(0, 1, (1, 3, 3, 1)).astype(np.float32), (1, 3, 3, 1))  # 9x9 periodic image
    x = np.repeat(x, 4, axis=0)
    y1, y2 = chip.npu(x), chip.npu(x)
    assert np.all(y1 == y1[:1]), "batch rows must share one perturbation"
    assert np.all(y1[:, ::3, ::3] == y1[:1, :1, :1]), "equal windows must share one perturbation"
    assert not np.array_equal(y1, y2), "each call draws new noise"
    per_elem = WitinChipLayer(layer, {"noise_mode": "output"}, np, np.random.default_rng(0)).npu(x)
    assert not np.all(per_elem == per_elem[:1])


# ------------------------------------------------------------ torch import
# torch is an optional extra: without it only the tests marked needs_torch skip (the chip tests above need no
# torch). A torch that is installed but fails to import is an error, not a skip.
try:
    import torch
except ModuleNotFoundError as exc:
    if exc.name != "torch":
        raise
    torch = None

needs_torch = pytest.mark.skipif(torch is None, reason="torch is not installed (extra 'torch')")
nn = torch.nn if torch is not None else types.SimpleNamespace(Module=object)


class _SmallCNN(nn.Module):
    def __init__(self):
        super().__init__()
        self.conv1 = nn.Conv2d(1, 6, 3, padding=1)
        self.bn = nn.BatchNorm2d(6)
        self.dw = nn.Conv2d(6, 6, 3, padding=1, groups=6)
        self.pool = nn.MaxPool2d(2)
        self.conv2 = nn.Conv2d(6, 8, 3, stride=1, padding=1, groups=2)
        self.up = nn.ConvTranspose2d(8, 4, 2, stride=2)
        self.gap = nn.AdaptiveAvgPool2d(1)
        self.fc = nn.Linear(4 * 8 * 8 + 8, 10)
        self.drop = nn.Dropout(0.2)

    def forward(self, x):
        y = torch.relu(self.bn(self.conv1(x)))
        y = self.dw(y) + y
        y = torch.sigmoid(self.conv2(self.pool(y)))
        g = torch.flatten(self.gap(y), 1)
        u = torch.tanh(self.up(y))
        u = u.view(u.size(0), -1)
        return self.fc(self.drop(torch.cat([u, g], dim=1)))


@needs_torch
def test_from_torch_small_cnn_matches_torch():
    from simulator.io.torch_import import from_torch

    torch.manual_seed(0)
    model = _SmallCNN().eval()
    with torch.no_grad():
        model.bn.running_mean.uniform_(-0.3, 0.3)
        model.bn.running_var.uniform_(0.5, 2.0)
    x = torch.rand(4, 1, 8, 8)
    net = from_torch(model, x)
    assert net.input_layout == "NCHW" and net.input_shape == (1, 8, 8)
    types_ = [l.type for l in net.layers]
    assert "DepthwiseConv2D" in types_ and "Conv2DTranspose" in types_ and "Flatten" in types_
    from simulator.simulation import Simulation

    y = Simulation(net, {}, seed=0).ideal_forward(x.numpy())
    np.testing.assert_allclose(y, model(x).detach().numpy(), rtol=1e-5, atol=1e-5)


@needs_torch
def test_from_torch_unsupported_layer_names_layer_and_type():
    from simulator.io.torch_import import from_torch

    model = nn.Sequential(nn.Linear(4, 8), nn.Sequential(nn.ReLU(), nn.LayerNorm(8)))
    with pytest.raises(ModelError) as exc:
        from_torch(model, torch.rand(2, 4))
    msg = str(exc.value)
    assert "'1.1'" in msg and "LayerNorm" in msg and "\n" not in msg


class _Cfg:
    """Stand-in for witin_nn's WitinLayerConfig (attribute bag)."""

    def __init__(self, **kw):
        self.__dict__.update(dict(x_quant_bits=8, y_quant_bits=8, weight_quant_bits=8, use_auto_scale=True,
                                  bias_row_N=8, handle_neg_in="HandleNegInType.PN", shift_num=1.0, w_clip=None,
                                  noise_level=0, scale_x=1, scale_y=1, scale_weight=1, bias_d=torch.tensor(0.0)))
        self.__dict__.update(kw)


class _AutoScale(nn.Module):
    def __init__(self, v):
        super().__init__()
        self.io_max = nn.Parameter(torch.tensor(float(v)), requires_grad=False)


def _witinize(mod, cls_name, **cfg):
    mod.__class__ = type(cls_name, (type(mod),), {})
    mod.layer_config = _Cfg(**cfg)
    mod.autoscale_x_obj, mod.autoscale_weight_obj, mod.autoscale_y_obj = _AutoScale(1.2), _AutoScale(0.4), _AutoScale(3.0)
    return mod


@needs_torch
def test_from_torch_reads_witin_attrs_and_runs_on_chip():
    from simulator.io.torch_import import from_torch

    torch.manual_seed(1)
    conv = _witinize(nn.Conv2d(1, 3, 3, padding=1), "WitinConv2d", x_quant_bits=10)
    fc = _witinize(nn.Linear(3 * 4 * 4, 5), "WitinLinear", noise_level=3)
    model = nn.Sequential(conv, nn.ReLU(), nn.MaxPool2d(2), nn.Flatten(), fc).eval()
    net = from_torch(model, torch.rand(2, 1, 8, 8))
    a = net["0"].attrs["witin"]
    assert a["x_quant_bits"] == 10 and a["handle_neg_in"] == "PN" and a["io_max_x"] == pytest.approx(1.2)
    assert a["io_max_weight"] == pytest.approx(0.4) and a["io_max_y"] == pytest.approx(3.0)
    assert net["4"].attrs["witin"]["noise_level"] == 3
    chip = WitinChipLayer(net["4"], {"noise_level": 0}, np, np.random.default_rng(0))
    # io_max 1.2 -> 2**8 / 2; 0.4 -> 2**7 / 0.5; 3.0 -> 2**7 / 4
    assert chip.scales["scale_x"] == 128 and chip.scales["scale_weight"] == 256 and chip.scales["scale_y"] == 32
