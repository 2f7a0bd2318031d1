"""ADC / DAC models: ideal transfer curves and mismatch statistics against the circuit equations (fixed seeds)."""
import math

import numpy as np
import pytest

from simulator.circuits import adc_models as am
from simulator.circuits import converters as cv
from simulator.quantization.uniform import UniformQuantizer
from simulator.errors import ConfigError

CIRCUITS = ("ramp", "sar", "pipeline", "cyclic")


def ideal_midrise(y, bits, lo, hi):
    """2**bits bins of equal width on [lo, hi], read out at bin centres (the circuits' ideal transfer)."""
    n = 2**bits
    k = np.clip(np.floor((np.clip(y, lo, hi) - lo) / (hi - lo) * n), 0, n - 1)
    return lo + (k + 0.5) * (hi - lo) / n


def sweep(lo, hi, n=4001):
    y = np.linspace(lo - 0.2 * (hi - lo), hi + 0.2 * (hi - lo), n)
    return np.tile(y[:, None], (1, 16))  # (M, C): 16 columns


@pytest.mark.parametrize("name", CIRCUITS)
@pytest.mark.parametrize("bits", [3, 6])
@pytest.mark.parametrize("extra", [{}, {"split_cdac": False}, {"symmetric_cdac": False}])
def test_ideal_circuits_equal_the_ideal_quantizer(name, bits, extra):
    params = {k: v for k, v in extra.items() if k in cv.ADC_MODELS[name].parameters}
    if extra and not params:
        pytest.skip("option of another model")
    params["gain_db"] = math.inf
    lo, hi = -2.5, 3.5
    adc = cv.make_adc(name, bits, lo, hi, n_cols=16, params=params, rng=np.random.default_rng(0))
    y = sweep(lo, hi)
    step = (hi - lo) / 2**bits
    at_edge = np.abs(((y - lo) / step) - np.rint((y - lo) / step)) < 1e-9  # exactly on a threshold
    got, ref = adc(y, np), ideal_midrise(y, bits, lo, hi)
    assert np.array_equal(got[~at_edge], ref[~at_edge])


def test_ideal_quantizers():
    y = sweep(-1.0, 3.0)
    q = cv.make_adc("quantizer", 3, -1.0, 3.0)(y, np)
    assert np.allclose(np.unique(q), -1.0 + np.arange(8) * 4 / 7)  # 2**3 levels, both ends included
    sm = cv.make_adc("sign_magnitude", 3, -1.0, 3.0)(sweep(-3.0, 3.0), np)
    assert np.allclose(np.unique(sm), np.arange(-3, 4) * 1.0)  # 7 levels on +-3, one at zero
    g = cv.make_adc("generic", 4, -1.0, 3.0)(y, np)
    assert np.array_equal(g, UniformQuantizer(4, -1.0, 3.0)(y, np))
    d = cv.make_dac("sign_magnitude", 3, 0.0, 2.0)(np.array([-2.0, -0.4, 0.0, 0.9, 2.5]), np)
    assert np.allclose(d, [-2.0, -2 / 3, 0.0, 2 / 3 * 1, 2.0])
    dq = cv.make_dac("quantizer", 2, 0.0, 3.0)(np.array([0.4, 1.6, 9.0]), np)
    assert np.allclose(dq, [0.0, 2.0, 3.0])


def test_finite_gain_scales_the_cdac_output():
    bits, A_db = 5, 40.0
    A = 10 ** (A_db / 20)
    T = cv.make_adc("ramp", bits, -1, 1, params={"gain_db": A_db}).thresholds
    s = np.arange(2**bits) - 2 ** (bits - 1)
    m = np.abs(s)
    cf = 2.0 ** (bits - 1)
    beta = cf / (cf + m)
    expected = (s / cf) / (1 + 1 / (A * beta))
    np.testing.assert_allclose(T[1:], expected[1:], rtol=1e-12)


def test_ramp_comparator_offsets_shift_each_column():
    bits, sigma = 6, 0.02
    adc = cv.make_adc("ramp", bits, -1, 1, n_cols=4000, params={"sigma_comparator": sigma, "gain_db": math.inf},
                      rng=np.random.default_rng(11))
    o = adc.offsets
    assert abs(np.std(o) / sigma - 1) < 0.05 and abs(np.mean(o)) < 3 * sigma / np.sqrt(4000)
    y = np.linspace(-0.9, 0.9, 37)[:, None] * np.ones((1, 4000))
    np.testing.assert_array_equal(adc(y, np), ideal_midrise(y - o[None, :], bits, -1, 1))


def _threshold_std(name, bits, sigma, code, n=1500, **p):
    ts = [cv.make_adc(name, bits, -1, 1, n_cols=1, params=dict(p, sigma_capacitor=sigma, gain_db=math.inf),
                      rng=np.random.default_rng(100 + i)).thresholds for i in range(n)]
    ts = np.array(ts)
    return ts[..., code].std(axis=0) if ts.ndim == 2 else ts[:, 0, code].std()


@pytest.mark.parametrize("code_offset", [1, 5, 16])
def test_cdac_mismatch_statistics(code_offset):
    """Symmetric CDAC: T = S(m)/C_f with Var S = sigma^2 m, Var C_f = sigma^2 2^(N-1) (sizes in unit caps), so
    to first order sd(T) = sigma sqrt(m + m^2 / 2^(N-1)) / 2^(N-1)."""
    bits, sigma = 6, 0.01
    code = 2 ** (bits - 1) + code_offset
    m, cf = code_offset, 2.0 ** (bits - 1)
    predicted = sigma * math.sqrt(m + m * m / cf) / cf
    got = _threshold_std("ramp", bits, sigma, code)
    assert abs(got / predicted - 1) < 0.08, (got, predicted)


def test_split_cdac_ideal_weights_and_mismatch():
    bits = 8
    T = am.split_cdac_thresholds(bits, np.zeros(bits + 1), 0.0, math.inf)
    s = np.arange(2**bits) - 2 ** (bits - 1)
    np.testing.assert_allclose(T[1:], s[1:] / 2 ** (bits - 1), atol=1e-15)
    # mismatch: the LSB-array capacitors reach the output attenuated by the bridge, so an error on the largest
    # LSB capacitor moves the output by 1/2**(M) of its size; on the smallest MSB capacitor by the same weight
    for idx in (bits // 2 - 1, bits // 2 + 1):
        z = np.zeros(bits + 1)
        z[idx] = 1.0
        d = am.split_cdac_thresholds(bits, z, 0.01, math.inf)[1:] - T[1:]
        assert np.max(np.abs(d)) > 0
    stds = _threshold_std("sar", bits, 0.01, 2 ** (bits - 1) + 2 ** (bits - 2), n=600, split_cdac=True, group_size=1)
    assert 0 < stds < 0.01


def test_sar_groups_share_one_cdac_and_comparator():
    adc = cv.make_adc("sar", 6, -1, 1, n_cols=20, params={"sigma_comparator": 0.05, "sigma_capacitor": 0.02,
                                                            "group_size": 8}, rng=np.random.default_rng(5))
    o, T = adc.offsets, adc.thresholds
    assert np.all(o[:8] == o[0]) and np.all(o[8:16] == o[8]) and o[0] != o[8] and o[16] != o[8]
    assert np.array_equal(T[0], T[7]) and not np.array_equal(T[7], T[8])
    # binary search == counting thresholds when the CDAC is monotonic (small mismatch)
    y = np.linspace(-1, 1, 501)[:, None] * np.ones((1, 20))
    v = y - o[None, :]
    counts = np.array([[np.sum(T[j, 1:] < v[i, j]) for j in range(20)] for i in range(len(y))])
    assert all(np.all(np.diff(T[j, 1:]) > 0) for j in range(20))
    np.testing.assert_array_equal(adc(y, np), -1 + (counts + 0.5) * 2 / 64)


def _pipeline_by_hand(u, bits, g, r, oh, ol, olast):
    """The residue recursion of the module docstring, written out for one column."""
    k, V = 0.0, u
    for n in range(bits - 1):
        d = 1 if V > 0.25 + oh[n] else (-1 if V < -0.25 + ol[n] else 0)
        k += d * 2 ** (bits - 2 - n)
        V = g[n] * V - d * r[n]
    b = 1 if V > olast else 0
    return min(max(k + 2 ** (bits - 1) + b - 1, 0), 2**bits - 1)


@pytest.mark.parametrize("name", ["pipeline", "cyclic"])
def test_staged_adcs_with_mismatch(name):
    bits = 5
    p = {"sigma_C1": 0.03, "sigma_C2": 0.03, "sigma_Cpar": 0.02, "sigma_comparator": 0.02, "gain_db": 60.0,
         "group_size": 2}
    adc = cv.make_adc(name, bits, -1, 1, n_cols=6, params=p, rng=np.random.default_rng(9))
    g, r = adc.stage_gain, adc.stage_ref  # (stages, columns)
    if name == "cyclic":
        assert np.allclose(g, g[:1]) and np.allclose(adc.off_hi, adc.off_hi[:1])  # one stage reused
    else:
        assert not np.allclose(g, g[:1])
    assert np.allclose(g[:, 0], g[:, 1]) and not np.allclose(g[:, 1], g[:, 2])  # ADCs shared by column pairs
    y = np.linspace(-1, 1, 301)[:, None] * np.ones((1, 6))
    got = adc(y, np)
    for j in range(6):
        k = [_pipeline_by_hand(u, bits, g[:, j], r[:, j], adc.off_hi[:, j], adc.off_lo[:, j], adc.off_last[j])
             for u in y[:, j]]
        np.testing.assert_allclose(got[:, j], -1 + (np.array(k) + 0.5) * 2 / 2**bits)


def test_stage_gain_statistics():
    """Stage gain (1 + C2/C1) / (1 + 1/(A beta)): with A = inf its spread is sqrt(2) sigma for equal sigma_C1, sigma_C2."""
    adc = cv.make_adc("pipeline", 8, -1, 1, n_cols=3000, params={"sigma_C1": 0.01, "sigma_C2": 0.01,
                      "gain_db": math.inf, "group_size": 1}, rng=np.random.default_rng(2))
    g = adc.stage_gain.ravel()
    assert abs(np.mean(g) - 2) < 1e-3 and abs(np.std(g) / (0.01 * math.sqrt(2)) - 1) < 0.05


def test_bad_adc_parameters():
    with pytest.raises(ConfigError, match="adc_params.split_cdac is a parameter of adc_type 'sar'"):
        cv.check_converter_options("ramp", {"split_cdac": True}, "generic")
    with pytest.raises(ConfigError, match="adc_params.group_size = 0"):
        cv.check_converter_options("sar", {"group_size": 0}, "generic")
    with pytest.raises(ConfigError, match="adc_type = 'flash'"):
        cv.check_converter_options("flash", {}, "generic")
    assert cv.canonical_name("SarADC", cv.ADC_MODELS) == "sar"


def test_user_can_register_an_adc():
    @am.register_adc
    class HalfADC(am.ADCModel):
        name = "test_half"
        parameters = {"scale": 0.5}

        def __call__(self, y, xp, out=None):
            return y * self.p["scale"]

    try:
        assert cv.make_adc("test_half", 4, -1, 1, params={"scale": 0.25})(np.ones(2), np)[0] == 0.25
    finally:
        cv.ADC_MODELS.pop("test_half")


@pytest.mark.parametrize("name", ["ramp", "sar", "quantizer", "sign_magnitude", "generic"])
def test_level_grid_describes_the_outputs(name):
    """``lo + k * step`` (``k * step`` when signed), k in k_range, are the model's outputs: what diagnostics count."""
    from simulator.observe import QuantizerUse

    adc = cv.make_adc(name, 4, -1.0, 3.0, n_cols=16, params={"gain_db": math.inf} if name in CIRCUITS else None)
    y = sweep(-1.0, 3.0, 997)
    out = adc(y, np)
    kmin, kmax = adc.k_range
    k = np.arange(kmin, kmax + 1)
    grid = k * adc.step if adc.signed else adc.lo + k * adc.step
    assert np.all(np.min(np.abs(out.reshape(-1, 1) - grid[None, :]), axis=1) < 1e-12)
    use = QuantizerUse(adc)
    use.add(y, np)
    lo_in = getattr(adc, "in_lo", grid[0])
    hi_in = getattr(adc, "in_hi", grid[-1])
    if name in CIRCUITS:  # clipped exactly when outside the input range
        assert use.clipped_high == np.count_nonzero(y > hi_in) and use.clipped_low == np.count_nonzero(y < lo_in)


@pytest.mark.parametrize("sigma,split", [(0.0, True), (0.02, False), (0.02, True), (0.6, False)])
def test_sar_search_equals_the_cycle_by_cycle_conversion(sigma, split):
    adc = cv.make_adc("sar", 7, -2.0, 2.0, n_cols=24, params={"sigma_capacitor": sigma, "sigma_comparator": 0.01,
                                                            "split_cdac": split, "group_size": 4},
                      rng=np.random.default_rng(3))
    u = np.random.default_rng(4).uniform(-1.1, 1.1, (300, 24)).astype(np.float32)
    u = np.clip(u, -1, 1)
    np.testing.assert_array_equal(adc.codes(u, np), adc.codes_binary_search(u, np))
    if sigma == 0.6:
        assert not adc.monotonic  # large mismatch: the cycle-by-cycle search itself runs


def test_split_cdac_equals_a_charge_conservation_solve():
    """The bridged CDAC's closed form against the two floating nodes' charge equations solved numerically."""
    bits, sigma = 7, 0.05
    L = bits // 2
    M = bits - 1 - L
    z = np.random.default_rng(8).standard_normal(bits + 1)
    cap = lambda nom, zz: nom + sigma * np.sqrt(nom) * zz  # noqa: E731
    cl = cap(2.0 ** np.arange(L), z[:L])
    ct = cap(1.0, z[L])
    cm = cap(2.0 ** np.arange(M), z[L + 1 : L + 1 + M])
    cb = cap(2.0**L / (2.0**L - 1), z[bits])
    T = am.split_cdac_thresholds(bits, z, sigma, math.inf)
    for code in (2 ** (bits - 1) + 1, 2 ** (bits - 1) + 5, 2 ** (bits - 1) + 2**L, 2**bits - 1, 3):
        s = code - 2 ** (bits - 1)
        m = abs(s)
        dl = np.array([(m >> i) & 1 for i in range(L)], dtype=float)
        dm = np.array([((m >> L) >> j) & 1 for j in range(M)], dtype=float)
        # node X (LSB side): sum cl (X - dl) + ct X + cb (X - Y) = 0; node Y: sum cm (Y - dm) + cb (Y - X) = 0
        A = np.array([[cl.sum() + ct + cb, -cb], [-cb, cm.sum() + cb]])
        rhs = np.array([cl @ dl, cm @ dm])
        X, Y = np.linalg.solve(A, rhs)
        assert T[code] == pytest.approx(np.sign(s) * Y, rel=1e-12, abs=1e-15)
