"""Parasitic resistance (manual 8.3) inside the full simulator.

The circuit solver itself is checked against nodal analysis in
test_parasitics.py; here: the simulator hands it the programmed conductances
and the right inputs (voltages, or input bits for topologies B/C), per device
plane, weight slice and row partition, and recombines the currents as without
parasitics.
"""
import numpy as np
import pytest

import simulator
from simulator.circuits.parasitics import parasitic_mvm
from simulator.errors import ConfigError
from simulator.network import Layer, Network


def dense_net(W, b=None):
    weights = {"kernel": np.asarray(W, float)}
    if b is not None:
        weights["bias"] = b
    layers = [Layer("input", "Input"),
              Layer("fc", "Dense", ["input"], {"units": W.shape[1], "use_bias": b is not None}, weights)]
    return Network("dense", layers, ["fc"], "NHWC", (W.shape[0],))


def rel(a, b):
    return np.abs(a - b).max() / np.abs(b).max()


RNG0 = np.random.default_rng(5)
W = RNG0.uniform(-1, 1, size=(24, 6))
X = RNG0.uniform(0, 1, size=(10, 24))
X[:, ::4] = 0.0
BASE = {"On_off_ratio": 10, "precision": "float64"}
GMIN = 0.1


def test_rp_zero_equals_ideal():
    net = dense_net(W, np.random.default_rng(9).normal(size=6))
    for extra in ({}, {"style": "OFFSET"}, {"noRowParasitics": True, "interleaved_posneg": True}):
        sim = simulator.Simulation(net, {**extra, "Rp": 0.0, "On_off_ratio": 0, "precision": "float64"}, seed=0)
        assert rel(sim.forward(X), sim.ideal_forward(X)) < 1e-12


@pytest.mark.parametrize("style", ["BALANCED", "OFFSET"])
def test_topology_A_matches_solver_on_programmed_conductances(style):
    Rp = 2e-3
    net = dense_net(W)
    sim = simulator.Simulation(net, {**BASE, "style": style, "Rp": Rp, "Verr_th": 1e-7}, seed=0)
    m = sim.mapping("fc")
    planes = {a.plane: a.G for a in sim.arrays("fc")}  # one array
    assert set(planes) == ({"pos", "neg"} if style == "BALANCED" else {"pos"})
    y = sim.forward(X)
    kw = {"Verr_th": 1e-7, "max_iter": 200}
    if style == "BALANCED":
        # separate positive and negative arrays, subtracted after the sense amplifiers
        I = parasitic_mvm(planes["pos"], X, Rp, "A", G_neg=planes["neg"], **kw)
        expected = I / (1 - GMIN) * m.W_max
    else:
        I = parasitic_mvm(planes["pos"], X, Rp, "A", **kw)
        s = X.sum(axis=1, keepdims=True)
        expected = (m.slice_gains[0] * (I - GMIN * s) / (1 - GMIN) - m.offset * s) * m.W_max
    np.testing.assert_allclose(y, expected, rtol=0, atol=1e-5 * np.abs(expected).max())
    ideal = sim.ideal_forward(X)
    assert rel(y, ideal) > 1e-3  # the wires matter at this Rp


@pytest.mark.parametrize("topology_cfg", [
    {}, {"noRowParasitics": True, "input_bitslicing": True, "dac_bits": 6, "dac_range": [0.0, 1.0]},
], ids=["A", "B"])
def test_error_grows_with_rp(topology_cfg):
    net = dense_net(W)
    errs = []
    for Rp in (0.0, 1e-5, 1e-4, 1e-3, 4e-3):
        sim = simulator.Simulation(net, {**BASE, **topology_cfg, "Rp": Rp}, seed=0)
        ref = simulator.Simulation(net, {**BASE, **topology_cfg}, seed=0).forward(X)
        errs.append(rel(sim.forward(X), ref))
    assert errs[0] < 1e-12
    assert all(a < b for a, b in zip(errs, errs[1:])), errs
    assert errs[-1] > 10 * errs[2]


@pytest.mark.parametrize("cfg,names", [
    ({"Rp": 1e-4, "noRowParasitics": True}, ["noRowParasitics", "input_bitslicing"]),
    ({"Rp": 1e-4, "noRowParasitics": True, "interleaved_posneg": True}, ["noRowParasitics", "input_bitslicing"]),
    ({"Rp": 1e-4, "noRowParasitics": True, "interleaved_posneg": True, "input_bitslicing": True, "dac_bits": 4,
      "style": "OFFSET"}, ["interleaved_posneg", "style"]),
    ({"layers": {"fc": {"Rp": 1e-4, "noRowParasitics": True}}}, ["layers.fc.", "noRowParasitics", "input_bitslicing"]),
])
def test_topology_B_and_C_need_input_bitslicing(cfg, names):
    with pytest.raises(ConfigError) as exc:
        simulator.Simulation(dense_net(W), cfg)
    msg = str(exc.value)
    assert "\n" not in msg and "Table 8.1" in msg
    for n in names:
        assert n in msg


def test_topology_B_rows_with_zero_input_draw_no_current():
    Rp = 3e-3
    W2 = W.copy()
    zero_rows = np.flatnonzero(np.all(X == 0, axis=0))
    assert len(zero_rows) == 6
    W2[zero_rows] = np.random.default_rng(7).uniform(-1, 1, size=(len(zero_rows), W.shape[1]))  # other cells where no bit is ever 1
    W2[zero_rows] *= 0.9 * np.abs(W).max() / np.abs(W2[zero_rows]).max()  # keep W_max (the weight scale) the same
    slicing = {"input_bitslicing": True, "dac_bits": 5, "dac_range": [0.0, 1.0]}
    outs = {}
    for topo, extra in (("A", {}), ("B", {"noRowParasitics": True})):
        for name, M in (("W", W), ("W2", W2)):
            cfg = {**BASE, **slicing, **extra, "Rp": Rp, "Verr_th": 1e-11, "parasitics_max_iter": 500}
            outs[topo, name] = simulator.Simulation(dense_net(M), cfg, seed=0).forward(X)
    # B: the select transistors of those rows stay open, whatever their conductance (equal to the
    # solver's tolerance: its relaxation factor is bounded using every cell, connected or not)
    np.testing.assert_allclose(outs["B", "W"], outs["B", "W2"], rtol=0, atol=1e-8)
    # A: the same cells still connect the (grounded) row to the column and change the result
    assert rel(outs["A", "W"], outs["A", "W2"]) > 1e-4
    # and without parasitics both are the ideal result, which does not depend on those rows either
    ideal = simulator.Simulation(dense_net(W), {**BASE, **slicing}, seed=0).forward(X)
    assert rel(outs["B", "W"], ideal) > 1e-4


def _bits(x_int, n_bits):
    sign = np.sign(x_int)
    mag = np.abs(x_int).astype(int)
    return [((mag >> k) & 1) * sign for k in range(n_bits)]


@pytest.mark.parametrize("topology", ["A", "B", "C"])
def test_partitions_slices_and_input_bits(topology):
    """NrowsMax partitions x weight slices x input bits, each array solved on its own."""
    Rp = 1e-3
    rng = np.random.default_rng(8)
    Wb = rng.uniform(-1, 1, size=(30, 5))
    Xs = rng.uniform(-1, 1, size=(7, 30))
    cfg = {**BASE, "Rp": Rp, "NrowsMax": 12, "weight_bits": 7, "Nslices": 3, "dac_bits": 4, "dac_range": [-1.0, 1.0],
           "input_bitslicing": True, "ADC_per_ibit": True, "Verr_th": 1e-8, "parasitics_max_iter": 400}
    if topology != "A":
        cfg["noRowParasitics"] = True
    if topology == "C":
        cfg["interleaved_posneg"] = True
    sim = simulator.Simulation(dense_net(Wb), cfg, seed=0)
    m = sim.mapping("fc")
    assert [rs.stop - rs.start for rs, _ in m.partitions] == [10, 10, 10] and m.n_slices == 3
    arrays = {(a.partition, a.slice, a.plane): a for a in sim.arrays("fc")}
    assert len(arrays) == 3 * 3 * 2
    L = 7  # 4-bit signed inputs: 3 magnitude bits
    x_int = np.clip(np.rint(Xs * L), -L, L)
    planes = _bits(x_int, 3)
    kw = {"Verr_th": 1e-8, "max_iter": 400}
    total = 0.0
    for part, (rs, _) in enumerate(m.partitions):
        for s in range(m.n_slices):
            pos, neg = arrays[part, s, "pos"], arrays[part, s, "neg"]
            for k, p in enumerate(planes):
                xp_ = p[:, rs].astype(float)
                if topology == "C":
                    I = parasitic_mvm(pos.G, xp_, Rp, "C", G_neg=neg.G, **kw)
                else:
                    I = parasitic_mvm(pos.G, xp_, Rp, topology, **kw) - parasitic_mvm(neg.G, xp_, Rp, topology, **kw)
                total = total + pos.gain * 2**k / L * I / (1 - GMIN)
    expected = total * m.W_max
    y = sim.forward(Xs)
    np.testing.assert_allclose(y, expected, rtol=0, atol=1e-6 * np.abs(expected).max())
    ideal = simulator.Simulation(dense_net(Wb), {k: v for k, v in cfg.items() if k != "Rp"}, seed=0).forward(Xs)
    assert 1e-4 < rel(y, ideal) < 0.2


def test_read_noise_with_parasitics_is_sampled_per_conductance(caplog):
    sim = simulator.Simulation(dense_net(W), {**BASE, "Rp": 1e-4, "noise_model": "alpha", "alpha_noise": 0.01}, seed=0)
    assert all(a.exact_noise for a in sim.arrays("fc"))
    y1, y2 = sim.forward(X), sim.forward(X)
    assert np.abs(y1 - y2).max() > 0  # re-sampled every MVM
    ref = simulator.Simulation(dense_net(W), {**BASE, "Rp": 1e-4}, seed=0).forward(X)
    assert rel(y1, ref) < 0.1
