"""witin models on the general core hierarchy (witin_mode = "arrays")."""
import numpy as np
import pytest

import simulator
from simulator.io.digits import load_digits_split

NET = simulator.load_model("witin_digits")
X, Y = load_digits_split("test")
X = X.transpose(0, 3, 1, 2)[:200]
Y = Y[:200]
CHIP = simulator.Simulation(NET, {"witin_mode": "chip"}, seed=0).forward(X)
LSB = 1.0 / min(l.attrs["witin"].get("scale_y") or 1.0 for l in NET.layers if l.attrs.get("witin"))


@pytest.mark.parametrize("cfg", [
    {"style": "BALANCED"},
    {"style": "OFFSET"},
    {"style": "BALANCED", "Nslices": 2, "weight_bits": 8},
    {"style": "OFFSET", "Nslices": 4, "weight_bits": 8},
], ids=["balanced", "offset", "balanced-2slices", "offset-4slices"])
def test_arrays_reproduce_chip_without_device_errors(cfg):
    out = simulator.Simulation(NET, dict(cfg, witin_mode="arrays"), seed=0).forward(X)
    assert (out.argmax(1) == CHIP.argmax(1)).mean() >= 0.99
    # differences come from rounding ties and the chip's digital high input bits: mostly within one output step
    close = np.abs(out - CHIP) <= 1.01 * LSB
    assert close.mean() > 0.97


def test_int8_weights_are_the_array_levels():
    sim = simulator.Simulation(NET, {"witin_mode": "arrays"}, seed=0)
    from simulator.witin.arrays import witin_array_products

    layer = NET["fc"]
    (_, W, const, override, wmax, _), = witin_array_products(layer, sim.config.for_layer("fc"), np, None)
    assert sim.mapping("fc").W_max == pytest.approx(wmax)
    pos, neg = sim.arrays("fc")[:2]  # the first array's two device planes
    assert (pos.plane, neg.plane, pos.name) == ("pos", "neg", neg.name)
    levels = np.round((pos.target - neg.target) * 127)
    np.testing.assert_allclose((pos.target - neg.target) * 127, levels, atol=1e-9)  # integer int8 levels
    assert np.abs(levels).max() <= 127


def test_device_errors_on_top_reduce_agreement():
    clean = simulator.Simulation(NET, {"witin_mode": "arrays"}, seed=0).forward(X)
    noisy = simulator.Simulation(NET, {"witin_mode": "arrays", "error_model": "alpha", "alpha_error": 0.2,
                                       "proportional_error": True}, seed=0).forward(X)
    assert np.abs(noisy - clean).max() > LSB
    assert (noisy.argmax(1) == Y).mean() < (clean.argmax(1) == Y).mean() + 0.02


def test_example_config_runs():
    r = simulator.run("configs/witin_arrays_sonos.toml", runs=[0])
    assert r.rows[0]["accuracy"] > 0.9
