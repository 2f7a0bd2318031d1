"""Standalone weight quantizers: uniform, Lloyd-Max, level->conductance maps, weight noise."""
from __future__ import annotations

import numpy as np
import pytest

from devices.base import DeviceParams
from devices.registry import available_models, get_model
from simulator.errors import ConfigError, DeviceModelError
from simulator.cores.mapping import (
    balanced_decode,
    balanced_one_sided,
    balanced_two_sided,
    balanced_unified_reference,
    balanced_weight_scale,
    offset_decode,
    offset_linear,
)
from simulator.quantization import (
    LloydResult,
    lloyd_max,
    quantize_lloyd,
    quantize_uniform,
    relative_max_noise,
    uniform_levels,
)

N = 100_000


def _weights(kind: str, seed: int = 1234) -> np.ndarray:
    rng = np.random.default_rng(seed)
    if kind == "gaussian":
        return rng.normal(0.0, 0.05, N)
    if kind == "laplacian":
        return rng.laplace(0.0, 0.03, N)
    if kind == "uniform":
        return rng.uniform(-1.0, 1.0, N)
    raise ValueError(kind)


def _mse(w, wq) -> float:
    return float(np.mean((w - wq) ** 2))


# ---------------------------------------------------------------- uniform
def test_uniform_levels_spacing_and_zero():
    w = np.zeros(3)
    np.testing.assert_allclose(uniform_levels(w, 5, 2.0), [-2, -1, 0, 1, 2])
    assert uniform_levels(w, 7, 0.3)[3] == 0.0
    np.testing.assert_allclose(uniform_levels(w, 4, 1.5), [-1.5, -0.5, 0.5, 1.5])
    assert 0.0 not in uniform_levels(w, 4, 1.5)
    np.testing.assert_array_equal(uniform_levels(w, 1, 1.0), [0.0])
    with pytest.raises(ConfigError):
        uniform_levels(w, 0, 1.0)
    with pytest.raises(ConfigError):
        uniform_levels(w, 3, 0.0)


def test_quantize_uniform_rounds_and_clips():
    w = np.array([[-3.0, -0.9, -0.4, 0.1], [0.6, 0.99, 1.0, 5.0]], dtype=np.float32)
    wq, levels = quantize_uniform(w, 3, 1.0)
    assert wq.shape == w.shape and wq.dtype == np.float32
    np.testing.assert_array_equal(wq, [[-1, -1, 0, 0], [1, 1, 1, 1]])
    wq, levels = quantize_uniform(np.linspace(-1, 1, 1001), 4, 1.0)
    assert set(np.unique(wq)) <= set(levels)
    assert np.max(np.abs(wq - np.linspace(-1, 1, 1001))) <= (2 / 3) / 2 + 1e-12
    with pytest.raises(ConfigError):
        quantize_uniform(np.array([0.0, np.nan]), 3, 1.0)


# ---------------------------------------------------------------- Lloyd-Max
@pytest.mark.parametrize("kind", ["gaussian", "laplacian"])
@pytest.mark.parametrize("n", [3, 4, 8])
def test_lloyd_beats_uniform(kind, n):
    w = _weights(kind)
    res = lloyd_max(w, n)
    assert isinstance(res, LloydResult)
    assert res.levels.shape == (n,) and res.thresholds.shape == (n - 1,)
    assert np.all(np.diff(res.levels) > 0)
    np.testing.assert_allclose(res.thresholds, 0.5 * (res.levels[1:] + res.levels[:-1]))
    wq = quantize_lloyd(w, res)
    assert res.mse == pytest.approx(_mse(w, wq), rel=1e-12)
    wmax = float(np.max(np.abs(w)))
    mse_uniform = _mse(w, quantize_uniform(w, n, wmax)[0])
    assert res.mse <= mse_uniform
    # also against uniform levels with the best clipping range (grid search)
    best = min(_mse(w, quantize_uniform(w, n, a)[0]) for a in np.linspace(0.02, 1.0, 200) * wmax)
    assert res.mse <= best * (1 + 1e-9)


@pytest.mark.parametrize("n", [3, 4, 8])
def test_lloyd_uniform_data_reaches_known_optimum(n):
    w = _weights("uniform")
    res = lloyd_max(w, n, tol=1e-12, max_iter=5000)
    centres = -1.0 + (2 * np.arange(n) + 1) / n
    edges = -1.0 + 2 * np.arange(1, n) / n
    # the fit is the exact fixed point for the *sample*; its density fluctuations
    # shift the levels by up to ~0.02 at n = 8 (worst of 40 seeds), 1 % of the range
    np.testing.assert_allclose(res.levels, centres, atol=0.03)
    np.testing.assert_allclose(res.thresholds, edges, atol=0.03)
    assert res.mse == pytest.approx((2.0 / n) ** 2 / 12, rel=0.01)
    assert res.iterations < 5000


def test_lloyd_tol_controls_iterations():
    w = _weights("laplacian")
    loose = lloyd_max(w, 8, tol=1e-2)
    tight = lloyd_max(w, 8, tol=1e-9, max_iter=10_000)
    assert loose.iterations < tight.iterations
    assert tight.mse <= loose.mse
    capped = lloyd_max(w, 8, tol=0.0, max_iter=3)
    assert capped.iterations == 3


def test_lloyd_is_deterministic_and_order_independent():
    w = _weights("laplacian").reshape(200, 500)
    a, b = lloyd_max(w, 4), lloyd_max(w.copy(), 4)
    np.testing.assert_array_equal(a.levels, b.levels)
    np.testing.assert_array_equal(a.thresholds, b.thresholds)
    assert (a.mse, a.iterations) == (b.mse, b.iterations)
    c = lloyd_max(np.random.default_rng(5).permutation(w.ravel()), 4)
    np.testing.assert_array_equal(a.levels, c.levels)
    wq = quantize_lloyd(w, a)
    assert wq.shape == w.shape
    np.testing.assert_array_equal(wq, quantize_lloyd(w, a))


def test_lloyd_levels_may_be_asymmetric():
    rng = np.random.default_rng(7)
    w = np.concatenate([rng.normal(-0.02, 0.01, 30_000), rng.normal(0.1, 0.03, 10_000)])
    res = lloyd_max(w, 4)
    assert abs(res.levels[0] + res.levels[-1]) > 0.05  # clearly not symmetric about 0
    assert res.mse <= _mse(w, quantize_uniform(w, 4, float(np.max(np.abs(w))))[0])


def test_lloyd_threshold_ties_go_to_lower_level():
    res = LloydResult(np.array([-1.0, 1.0]), np.array([0.0]), 0.0, 0)
    np.testing.assert_array_equal(quantize_lloyd(np.array([-0.1, 0.0, 0.1]), res), [-1.0, -1.0, 1.0])


def test_lloyd_repairs_empty_cells():
    rng = np.random.default_rng(3)
    w = np.concatenate([rng.normal(-5, 0.5, 5000), rng.normal(5, 0.5, 5000)])
    # uniform init puts the middle level at 0, whose cell holds no weight
    res = lloyd_max(w, 3, init="uniform")
    counts = np.bincount(np.searchsorted(res.thresholds, w), minlength=3)
    assert np.all(counts > 0)
    assert res.mse < lloyd_max(w, 2).mse
    again = lloyd_max(w, 3, init="uniform")
    np.testing.assert_array_equal(res.levels, again.levels)


def test_lloyd_degenerate_inputs():
    w = np.full(1000, 0.25)
    with pytest.raises(ConfigError, match="allow_degenerate"):
        lloyd_max(w, 4)
    res = lloyd_max(w, 4, allow_degenerate=True)
    np.testing.assert_array_equal(res.levels, [0.25])
    assert res.thresholds.shape == (0,) and res.mse == 0.0
    np.testing.assert_array_equal(quantize_lloyd(w, res), w)
    two = np.array([1.0, 2.0, 1.0, 2.0, 2.0])
    with pytest.raises(ConfigError):
        lloyd_max(two, 3)
    np.testing.assert_array_equal(lloyd_max(two, 3, allow_degenerate=True).levels, [1.0, 2.0])
    exact = lloyd_max(two, 2)
    np.testing.assert_array_equal(exact.levels, [1.0, 2.0])
    assert exact.mse == 0.0
    single = lloyd_max(np.array([1.0, 2.0, 6.0]), 1)
    np.testing.assert_allclose(single.levels, [3.0])
    with pytest.raises(ConfigError):
        lloyd_max(np.array([0.0, np.nan, 1.0]), 2)
    with pytest.raises(ConfigError):
        lloyd_max(np.array([]), 2)
    with pytest.raises(ConfigError):
        lloyd_max(np.arange(10.0), 2, init="random")


def test_lloyd_fast_on_a_million_weights():
    import time

    w = np.random.default_rng(11).standard_normal(1_000_000)
    t0 = time.perf_counter()
    res = lloyd_max(w, 8)
    assert time.perf_counter() - t0 < 5.0  # ~0.05 s measured
    assert res.levels.shape == (8,)


# ---------------------------------------------------------------- mapping
LEVELS = np.array([-0.7, -0.2, 0.0, 0.15, 0.45, 1.3])  # non-uniform, asymmetric


@pytest.mark.parametrize("Gmin", [0.0, 0.1, 2.1 / 17.85])
def test_balanced_maps_reconstruct_levels(Gmin):
    for fn in (balanced_one_sided, balanced_two_sided):
        Gp, Gn = fn(LEVELS, Gmin)
        assert np.all(Gp >= Gmin - 1e-15) and np.all(Gp <= 1 + 1e-15)
        assert np.all(Gn >= Gmin - 1e-15) and np.all(Gn <= 1 + 1e-15)
        np.testing.assert_allclose(balanced_decode(Gp, Gn, balanced_weight_scale(LEVELS, Gmin)), LEVELS, atol=1e-14)
        np.testing.assert_allclose((Gp - Gn) * np.max(np.abs(LEVELS)) / (1 - Gmin), LEVELS, atol=1e-14)
    Gp, Gn = balanced_one_sided(LEVELS, Gmin)
    assert Gp[-1] == pytest.approx(1.0)  # max |level| -> Gmax
    np.testing.assert_allclose(np.minimum(Gp, Gn), Gmin)  # the other device at Gmin
    assert Gp[2] == Gn[2] == pytest.approx(Gmin)
    Gp, Gn = balanced_two_sided(LEVELS, Gmin)
    assert Gp[2] == Gn[2] == pytest.approx((1 + Gmin) / 2)
    assert (Gp[-1], Gn[-1]) == (pytest.approx(1.0), pytest.approx(Gmin))
    np.testing.assert_allclose(Gp + Gn, 1 + Gmin)


@pytest.mark.parametrize("Gmin", [0.0, 0.05])
def test_unified_reference_reconstructs_levels(Gmin):
    for G_ref in (None, 0.2):
        Gp, Gn = balanced_unified_reference(LEVELS, Gmin, G_ref)
        ref = Gmin if G_ref is None else G_ref
        np.testing.assert_allclose(np.minimum(Gp, Gn), ref)
        assert np.max(Gp) == pytest.approx(1.0)
        s = balanced_weight_scale(LEVELS, Gmin, G_ref)
        assert s == pytest.approx(np.max(np.abs(LEVELS)) / (1 - ref))
        np.testing.assert_allclose(balanced_decode(Gp, Gn, s), LEVELS, atol=1e-14)
    # the paper's device: 2.1 .. 17.85 uS, G_ref = 2.1 uS, |w|/max|w| * 15.75 uS
    Gp, Gn = balanced_unified_reference(np.array([-1.0, 0.5]), 2.1 / 17.85)
    np.testing.assert_allclose(np.array([Gp, Gn]) * 17.85, [[2.1, 2.1 + 0.5 * 15.75], [17.85, 2.1]])
    with pytest.raises(ConfigError):
        balanced_unified_reference(LEVELS, 0.3, G_ref=0.1)


@pytest.mark.parametrize("Gmin", [0.0, 0.01, 0.25])
def test_offset_linear_reconstructs_levels(Gmin):
    G, scale, offset = offset_linear(LEVELS, Gmin)
    assert G[0] == pytest.approx(Gmin) and G[-1] == pytest.approx(1.0)
    assert np.all(np.diff(G) > 0)
    np.testing.assert_allclose(scale * (G - Gmin) + offset, LEVELS, atol=1e-14)
    np.testing.assert_allclose(offset_decode(G, scale, offset, Gmin), LEVELS, atol=1e-14)
    # MVM form: W x = scale * (G x) + (offset - scale * Gmin) * sum(x)
    rng = np.random.default_rng(0)
    W = rng.choice(LEVELS, size=(6, 4))
    x = rng.standard_normal(6)
    Gw, sc, off = offset_linear(W, Gmin)
    np.testing.assert_allclose(sc * (x @ Gw) + (off - sc * Gmin) * x.sum(), x @ W, atol=1e-12)
    single = offset_linear(np.array([0.3, 0.3]), Gmin)
    np.testing.assert_allclose(offset_decode(single.G, single.scale, single.offset, Gmin), [0.3, 0.3])


def test_mapping_of_lloyd_levels_and_bad_gmin():
    w = _weights("laplacian")
    res = lloyd_max(w, 4)
    wq = quantize_lloyd(w, res)
    Gp, Gn = balanced_one_sided(wq, 0.1)
    np.testing.assert_allclose(balanced_decode(Gp, Gn, balanced_weight_scale(wq, 0.1)), wq, atol=1e-15)
    for bad in (-0.1, 1.0, np.nan):
        with pytest.raises(ConfigError):
            balanced_one_sided(LEVELS, bad)
    Gp, Gn = balanced_one_sided(np.zeros(3), 0.1)
    np.testing.assert_allclose([Gp, Gn], 0.1)


# ---------------------------------------------------------------- weight noise
def test_relative_max_noise_std():
    rng = np.random.default_rng(42)
    wq = quantize_lloyd(_weights("gaussian"), lloyd_max(_weights("gaussian"), 4))
    delta = 0.02
    noisy = relative_max_noise(wq, delta, rng)
    assert noisy.shape == wq.shape and noisy is not wq
    d = noisy - wq
    target = delta * np.max(np.abs(wq))
    assert np.std(d) == pytest.approx(target, rel=0.05)
    assert abs(np.mean(d)) < 5 * target / np.sqrt(d.size)
    np.testing.assert_array_equal(relative_max_noise(wq, 0.0, rng), wq)
    a = relative_max_noise(wq, delta, np.random.default_rng(1))
    b = relative_max_noise(wq, delta, np.random.default_rng(1))
    np.testing.assert_array_equal(a, b)
    with pytest.raises(ConfigError):
        relative_max_noise(wq, -0.1, rng)


def test_relative_max_device_model():
    assert "relative_max" in available_models("error")
    cls = get_model("relative_max", "error")
    assert cls.name == "relative_max" and cls.provides == frozenset({"error"})
    model = cls(DeviceParams(alpha_error=0.03))
    G = np.random.default_rng(0).uniform(0.0, 0.8, (400, 250))
    out = model.programming_error(G, np, np.random.default_rng(9))
    # sigma = alpha_error * G_max = alpha_error for the layer, not alpha_error * max(G) of this array (0.8 here)
    assert np.std(out - G) == pytest.approx(0.03, rel=0.05)
    np.testing.assert_allclose(model.programming_sigma(G, np), 0.03)
    assert cls(DeviceParams(alpha_error=0.0)).programming_error(G, np, np.random.default_rng(0)) is G
    with pytest.raises(DeviceModelError):
        cls(DeviceParams(alpha_error=0.03, proportional_error=True))
    # one_sided map with Gmin = 0: alpha_error * max(G) equals delta * max|Wq| in weight units
    wq = np.array([[-0.4, 0.0], [0.2, 0.8]])
    Gp, Gn = balanced_one_sided(wq, 0.0)
    s = balanced_weight_scale(wq, 0.0)
    assert 0.03 * max(Gp.max(), Gn.max()) * s == pytest.approx(0.03 * np.max(np.abs(wq)))
