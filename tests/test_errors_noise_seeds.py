"""Generic programming error and read noise statistics, re-sampling rules and seeds (fixed seeds, 5 % tolerance)."""
import numpy as np
import pytest

import simulator
from simulator.network import Layer, Network

RNG = np.random.default_rng(3)


def dense_net(n_in=200, n_out=200, weights=None):
    W = weights if weights is not None else RNG.uniform(0.3, 0.7, size=(n_in, n_out))
    layers = [Layer("input", "Input"), Layer("fc", "Dense", ["input"], {"units": n_out, "use_bias": False}, {"kernel": W})]
    return Network("dense", layers, ["fc"], "NHWC", (n_in,)), W


def programmed(sim):
    return sim.arrays("fc")[0].G  # the positive plane of the layer's only array


@pytest.mark.parametrize("proportional", [False, True])
def test_programming_error_std_matches_alpha(proportional):
    net, W = dense_net()
    alpha = 0.05
    sim = simulator.Simulation(net, {"error_model": "alpha", "alpha_error": alpha, "proportional_error": proportional}, seed=1)
    target = W / W.max()  # one-sided BALANCED, Gmin = 0: positive weights on G+, conductance = w / Wmax
    G = programmed(sim)
    err = (G - target) / target if proportional else G - target
    assert abs(err.std() / alpha - 1) < 0.05
    assert abs(err.mean()) < 0.05 * alpha


def test_programming_error_clipped_to_physical_range():
    net, _ = dense_net(weights=RNG.uniform(-1, 1, size=(100, 100)))
    sim = simulator.Simulation(net, {"error_model": "alpha", "alpha_error": 0.5, "On_off_ratio": 10}, seed=2)
    planes = sim.arrays("fc")
    assert [a.plane for a in planes] == ["pos", "neg"]
    for G in (a.G for a in planes):
        assert G.min() >= 0.1 - 1e-12 and G.max() <= 1.0 + 1e-12
        assert np.isclose(G.min(), 0.1) and np.isclose(G.max(), 1.0)  # clipping happened at both ends


def test_programming_error_fixed_within_run_resampled_between_runs():
    net, _ = dense_net(50, 20)
    cfg = {"error_model": "alpha", "alpha_error": 0.05}
    x = RNG.uniform(0, 1, size=(8, 50))
    sim = simulator.Simulation(net, cfg, seed=5)
    a, b = sim.forward(x), sim.forward(x)
    np.testing.assert_array_equal(a, b)  # static across MVMs and batches
    other = simulator.Simulation(net, cfg, seed=6).forward(x)
    assert np.abs(other - a).max() > 1e-3  # a new run (seed) draws new errors


def test_read_noise_resampled_every_mvm_with_expected_std():
    n_in, n_out = 100, 50
    net, W = dense_net(n_in, n_out)
    alpha = 0.02
    sim = simulator.Simulation(net, {"noise_model": "alpha", "alpha_noise": alpha}, seed=4)
    x = np.tile(RNG.uniform(0, 1, size=(1, n_in)), (4000, 1))
    y = sim.forward(x)
    assert np.abs(y[0] - y[1]).max() > 0  # identical inputs, different MVMs -> different noise
    # y = Wmax * (G+ - G-) x with G- = 0 and sigma = alpha on both devices: std = Wmax * alpha * sqrt(2 * sum x^2)
    expected = W.max() * alpha * np.sqrt(2 * (x[0] ** 2).sum())
    std = y.std(axis=0)
    assert abs(std.mean() / expected - 1) < 0.05
    np.testing.assert_allclose(y.mean(axis=0), x[0] @ W, rtol=0, atol=4 * expected / np.sqrt(len(x)) * 1.5)


def test_proportional_read_noise_std():
    net, W = dense_net(64, 32)
    alpha = 0.05
    sim = simulator.Simulation(net, {"noise_model": "alpha", "alpha_noise": alpha, "proportional_noise": True,
                                     "read_noise_mode": "exact"}, seed=9)
    x = np.tile(RNG.uniform(0, 1, size=(1, 64)), (3000, 1))
    y = sim.forward(x)
    G = W / W.max()
    expected = W.max() * alpha * np.sqrt((G**2 * x[0][:, None] ** 2).sum(axis=0))  # G- = 0 has no noise
    assert abs((y.std(axis=0) / expected).mean() - 1) < 0.05


def test_same_seed_bit_identical_and_recorded():
    net = simulator.load_model("digits_cnn")
    from simulator.io.digits import load_digits_split

    x, y = load_digits_split("test")
    cfg = simulator.load_config("configs/digits_noisy.toml")
    a = simulator.Simulation(net, cfg, seed=11).forward(x[:64])
    b = simulator.Simulation(net, cfg, seed=11).forward(x[:64])
    assert np.array_equal(a, b)
    c = simulator.Simulation(net, cfg, seed=12).forward(x[:64])
    assert not np.array_equal(a, c)
    sim = simulator.Simulation(net, {}, seed=None)
    assert isinstance(sim.seed, int)  # a drawn seed is recorded
