"""Fast paths give the same results as the straightforward computations.

Deterministic paths are compared exactly (bit for bit), random ones in
distribution; float32 (precision "auto" with <= 16-bit ADCs) is compared with
float64 on the digits model within one ADC step.
"""
from __future__ import annotations

import numpy as np
import pytest

import simulator
from simulator import ops
from simulator.quantization.uniform import UniformQuantizer
from simulator.cores.neural import NeuralCore
from simulator.cores.numeric import ArrayOptions, InputSlicing, NumericCore
from simulator.io.digits import load_digits_split
from simulator.simulation import Simulation


@pytest.fixture(scope="module")
def digits():
    net = simulator.load_model("digits_cnn")
    x, _ = load_digits_split("test")
    return net, x[:120]


def _windows_loop(x, kh, kw, sh, sw, dh, dw):
    """Reference im2col: one strided slice per kernel offset."""
    N, H, W, C = x.shape
    Ho = ops.conv_output_size(H, kh, sh, dh)
    Wo = ops.conv_output_size(W, kw, sw, dw)
    out = np.empty((N, Ho, Wo, kh, kw, C), dtype=x.dtype)
    for i in range(kh):
        for j in range(kw):
            out[:, :, :, i, j, :] = x[:, i * dh : i * dh + sh * (Ho - 1) + 1 : sh, j * dw : j * dw + sw * (Wo - 1) + 1 : sw, :]
    return out


@pytest.mark.parametrize("kh,kw,sh,sw,dh,dw", [(3, 3, 1, 1, 1, 1), (3, 3, 2, 2, 1, 1), (1, 1, 2, 2, 1, 1),
                                                (5, 3, 1, 2, 2, 1), (3, 3, 1, 1, 2, 2), (2, 4, 3, 1, 1, 1)])
def test_windows_strided_view_equals_slice_loop(kh, kw, sh, sw, dh, dw):
    x = np.random.default_rng(0).standard_normal((3, 11, 12, 5)).astype(np.float32)
    np.testing.assert_array_equal(ops.windows(x, kh, kw, sh, sw, dh, dw, np), _windows_loop(x, kh, kw, sh, sw, dh, dw))
    xt = x.transpose(0, 2, 1, 3)  # not contiguous: the loop path
    np.testing.assert_array_equal(ops.windows(xt, kh, kw, sh, sw, dh, dw, np), _windows_loop(xt, kh, kw, sh, sw, dh, dw))


@pytest.mark.parametrize("q", [UniformQuantizer(8, -3.1, 2.7), UniformQuantizer(8, 0.0, 5.3),
                               UniformQuantizer(5, 0.2, 1.3), UniformQuantizer(4, -1.0, 1.0)])
@pytest.mark.parametrize("dtype", [np.float32, np.float64])
def test_quantizer_in_place_equals_formula(q, dtype):
    y = (np.random.default_rng(1).standard_normal(5000) * 3).astype(dtype)
    kmin, kmax = q.k_range
    if q.signed:
        ref = np.clip(np.rint(y / q.step), kmin, kmax) * q.step
    else:
        ref = np.clip(np.rint((y - q.lo) / q.step), kmin, kmax) * q.step + q.lo
    got = q(y, np)
    assert got.dtype == ref.dtype
    np.testing.assert_array_equal(got, ref)
    buf = y.copy()
    assert q(buf, np, out=buf) is buf
    np.testing.assert_array_equal(buf, ref)


@pytest.mark.parametrize("signed,n_bits", [(True, 7), (False, 8), (False, 12)])
def test_bit_planes_equal_floor_mod(signed, n_bits):
    core = NumericCore(np.zeros((9, 4)), None, None, options=ArrayOptions(Gmin=0.0), devices=None, xp=np, rng=0,
                       dtype=np.float32)  # one array of 9 rows (bit planes do not depend on its conductances)
    L = 2**n_bits - 1
    rng = np.random.default_rng(2)
    x = rng.integers(-L if signed else 0, L + 1, size=(50, 9)).astype(np.float32)
    sl = InputSlicing(True, n_bits, signed, float(L), True)
    planes = core.bit_planes(x, sl)
    mag, sign = np.abs(x), np.sign(x)
    for k in range(n_bits):
        ref = np.floor(mag / 2**k) % 2
        np.testing.assert_array_equal(planes[k], ref * sign if signed else ref)


CONFIGS = {
    "dac_adc": {"weight_bits": 8, "adc_bits": 8, "dac_bits": 8},
    "offset": {"style": "OFFSET", "weight_bits": 8, "adc_bits": 8, "dac_bits": 8, "On_off_ratio": 100},
    "slices": {"weight_bits": 9, "Nslices": 4, "adc_bits": 8, "dac_bits": 8, "NrowsMax": 20},
    "bitslice_per_bit": {"weight_bits": 8, "adc_bits": 8, "dac_bits": 8, "input_bitslicing": True, "ADC_per_ibit": True},
    "bitslice": {"weight_bits": 8, "adc_bits": 10, "dac_bits": 6, "input_bitslicing": True},
    "analog_bias": {"weight_bits": 8, "adc_bits": 8, "dac_bits": 8, "digital_bias": False},
}


@pytest.mark.parametrize("name", sorted(CONFIGS))
def test_prequantized_conv_equals_quantizing_windows(digits, name, monkeypatch):
    """Encoding activations before im2col == encoding every window copy (bit for bit)."""
    net, x = digits
    fast = Simulation(net, dict(CONFIGS[name], precision="float64"), seed=3).forward(x)
    monkeypatch.setattr(NeuralCore, "can_prequantize", property(lambda self: False))
    slow = Simulation(net, dict(CONFIGS[name], precision="float64"), seed=3).forward(x)
    np.testing.assert_array_equal(fast, slow)


class _InputRecorder:
    """Observer (NeuralCore.set_observer) keeping a layer's raw inputs."""

    def __init__(self, store, name):
        self.store, self.name = store, name

    def layer(self, X, Y):
        self.store.setdefault(self.name, []).append(np.array(X))

    def array(self, s, columns=None):
        return None


class _CodeRecorder:
    """Observer keeping the ADC codes of every array of a layer."""

    def __init__(self, store, tag):
        self.store, self.tag = store, tag

    def layer(self, X, Y):
        pass

    def array(self, s, columns=None):
        return self

    def adc(self, I, q, input_bit=None):
        self.store.setdefault(self.tag, []).append(
            np.rint(np.asarray(q(np.array(I), np), dtype=np.float64) / q.step).ravel())

    def current_limit(self, I, limit):
        pass


def test_prequantize_off_when_zero_is_not_a_dac_level(digits):
    net, _ = digits
    sim = Simulation(net, {"weight_bits": 8, "adc_bits": 8, "dac_bits": 8,
                           "layers": {"conv2": {"dac_range": [0.5, 5.0]}}}, seed=0)
    assert sim.cores["conv1"].can_prequantize
    assert not sim.cores["conv2"].can_prequantize  # 0 maps to the level 0.5
    with sim.observe(layers=["conv1"]):
        assert not sim.cores["conv1"].can_prequantize  # the observer wants raw inputs
    assert sim.cores["conv1"].can_prequantize  # on again once the block ends


def test_float32_matches_float64_within_one_adc_step():
    """precision 'auto' picks float32 for 8-bit ADCs.

    Layer by layer, on identical inputs, the ADC codes of float32 and float64
    differ by at most one LSB (and rarely at all); end to end the accuracy is
    the same (a one-LSB flip at a coarse ADC can change a few borderline images).
    """
    net = simulator.load_model("digits_cnn")
    x, labels = load_digits_split("test")
    cfg = {"weight_bits": 8, "adc_bits": 8, "dac_bits": 8, "adc_range_option": "max", "NrowsMax": 144}
    s32 = Simulation(net, cfg, seed=0)
    s64 = Simulation(net, dict(cfg, precision="float64"), seed=0)
    assert s32.dtype == np.float32 and s64.dtype == np.float64
    y32, y64 = s32.forward(x), s64.forward(x)
    assert (y32.argmax(1) == y64.argmax(1)).mean() >= 0.97
    assert abs((y32.argmax(1) == labels).mean() - (y64.argmax(1) == labels).mean()) <= 0.01

    inputs = {}
    for name, core in s64.cores.items():
        core.set_observer(_InputRecorder(inputs, name))
    s64.forward(x[:100])
    for name, core in s64.cores.items():
        core.set_observer(None)
    assert set(inputs) == set(s64.cores)
    for name, X in inputs.items():
        X = np.concatenate(X)
        codes = {}
        for tag, sim in (("32", s32), ("64", s64)):
            sim.cores[name].set_observer(_CodeRecorder(codes, tag))
            sim.cores[name](X.astype(sim.dtype))
            sim.cores[name].set_observer(None)
        c32, c64 = np.concatenate(codes["32"]), np.concatenate(codes["64"])
        assert c32.shape == c64.shape
        assert np.max(np.abs(c32 - c64)) <= 1, name
        assert np.mean(c32 != c64) < 0.01, name


def test_output_noise_equals_exact_noise_in_distribution(digits):
    """Read noise drawn at the output (fast) vs per conductance (exact): same mean and spread of outputs."""
    net, x = digits
    x = x[:20]
    cfg = {"weight_bits": 8, "adc_bits": 0, "dac_bits": 8, "noise_model": "alpha", "alpha_noise": 0.05,
           "precision": "float64"}
    fast = np.stack([Simulation(net, dict(cfg, read_noise_mode="output"), seed=s).forward(x) for s in range(30)])
    exact = np.stack([Simulation(net, dict(cfg, read_noise_mode="exact"), seed=s).forward(x) for s in range(30)])
    n = len(fast)
    se_diff = np.sqrt(fast.var(0) / n + exact.var(0) / n)
    # Spread measured on seeds 100..249 (2000 draws of 30 seeds per mode): the mean statistic 0.82 +- 0.045
    # (largest 0.98), sf / se 1.002 +- 0.015 (0.954..1.046); the bounds are about 6 and 5 standard deviations
    assert np.mean(np.abs(fast.mean(0) - exact.mean(0)) / se_diff) < 1.1  # ~0.8 for equal means
    sf, se = fast.std(0).mean(), exact.std(0).mean()
    assert sf > 0 and abs(sf / se - 1) < 0.075


@pytest.mark.parametrize("extra", [
    {},
    {"noise_model": "alpha", "alpha_noise": 0.05},
    {"noise_model": "alpha", "alpha_noise": 0.05, "style": "OFFSET", "digital_offset": True},
    {"Nslices": 2, "noise_model": "alpha", "alpha_noise": 0.02},
], ids=["adc", "read-noise", "offset", "slices"])
def test_in_place_adc_and_gain_equal_general_path(digits, extra):
    """The fast MVM path (ADC and slice gain in place) gives the numbers of the general path.

    An observer (the public ``observe`` API) routes every array through the
    general path (fresh arrays for the ADC and the gains); read noise is keyed,
    so the two runs see the same draws and must agree bit for bit.
    """
    net, x = digits
    x = x[:16]
    cfg = {"weight_bits": 8, "dac_bits": 8, "adc_bits": 8, "precision": "float32", **extra}
    sim = Simulation(net, cfg, seed=3)
    fast = sim.forward(x, image_offset=0)
    with sim.observe(samples=0):
        general = sim.forward(x, image_offset=0)
    np.testing.assert_array_equal(fast, general)
    assert not np.array_equal(fast, Simulation(net, {**cfg, "adc_bits": 0}, seed=3).forward(x, image_offset=0))


@pytest.mark.parametrize("pads,value", [(((1, 1), (1, 1)), 0.0), (((0, 2), (3, 0)), -np.inf), (((2, 0), (0, 1)), 0.0),
                                        (((0, 0), (1, 0)), 5.0), (((0, 0), (0, 0)), 0.0)])
def test_pad_nhwc_equals_numpy_pad(pads, value):
    x = np.random.default_rng(0).standard_normal((2, 5, 4, 3)).astype(np.float32)
    ref = np.pad(x, ((0, 0), pads[0], pads[1], (0, 0)), mode="constant", constant_values=value)
    out = ops.pad_nhwc(x, pads, np, value)
    assert out.dtype == ref.dtype
    np.testing.assert_array_equal(out, ref)


def _integer_array(rng, rows=300, cols=40, Gmin=0.01, off_grid=0.0, input_grid=None):
    """A BALANCED array on 8-bit weight codes (optionally moved off its levels) and its codes."""
    codes = rng.integers(-127, 128, (rows, cols))
    v_pos, v_neg = np.maximum(codes, 0) / 127, np.maximum(-codes, 0) / 127
    v_pos = np.clip(v_pos + off_grid * rng.standard_normal(v_pos.shape), 0, 1)
    core = NumericCore(v_pos, v_neg, None, options=ArrayOptions(Gmin=Gmin), devices=None, xp=np, rng=0,
                       dtype=np.float32, levels=127, input_grid=input_grid)
    return core, codes


@pytest.mark.parametrize("kmin,kmax", [(-127, 127), (0, 255)], ids=["signed", "unsigned"])
def test_integer_codes_multiply_exactly_in_int8(kmin, kmax):
    """Integer input codes times integer weight codes: the int8 product is the exact one (float32 rounding).

    Reference: the integer product k @ codes in int64, times the two units.
    The float32 product of the voltages approximates it; the int8 route must be
    at least as close (it is exact up to one float32 rounding). Unsigned 8-bit
    codes (a DAC over [0, hi]) are shifted into int8 and the shift added back.
    """
    rng = np.random.default_rng(0)
    core, codes = _integer_array(rng)
    step, x_scale = 8 / kmax, 8.0  # a DAC over [-8, 8] or [0, 8]: x = k * step / x_scale
    unit = step / x_scale
    k = rng.integers(kmin, kmax + 1, (500, codes.shape[0]))
    x = (k.astype(np.float32) * np.float32(step)) / np.float32(x_scale)
    exact = (k @ codes) * unit * (0.99 / 127)
    floats = core.mvm(x, InputSlicing())  # no grid declared: the float32 product
    ints = _integer_array(np.random.default_rng(0), input_grid=(unit, kmin, kmax))[0].mvm(x, InputSlicing())
    scale = np.abs(exact).max()
    assert np.abs(ints - exact).max() / scale < 2e-7  # one float32 rounding of the exact value
    assert np.abs(ints - exact).max() <= np.abs(floats - exact).max()
    assert np.abs(floats - exact).max() / scale < 2e-6  # the two agree to float rounding
    # planes moved off their levels (as a programming error does): the float product, unchanged
    moved, _ = _integer_array(np.random.default_rng(0), off_grid=1e-3)
    reference = moved.mvm(x, InputSlicing())
    moved_grid, _ = _integer_array(np.random.default_rng(0), off_grid=1e-3, input_grid=(unit, kmin, kmax))
    np.testing.assert_array_equal(moved_grid.mvm(x, InputSlicing()), reference)


@pytest.mark.parametrize("extra", [
    {},
    {"dac_range": [-4.0, 4.0]},
    {"noise_model": "alpha", "alpha_noise": 0.05},
    {"noise_model": "alpha", "alpha_noise": 0.05, "dac_range": [-4.0, 4.0], "NrowsMax": 40},
    {"digital_bias": False, "noise_model": "alpha", "alpha_noise": 0.05},
    {"noise_model": "alpha", "alpha_noise": 0.05, "proportional_noise": True},
], ids=["unsigned", "signed", "read-noise", "signed-partitions", "analog-bias", "proportional-noise"])
def test_dac_codes_through_im2col_equal_voltages(digits, extra):
    """int8 DAC codes before im2col (the common float32 path) give the outputs of voltages, bit for bit.

    The digits CNN's DAC ranges are unsigned (256 codes, stored shifted by 128,
    so a padded window holds -128 for 0 V); ``[-4, 4]`` is signed. With an
    observer (public ``observe``) every layer takes voltages and turns them into
    codes inside each array: the same codes, products and keyed read noise.
    """
    net, x = digits
    x = x[:16]
    cfg = {"weight_bits": 8, "dac_bits": 8, "adc_bits": 8, "precision": "float32", **extra}
    sim = Simulation(net, cfg, seed=3)
    assert all(core.takes_codes for core in sim.cores.values())
    codes = sim.forward(x, image_offset=0)
    with sim.observe(samples=0):
        assert not any(core.takes_codes for core in sim.cores.values())
        voltages = sim.forward(x, image_offset=0)
    np.testing.assert_array_equal(codes, voltages)


def test_dac_codes_equal_the_float_product_without_int8(digits, monkeypatch):
    """Without torch's int8 GEMM (as with no torch installed) the float32 product and the sums of squares of
    the voltages give the same outputs to float32 rounding (no ADC: nothing to flip), with the same noise draws."""
    import simulator.cores.numeric as numeric

    net, x = digits
    x = x[:16]
    for extra in ({}, {"noise_model": "alpha", "alpha_noise": 0.05}):
        cfg = {"weight_bits": 8, "dac_bits": 8, "adc_bits": 0, "precision": "float32", **extra}
        sim = Simulation(net, cfg, seed=3)
        ints = sim.forward(x, image_offset=0)
        with monkeypatch.context() as m:
            m.setattr(numeric, "has_int8_matmul", lambda: False)
            floats = Simulation(net, cfg, seed=3)
            assert not any(core.takes_codes for core in floats.cores.values())
            out = floats.forward(x, image_offset=0)
        assert np.abs(out - ints).max() <= 1e-5 * np.abs(ints).max()


def test_state_independent_read_noise_and_int8_route_hold_no_extra_matrices():
    """Memory held by a Simulation: constant read noise adds no per-weight arrays, the int8 route drops G_eff.

    A 1024 x 1024 Dense layer (1 M weights: a float32 matrix is 4 MB). With alpha read noise the stds and
    variances are one number per array (read-only broadcast views), so the live memory after building
    grows by far less than one matrix; state-dependent noise (proportional) keeps its full matrices.
    Outputs are unchanged: the fast-path tests above compare these runs with the general path.
    """
    import tracemalloc

    from simulator.network import Layer, Network

    rng = np.random.default_rng(0)
    W = rng.standard_normal((1024, 1024)).astype(np.float32) * 0.05
    net = Network("dense", [Layer("input", "Input"),
                            Layer("fc", "Dense", ["input"], {"units": 1024, "use_bias": False}, {"kernel": W})],
                  ["fc"], "NHWC", (1024,))

    def live(cfg) -> float:
        tracemalloc.start()
        sim = Simulation(net, {"weight_bits": 8, "dac_bits": 8, "adc_bits": 8, "dac_range": [-2, 2],
                               "precision": "float32", **cfg}, seed=0)
        cur = tracemalloc.get_traced_memory()[0]
        tracemalloc.stop()
        assert sim.forward(rng.standard_normal((4, 1024)).astype(np.float32)).shape == (4, 1024)
        return cur / 2**20

    quiet = live({})
    noisy = live({"noise_model": "alpha", "alpha_noise": 0.02})
    proportional = live({"noise_model": "alpha", "alpha_noise": 0.02, "proportional_noise": True})
    assert noisy - quiet < 0.5  # MB; a full float32 matrix would be 4 MB
    assert proportional - quiet > 3 * 4  # sigma_pos, sigma_neg, var_eff (and G_eff for the float noise sums)
