"""Small cases checked by hand from the manual's equations (chapters 6, 8.1, 9.3)."""
import numpy as np
import pytest

from simulator.quantization.uniform import UniformQuantizer, quantize_normalized
from simulator.cores.mapping import encode, partition_sizes, weight_range
from simulator.cores.neural import NeuralCore
from simulator.cores.numeric import ArrayOptions
from simulator.config import load_config

# a 4x3 weight matrix (rows = inputs), max |w| = 1
W = np.array([[0.5, -1.0, 0.0], [0.25, 0.75, -0.5], [-0.25, 0.0, 1.0], [1.0, -0.5, 0.25]])


def test_one_sided_conductances():
    enc = encode(W, weight_bits=0, Nslices=1, style="BALANCED", balanced_style="one_sided", xp=np)
    # positive weights on G+, negative on G-, the other device at Gmin (fraction 0)
    np.testing.assert_array_equal(enc.pos[0], np.maximum(W, 0))
    np.testing.assert_array_equal(enc.neg[0], np.maximum(-W, 0))
    Gmin = 0.01
    Gp = Gmin + (1 - Gmin) * enc.pos[0]
    Gn = Gmin + (1 - Gmin) * enc.neg[0]
    assert Gp[0, 1] == Gmin and Gn[0, 1] == 1.0  # w = -1 -> (Gmin, Gmax)
    assert Gp[0, 2] == Gn[0, 2] == Gmin  # zero -> both at Gmin
    np.testing.assert_allclose((Gp - Gn) / (1 - Gmin), W)


def test_two_sided_conductances():
    enc = encode(W, weight_bits=0, Nslices=1, style="BALANCED", balanced_style="two_sided", xp=np)
    Gmin = 0.1
    Gp = Gmin + (1 - Gmin) * enc.pos[0]
    Gn = Gmin + (1 - Gmin) * enc.neg[0]
    mid = (1 + Gmin) / 2
    assert Gp[0, 2] == pytest.approx(mid) and Gn[0, 2] == pytest.approx(mid)  # zero at mid-range
    assert Gp[0, 1] == pytest.approx(Gmin) and Gn[0, 1] == pytest.approx(1.0)  # -1 -> (Gmin, Gmax)
    np.testing.assert_allclose((Gp - Gn) / (1 - Gmin), W)


def test_offset_mapping_unquantized():
    enc = encode(W, weight_bits=0, Nslices=1, style="OFFSET", balanced_style="one_sided", xp=np)
    # w = 2 v - 1: -1 -> Gmin, 0 -> midpoint, +1 -> Gmax
    np.testing.assert_allclose(enc.pos[0], (W + 1) / 2)
    assert enc.gains == [2.0] and enc.offset == 1.0


def test_weight_levels_8bit():
    w = np.linspace(-1, 1, 100001)
    q_bal, L_bal = quantize_normalized(w, 8, "BALANCED", np)
    q_off, L_off = quantize_normalized(w, 8, "OFFSET", np)
    assert len(np.unique(q_bal)) == 255 and L_bal == 127  # 255 levels, zero exact
    assert len(np.unique(q_off)) == 256 and L_off == 128  # 256 levels: -128 .. 127
    assert q_off.min() == -128 and q_off.max() == 127
    assert 0 in q_bal and 0 in q_off


def test_offset_quantized_encoding_and_offset():
    enc = encode(W, weight_bits=8, Nslices=1, style="OFFSET", balanced_style="one_sided", xp=np)
    # W_int = clip(rint(w*128), -128, 127); encoded = W_int + 128 in [0, 255]
    W_int = np.clip(np.rint(W * 128), -128, 127)
    np.testing.assert_allclose(enc.pos[0] * 255, W_int + 128)
    assert enc.gains[0] == pytest.approx(255 / 128) and enc.offset == 1.0
    # decode: gain * v - offset == W_int / 128
    np.testing.assert_allclose(enc.gains[0] * enc.pos[0] - enc.offset, W_int / 128)


@pytest.mark.parametrize("digital_offset", [True, False])
@pytest.mark.parametrize("Gmin_ratio", [0, 10])
def test_offset_digital_and_analog_give_wx(digital_offset, Gmin_ratio):
    cfg = load_config({"style": "OFFSET", "digital_offset": digital_offset, "On_off_ratio": Gmin_ratio})
    hw = cfg.for_layer("x")
    Gmin = 0 if Gmin_ratio == 0 else 1 / Gmin_ratio
    core = NeuralCore("x", W, None, hw, options=ArrayOptions(Gmin=Gmin), devices=None, xp=np,
                      rng=np.random.default_rng(0), dtype=np.float64)
    x = np.array([[1.0, 2.0, -1.0, 0.5], [0.0, 0.0, 0.0, 0.0], [3.0, -2.0, 1.0, 1.0]])
    np.testing.assert_allclose(core(x), x @ W, atol=1e-12)
    if not digital_offset:
        unit = core.wrappers[0].cores[0].G_pos[:, -1]
        np.testing.assert_allclose(unit, Gmin + (1 - Gmin) * 0.5)  # unit column at the zero-weight state


@pytest.mark.parametrize("n,nmax,expected", [
    (100, 72, [50, 50]), (144, 72, [72, 72]), (72, 72, [72]), (50, 72, [50]),
    (145, 72, [49, 48, 48]), (4608, 72, [72] * 64), (10, 0, [10]),
])
def test_partition_sizes(n, nmax, expected):
    assert partition_sizes(n, nmax) == expected


def test_partitioned_core_has_expected_arrays():
    Wbig = np.random.default_rng(1).normal(size=(100, 5))
    cfg = load_config({"NrowsMax": 72})
    core = NeuralCore("x", Wbig, None, cfg.for_layer("x"), options=ArrayOptions(Gmin=0.0), devices=None, xp=np,
                      rng=np.random.default_rng(0), dtype=np.float64)
    assert [w.n_rows for w in core.wrappers] == [50, 50]


def test_analog_bias_row_counts_in_partition():
    Wm = np.ones((72, 3))
    cfg = load_config({"NrowsMax": 72, "digital_bias": False})
    core = NeuralCore("x", Wm, np.ones(3), cfg.for_layer("x"), options=ArrayOptions(Gmin=0.0), devices=None, xp=np,
                      rng=np.random.default_rng(0), dtype=np.float64)
    assert [w.n_rows for w in core.wrappers] == [37, 36]  # 73 rows -> two arrays


def test_weight_percentile():
    w = np.arange(-50, 51, dtype=float)  # -50..50
    assert weight_range(w, 100, np) == 50
    assert weight_range(w, 150, np) == 75
    assert weight_range(w, 90, np) == pytest.approx(40)


def test_zero_centred_adc_levels():
    q = UniformQuantizer(3, -1.0, 3.0)  # signed range: 2**3 - 1 = 7 levels, one at 0
    levels = q.levels(np)
    assert q.n_levels == 7 and 0.0 in levels
    assert np.allclose(np.diff(levels), q.step)
    assert q.step == pytest.approx(4 / 6)
    q2 = UniformQuantizer(2, 0.0, 3.0)  # unsigned: 4 levels 0, 1, 2, 3
    np.testing.assert_allclose(q2.levels(np), [0, 1, 2, 3])
    np.testing.assert_allclose(q2(np.array([-5.0, 0.4, 0.6, 2.49, 9.0]), np), [0, 0, 1, 2, 3])  # clipping + rounding
    q3 = UniformQuantizer(2, -1.0, 1.0)  # 3 levels: -1, 0, 1
    np.testing.assert_allclose(q3(np.array([-0.6, -0.4, 0.49, 0.51, 2.0]), np), [-1, 0, 0, 1, 1])


def _core(hw_over, W_, input_range=(0.0, 1.0), Gmin=0.0):
    cfg = load_config(hw_over)
    return NeuralCore("x", W_, None, cfg.for_layer("x"), options=ArrayOptions(Gmin=Gmin), devices=None, xp=np,
                      rng=np.random.default_rng(0), dtype=np.float64, input_range=input_range)


def test_adc_max_range():
    # BALANCED: outputs signed, y_max = rows * (1 - Gmin)
    core = _core({"adc_bits": 8}, W, Gmin=0.1)
    assert core.adc_limits() == [(-4 * 0.9, 4 * 0.9)]
    # OFFSET with non-negative inputs: ADC minimum is 0, y_max = rows * Gmax
    core = _core({"adc_bits": 8, "style": "OFFSET"}, W)
    assert core.adc_limits() == [(0.0, 4.0)]
    # OFFSET with signed inputs: symmetric
    core = _core({"adc_bits": 8, "style": "OFFSET"}, W, input_range=(-1.0, 1.0))
    assert core.adc_limits() == [(-4.0, 4.0)]


def test_adc_granular_range():
    # weight_bits 4 BALANCED: 3 magnitude bits -> 7 conductance steps; delta = (1 - Gmin) / 7
    over = {"adc_bits": 5, "weight_bits": 4, "dac_bits": 4, "input_bitslicing": True, "ADC_per_ibit": True,
            "adc_range_option": "granular"}
    core = _core(over, W)
    lo, hi = core.adc_limits()[0]
    assert hi == pytest.approx(15 / 7) and lo == pytest.approx(-15 / 7)  # (2**(5-1) - 1) levels of delta
    q = core.adc_quantizers[0]
    assert q.step == pytest.approx(1 / 7)
    # with all errors off, the granular ADC at B_ADC = B_W + ceil(log2 N) bits is exact (manual eq. 9.5)
    over["adc_bits"] = 4 + 2 + 1
    core = _core(over, W)
    x = np.random.default_rng(0).uniform(0, 1, size=(50, 4))
    ideal = _core({k: v for k, v in over.items() if k not in ("adc_bits", "adc_range_option")}, W)
    np.testing.assert_allclose(core(x), ideal(x), atol=1e-12)
