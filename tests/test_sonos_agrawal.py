"""SONOS_Agrawal (Agrawal et al., IEDM 2022; CrossSim 3.2's SONOS) against its fit equations, by hand."""
import math

import numpy as np
import pytest

from devices.base import DeviceParams
from devices.registry import get_model
from devices.sonos import SONOSError
from simulator.errors import DeviceModelError

# fit values written out again here for the hand calculations (A, B in nA)
A0, B0 = 19.88665, 176.3115
A1, B1 = 25.59102, 186.85544
P1 = [1.72684e-01, 5.72552e-02, -6.85715e-04, 3.50271e-06, -9.37682e-09, 1.40575e-11, -1.19803e-14, 5.41293e-18,
      -8.85448e-22, -1.66869e-25, 5.95180e-29]


def model(imax=1600.0):
    cls = get_model("SONOS_Agrawal", "error")
    return cls(DeviceParams(On_off_ratio=0, extra={"sonos_Imax_nA": imax}))


def test_registered_for_all_three_hooks():
    for kind in ("error", "drift", "noise"):
        assert get_model("SONOS_Agrawal", kind).name == "SONOS_Agrawal"


def test_programming_error_statistics():
    m = model()
    G = np.full(200_000, 0.5)
    out = m.programming_error(G, np, np.random.default_rng(0))
    sigma = A0 * (1 - math.exp(-800.0 / B0)) / 1600.0
    assert abs(np.std(out - G) / sigma - 1) < 0.01 and abs(np.mean(out - G)) < 5 * sigma / math.sqrt(G.size)
    # not the manual's (v2.0) SONOS fit
    old = SONOSError(DeviceParams(On_off_ratio=0)).programming_sigma(np.array([0.5]), np)[0]
    assert abs(old - sigma) > 0.1 * sigma


def test_drift_mean_and_spread_at_one_day():
    m = model(1500.0)
    G = np.array([0.1, 0.4, 0.9])
    I = 1500.0 * G
    mean = I + sum(c * I**n for n, c in enumerate(P1))
    np.testing.assert_allclose(m.drift_mean(G, 1.0, np) * 1500.0, mean, rtol=1e-10)
    np.testing.assert_allclose(m.drift_sigma(G, 1.0, np) * 1500.0, A1 * (1 - np.exp(-mean / B1)), rtol=1e-10)
    G = np.full(100_000, 0.4)
    out = m.drift(G, 1.0, np, np.random.default_rng(1))
    se = m.drift_sigma(G[:1], 1.0, np)[0] * 1500 / math.sqrt(G.size)
    assert np.mean(out) * 1500 == pytest.approx(m.drift_mean(G[:1], 1.0, np)[0] * 1500, abs=4 * se)


def test_coefficients_interpolate_linearly_in_time():
    m = model()
    G = np.array([0.3, 0.7])
    mid = m.drift_mean(G, 2.5, np)
    np.testing.assert_allclose(mid, 0.5 * (m.drift_mean(G, 2.0, np) + m.drift_mean(G, 3.0, np)), rtol=1e-12)
    s = m.drift_sigma(G, 2.5, np)
    assert m.drift_sigma(G, 2.0, np)[1] < s[1] < m.drift_sigma(G, 3.0, np)[1] * 1.01


def test_read_noise():
    m = model()
    G = np.array([0.0, 0.25, 1.0])
    np.testing.assert_allclose(m.read_noise_sigma(G, np) * 1600,
                               12.58037 * (1 - np.exp(-1600 * G / 215.36557)), rtol=1e-12)


def test_current_limits_of_the_fit():
    with pytest.raises(DeviceModelError, match="sonos_Imax_nA"):
        model(3500.0)
    with pytest.raises(DeviceModelError, match="1800 nA"):
        model(2500.0).drift(np.array([0.5]), 1.0, np, np.random.default_rng(0))
    model(2500.0).programming_error(np.array([0.5]), np, np.random.default_rng(0))  # t = 0 is fine


def test_runs_in_a_simulation():
    from simulator.io.datasets import load_dataset
    from simulator.model_files import load_model
    from simulator.simulation import Simulation

    net = load_model("digits_cnn")
    cfg = {"error_model": "SONOS_Agrawal", "noise_model": "SONOS_Agrawal", "weight_bits": 8, "On_off_ratio": 1e7,
           "device_params": {"sonos_Imax_nA": 1600.0}}
    x, y = next(iter(load_dataset({"task": "digits", "ntest": 60}, split="test").iter_batches(layout=net.input_layout)))
    sim = Simulation(net, cfg, seed=3)
    acc = np.mean(sim.forward(x[:60]).argmax(1) == np.asarray(y[:60]))
    assert acc > 0.8
