"""The executor's public inspection and observation API against hand calculations.

``Simulation.arrays`` / ``Simulation.mapping`` (programmed conductances in G / G_max per partition, slice
and device plane), ``Simulation.observe(sink=...)`` (the raw values profiling needs), the host registry.
"""
from __future__ import annotations

import numpy as np
import pytest

import simulator
from simulator.errors import ConfigError
from simulator.executor.hosts import register_host
from simulator.network import Layer, Network

W = np.array([[0.5, -1.0], [0.25, 0.0], [1.0, -0.5]])


def dense_net(W, bias=None, cls=Network):
    weights = {"kernel": W} if bias is None else {"kernel": W, "bias": bias}
    layers = [Layer("input", "Input"),
              Layer("fc", "Dense", ["input"], {"units": W.shape[1], "use_bias": bias is not None}, weights)]
    return cls("d", layers, ["fc"], "NHWC", (W.shape[0],))


def gru_net(F=3, H=2):
    rng = np.random.default_rng(0)
    w = {"weight_ih": rng.normal(size=(F, 3 * H)), "weight_hh": rng.normal(size=(H, 3 * H))}
    layers = [Layer("input", "Input"), Layer("gru", "GRUCell", ["input"], {"units": H}, w)]
    return Network("g", layers, ["gru"], "NHWC", (F,))


@pytest.mark.parametrize("style", ["BALANCED", "OFFSET"])
def test_arrays_hold_the_hand_computed_conductances(style):
    """W_max = 1, continuous weights, On/Off 10: BALANCED one-sided v = max(+-w, 0); OFFSET v = (w + 1) / 2."""
    sim = simulator.Simulation(dense_net(W), {"style": style, "weight_bits": 0, "On_off_ratio": 10,
                                              "NrowsMax": 2, "precision": "float64"}, seed=0)
    m = sim.mapping("fc")
    assert (m.W_max, m.G_min, m.x_scale, m.n_in, m.n_out, m.n_slices) == (1.0, 0.1, 1.0, 3, 2, 1)
    assert m.partitions == ((slice(0, 2), slice(0, 2)), (slice(2, 3), slice(0, 2)))  # 3 rows, NrowsMax 2: 2 + 1
    if style == "BALANCED":
        planes = {"pos": np.maximum(W, 0), "neg": np.maximum(-W, 0)}
        assert m.slice_gains == (1.0,) and m.offset == 0.0
    else:
        planes = {"pos": (W + 1) / 2}
        assert m.slice_gains == (2.0,) and m.offset == 1.0  # w = 2 v - 1
    arrays = sim.arrays("fc")
    assert [(a.partition, a.plane) for a in arrays] == [(p, k) for p in (0, 1) for k in planes]
    for a in arrays:
        assert a.core == "fc" and a.name == f"fc/part{a.partition}/slice0" and a.slice == 0
        v = planes[a.plane][a.rows, a.cols]
        np.testing.assert_allclose(a.target, v, atol=1e-15)
        np.testing.assert_allclose(a.G, 0.1 + 0.9 * v, atol=1e-15)  # no programming error: the target
        assert a.shape == v.shape and not a.exact_noise
    arrays[0].G[:] = 5.0  # a copy: the chip is unchanged
    assert sim.arrays("fc")[0].G.max() <= 1.0


def test_mapping_reports_input_range_adc_and_digital_bias():
    b = np.array([0.3, -0.2])
    sim = simulator.Simulation(dense_net(W, b), {"weight_bits": 8, "adc_bits": 6, "dac_bits": 6, "dac_range": [-2, 2],
                                                 "adc_range_option": "max", "bias_bits": 0, "precision": "float64"},
                               seed=0)
    m = sim.mapping("fc")
    assert m.input_range == (-2.0, 2.0) and m.x_scale == 2.0
    assert m.adc_ranges == ((-3.0, 3.0),)  # "max": +- rows * (1 - G_min), signed (BALANCED)
    assert m.adc_steps == pytest.approx((3.0 / 31,))  # 6 signed bits: 31 levels on each side of 0
    np.testing.assert_array_equal(m.digital_bias, b)
    assert not m.analog_bias


def test_observe_sink_gets_raw_inputs_and_adc_inputs():
    """What profiling streams: inputs before the DAC and the array outputs before the ADC (adc_bits = 0)."""
    sim = simulator.Simulation(dense_net(W), {"On_off_ratio": 10, "precision": "float64"}, seed=0)
    (pos, neg), m = sim.arrays("fc"), sim.mapping("fc")

    class Sink:
        def __init__(self):
            self.inputs_seen, self.adc_seen = [], []

        def inputs(self, core, X):
            self.inputs_seen.append((core, np.array(X)))

        def adc_inputs(self, core, s, columns, values, input_bit):
            self.adc_seen.append((core, s, columns, input_bit, np.array(values)))

    x = np.random.default_rng(1).uniform(-1, 1, size=(7, 3))
    sink = Sink()
    with sim.observe(adc=True, dac=False, errors=False, sink=sink) as rec:
        y = sim.forward(x)
    (core, X), = sink.inputs_seen
    assert core == "fc"
    np.testing.assert_array_equal(X, x)
    (core, s, columns, bit, I), = sink.adc_seen
    assert (core, s, columns, bit) == ("fc", 0, slice(0, 2), None)
    np.testing.assert_allclose(I, (x / m.x_scale) @ (pos.G - neg.G), atol=1e-12)  # raw column units
    np.testing.assert_allclose(y, I / (1 - m.G_min) * m.W_max, atol=1e-12)
    assert rec["fc"].rows == 0 and np.isnan(rec["fc"].relative_rms_error)  # errors = False: nothing compared
    with sim.observe() as rec:
        sim.forward(x)
    assert rec["fc"].rows == 7 and rec["fc"].relative_rms_error == pytest.approx(0.0, abs=1e-12)


def test_names_that_hold_no_arrays_are_one_line_errors():
    sim = simulator.Simulation(gru_net(), {"precision": "float64"}, seed=0)
    assert [a.core for a in sim.arrays("gru")] == ["gru/ih"] * 2 + ["gru/hh"] * 2  # BALANCED: two planes each
    assert sim.mapping("gru/hh").n_in == 2
    for call, words in ((lambda: sim.mapping("gru"), ["'gru'", "gru/ih", "gru/hh"]),
                        (lambda: sim.arrays("nope"), ["'nope'", "gru/ih"])):
        with pytest.raises(ConfigError) as exc:
            call()
        assert "\n" not in str(exc.value) and all(w in str(exc.value) for w in words), str(exc.value)
    digital = simulator.Simulation(dense_net(W), {"layers": {"fc": {"analog": False}}}, seed=0)
    with pytest.raises(ConfigError, match="no analog arrays"):
        digital.arrays("fc")


def test_registered_host_class_is_returned():
    class MyNetwork(Network):
        pass

    class MySimulation(simulator.Simulation):
        pass

    register_host(MyNetwork, MySimulation)
    sim = simulator.Simulation(dense_net(W, cls=MyNetwork), {}, seed=0)
    assert type(sim) is MySimulation
    np.testing.assert_allclose(sim.forward(np.eye(3)), W, atol=1e-6)  # the executor's set-up ran
    assert type(simulator.Simulation(dense_net(W), {}, seed=0)) is simulator.Simulation
