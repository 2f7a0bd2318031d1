"""Same config + seed -> identical outputs however the work is split (issue 15).

Randomness is keyed (simulator.backend.RandomStreams): programming errors and
drift by (seed, layer core, partition, slice, polarity), read noise also by the
global image index. These tests change only how the work is split -- memory
budget (chunking inside the cores and the convolution), ntest_batch, calling
image by image, worker processes of a sweep -- and require bit-identical
outputs / identical accuracies.
"""
from __future__ import annotations

import os

import numpy as np
import pytest

import simulator
from simulator.backend import RandomStreams
from simulator.io.digits import load_digits_split

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))

NOISY = {  # programming error and read noise, 8-bit arrays, partitions of 40 rows
    "model_name": "digits_cnn", "weight_bits": 8, "NrowsMax": 40, "On_off_ratio": 100, "adc_bits": 8, "dac_bits": 8,
    "error_model": "alpha", "proportional_error": True, "alpha_error": 0.05,
    "noise_model": "alpha", "alpha_noise": 0.03,
}
DRIFT = {  # PCM drift after one day (includes its programming error) and read noise; ideal converters
    **NOISY, "adc_bits": 0, "dac_bits": 0, "error_model": "PCM_Joshi", "drift_model": "PCM_Joshi", "t_drift": 1.0,
    "device_params": {"pcm_Gmax_uS": 25.0},
}
CASES = {
    "output-noise": NOISY,
    "drift+noise": DRIFT,
    "exact-noise": {**NOISY, "read_noise_mode": "exact"},
    "bitsliced-inputs": {**NOISY, "input_bitslicing": True, "ADC_per_ibit": True},
    "mlp-offset": {**NOISY, "model_name": "digits_mlp", "style": "OFFSET"},
}


@pytest.fixture(scope="module")
def images():
    x, y = load_digits_split("test")
    return x[:24], y[:24]


def _net(cfg):
    return simulator.load_model(cfg["model_name"])


def assert_same(a, b, cfg):
    """Bit-identical behind an ADC; without one (float64 outputs) the random draws are identical but BLAS may
    round a dot product differently for another batch shape (gemv vs gemm blocking): allow a few ulp."""
    if cfg.get("adc_bits", 0) > 0:
        np.testing.assert_array_equal(a, b)
    else:
        np.testing.assert_allclose(a, b, rtol=1e-12, atol=1e-12)


@pytest.mark.parametrize("case", list(CASES))
def test_outputs_independent_of_memory_budget_and_batching(case, images):
    cfg = CASES[case]
    x, _ = images
    net = _net(cfg)
    if net.input_layout == "NHWC" and net.input_shape != x.shape[1:]:
        x = x.reshape(len(x), *net.input_shape)
    big = simulator.Simulation(net, {**cfg, "memory_budget_mb": 512}, seed=7).forward(x)
    small = simulator.Simulation(net, {**cfg, "memory_budget_mb": 0.05}, seed=7).forward(x)
    assert_same(big, small, cfg)
    sim = simulator.Simulation(net, {**cfg, "memory_budget_mb": 512}, seed=7)
    one_by_one = np.concatenate([sim.forward(x[i : i + 1], image_offset=i) for i in range(len(x))])
    assert_same(big, one_by_one, cfg)
    # odd batches given out of order, with their offsets
    sim = simulator.Simulation(net, cfg, seed=7)
    later, first = sim.forward(x[5:], image_offset=5), sim.forward(x[:5], image_offset=0)
    assert_same(big, np.concatenate([first, later]), cfg)
    # and the noise is real: another seed, or the same images at other indices, differ
    other = simulator.Simulation(net, cfg, seed=8).forward(x)
    assert np.abs(big - other).max() > 1e-3
    shifted = simulator.Simulation(net, cfg, seed=7).forward(x, image_offset=1000)
    assert np.abs(big - shifted).max() > 1e-3


def test_run_identical_for_budgets_and_ntest_batch():
    base = {**DRIFT, "ntest": 64, "Nruns": 2, "seed": 3}
    ref = simulator.run({**base, "memory_budget_mb": 512, "ntest_batch": 500})
    for extra in ({"memory_budget_mb": 0.05}, {"ntest_batch": 1}, {"ntest_batch": 7, "memory_budget_mb": 0.05}):
        res = simulator.run({**base, **extra})
        assert [r["accuracy"] for r in res.rows] == [r["accuracy"] for r in ref.rows], extra
    # a run computed alone (as a sweep worker does) equals the same run inside the whole job
    alone = simulator.run({**base}, runs=[1])
    assert alone.rows[0]["accuracy"] == ref.rows[1]["accuracy"]


def test_sweep_identical_for_one_and_two_workers(tmp_path):
    from simulator.sweep import run_sweep

    base = {**NOISY, "ntest": 48, "Nruns": 2}
    kw = dict(seed=5, plot=False)
    one = run_sweep(base, ["alpha_noise=0.02,0.05"], workers=1, out=tmp_path, name="w1", **kw)
    two = run_sweep(base, ["alpha_noise=0.02,0.05"], workers=2, out=tmp_path, name="w2", **kw)
    cols = ["alpha_noise", "run", "seed", "accuracy"]
    a = one.results[cols].sort_values(["alpha_noise", "run"]).reset_index(drop=True)
    b = two.results[cols].sort_values(["alpha_noise", "run"]).reset_index(drop=True)
    assert a.equals(b)


def test_streams_are_keyed_not_ordered():
    s = RandomStreams(11)
    full = s.normal(("read", "fc", "eff", -1), 0, 1000, "float32")
    np.testing.assert_array_equal(full[333:777], s.normal(("read", "fc", "eff", -1), 333, 444, "float32"))
    other = s.normal(("read", "fc", "pos", -1), 0, 1000, "float32")
    assert abs(np.corrcoef(full, other)[0, 1]) < 0.15
    g1, g2 = s.generator("program", "fc/part0/slice0", "pos"), s.generator("program", "fc/part0/slice0", "pos")
    np.testing.assert_array_equal(g1.standard_normal(5), g2.standard_normal(5))
    assert not np.array_equal(RandomStreams(12).normal(("a",), 0, 10), RandomStreams(11).normal(("a",), 0, 10))


@pytest.mark.parametrize("dtype", ["float32", "float64"])
def test_keyed_normals_are_standard_normal(dtype):
    from scipy import stats

    z = RandomStreams(0).normal(("k",), 12345, 200_000, dtype).astype(np.float64)
    assert abs(z.mean()) < 0.01 and abs(z.std() - 1) < 0.01
    assert stats.kstest(z, "norm").pvalue > 1e-3
    assert abs(np.corrcoef(z[:-1], z[1:])[0, 1]) < 0.01  # the two values of a Box-Muller pair are independent


@pytest.mark.parametrize("shape,start,scale_rows", [((3000, 100), 7, 3000), ((5, 4), 0, 1), ((2000, 3, 70), 1, 2000)],
                         ids=["blocks-odd-start", "one-block-broadcast", "3d"])
def test_add_normal_adds_the_keyed_normals_in_place(shape, start, scale_rows):
    """``add_normal(out, s, key, start)`` == ``out + s * normal(key, start, out.size)`` bit for bit.

    3000 x 100 values span three blocks of rows, and an odd start splits a
    Box-Muller pair at the stream position; the draws are the same numbers as one call of ``normal``.
    """
    s = RandomStreams(5)
    rng = np.random.default_rng(0)
    out = rng.standard_normal(shape).astype(np.float32)
    scale = rng.random((scale_rows,) + (1,) * (len(shape) - 1)).astype(np.float32)
    expected = out + scale * s.normal(("read", "x"), start, out.size, "float32").reshape(shape)
    s.add_normal(out, scale, ("read", "x"), start)
    np.testing.assert_array_equal(out, expected)
