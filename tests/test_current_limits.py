"""Column current limits (manual 8.4): Icol_max / Icell_max clip each column's summed current.

Units: a cell at G_max driven at full-scale input carries Icell_max, so the
limit in normalized current units is Icol_max / Icell_max. For differential
cells the positive and negative columns are clipped separately, before the
subtraction.
"""
import numpy as np
import pytest

import simulator
from simulator.errors import ConfigError
from simulator.network import Layer, Network


def dense_net(W):
    layers = [Layer("input", "Input"),
              Layer("fc", "Dense", ["input"], {"units": W.shape[1], "use_bias": False}, {"kernel": np.asarray(W, float)})]
    return Network("dense", layers, ["fc"], "NHWC", (W.shape[0],))


W_HAND = np.array([[1.0, -1.0], [1.0, 0.5], [1.0, -1.0]])
LIMIT = {"Icol_max": 1.5e-6, "Icell_max": 1e-6}  # 1.5 cells' worth of current


def test_balanced_columns_clipped_separately_by_hand():
    x = np.ones((1, 3))
    y = simulator.Simulation(dense_net(W_HAND), LIMIT, seed=0).forward(x)
    # column 0: I+ = 3 -> 1.5, I- = 0            -> 1.5
    # column 1: I+ = 0.5, I- = 1 + 1 = 2 -> 1.5  -> 0.5 - 1.5 = -1.0
    # (clipping the difference instead would give -1.5; no limit gives [3, -1.5])
    np.testing.assert_allclose(y, [[1.5, -1.0]], atol=1e-12)
    np.testing.assert_allclose(simulator.Simulation(dense_net(W_HAND), {}, seed=0).forward(x), [[3.0, -1.5]], atol=1e-12)
    # a signed input makes negative currents, clipped at -limit
    y = simulator.Simulation(dense_net(W_HAND), LIMIT, seed=0).forward(-x)
    np.testing.assert_allclose(y, [[-1.5, 1.0]], atol=1e-12)


def test_offset_column_clipped_by_hand():
    W = np.array([[1.0, -1.0], [1.0, 0.0], [1.0, -1.0]])
    x = np.ones((1, 3))
    y = simulator.Simulation(dense_net(W), {**LIMIT, "style": "OFFSET"}, seed=0).forward(x)
    # G = (w + 1) / 2: column 0 draws 3 -> 1.5, column 1 draws 0.5 (unclipped)
    # w.x = 2 * I - sum(x): [2 * 1.5 - 3, 2 * 0.5 - 3]
    np.testing.assert_allclose(y, [[0.0, -2.0]], atol=1e-12)


def test_limit_with_gmin_matches_programmed_conductances():
    rng = np.random.default_rng(0)
    W = rng.uniform(-1, 1, size=(20, 7))
    x = rng.uniform(0, 1, size=(9, 20))
    cfg = {"On_off_ratio": 10, "Icol_max": 4e-6, "Icell_max": 1e-6}
    sim = simulator.Simulation(dense_net(W), cfg, seed=0)
    pos, neg = sim.arrays("fc")  # one array: its positive and negative device planes
    assert (pos.plane, neg.plane) == ("pos", "neg")
    Gmin = 0.1
    I = np.clip(x @ pos.G, -4, 4) - np.clip(x @ neg.G, -4, 4)
    np.testing.assert_allclose(sim.forward(x), I / (1 - Gmin) * sim.mapping("fc").W_max, atol=1e-9)
    assert (x @ pos.G).max() > 4 and (x @ neg.G).max() > 4  # both planes were clipped somewhere


@pytest.mark.parametrize("extra", [
    {}, {"style": "OFFSET"}, {"style": "OFFSET", "digital_offset": False}, {"On_off_ratio": 10, "NrowsMax": 8},
    {"weight_bits": 9, "Nslices": 4, "dac_bits": 6, "dac_range": [-1.0, 1.0], "input_bitslicing": True, "ADC_per_ibit": True},
    {"weight_bits": 8, "dac_bits": 6, "dac_range": [-1.0, 1.0], "input_bitslicing": True},
], ids=lambda e: ",".join(f"{k}={v}" for k, v in e.items()) or "balanced")
def test_no_clipping_under_the_limit(extra):
    rng = np.random.default_rng(1)
    W = rng.uniform(-1, 1, size=(20, 7))
    x = rng.uniform(-1, 1, size=(9, 20))
    net = dense_net(W)
    ref = simulator.Simulation(net, {**extra, "precision": "float64"}, seed=0).forward(x)
    # the largest possible column current is 20 cells at full scale: a limit of 20 cells never clips
    y = simulator.Simulation(net, {**extra, "Icol_max": 20e-6, "Icell_max": 1e-6, "precision": "float64"}, seed=0).forward(x)
    np.testing.assert_allclose(y, ref, rtol=0, atol=1e-12 * np.abs(ref).max())
    # and a small limit does change the result
    y = simulator.Simulation(net, {**extra, "Icol_max": 0.3e-6, "Icell_max": 1e-6, "precision": "float64"}, seed=0).forward(x)
    assert np.abs(y - ref).max() > 1e-3 * np.abs(ref).max()


def test_limit_applies_per_input_bit():
    """With input bit slicing each bit's column current is limited (one cell at G_max, x bits = 1)."""
    W = np.array([[1.0], [1.0], [1.0]])
    x = np.array([[1.0, 1.0, 1.0]])  # 2-bit unsigned codes 3: both bits set on every row
    cfg = {"dac_bits": 2, "dac_range": [0.0, 1.0], "input_bitslicing": True, "Icol_max": 2e-6, "Icell_max": 1e-6}
    for per_bit in (True, False):
        y = simulator.Simulation(dense_net(W), {**cfg, "ADC_per_ibit": per_bit}, seed=0).forward(x)
        # every bit draws 3 cell currents -> 2; recombined (2 * 1 + 2 * 2) / 3 = 2 (unlimited: 3)
        np.testing.assert_allclose(y, [[2.0]], atol=1e-12)


@pytest.mark.parametrize("cfg,where", [
    ({"Icol_max": 1e-6}, ""),
    ({"layers": {"fc": {"Icol_max": 1e-6}}}, "layers.fc."),
])
def test_config_error_when_only_one_is_set(cfg, where):
    with pytest.raises(ConfigError) as exc:
        simulator.load_config(cfg)
    msg = str(exc.value)
    assert "Icol_max" in msg and "Icell_max" in msg and where in msg and "\n" not in msg


def test_icell_max_alone_sets_no_limit():
    """CrossSim configs always set Icell_max; without Icol_max > 0 it is unused, not a conflict."""
    W = np.array([[1.0], [1.0], [1.0]])
    x = np.ones((1, 3))
    y = simulator.Simulation(dense_net(W), {"Icell_max": 1.8e-6}, seed=0).forward(x)
    np.testing.assert_allclose(y, [[3.0]], atol=1e-12)
