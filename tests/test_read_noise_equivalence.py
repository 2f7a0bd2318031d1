"""Read noise drawn at the column output equals per-conductance sampling in distribution.

``read_noise_mode = "exact"`` draws a fresh noisy conductance matrix for every
MVM; ``"output"`` adds ``N(0, sum_i sigma_ij^2 x_i^2)`` to every column
(DESIGN.md, performance rules). Over 20 000 MVMs of one input the two must
give the same per-output mean and standard deviation (3 %), on a dense and a
convolution layer, BALANCED and OFFSET, for the generic alpha model
(independent and proportional) and the parabolic model. ``"auto"`` must fall
back to exact sampling, once-logged, for a model that declares its noise not
output-equivalent.
"""
import logging
import textwrap

import numpy as np
import pytest

import simulator
from simulator.network import Layer, Network

RNG = np.random.default_rng(11)


@pytest.fixture(autouse=True)
def _fixed_rng():
    """Every test draws the same numbers whatever ran before it (also under xdist)."""
    global RNG
    RNG = np.random.default_rng(11)
N = 20000

NOISE = {
    "alpha_ind": {"noise_model": "alpha", "alpha_noise": 0.05},
    "alpha_prop": {"noise_model": "alpha", "alpha_noise": 0.1, "proportional_noise": True},
    "parabolic": {"noise_model": "parabolic"},
}
STYLES = {
    "BALANCED": {"style": "BALANCED"},
    "OFFSET": {"style": "OFFSET"},
    "OFFSET_unit_column": {"style": "OFFSET", "digital_offset": False},
}


def dense_net():
    W = RNG.uniform(-0.25, 1.0, size=(12, 6))
    W[:, W.sum(axis=0) < 3] += 0.3  # every column sum well above zero
    layers = [Layer("input", "Input"), Layer("fc", "Dense", ["input"], {"units": 6, "use_bias": False}, {"kernel": W})]
    return Network("dense", layers, ["fc"], "NHWC", (12,)), RNG.uniform(0.2, 1.0, size=12)


def conv_net():
    k = RNG.uniform(-0.25, 1.0, size=(3, 3, 2, 3))
    layers = [Layer("input", "Input"),
              Layer("conv", "Conv2D", ["input"], {"filters": 3, "kernel_size": [3, 3], "padding": "valid", "use_bias": False},
                    {"kernel": k})]
    return Network("conv", layers, ["conv"], "NHWC", (4, 4, 2)), RNG.uniform(0.2, 1.0, size=(4, 4, 2))


def stats(net, x0, cfg, mode, seed):
    sim = simulator.Simulation(net, {**cfg, "read_noise_mode": mode, "On_off_ratio": 10, "precision": "float64"}, seed=seed)
    (array, *_) = sim.arrays(next(iter(sim.cores)))
    assert array.exact_noise == (mode == "exact")
    y = sim.forward(np.broadcast_to(x0, (N,) + x0.shape))
    y = y.reshape(N, -1)
    return y.mean(axis=0), y.std(axis=0), sim


@pytest.mark.parametrize("noise", list(NOISE))
@pytest.mark.parametrize("style", list(STYLES))
@pytest.mark.parametrize("kind", ["dense", "conv"])
def test_exact_and_output_noise_agree(kind, style, noise):
    net, x0 = dense_net() if kind == "dense" else conv_net()
    cfg = {**STYLES[style], **NOISE[noise]}
    m_e, s_e, sim = stats(net, x0, cfg, "exact", seed=1)
    m_o, s_o, _ = stats(net, x0, cfg, "output", seed=2)
    ideal = sim.ideal_forward(x0[None]).ravel()
    assert np.all(np.abs(ideal) > 2 * s_e)  # means away from zero: a relative test is meaningful
    np.testing.assert_allclose(m_o, m_e, rtol=0.03)
    np.testing.assert_allclose(s_o, s_e, rtol=0.03)
    np.testing.assert_allclose(m_e, ideal, rtol=0.03)  # Gaussian unclipped noise has zero mean
    assert s_e.min() > 0


PLUGIN = textwrap.dedent('''
    from devices.base import DeviceModel


    class ClippedReadNoise(DeviceModel):
        """Read noise clipped at zero conductance: not Gaussian, so not output-equivalent."""

        name = "clipped_test_noise"
        provides = frozenset({"noise"})
        read_noise_output_equivalent = False

        def read_noise_sigma(self, G, xp):
            return xp.full_like(G, 0.2)

        def sample_read_noise(self, G, sigma, xp, rng):
            return xp.maximum(G + sigma * rng.standard_normal(G.shape, dtype=G.dtype), 0.0)
''')


def test_auto_falls_back_to_exact_once(tmp_path, caplog):
    (tmp_path / "clipped_noise_plugin.py").write_text(PLUGIN)
    net, x0 = dense_net()
    cfg = {"noise_model": "clipped_test_noise", "device_path": str(tmp_path), "read_noise_mode": "auto"}
    with caplog.at_level(logging.WARNING, logger="xbarsim.cores"):
        sims = [simulator.Simulation(net, cfg, seed=s) for s in (0, 1)]
        y = sims[0].forward(np.broadcast_to(x0, (4000, 12)))
        sims[1].forward(x0[None])
    for sim in sims:
        assert all(a.exact_noise for a in sim.arrays("fc"))
    hits = [r for r in caplog.records if "clipped_test_noise" in r.getMessage()]
    assert len(hits) == 1 and "exact" in hits[0].getMessage()
    # the clipping is really applied: zero-weight devices (G = 0) only ever gain conductance,
    # so the output mean moves away from the noiseless value
    ideal = sims[0].ideal_forward(x0[None]).ravel()
    assert np.abs(y.mean(axis=0) - ideal).max() > 0.05 * np.abs(ideal).max()
    # a Gaussian model under "auto" draws at the output
    sim = simulator.Simulation(net, {"noise_model": "alpha", "alpha_noise": 0.05}, seed=0)
    assert not sim.arrays("fc")[0].exact_noise
