"""Tests of adc_calibration: streaming histograms, range optimizers, calibration files."""
from __future__ import annotations

import math

import numpy as np
import pytest
from scipy.stats import laplace, norm

from adc_calibration import (
    HardwareKey,
    ProfileStore,
    ReservoirSample,
    StreamingHistogram,
    activation_range,
    default_path,
    expected_error,
    get_optimizer,
    load_calibration,
    load_limits_npy,
    optimize_range,
    quantizer_levels,
    save_calibration,
    sliced_limits,
    sliced_range_exponents,
)
from simulator.errors import CalibrationError


# ---------------------------------------------------------------------------
# helpers: exact MSE of a quantizer on analytic densities
# ---------------------------------------------------------------------------
def _gauss_moments(x):
    """F(x), int_{-inf}^x t p(t) dt, int t^2 p(t) dt for the unit normal."""
    x = np.asarray(x, dtype=float)
    fin = np.isfinite(x)
    pdf = np.where(fin, norm.pdf(np.where(fin, x, 0.0)), 0.0)
    F = norm.cdf(x)
    return F, -pdf, F - np.where(fin, x, 0.0) * pdf


_LB = 1 / math.sqrt(2)  # Laplace scale with unit variance


def _laplace_moments(x):
    x = np.asarray(x, dtype=float)
    b = _LB
    xs = np.where(np.isfinite(x), x, np.sign(x) * 1e3)
    e = 0.5 * np.exp(-np.abs(xs) / b)
    F = np.where(xs < 0, e, 1 - e)
    G1 = np.where(xs < 0, e * (xs - b), -e * (xs + b))
    G2 = np.where(xs < 0, e * (xs * xs - 2 * b * xs + 2 * b * b), 2 * b * b - e * (xs * xs + 2 * b * xs + 2 * b * b))
    return F, G1, G2


def _exact_mse(moments, levels):
    levels = np.asarray(levels, dtype=float)
    t = np.concatenate([[-np.inf], 0.5 * (levels[:-1] + levels[1:]), [np.inf]])
    F, G1, G2 = moments(t)
    return float(np.sum(np.diff(G2) - 2 * levels * np.diff(G1) + levels**2 * np.diff(F)))


def _brute_force_zero_centred(moments, nbits, steps):
    """Best (mse, levels) over zero-centred grids k*step, k in [kmin, kmin + 2**nbits - 2]."""
    n = 2**nbits - 1
    best = (math.inf, None)
    for kmin in range(-(n // 2) - 2, -(n // 2) + 3):
        k = np.arange(kmin, kmin + n)
        for s in steps:
            m = _exact_mse(moments, k * s)
            if m < best[0]:
                best = (m, k * s)
    return best


def _quantile_samples(dist, n=200_000):
    """Deterministic samples whose empirical distribution is the density (no sampling noise)."""
    return dist.ppf((np.arange(n) + 0.5) / n)


# ---------------------------------------------------------------------------
# StreamingHistogram
# ---------------------------------------------------------------------------
def _varying_batches(seed=0, n=150):
    rng = np.random.default_rng(seed)
    out = []
    for i in range(n):
        scale = 10 ** rng.uniform(-4, 1.5)
        shift = rng.uniform(-3, 3)
        kind = i % 3
        if kind == 0:
            x = rng.normal(shift, scale, size=rng.integers(1, 3000))
        elif kind == 1:
            x = rng.laplace(shift, scale, size=(rng.integers(1, 40), 37))
        else:
            x = rng.uniform(shift - scale, shift + scale, size=rng.integers(1, 2000))
        out.append(x)
    return out


def test_quantiles_match_numpy_within_one_bin():
    batches = _varying_batches()
    h = StreamingHistogram(4096)
    for x in batches:
        h.update(x)
    allx = np.concatenate([x.ravel() for x in batches])
    assert h.count == allx.size
    assert h.min == allx.min() and h.max == allx.max()
    assert h.sum == pytest.approx(allx.sum(), rel=1e-9, abs=1e-6)
    assert h.sumsq == pytest.approx(np.dot(allx, allx), rel=1e-9)
    w = h.bin_width
    p = np.array([0, 0.1, 1, 5, 25, 50, 75, 95, 99, 99.9, 100])
    got = h.percentile(p)
    ref = np.percentile(allx, p)
    assert np.all(np.abs(got - ref) <= w), (got - ref, w)
    assert got[0] == allx.min() and got[-1] == allx.max()
    # in sparse tails NumPy interpolates between distant samples; the histogram's
    # value is then within one bin of the two order statistics around the rank
    q = np.array([1e-5, 1e-4, 0.9999, 0.99999])
    srt = np.sort(allx)
    r = q * (allx.size - 1)
    got = h.quantile(q)
    assert np.all(got >= srt[np.floor(r).astype(int)] - w) and np.all(got <= srt[np.ceil(r).astype(int)] + w)
    # the bin width is close to the finest power of two that spans the range
    assert h.bin_width <= 2 * (allx.max() - allx.min()) / h.nbins * 2


def test_merge_equals_updating_with_all_data():
    batches = _varying_batches(seed=3, n=60)
    whole = StreamingHistogram()
    for x in batches:
        whole.update(x)
    a, b = StreamingHistogram(), StreamingHistogram()
    for x in batches[::2]:
        a.update(x)
    for x in batches[1::2][::-1]:
        b.update(x)
    a.merge(b)
    da, dw = a.to_dict(), whole.to_dict()
    assert np.array_equal(da.pop("counts"), dw.pop("counts"))
    for k in ("sum", "sumsq"):
        assert da.pop(k) == pytest.approx(dw.pop(k), rel=1e-12)
    assert da == dw
    # round trip through to_dict / from_dict
    c = StreamingHistogram.from_dict(whole.to_dict())
    assert np.array_equal(c.counts, whole.counts) and c.quantile(0.37) == whole.quantile(0.37)


def test_memory_constant_and_cupy_like_input():
    h = StreamingHistogram(4096)
    h.update(np.zeros(5))
    n0 = h.nbytes
    rng = np.random.default_rng(1)
    for i in range(300):
        h.update(rng.normal(0, 1 + i, size=2000))
    assert h.nbytes == n0 == 4096 * 8

    class FakeCupy:  # anything with .get() -> numpy
        def __init__(self, a):
            self.a = a

        def get(self):
            return self.a

    h.update(FakeCupy(np.array([[1e6, -1e6]])))
    assert h.max == 1e6 and h.min == -1e6 and h.nbytes == n0


def test_nonfinite_and_constant_data():
    h = StreamingHistogram().update([0.0, 0.0, np.nan, np.inf])
    assert h.count == 2 and h.nonfinite == 2 and h.quantile(0.5) == 0.0
    lo, hi = optimize_range(StreamingHistogram().update(np.full(10, 3.0)), 4)
    assert lo < hi and 3.0 in quantizer_levels(lo, hi, 4)


def test_reservoir_sample_uniform():
    r = ReservoirSample(1000, seed=0)
    for start in range(0, 100_000, 7_000):
        r.update(np.arange(start, min(start + 7_000, 100_000), dtype=float))
    v = r.values
    assert v.size == 1000 and r.seen == 100_000 and np.unique(v).size == 1000
    # the sample's mean is that of a uniform draw from 0..99999 (sd ~ 913)
    assert abs(v.mean() - 49_999.5) < 4 * 28_867 / math.sqrt(1000)


def test_profile_store_roundtrip_and_raw(tmp_path):
    rng = np.random.default_rng(2)
    store = ProfileStore(nbins=1024, raw_dir=tmp_path / "raw")
    for _ in range(4):
        store.add_adc("conv1", rng.normal(size=(8, 16)))
        for s in range(2):
            for b in range(3):
                store.add_adc("fc", rng.normal(scale=2.0**-s, size=100), slice=s, input_bit=b)
        store.add_activation("fc", np.maximum(rng.normal(size=64), 0))
    n0 = store.nbytes
    store.add_adc("conv1", rng.normal(size=10_000))
    assert store.nbytes == n0
    assert ("fc", 1, 2) in store and ("conv1", 0, None) in store and len(store) == 7
    assert store.slices("fc") == [0, 1] and store.layers() == ["conv1", "fc"]
    assert store.adc_histogram("fc", 1).count == 1200
    assert store.load_raw(("conv1", 0, None)).size == 4 * 128 + 10_000
    for ext in ("h5", "npz"):
        back = ProfileStore.load(store.save(tmp_path / f"profile.{ext}"))
        assert list(back) == list(store)
        for k in store:
            assert np.array_equal(back[k].counts, store[k].counts) and back[k].min == store[k].min
        assert back.activations["fc"].count == store.activations["fc"].count
    # no raw files unless asked
    plain = ProfileStore()
    plain.add_adc("x", [1.0, 2.0])
    assert plain.raw_files() == {}


# ---------------------------------------------------------------------------
# optimize_range
# ---------------------------------------------------------------------------
def test_uniform_full_range():
    nbits = 6
    n = 2**nbits
    h = StreamingHistogram().update(np.linspace(0.0, 1.0, 400_001))
    lo, hi = optimize_range(h, nbits)
    # the MSE-optimal grid for U(0,1) has levels (k + 1/2)/n: range ~ the full range
    assert abs(lo - 0.5 / n) < 0.15 / n and abs(hi - (1 - 0.5 / n)) < 0.15 / n
    assert expected_error(h, lo, hi, nbits) == pytest.approx(1 / (12 * n * n), rel=0.02)


@pytest.mark.parametrize("dist_name,nbits", [("gauss", 4), ("gauss", 6), ("laplace", 4), ("laplace", 6)])
def test_optimum_matches_brute_force_on_exact_density(dist_name, nbits):
    dist, moments = {
        "gauss": (norm(), _gauss_moments),
        "laplace": (laplace(scale=_LB), _laplace_moments),
    }[dist_name]
    h = StreamingHistogram().update(_quantile_samples(dist))
    lo, hi = optimize_range(h, nbits)
    levels = quantizer_levels(lo, hi, nbits)
    mse_found = _exact_mse(moments, levels)
    n = 2**nbits - 1
    # brute force: fine grid of steps around the expected optimum, then a finer one
    steps = np.linspace(0.5, 12.0, 1200) / (n - 1) * 2
    best_mse, best_levels = _brute_force_zero_centred(moments, nbits, steps)
    s0 = best_levels[1] - best_levels[0]
    best_mse, best_levels = _brute_force_zero_centred(moments, nbits, np.linspace(0.98 * s0, 1.02 * s0, 401))
    c_true = best_levels[-1]
    print(f"{dist_name} {nbits} bits: found ({lo:.4f}, {hi:.4f}) mse {mse_found:.6g}; "
          f"brute force +-{c_true:.4f} mse {best_mse:.6g}")
    assert abs(hi - c_true) / c_true < 0.02 and abs(-lo - c_true) / c_true < 0.02
    assert mse_found <= best_mse * 1.01


def test_gaussian_4bit_published_optimum():
    """Max (1960): the best 16-level uniform quantizer of N(0,1) has step 0.3352, MSE 0.01154
    (outer levels +-2.514, clipping at +-2.68 sigma)."""
    h = StreamingHistogram().update(_quantile_samples(norm()))
    lo, hi = optimize_range(h, 4, zero_centred=False)
    step = (hi - lo) / 15
    assert step == pytest.approx(0.3352, rel=0.01)
    assert hi == pytest.approx(7.5 * 0.3352, rel=0.01) and lo == pytest.approx(-7.5 * 0.3352, rel=0.01)
    assert _exact_mse(_gauss_moments, quantizer_levels(lo, hi, 4, zero_centred=False)) == pytest.approx(0.01154, rel=0.005)
    # the simulator's zero-centred ADC (15 levels) clips a little tighter: +-2.474
    lo, hi = optimize_range(h, 4)
    assert hi == pytest.approx(2.474, rel=0.01) and lo == pytest.approx(-2.474, rel=0.01)


def test_random_samples_and_raw_input():
    rng = np.random.default_rng(5)
    h = StreamingHistogram()
    chunks = [rng.standard_normal(50_000) for _ in range(20)]
    for c in chunks:
        h.update(c)
    lo, hi = optimize_range(h, 4)
    assert hi == pytest.approx(2.474, rel=0.03) and lo == pytest.approx(-2.474, rel=0.03)
    # raw samples accepted directly
    lo2, hi2 = optimize_range(np.concatenate(chunks), 4)
    assert (lo2, hi2) == pytest.approx((lo, hi), rel=1e-9)


def test_relu_aware_keeps_minimum():
    rng = np.random.default_rng(6)
    x = rng.normal(size=200_000)
    x = x[x > -0.3]  # ReLU-aware profiling drops inputs that the ReLU would zero anyway
    h = StreamingHistogram().update(x)
    lo, hi = optimize_range(h, 5, relu_aware=True)
    assert lo == h.min == x.min()
    assert 1.5 < hi < h.max
    lo0, hi0 = optimize_range(h, 5, min_fixed=0.0)
    assert lo0 == 0.0 and hi0 > 0


def test_activation_range_after_relu():
    rng = np.random.default_rng(7)
    a = np.maximum(rng.normal(0.2, 1.0, size=100_000), 0)
    h = StreamingHistogram().update(a)
    lo, hi = activation_range(h, 8, after_relu=True)
    assert lo == 0.0 and 2.0 < hi <= h.max
    lo2, hi2 = activation_range(StreamingHistogram().update(rng.normal(size=50_000)), 8, after_relu=False)
    assert lo2 < -2.0 and hi2 > 2.0


# ---------------------------------------------------------------------------
# bit-sliced exponents
# ---------------------------------------------------------------------------
@pytest.mark.parametrize("signed", [True, False])
def test_sliced_exponents_cover_pct(signed):
    rng = np.random.default_rng(8)
    y_max = 144.0
    scales = [0.9, 3.1, 11.0, 0.05]
    hs = []
    for s in scales:
        x = rng.laplace(scale=s, size=100_000)
        hs.append(StreamingHistogram().update(np.abs(x) if not signed else x))
    pct = 99.9
    C = sliced_range_exponents(hs, y_max, pct, signed)
    assert all(isinstance(c, int) for c in C)
    lim = sliced_limits(C, y_max, signed)
    ratios = lim[:, 1] / lim[0, 1]
    assert np.allclose(np.log2(ratios), np.round(np.log2(ratios)))  # powers of two only
    for h, c, (lo, hi) in zip(hs, C, lim):
        p_hi, p_lo = h.percentile(pct), h.percentile(100 - pct)
        assert lo <= p_lo and p_hi <= hi  # covered
        tighter = math.ldexp(y_max, -(c + 1))
        assert (max(p_hi, -p_lo) if signed else p_hi) > tighter  # the largest such C
        assert lo == (-hi if signed else 0.0)


# ---------------------------------------------------------------------------
# pluggable optimizers
# ---------------------------------------------------------------------------
def test_user_optimizer_replaces_default():
    h = StreamingHistogram().update(np.linspace(-1, 3, 1000))

    def my_opt(hist, nbits, **kw):
        return hist.min / 2, hist.max / 2

    f = get_optimizer(my_opt)
    assert f(h, 8) == (-0.5, 1.5)
    assert get_optimizer("minmax")(h, 8) == (-1.0, 3.0)
    assert get_optimizer("mse")(h, 4) == optimize_range(h, 4)
    for bad in (lambda h, n: (1.0, 1.0), lambda h, n: (0.0, float("nan")), lambda h, n: "x"):
        with pytest.raises(CalibrationError) as ei:
            get_optimizer(bad)(h, 8)
        assert "\n" not in str(ei.value)
    with pytest.raises(CalibrationError, match="did you mean 'mse'"):
        get_optimizer("mes")


# ---------------------------------------------------------------------------
# calibration files
# ---------------------------------------------------------------------------
def _one_line(exc_info) -> str:
    msg = str(exc_info.value)
    assert "\n" not in msg and msg
    return msg


def test_calibration_file_round_trip(tmp_path):
    cfg = {"Nslices": 2, "NrowsMax": 144, "style": "BALANCED", "ADC_per_ibit": True, "input_bitslicing": True, "pct": 99.99}
    key = HardwareKey.from_config(cfg)
    assert key.pct == 99.99
    path = default_path("digits_cnn", key, tmp_path / "calibration")
    assert "pct99.99" in path.name and "NrowsMax144" in path.name and path.suffix == ".h5"
    assert default_path("digits_cnn", HardwareKey.from_config({**cfg, "Nslices": 1})).parts[0] == "calibration"
    adc = {"conv1": np.array([3, 5]), "fc": np.array([0, 2])}
    dac = {"conv1": (0.0, 1.0), "fc": (-2.5, 2.5)}
    save_calibration(path, "digits_cnn", key, adc, dac, {"adc_bits": 8, "optimizer": "mse"})
    cal = load_calibration(path, "digits_cnn", key, ["conv1", "fc"])
    assert cal.key == key and cal.meta["adc_bits"] == 8
    assert np.array_equal(cal.adc_ranges["conv1"], [3, 5]) and cal.adc_ranges["conv1"].dtype.kind == "i"
    assert cal.dac_ranges == dac
    # unsliced float ranges
    k1 = HardwareKey.from_config({"Nslices": 1, "NrowsMax": 0})
    p1 = save_calibration(tmp_path / "u.h5", "net", k1, {"a": (-1.5, 2.0)}, {})
    c1 = load_calibration(p1, "net", k1, ["a"])
    assert c1.adc_ranges["a"].tolist() == [-1.5, 2.0] and c1.dac_ranges == {}


def test_calibration_errors_are_one_clear_line(tmp_path):
    key = HardwareKey(Nslices=1, NrowsMax=144, style="BALANCED")
    root = tmp_path / "calibration"
    path = default_path("net", key, root)
    with pytest.raises(CalibrationError) as ei:
        load_calibration(path, "net", key, ["a"], config_path="configs/x.toml", root=root)
    msg = _one_line(ei)
    assert "does not exist" in msg and "xbarsim calibrate configs/x.toml" in msg and str(path) in msg

    save_calibration(path, "net", key, {"a": (-1.0, 1.0), "b": (0.0, 2.0)}, {"a": (0.0, 1.0)})
    other = HardwareKey(Nslices=1, NrowsMax=576, style="OFFSET")
    with pytest.raises(CalibrationError) as ei:
        load_calibration(path, "net", other, ["a"])
    msg = _one_line(ei)
    assert "NrowsMax = 144 in the file but 576 in the config" in msg
    assert "style = 'BALANCED' in the file but 'OFFSET' in the config" in msg

    with pytest.raises(CalibrationError) as ei:
        load_calibration(path, "other_net", key, ["a"])
    assert "'net'" in _one_line(ei)

    with pytest.raises(CalibrationError) as ei:
        load_calibration(path, "net", key, ["a", "c"])
    assert "no ADC range for layer 'c'" in _one_line(ei)

    with pytest.raises(CalibrationError) as ei:
        load_calibration(path, "net", key, ["a", "b"], require_dac=True)
    assert "no activation range for layer 'b'" in _one_line(ei)

    # wrong shape and NaN written by another tool
    import h5py

    with h5py.File(path, "a") as f:
        f["adc/00000"][...] = [np.nan, 1.0]
        del f["adc/00001"]
        ds = f["adc"].create_dataset("00001", data=np.zeros(3))
        ds.attrs["layer"] = "b"
        ds.attrs["kind"] = "range"
    with pytest.raises(CalibrationError) as ei:
        load_calibration(path, "net", key, ["a"])
    assert "layer 'a'" in _one_line(ei) and "finite" in str(ei.value)
    with pytest.raises(CalibrationError) as ei:
        load_calibration(path, "net", key, ["b"])
    assert "shape (3,)" in _one_line(ei)

    # lo >= hi refused on save too
    with pytest.raises(CalibrationError) as ei:
        save_calibration(tmp_path / "bad.h5", "net", key, {"a": (1.0, 1.0)}, {})
    assert "lo < hi" in _one_line(ei)

    # sliced key but (lo, hi) ranges
    k2 = HardwareKey(Nslices=2, pct=99.9)
    p2 = save_calibration(tmp_path / "s.h5", "net", k2, {"a": np.array([1, 2]), "b": np.array([0.5, 1.5])}, {})
    assert load_calibration(p2, "net", k2, ["a"]).adc_ranges["a"].tolist() == [1, 2]
    with pytest.raises(CalibrationError) as ei:
        load_calibration(p2, "net", k2, ["b"])
    assert "exponents" in _one_line(ei)
    with pytest.raises(CalibrationError) as ei:
        load_calibration(p2, "net", HardwareKey(Nslices=2, pct=99.99), ["a"])
    assert "pct = 99.9 in the file but 99.99" in _one_line(ei)


def test_load_limits_npy(tmp_path):
    p = tmp_path / "limits.npy"
    np.save(p, np.array([[-1.0, 1.0], [0.0, 4.0]]))
    lim = load_limits_npy(p, ["a", "b"])
    assert lim["b"].tolist() == [0.0, 4.0]
    with pytest.raises(CalibrationError) as ei:
        load_limits_npy(p, ["a", "b", "c"])
    assert "expected (3, 2)" in _one_line(ei)
    np.save(p, np.array([[-1.0, 1.0], [np.inf, 4.0]]))
    with pytest.raises(CalibrationError) as ei:
        load_limits_npy(p, ["a", "b"])
    assert "layer 'b'" in _one_line(ei)
    with pytest.raises(CalibrationError) as ei:
        load_limits_npy(tmp_path / "none.npy", ["a"])
    assert "does not exist" in _one_line(ei)
    np.save(p, np.array([[2, 3], [4, 4]]))
    assert load_limits_npy(p, ["a", "b"], nslices=2)["a"].tolist() == [2, 3]


def test_plot_histograms(tmp_path):
    from adc_calibration import plot_histograms

    store = ProfileStore()
    rng = np.random.default_rng(9)
    store.add_adc("conv1", rng.normal(size=5000))
    store.add_adc("fc", rng.normal(size=5000), slice=0)
    store.add_adc("fc", rng.normal(scale=0.3, size=5000), slice=1)
    paths = plot_histograms(store, {"conv1": (-2.0, 2.0), "fc": np.array([[-4, 4], [-1, 1]])}, tmp_path)
    assert [p.name for p in paths] == ["conv1_adc.png", "fc_adc.png"]
    assert all(p.stat().st_size > 1000 for p in paths)


def _manual_levels(lo: float, hi: float, nbits: int) -> np.ndarray:
    """The manual's ADC levels (9.3.1), written out: a signed range has 2**n - 1 levels k * step with
    step = (hi - lo) / (2**n - 2), the grid shifted so that one level is 0; an unsigned one 2**n levels
    lo + k * (hi - lo) / (2**n - 1)."""
    if lo < 0:
        step = (hi - lo) / (2**nbits - 2)
        return (np.floor(lo / step + 0.5) + np.arange(2**nbits - 1)) * step
    return lo + np.arange(2**nbits) * (hi - lo) / (2**nbits - 1)


def test_manual_levels_by_hand():
    # 3 bits over (-7.3, 11.1): step 18.4 / 6, 7 levels from -2 steps (the grid holds 0) to +4 steps
    s = 18.4 / 6
    assert np.allclose(quantizer_levels(-7.3, 11.1, 3), [-2 * s, -s, 0, s, 2 * s, 3 * s, 4 * s], atol=1e-12)
    # 2 bits over (0.2, 9.0): 4 levels 8.8 / 3 apart, both ends included
    assert np.allclose(quantizer_levels(0.2, 9.0, 2), [0.2, 0.2 + 8.8 / 3, 0.2 + 17.6 / 3, 9.0], atol=1e-12)


def test_error_model_matches_simulator_adc():
    """The optimizer's quantizer is the simulator's ADC, and its histogram-based
    error equals the error of quantizing the raw samples."""
    from simulator.quantization import uniform as quantizer

    rng = np.random.default_rng(10)
    x = rng.laplace(0.5, 3.0, size=300_000)
    h = StreamingHistogram().update(x)
    for nbits in (3, 6, 9):
        lo, hi = optimize_range(h, nbits)
        for a, b in ((lo, hi), (-7.3, 11.1), (0.2, 9.0)):
            q = quantizer.UniformQuantizer(nbits, a, b)
            assert np.allclose(quantizer_levels(a, b, nbits), _manual_levels(a, b, nbits), rtol=0, atol=1e-12)
            assert np.allclose(q.levels(np), _manual_levels(a, b, nbits), rtol=0, atol=1e-12)
            emp = float(np.mean((q(x, np) - x) ** 2))
            assert expected_error(h, a, b, nbits) == pytest.approx(emp, rel=0.01)


def test_hardware_key_from_config_object():
    from simulator import config

    cfg = config.load_config({"Nslices": 2, "weight_bits": 8, "NrowsMax": 64, "pct": 99.9, "style": "OFFSET"})
    key = HardwareKey.from_config(cfg)
    assert key == HardwareKey(Nslices=2, NrowsMax=64, style="OFFSET", pct=99.9)
    assert HardwareKey.from_config(config.load_config({"pct": 99.9})).pct is None  # unsliced: pct unused
