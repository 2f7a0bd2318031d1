"""Lloyd-Max weight levels inside the full simulator (seeds/004).

With ``weight_quantizer = "lloyd"`` and ``weight_levels = n`` every MVM layer
must compute with at most ``n`` distinct weight values: the simulated network
equals a floating-point network whose weights are replaced by their Lloyd
levels (fitted per layer on ``W / W_max``, as the simulator does). Every
mapping (BALANCED one_sided / two_sided / unified_reference, OFFSET with
digital or analog offset) reconstructs the levels exactly when nothing else
is non-ideal, and ``error_model = "relative_max"`` gives the paper's weight
noise ``delta * max|W_q|``.
"""
import copy
import math

import numpy as np
import pytest

import simulator
from simulator.errors import ConfigError
from simulator.network import Layer, Network
from simulator.quantization import lloyd_max, quantize_lloyd

RNG = np.random.default_rng(4)


@pytest.fixture(autouse=True)
def _fixed_rng():
    global RNG
    RNG = np.random.default_rng(4)


def small_net():
    """Conv2D -> relu -> DepthwiseConv2D -> grouped Conv2D -> Flatten -> Dense (bias everywhere)."""
    L = Layer
    layers = [
        L("input", "Input"),
        L("c1", "Conv2D", ["input"], {"filters": 4, "kernel_size": [3, 3], "padding": "valid", "activation": "relu"},
          {"kernel": RNG.laplace(size=(3, 3, 2, 4)) * 0.3, "bias": RNG.normal(size=4) * 0.1}),
        L("dw", "DepthwiseConv2D", ["c1"], {"kernel_size": [2, 2], "padding": "valid", "depth_multiplier": 2,
                                            "activation": "relu"},
          {"depthwise_kernel": RNG.normal(size=(2, 2, 4, 2)) * 0.5, "bias": RNG.normal(size=8) * 0.1}),
        L("g", "Conv2D", ["dw"], {"filters": 4, "kernel_size": [1, 1], "groups": 2, "activation": "relu"},
          {"kernel": RNG.normal(size=(1, 1, 4, 4)) * 0.5, "bias": RNG.normal(size=4) * 0.1}),
        L("flat", "Flatten", ["g"], {"order": "NHWC"}),
        L("fc", "Dense", ["flat"], {"units": 5}, {"kernel": RNG.normal(size=(36, 5)) * 0.3 + 0.05,
                                                  "bias": RNG.normal(size=5) * 0.1}),
    ]
    return Network("small", layers, ["fc"], "NHWC", (6, 6, 2))


KERNEL = {"Dense": "kernel", "Conv2D": "kernel", "DepthwiseConv2D": "depthwise_kernel"}


def lloyd_network(net, n):
    """The float network with every MVM layer's weights replaced by their n Lloyd levels."""
    q = copy.deepcopy(net)
    for layer in q.layers:
        if layer.type in KERNEL:
            k = layer.weights[KERNEL[layer.type]]
            wmax = np.abs(k).max()
            res = lloyd_max(k / wmax, n)
            layer.weights[KERNEL[layer.type]] = quantize_lloyd(k / wmax, res) * wmax
            assert len(np.unique(layer.weights[KERNEL[layer.type]])) <= n
    return q


def rel(a, b):
    return np.abs(a - b).max() / np.abs(b).max()


@pytest.mark.parametrize("n", [3, 4, 8])
def test_lloyd_network_equals_float_network_with_lloyd_weights(n):
    net = small_net()
    x = RNG.uniform(0, 1, size=(5, 6, 6, 2))
    cfg = {"weight_quantizer": "lloyd", "weight_levels": n, "precision": "float64"}
    sim = simulator.Simulation(net, cfg, seed=0)
    ref = simulator.Simulation(lloyd_network(net, n), {}, seed=0).ideal_forward(x)
    assert rel(sim.forward(x), ref) < 1e-12
    assert rel(sim.forward(x), sim.ideal_forward(x)) > 1e-4  # quantization did something
    for name in sim.cores:
        m = sim.mapping(name)
        assert m.weight_levels == n and len(m.levels) == n
        # effective weights read back from the targeted conductances: at most n distinct non-structural values
        planes = {a.plane: a for a in sim.arrays(name) if a.partition == 0 and a.slice == 0}
        v = planes["pos"].target - (planes["neg"].target if "neg" in planes else 0)
        W_eff = (m.slice_gains[0] * v - m.offset) * m.W_max
        assert len(np.unique(np.round(W_eff, 12))) <= n + 1  # + the structural zeros of block-diagonal layers


MAPPINGS = {
    "one_sided": {"style": "BALANCED", "balanced_style": "one_sided"},
    "two_sided": {"style": "BALANCED", "balanced_style": "two_sided"},
    "unified_reference": {"style": "BALANCED", "balanced_style": "unified_reference"},
    "unified_reference_Gref": {"style": "BALANCED", "balanced_style": "unified_reference", "G_ref": 0.3},
    "offset_digital": {"style": "OFFSET"},
    "offset_unit_column": {"style": "OFFSET", "digital_offset": False},
}


@pytest.mark.parametrize("on_off", [0, 10, 8.5])
@pytest.mark.parametrize("mapping", list(MAPPINGS))
def test_every_mapping_reconstructs_the_levels(mapping, on_off):
    net = small_net()
    x = RNG.uniform(0, 1, size=(4, 6, 6, 2))
    cfg = {**MAPPINGS[mapping], "weight_quantizer": "lloyd", "weight_levels": 4, "On_off_ratio": on_off,
           "NrowsMax": 10, "precision": "float64"}
    sim = simulator.Simulation(net, cfg, seed=0)
    ref = simulator.Simulation(lloyd_network(net, 4), {}, seed=0).ideal_forward(x)
    assert rel(sim.forward(x), ref) < 1e-12
    assert len(sim.mapping("c1").partitions) == 2  # 18 rows in NrowsMax = 10: two arrays share the levels


def test_relative_max_gives_the_paper_weight_noise():
    """One-sided BALANCED, G_min = 0: alpha_error = delta gives delta * max|W_q| per device, in weight units."""
    A = RNG.laplace(size=(150, 60))
    W = np.concatenate([A, -A], axis=1)  # symmetric: both device planes hold max|W_q| (max(G) = 1 on each)
    net = Network("d", [Layer("input", "Input"), Layer("fc", "Dense", ["input"], {"units": 120, "use_bias": False},
                                                       {"kernel": W})], ["fc"], "NHWC", (150,))
    delta = 0.02
    cfg = {"weight_quantizer": "lloyd", "weight_levels": 8, "error_model": "relative_max", "alpha_error": delta,
           "precision": "float64"}
    sim = simulator.Simulation(net, cfg, seed=3)
    m = sim.mapping("fc")
    pos, neg = sim.arrays("fc")  # one array: positive and negative device planes
    assert m.G_min == 0 and (pos.plane, neg.plane) == ("pos", "neg")
    Wq_max = np.abs(m.levels).max() * m.W_max
    w_unit = Wq_max  # G_min = 0: a conductance step of 1 is max|W_q| in weight units
    for G, target in ((pos.G, pos.target), (neg.G, neg.target)):  # G_min = 0: the targeted G is the fraction
        inner = (target > 5 * delta) & (target < 1 - 5 * delta)  # away from the clipping at 0 and 1
        assert inner.sum() > 2000
        err = (G - target)[inner] * w_unit
        assert err.std() == pytest.approx(delta * Wq_max, rel=0.05)
        assert abs(err.mean()) < 5 * delta * Wq_max / math.sqrt(inner.sum())
    # through the MVM: effective weights from one-hot inputs. A non-zero level pairs a noisy device with one
    # at G_min = 0 whose error is clipped to max(e, 0): mean sigma / sqrt(2 pi), variance (1/2 - 1/(2 pi)) sigma^2
    W_eff = sim.forward(np.eye(150))
    Wq = (m.slice_gains[0] * (pos.target - neg.target)) * m.W_max
    lv = np.abs(Wq) / Wq_max
    inner = (lv > 5 * delta) & (lv < 1 - 5 * delta)
    sigma = delta * Wq_max
    for sign in (1, -1):
        err = (W_eff - Wq)[inner & (np.sign(Wq) == sign)]
        assert err.std() == pytest.approx(sigma * math.sqrt(1.5 - 1 / (2 * math.pi)), rel=0.05)
        assert err.mean() == pytest.approx(-sign * sigma / math.sqrt(2 * math.pi), rel=0.1)
    # resampled per run (programming error), fixed within a run
    np.testing.assert_array_equal(W_eff, sim.forward(np.eye(150)))
    assert np.abs(simulator.Simulation(net, cfg, seed=4).forward(np.eye(150)) - W_eff).max() > 0


# ------------------------------------------------------------------ bad input
def dense(W):
    return Network("d", [Layer("input", "Input"), Layer("fc", "Dense", ["input"], {"units": W.shape[1], "use_bias": False},
                                                        {"kernel": W})], ["fc"], "NHWC", (W.shape[0],))


def one_line_error(fn, *words):
    with pytest.raises(ConfigError) as exc:
        fn()
    msg = str(exc.value)
    assert "\n" not in msg, msg
    for w in words:
        assert w in msg, (w, msg)
    return msg


def test_bad_weight_levels():
    one_line_error(lambda: simulator.load_config({"weight_quantizer": "lloyd", "weight_levels": 1}), "weight_levels")
    one_line_error(lambda: simulator.load_config({"weight_levels": 4}), "weight_levels", "lloyd")
    one_line_error(lambda: simulator.load_config({"weight_quantizer": "lloyd"}), "weight_levels")
    one_line_error(lambda: simulator.load_config({"layers": {"fc": {"weight_levels": 4}}}), "layers.fc", "weight_levels")
    one_line_error(lambda: simulator.load_config({"weight_quantizer": "lloyd", "weight_levels": 4, "weight_bits": 8,
                                                  "dac_bits": 4, "adc_bits": 6, "input_bitslicing": True,
                                                  "ADC_per_ibit": True, "adc_range_option": "granular"}),
                   "granular", "lloyd")


def test_lloyd_on_constant_weights():
    W = np.full((6, 3), 0.7)
    x = RNG.uniform(0, 1, size=(4, 6))
    cfg = {"weight_quantizer": "lloyd", "weight_levels": 4}
    msg = one_line_error(lambda: simulator.Simulation(dense(W), cfg), "'fc'", "equal", "lloyd_allow_degenerate")
    assert "4" in msg
    for style in ({"style": "BALANCED"}, {"style": "OFFSET"}, {"balanced_style": "two_sided"}):
        sim = simulator.Simulation(dense(W), {**cfg, **style, "lloyd_allow_degenerate": True, "On_off_ratio": 10,
                                              "precision": "float64"}, seed=0)
        assert len(sim.mapping("fc").levels) == 1
        np.testing.assert_allclose(sim.forward(x), x @ W, atol=1e-12)
    # a single OFFSET level has no conductance range to put a unit column in
    one_line_error(lambda: simulator.Simulation(dense(W), {**cfg, "style": "OFFSET", "digital_offset": False,
                                                           "lloyd_allow_degenerate": True}), "digital_offset")
    # fewer distinct weights than levels
    W2 = np.tile([[0.5, -0.5, 0.5]], (6, 1))
    one_line_error(lambda: simulator.Simulation(dense(W2), cfg), "'fc'", "2 distinct", "lloyd_allow_degenerate")


def test_unit_column_outside_the_levels_is_an_error():
    W = RNG.uniform(0.2, 1.0, size=(10, 4))  # all positive: zero lies below every OFFSET level
    cfg = {"weight_quantizer": "lloyd", "weight_levels": 3, "style": "OFFSET"}
    x = RNG.uniform(0, 1, size=(3, 10))
    sim = simulator.Simulation(dense(W), {**cfg, "precision": "float64"}, seed=0)  # digital offset: fine
    ref = simulator.Simulation(lloyd_network(dense(W), 3), {}).ideal_forward(x)
    assert rel(sim.forward(x), ref) < 1e-12
    one_line_error(lambda: simulator.Simulation(dense(W), {**cfg, "digital_offset": False}), "digital_offset")
