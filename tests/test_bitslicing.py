"""Input and weight bit slicing in the full simulator (manual 6.6, 8.2, 9.2, 9.3).

With no non-idealities, slicing the inputs (one bit at a time, ADC per bit or
analog shift-and-add) and slicing the weights (Nslices shift-and-added slices)
must give exactly the unsliced result; the manual's and NeuroSim's worked
examples are checked slice by slice; read noise is re-sampled per input bit;
per-slice ADC ranges follow eqs. 9.1-9.2.
"""
import logging

import numpy as np
import pytest

import simulator
from simulator.cores.mapping import encode
from simulator.errors import ConfigError
from simulator.network import Layer, Network

RNG = np.random.default_rng(2024)


@pytest.fixture(autouse=True)
def _fixed_rng():
    """Every test draws the same numbers whatever ran before it (also under xdist)."""
    global RNG
    RNG = np.random.default_rng(2024)


# ----------------------------------------------------------------- helpers
def dense_net(W, b=None, input_range=None):
    n_in, n_out = W.shape
    weights = {"kernel": W} if b is None else {"kernel": W, "bias": b}
    attrs = {} if input_range is None else {"input_range": list(input_range)}
    layers = [Layer("input", "Input"),
              Layer("fc", "Dense", ["input"], {"units": n_out, "use_bias": b is not None}, weights, attrs)]
    return Network("dense", layers, ["fc"], "NHWC", (n_in,))


def conv_net():
    """Conv2D (signed or unsigned input) -> relu -> Flatten -> Dense (unsigned input)."""
    k = RNG.normal(size=(3, 3, 2, 4)) * 0.4
    W2 = RNG.normal(size=(4 * 4 * 4, 5)) * 0.2
    layers = [
        Layer("input", "Input"),
        Layer("conv", "Conv2D", ["input"], {"filters": 4, "kernel_size": [3, 3], "padding": "valid", "activation": "relu"},
              {"kernel": k, "bias": RNG.normal(size=4) * 0.1}),
        Layer("flat", "Flatten", ["conv"], {"order": "NHWC"}),
        Layer("fc", "Dense", ["flat"], {"units": 5}, {"kernel": W2, "bias": RNG.normal(size=5) * 0.1},
              {"input_range": [0.0, 3.0]}),
    ]
    return Network("convnet", layers, ["fc"], "NHWC", (6, 6, 2))


def inputs(shape, lo, hi, n=40):
    x = RNG.uniform(lo, hi, size=(n,) + shape)
    x.reshape(n, -1)[:, ::5] = 0.0  # some exact zeros
    return x


def rel(a, b):
    return np.abs(a - b).max() / max(np.abs(b).max(), 1e-300)


def fwd(net, cfg, x, seed=0):
    return simulator.Simulation(net, cfg, seed=seed).forward(x)


STYLE_PAIRS = [(8, 4), (9, 4), (8, 3), (6, 2), (4, 2), (7, 7)]


def _valid(style, wb, ns):
    mag = wb - 1 if style == "BALANCED" else wb
    return ns <= mag


# ------------------------------------------------ exact equivalence, no errors
@pytest.mark.parametrize("style", ["BALANCED", "OFFSET"])
@pytest.mark.parametrize("signed", [False, True], ids=["x>=0", "signed"])
@pytest.mark.parametrize("wb,ns", STYLE_PAIRS, ids=[f"w{a}s{b}" for a, b in STYLE_PAIRS])
def test_slicing_equals_unsliced(style, signed, wb, ns):
    if not _valid(style, wb, ns):
        with pytest.raises(ConfigError, match="Nslices"):
            simulator.load_config({"style": style, "weight_bits": wb, "Nslices": ns})
        return
    W = RNG.normal(size=(20, 6))
    rng_in = (-1.0, 1.0) if signed else (0.0, 1.0)
    net = dense_net(W)
    base = {"style": style, "weight_bits": wb, "dac_bits": 5, "dac_range": list(rng_in), "On_off_ratio": 20}
    x = inputs((20,), *rng_in)
    ref = fwd(net, base, x)
    # independent reference: quantized inputs times quantized weights
    Wmax = np.abs(W).max()
    if style == "BALANCED":
        L = 2 ** (wb - 1) - 1
        Wq = np.rint(W / Wmax * L) / L * Wmax
    else:
        L = 2 ** (wb - 1)
        Wq = np.clip(np.rint(W / Wmax * L), -L, L - 1) / L * Wmax
    Lx = 2**4 - 1 if signed else 2**5 - 1
    xq = np.clip(np.rint(x * Lx), -Lx if signed else 0, Lx) / Lx
    assert rel(ref, xq @ Wq) < 1e-12
    for per_bit in (True, False):
        y = fwd(net, {**base, "input_bitslicing": True, "ADC_per_ibit": per_bit}, x)
        assert rel(y, ref) < 1e-12, f"input bit slicing, ADC_per_ibit={per_bit}"
    y = fwd(net, {**base, "Nslices": ns}, x)
    assert rel(y, ref) < 1e-12, "weight bit slicing"
    y = fwd(net, {**base, "Nslices": ns, "input_bitslicing": True, "ADC_per_ibit": True}, x)
    assert rel(y, ref) < 1e-12, "weight and input bit slicing"


@pytest.mark.parametrize("extra", [
    {"NrowsMax": 7},
    {"NrowsMax": 7, "digital_bias": False},
    {"digital_bias": False, "style": "OFFSET", "digital_offset": False},
    {"NrowsMax": 9, "style": "OFFSET", "digital_bias": False},
], ids=lambda e: ",".join(f"{k}={v}" for k, v in e.items()))
@pytest.mark.parametrize("signed", [False, True], ids=["x>=0", "signed"])
def test_slicing_with_partitions_and_bias(extra, signed):
    W = RNG.normal(size=(20, 6))
    b = RNG.normal(size=6) * 0.5
    rng_in = (-1.0, 1.0) if signed else (0.0, 1.0)
    net = dense_net(W, b)
    base = {"weight_bits": 9, "dac_bits": 6, "dac_range": list(rng_in), "On_off_ratio": 10, **extra}
    x = inputs((20,), *rng_in)
    ref = fwd(net, base, x)
    ideal = simulator.Simulation(net, base).ideal_forward(x)
    assert rel(ref, ideal) < 0.05  # sanity: 9-bit weights, 6-bit inputs
    for over in ({"input_bitslicing": True, "ADC_per_ibit": True}, {"input_bitslicing": True},
                 {"Nslices": 4}, {"Nslices": 2, "input_bitslicing": True}):
        assert rel(fwd(net, {**base, **over}, x), ref) < 1e-12, over


@pytest.mark.parametrize("signed", [False, True], ids=["x>=0", "signed"])
def test_slicing_on_a_conv_network(signed):
    net = conv_net()
    rng_in = (-1.0, 1.0) if signed else (0.0, 1.0)
    base = {"weight_bits": 8, "dac_bits": 4, "layers": {"conv": {"dac_range": list(rng_in)}}}
    x = inputs((6, 6, 2), *rng_in, n=12)
    ref = fwd(net, base, x)
    for over in ({"input_bitslicing": True, "ADC_per_ibit": True}, {"input_bitslicing": True},
                 {"Nslices": 3}, {"style": "OFFSET"}):
        cfg = {**base, **over}
        want = ref if "style" not in over else fwd(net, {**base, "style": "OFFSET"}, x)
        assert rel(fwd(net, cfg, x), want) < 1e-12, over
    assert rel(fwd(net, {**base, "style": "OFFSET", "Nslices": 4, "input_bitslicing": True}, x),
               fwd(net, {**base, "style": "OFFSET"}, x)) < 1e-12


def test_input_slicing_with_programming_error_is_unchanged():
    """Programming errors are static and the MVM is linear: slicing the inputs changes nothing."""
    W = RNG.normal(size=(30, 8))
    net = dense_net(W, RNG.normal(size=8))
    base = {"weight_bits": 8, "dac_bits": 6, "dac_range": [-1.0, 1.0], "NrowsMax": 16, "digital_bias": False,
            "error_model": "alpha", "alpha_error": 0.05, "proportional_error": True, "On_off_ratio": 50}
    x = inputs((30,), -1, 1)
    ref = fwd(net, base, x, seed=3)
    assert rel(ref, simulator.Simulation(net, base).ideal_forward(x)) > 1e-3  # the error is there
    for per_bit in (True, False):
        y = fwd(net, {**base, "input_bitslicing": True, "ADC_per_ibit": per_bit}, x, seed=3)
        assert rel(y, ref) < 1e-12
    # weight slices with a device model: runs, and errors stay of the expected size. Against the ideal output
    # (not another noisy run): proportional 5 % errors give a largest relative output error of 1-2 alpha_error
    # over these 320 outputs (0.035-0.064 for seeds 3-9, sliced or not); 2 alpha_error = 0.1 bounds it, where
    # the former rel(y, ref) < 0.2 passed an error four times too large
    ideal = simulator.Simulation(net, base).ideal_forward(x)
    y = fwd(net, {**base, "weight_bits": 9, "Nslices": 4}, x, seed=3)
    assert np.all(np.isfinite(y)) and 0.2 * 0.05 < rel(y, ideal) < 2 * 0.05


# ---------------------------------------------------- manual worked examples
def _slices(enc, i, which="pos"):
    top = enc.device_levels
    return np.rint(np.asarray(getattr(enc, which)[i]) * top).astype(int)


def test_eq_6_7_balanced_8bit_in_four_2bit_slices(caplog):
    W_int = np.array([[127, -127, 0], [45, -3, 100], [-77, 64, 1]])
    w = W_int / 127.0
    with caplog.at_level(logging.WARNING, logger="xbarsim.mapping"):
        enc = encode(w, weight_bits=8, Nslices=4, style="BALANCED", balanced_style="one_sided", xp=np)
    assert "not divisible" in caplog.text  # (8 - 1) % 4 != 0: top slice under-used
    assert enc.bits_per_slice == 2 and enc.device_levels == 3 and enc.n_slices == 4
    mag = np.abs(W_int)
    total = np.zeros_like(W_int)
    for i in range(4):
        Wp, Wn = _slices(enc, i, "pos"), _slices(enc, i, "neg")
        digit = (mag >> (2 * i)) & 3
        np.testing.assert_array_equal(Wp, np.where(W_int > 0, digit, 0))
        np.testing.assert_array_equal(Wn, np.where(W_int < 0, digit, 0))
        assert Wp.max() <= 3 and Wn.max() <= 3
        assert enc.gains[i] * 127 / 3 == pytest.approx(4**i)  # shift 2^(2i) of eq. 6.7
        total += 4**i * (Wp - Wn)
    np.testing.assert_array_equal(total, W_int)
    # 127 = 0b01_11_11_11: the top slice never exceeds 1 (half its range unused)
    assert _slices(enc, 3).max() == 1
    # 9-bit weights fill the four slices exactly: no warning
    caplog.clear()
    with caplog.at_level(logging.WARNING, logger="xbarsim.mapping"):
        enc9 = encode(np.array([[1.0, -0.5]]), weight_bits=9, Nslices=4, style="BALANCED", balanced_style="one_sided", xp=np)
    assert "not divisible" not in caplog.text
    assert [int(_slices(enc9, i)[0, 0]) for i in range(4)] == [3, 3, 3, 3]  # 255


def test_eq_6_8_offset_8bit_in_four_2bit_slices_through_the_simulator():
    W_int = np.array([[127, -128, 0], [45, -3, 100], [-77, 64, 1], [2, -1, -50]])
    w = W_int / 128.0
    enc = encode(w, weight_bits=8, Nslices=4, style="OFFSET", balanced_style="one_sided", xp=np)
    assert enc.neg is None and enc.bits_per_slice == 2
    enc_val = W_int + 2**7
    total = np.zeros_like(W_int)
    for i in range(4):
        Wi = _slices(enc, i)
        np.testing.assert_array_equal(Wi, (enc_val >> (2 * i)) & 3)
        total += 4**i * Wi
    np.testing.assert_array_equal(total - 2**7, W_int)  # eq. 6.8: ... - 2^7 I x
    assert enc.offset * 128 == 2**7
    np.testing.assert_array_equal(_slices(enc, 3)[0, 2], 2)  # zero weight: intermediate state in the top slice
    # through the simulator: y = sum_i 4^i W_i x - 2^7 sum(x), in units of W_max / 128
    net = dense_net(W_int.astype(float))  # W_max = 128 -> w = W_int / 128
    x = np.array([[0.5, 1.0, 0.25, 0.0], [1.0, 1.0, 1.0, 1.0]])
    for offs in (True, False):
        cfg = {"style": "OFFSET", "weight_bits": 8, "Nslices": 4, "digital_offset": offs, "On_off_ratio": 10}
        y = fwd(net, cfg, x)
        hand = sum(4**i * (x @ ((enc_val >> (2 * i)) & 3)) for i in range(4)) - 2**7 * x.sum(axis=1, keepdims=True)
        np.testing.assert_allclose(y, hand, atol=1e-9)
        np.testing.assert_allclose(y, x @ W_int, atol=1e-9)


def test_eq_6_6_six_bits_in_two_3bit_slices():
    M = np.array([[12, 58], [29, 50]])
    # OFFSET, weight_bits 6: the offset-encoded values W_int + 32 are the matrix of eq. 6.6
    enc = encode((M - 32) / 32.0, weight_bits=6, Nslices=2, style="OFFSET", balanced_style="one_sided", xp=np)
    np.testing.assert_array_equal(_slices(enc, 1), [[1, 7], [3, 6]])
    np.testing.assert_array_equal(_slices(enc, 0), [[4, 2], [5, 2]])
    assert enc.gains[1] / enc.gains[0] == 2**3
    # BALANCED, weight_bits 7: six magnitude bits; W_max = 63 via weight_percentile so W_int = M
    net = dense_net(M.astype(float))
    sim = simulator.Simulation(net, {"weight_bits": 7, "Nslices": 2, "weight_percentile": 100 * 63 / 58}, seed=0)
    top = sim.mapping("fc").device_levels
    level = {(a.slice, a.plane): np.rint(a.target * top).astype(int) for a in sim.arrays("fc")}  # one partition
    np.testing.assert_array_equal(level[1, "pos"], [[1, 7], [3, 6]])
    np.testing.assert_array_equal(level[0, "pos"], [[4, 2], [5, 2]])
    assert not np.any(level[0, "neg"]) and not np.any(level[1, "neg"])
    x = np.array([[1.0, 0.0], [0.0, 1.0], [0.3, 0.7]])
    np.testing.assert_allclose(sim.forward(x), x @ M, atol=1e-9)


def test_neurosim_4bit_weight_on_two_2bit_devices():
    """seed 002: a 4-bit weight (0..15) on two 2-bit devices; +0.8906 -> 15 -> (MSB, LSB) = (3, 3)."""
    w = np.array([[0.8906, -1.0, 0.0, 0.3]])
    enc = encode(w, weight_bits=4, Nslices=2, style="OFFSET", balanced_style="one_sided", xp=np)
    level = np.clip(np.rint(w * 8), -8, 7) + 8  # offset-encoded 4-bit level 0..15
    assert level[0, 0] == 15 and level[0, 1] == 0
    lsb, msb = _slices(enc, 0), _slices(enc, 1)
    assert (msb[0, 0], lsb[0, 0]) == (15 // 4, 15 % 4) == (3, 3)
    np.testing.assert_array_equal(4 * msb + lsb, level)
    assert enc.device_levels == 3  # 2-bit devices: conductance levels 0..3


@pytest.mark.parametrize("style,wb,ns,warn", [
    ("BALANCED", 8, 4, True), ("BALANCED", 9, 4, False), ("BALANCED", 8, 3, True), ("BALANCED", 7, 2, False),
    ("OFFSET", 8, 4, False), ("OFFSET", 9, 4, True), ("OFFSET", 8, 3, True), ("OFFSET", 6, 2, False),
    ("OFFSET", 7, 7, False),
])
def test_under_use_warning(caplog, style, wb, ns, warn):
    net = dense_net(RNG.normal(size=(4, 3)))
    with caplog.at_level(logging.WARNING, logger="xbarsim.mapping"):
        simulator.Simulation(net, {"style": style, "weight_bits": wb, "Nslices": ns}, seed=0)
    hits = [r for r in caplog.records if "not divisible" in r.getMessage()]
    assert bool(hits) == warn
    if warn:
        assert "fc" in hits[0].getMessage() and ("weight_bits - 1" in hits[0].getMessage()) == (style == "BALANCED")


# ------------------------------------------------------- read noise per bit
@pytest.mark.parametrize("signed", [False, True], ids=["x>=0", "signed"])
@pytest.mark.parametrize("per_bit", [True, False], ids=["ADC_per_ibit", "analog_shift_add"])
def test_read_noise_resampled_per_input_bit(signed, per_bit):
    n_in, n_out, B, alpha = 24, 6, 5, 0.03
    W = RNG.uniform(-1, 1, size=(n_in, n_out))
    net = dense_net(W)
    rng_in = (-1.0, 1.0) if signed else (0.0, 1.0)
    cfg = {"dac_bits": B, "dac_range": list(rng_in), "noise_model": "alpha", "alpha_noise": alpha,
           "input_bitslicing": True, "ADC_per_ibit": per_bit}
    L = 2 ** (B - 1) - 1 if signed else 2**B - 1
    nb = B - 1 if signed else B
    x0 = RNG.uniform(*rng_in, size=n_in)
    N = 12000
    x = np.tile(x0, (N, 1))
    y = fwd(net, cfg, x, seed=7)
    # analytic: each bit k gets fresh noise of std alpha on both devices, weighted 2^k / L
    x_int = np.abs(np.rint(x0 * L)).astype(int)
    popw = sum((2.0**k / L) ** 2 * ((x_int >> k) & 1) for k in range(nb))
    Wmax = np.abs(W).max()
    expected = Wmax * alpha * np.sqrt(2 * popw.sum())
    std = y.std(axis=0)
    np.testing.assert_allclose(std / expected, 1.0, atol=0.04)
    # differs from one noise sample per MVM (the DAC path): sigma^2 * sum(x_q^2)
    once = Wmax * alpha * np.sqrt(2 * ((x_int / L) ** 2).sum())
    assert expected < 0.93 * once
    y_dac = fwd(net, {k: v for k, v in cfg.items() if k not in ("input_bitslicing", "ADC_per_ibit")}, x, seed=7)
    np.testing.assert_allclose(y_dac.std(axis=0) / once, 1.0, atol=0.04)
    # the mean is the noiseless quantized result
    xq = np.sign(x0) * x_int / L
    np.testing.assert_allclose(y.mean(axis=0), xq @ W, atol=4 * expected / np.sqrt(N))


# ---------------------------------------------------------- per-slice ADCs
def _adc(y, lo, hi, bits):
    if lo < 0:
        k = 2 ** (bits - 1) - 1
        step = hi / k
        return np.clip(np.rint(y / step), -k, k) * step
    step = hi / (2**bits - 1)
    return np.clip(np.rint(y / step), 0, 2**bits - 1) * step


@pytest.mark.parametrize("style,signed", [("BALANCED", False), ("BALANCED", True), ("OFFSET", False), ("OFFSET", True)])
def test_adc_exponents_per_slice(style, signed):
    # 15 rows and G_min = 1/7.3 keep every column current off the ADC's rounding ties
    n_in, n_out = 15, 5
    W = RNG.normal(size=(n_in, n_out))
    net = dense_net(W)
    rng_in = (-1.0, 1.0) if signed else (0.0, 1.0)
    C = [3, 2, 1, 0]
    Gmin = 1 / 7.3
    cfg = {"style": style, "weight_bits": 9 if style == "BALANCED" else 8, "Nslices": 4, "adc_bits": 6,
           "adc_range_option": "calibrated", "adc_exponents": C, "dac_bits": 6, "dac_range": list(rng_in),
           "On_off_ratio": 7.3, "precision": "float64"}
    sim = simulator.Simulation(net, cfg, seed=0)
    m = sim.mapping("fc")
    ymax = n_in * ((1 - Gmin) if style == "BALANCED" else 1.0)
    lims = m.adc_ranges
    for (lo, hi), c in zip(lims, C):
        assert hi == pytest.approx(ymax * 2.0**-c)
        assert lo == (0.0 if (style == "OFFSET" and not signed) else pytest.approx(-ymax * 2.0**-c))
    # hand recombination: digitize each slice's column currents, remove G_min, shift and add, subtract the offset
    x = inputs((n_in,), *rng_in, n=30)
    y = sim.forward(x)
    Lx = 31 if signed else 63
    xq = np.clip(np.rint(x * Lx), -Lx if signed else 0, Lx) / Lx
    xsum = xq.sum(axis=1, keepdims=True)
    assert len(m.partitions) == 1
    planes = {(a.slice, a.plane): a for a in sim.arrays("fc")}
    acc = 0
    for s, (lo, hi) in enumerate(lims):
        pos, neg = planes[s, "pos"], planes.get((s, "neg"))
        if neg is not None:
            d = _adc(xq @ (pos.G - neg.G), lo, hi, 6)
        else:
            d = _adc(xq @ pos.G, lo, hi, 6) - Gmin * xsum
        acc = acc + pos.gain * d / (1 - Gmin)
    if style == "OFFSET":
        acc = acc - m.offset * xsum
    np.testing.assert_allclose(y, acc * m.W_max * m.x_scale, atol=1e-9)
    assert rel(y, simulator.Simulation(net, cfg).ideal_forward(x)) > 1e-4  # the ADCs did something


def test_max_and_granular_ranges_per_slice():
    n_in = 8
    W = RNG.normal(size=(n_in, 4))
    net = dense_net(W)
    base = {"weight_bits": 9, "Nslices": 4, "dac_bits": 4, "dac_range": [-1.0, 1.0], "On_off_ratio": 10, "precision": "float64",
            "input_bitslicing": True, "ADC_per_ibit": True}
    m = simulator.Simulation(net, {**base, "adc_bits": 6, "adc_range_option": "max"}, seed=0).mapping("fc")
    assert m.adc_ranges == ((-n_in * 0.9, n_in * 0.9),) * 4
    # granular: level step = one conductance step of a 2-bit slice, (1 - Gmin) / 3
    m = simulator.Simulation(net, {**base, "adc_bits": 5, "adc_range_option": "granular"}, seed=0).mapping("fc")
    for step, (lo, hi) in zip(m.adc_steps, m.adc_ranges):
        assert step == pytest.approx(0.9 / 3) and hi == pytest.approx(15 * 0.9 / 3)
    # full-precision guarantee: |slice output| <= N * 3 steps for 1-bit inputs -> 2^(B-1) - 1 >= 24 -> B = 6
    x = inputs((n_in,), -1, 1)
    ideal = fwd(net, base, x)
    for B, exact in ((6, True), (4, False)):
        y = fwd(net, {**base, "adc_bits": B, "adc_range_option": "granular"}, x)
        assert (rel(y, ideal) < 1e-12) == exact
    # OFFSET, unsigned inputs, Gmin = 0: unsigned ADC from 0; 2^B - 1 >= 8 * 3 -> B = 5
    off = {**base, "style": "OFFSET", "weight_bits": 8, "dac_range": [0.0, 1.0], "On_off_ratio": 0}
    x = inputs((n_in,), 0, 1)
    m = simulator.Simulation(net, {**off, "adc_bits": 5, "adc_range_option": "granular"}, seed=0).mapping("fc")
    assert len(m.adc_ranges) == 4 and all(lo == 0.0 for lo, _ in m.adc_ranges)
    np.testing.assert_allclose(fwd(net, {**off, "adc_bits": 5, "adc_range_option": "granular"}, x), fwd(net, off, x),
                               atol=1e-12 * np.abs(fwd(net, off, x)).max())


def test_programming_error_on_weight_slices_matches_hand_calculation():
    """4 slices of 2 bits (9-bit BALANCED weights, G_min = 0), 5 % state-proportional programming error.

    By hand: |w| -> code q = round(255 |w| / max|w|) with base-4 digits s_k; slice k holds G = s_k / 3 and
    weighs 3 * 4**k * max|w| / 255. Its error is 0.05 G z, except at G = G_max = 1 (s_k = 3) where the
    programmed value is clipped to 1: error 0.05 min(z, 0), mean -0.05/sqrt(2 pi), variance
    0.05**2 (1/2 - 1/(2 pi)). The output error of input x is sum_i x_i sign(w_i) sum_k (slice error), so its
    std and mean over programmings follow; 300 programmings give a 4 % standard error on each std.
    """
    import math

    rng = np.random.default_rng(5)
    W = rng.normal(size=(30, 8))
    net = dense_net(W, rng.normal(size=8))
    x = rng.uniform(-1, 1, size=(4, 30))
    cfg = {"weight_bits": 9, "Nslices": 4, "On_off_ratio": 0, "dac_bits": 0, "digital_bias": True,
           "error_model": "alpha", "alpha_error": 0.05, "proportional_error": True, "precision": "float64"}
    clean = simulator.Simulation(net, {**cfg, "error_model": "none"}).forward(x)
    err = np.stack([simulator.Simulation(net, cfg, seed=s).forward(x) for s in range(300)]) - clean
    unit = np.abs(W).max() / 255
    q = np.round(np.abs(W) / np.abs(W).max() * 255)
    var_w = np.zeros_like(W)
    mean_w = np.zeros_like(W)
    for k in range(4):
        s = (q // 4**k) % 4
        scale = 3 * 4**k * unit
        var_w += scale**2 * np.where(s == 3, 0.05**2 * (0.5 - 1 / (2 * math.pi)), (0.05 * s / 3) ** 2)
        mean_w += scale * np.where(s == 3, -0.05 / math.sqrt(2 * math.pi), 0.0)
    std_hand = np.sqrt((x**2) @ var_w)
    ratio = err.std(axis=0) / std_hand
    assert np.all(np.abs(ratio - 1) < 0.15), ratio  # 3.7 standard errors of a std from 300 samples
    assert abs(ratio.mean() - 1) < 0.05, ratio.mean()
    mean_hand = x @ (mean_w * np.sign(W))
    assert np.all(np.abs(err.mean(axis=0) - mean_hand) < 4.5 * std_hand / math.sqrt(300))
