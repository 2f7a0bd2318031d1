"""Devices over time: PCM_Nandakumar statistics, empirical device data, stuck cells, t_drift lists,
drift compensation, per-layer device models, and their bad-input errors."""
import math

import numpy as np
import pytest
from click.testing import CliRunner

from devices.base import DeviceParams
from devices.stack import DeviceStack
from simulator.cli import cli
from simulator.errors import ConfigError, DeviceModelError
from simulator.model_files import load_model
from simulator.runner import run
from simulator.simulation import Simulation

DAY = 86400.0


def stack(error="none", drift="none", times=(0.0,), **extra):
    params = DeviceParams(On_off_ratio=0, t_drift=times[0], t_drift_all=tuple(times), extra=extra)
    return DeviceStack(params, error_model=error, drift_model=drift)


# ---------------------------------------------------------------- PCM_Nandakumar (formulas by hand)
def prog_sigma_hand(g):
    """aihwkit docs: sigma_prog = max(-1.1731 g^2 + 1.9650 g + 0.2635, 0) uS at g_max = 25 uS."""
    return max(-1.1731 * g**2 + 1.9650 * g + 0.26348, 0.0) / 25.0


def nu_hand(g):
    mu = min(max(-0.0155 * math.log(g) + 0.0244, 0.049), 0.1)
    sd = min(max(-0.0125 * math.log(g) - 0.0059, 0.008), 0.045)
    return mu, sd


@pytest.mark.parametrize("g", [0.05, 0.3, 0.9])
def test_nandakumar_programming_noise(g):
    s = stack(error="PCM_Nandakumar")
    out = s.program(np.full(200_000, g), np, np.random.default_rng(1))
    assert abs(out.mean() - g) < 0.05 * prog_sigma_hand(g)
    assert out.std() == pytest.approx(prog_sigma_hand(g), rel=0.05)


@pytest.mark.parametrize("g", [0.05, 0.3, 0.9])
@pytest.mark.parametrize("t_days", [1.0, 365.0])
def test_nandakumar_drift_exponent(g, t_days):
    """Read noise off: nu = -ln(G(t)/G) / ln(t/20 s), t = t_drift + 20 s, is |N(mu(G), sigma(G))|."""
    s = stack(drift="PCM_Nandakumar", times=(t_days,), pcm_read_noise_scale=0.0)
    out = s.program(np.full(200_000, g), np, np.random.default_rng(2))
    nu = -np.log(out / g) / math.log((t_days * DAY + 20.0) / 20.0)
    mu, sd = nu_hand(g)
    # |N(mu, sd)| moments (folded normal), the model draws nu = |mu + sd z|
    a = mu / sd
    Phi = 0.5 * (1 + math.erf(a / math.sqrt(2)))
    fmean = sd * math.sqrt(2 / math.pi) * math.exp(-a * a / 2) + mu * (2 * Phi - 1)
    fvar = mu**2 + sd**2 - fmean**2
    assert nu.mean() == pytest.approx(fmean, rel=0.05)
    assert nu.std() == pytest.approx(math.sqrt(fvar), rel=0.05)


@pytest.mark.parametrize("g", [0.02, 0.3, 0.9])
@pytest.mark.parametrize("t_days", [1 / DAY, 1.0, 365.0])
def test_nandakumar_read_noise_grows_with_log_time(g, t_days):
    """Drift off: G(t) = G (1 + Q_s sqrt(ln((t + t_read) / (2 t_read))) z), Q_s = min(0.0088 / G^0.65, 0.2)."""
    s = stack(drift="PCM_Nandakumar", times=(t_days,), pcm_drift_scale=0.0)
    out = s.program(np.full(200_000, g), np, np.random.default_rng(3))
    t = t_days * DAY + 20.0
    q = min(0.0088 / max(g**0.65, 1e-3), 0.2)
    expected = g * q * math.sqrt(math.log((t + 250e-9) / 500e-9))
    assert abs(out.mean() - g) < 0.05 * expected
    # clipping at G_max = 1 cuts the upper tail near G = 1: compare the lower half-spread there
    spread = np.std(out) if g < 0.5 else (g - np.quantile(out, 0.158655))
    assert spread == pytest.approx(expected, rel=0.05)


def test_nandakumar_drift_sigma_matches_samples():
    s = stack(drift="PCM_Nandakumar", times=(30.0,))
    G = np.full(200_000, 0.2)
    out = s.program(G, np, np.random.default_rng(4))
    # by hand: x = (t/t0)^-nu with nu ~ N(m, s^2) -> E[x^k] = exp(-k m L + k^2 s^2 L^2 / 2), read noise r
    m, sd = nu_hand(0.2)
    t = 30 * DAY + 20.0
    L = math.log(t / 20.0)
    e1, e2 = math.exp(-m * L + 0.5 * (sd * L) ** 2), math.exp(-2 * m * L + 2 * (sd * L) ** 2)
    r = min(0.0088 / 0.2**0.65, 0.2) * math.sqrt(math.log((t + 250e-9) / 500e-9))
    assert out.mean() == pytest.approx(0.2 * e1, rel=0.01)
    assert out.std() == pytest.approx(0.2 * math.sqrt(e2 * (1 + r * r) - e1 * e1), rel=0.05)
    assert float(s.drift.drift_sigma(G[:1], 30.0, np)[0]) == pytest.approx(out.std(), rel=0.05)


def test_drift_is_cumulative_from_one_programmed_state():
    """Each device keeps its exponent: ln(G(t2)/G_p) / ln(G(t1)/G_p) = ln(t2/t0) / ln(t1/t0), device by device."""
    s = stack(error="PCM_Nandakumar", drift="PCM_Nandakumar", times=(1.0, 100.0), pcm_read_noise_scale=0.0)
    state = s.program_state(np.linspace(0.05, 0.95, 5000), np, np.random.default_rng(5))
    g1, g2 = s.at_time(state, 1.0, np), s.at_time(state, 100.0, np)
    ok = (state.G > 0.01) & (state.G < 0.99)
    ratio = np.log(g2[ok] / state.G[ok]) / np.log(g1[ok] / state.G[ok])
    expected = math.log((100 * DAY + 20) / 20) / math.log((DAY + 20) / 20)
    np.testing.assert_allclose(ratio, expected, rtol=1e-9)
    assert np.all(g2[ok] < g1[ok])  # PCM conductance only decreases (no read noise)
    # the same time twice gives the same conductances
    np.testing.assert_array_equal(s.at_time(state, 1.0, np), g1)


# ---------------------------------------------------------------- stuck cells
def test_stuck_fractions_binomial():
    params = DeviceParams(On_off_ratio=10, stuck_off_fraction=0.03, stuck_on_fraction=0.05)
    s = DeviceStack(params)
    n = 400_000
    out = s.program(np.full(n, 0.5), np, np.random.default_rng(6))
    for value, f in ((0.1, 0.03), (1.0, 0.05)):
        k = int(np.sum(out == value))
        assert abs(k - n * f) < 4 * math.sqrt(n * f * (1 - f)), (value, k)
    assert int(np.sum(out == 0.5)) == n - int(np.sum(out == 0.1)) - int(np.sum(out == 1.0))


def _planes(sim):
    """Every conductance plane of every array of a simulation (Simulation.arrays)."""
    return [a.G for name in sim.cores for a in sim.arrays(name)]


@pytest.mark.parametrize("hw", [
    {"style": "BALANCED", "balanced_style": "one_sided"},
    {"style": "BALANCED", "balanced_style": "two_sided"},
    {"style": "OFFSET", "digital_offset": False},
    {"style": "BALANCED", "weight_bits": 8, "Nslices": 2},
    {"style": "OFFSET", "weight_bits": 8, "Nslices": 3, "NrowsMax": 64},
])
def test_stuck_cells_on_every_style_and_slicing(hw):
    net = load_model("digits_cnn")
    base = {"On_off_ratio": 20, "seed": 3, **hw}
    clean = _planes(Simulation(net, base))
    stuck = _planes(Simulation(net, {**base, "stuck_off_fraction": 0.02, "stuck_on_fraction": 0.04}))
    n = sum(p.size for p in clean)
    for value, f in ((0.05, 0.02), (1.0, 0.04)):
        # a device not already at `value` (no error model: it holds its target) ends there with probability f
        free = n - sum(int(np.sum(c == value)) for c in clean)
        k = sum(int(np.sum((s == value) & (c != value))) for s, c in zip(stuck, clean))
        assert abs(k - free * f) < 4 * math.sqrt(free * f * (1 - f)) + 1, (value, k, free)
        changed = sum(int(np.sum((s != c) & (s != 0.05) & (s != 1.0))) for s, c in zip(stuck, clean))
        assert changed == 0  # nothing else moves


# ---------------------------------------------------------------- drift compensation
PLUGIN = '''
from devices.base import DeviceModel
import math

class Shrink(DeviceModel):
    """Test plugin: a pure global conductance scale G * exp(-0.1 t)."""
    name = "test_shrink"
    provides = frozenset({"drift"})
    drift_includes_error = False

    def drift(self, G, t_days, xp, rng):
        return G * math.exp(-0.1 * t_days)

class ColumnShrink(DeviceModel):
    """Test plugin: every column scaled by its own factor exp(-0.05 t (1 + j % 3))."""
    name = "test_column_shrink"
    provides = frozenset({"drift"})
    drift_includes_error = False

    def drift(self, G, t_days, xp, rng):
        j = xp.arange(G.shape[-1]) % 3
        return G * xp.exp(-0.05 * t_days * (1 + j))
'''


@pytest.fixture
def plugin_dir(tmp_path):
    (tmp_path / "shrink_models.py").write_text(PLUGIN)
    return str(tmp_path)


def _digits_batch(n=64):
    from simulator.io.digits import load_digits_split

    x, y = load_digits_split("test")
    return x[:n], y[:n]


@pytest.mark.parametrize("model,mode,exact", [
    ("test_shrink", "global", True), ("test_shrink", "column", True),
    ("test_column_shrink", "column", True), ("test_column_shrink", "global", False),
])
@pytest.mark.parametrize("hw", [{"style": "BALANCED"}, {"style": "BALANCED", "weight_bits": 8, "Nslices": 2,
                                                        "NrowsMax": 100, "digital_bias": False}])
def test_compensation_undoes_a_global_scale(plugin_dir, model, mode, exact, hw):
    net = load_model("digits_cnn")
    x, _ = _digits_batch()
    cfg = {"precision": "float64", "seed": 0, "On_off_ratio": 0, "device_path": plugin_dir, "drift_model": model,
           "t_drift": [0.0, 2.0, 30.0], **hw}
    sim = Simulation(net, {**cfg, "drift_compensation": mode})
    ref = sim.forward(x)
    raw = Simulation(net, cfg)
    for t in (2.0, 30.0):
        sim.set_drift_time(t)
        raw.set_drift_time(t)
        y = sim.forward(x)
        if exact:
            np.testing.assert_allclose(y, ref, rtol=1e-9, atol=1e-9 * np.abs(ref).max())
        else:  # a per-column scale is not undone by one global factor
            assert np.abs(y - ref).max() > 1e-3 * np.abs(ref).max()
        assert np.abs(raw.forward(x) - ref).max() > 1e-3 * np.abs(ref).max()  # the drift itself is visible


# ---------------------------------------------------------------- t_drift lists through run()
def test_accuracy_vs_time_monotone_and_frame():
    """PCM drift without compensation shrinks every device monotonically (read noise off): accuracy does not rise."""
    times = [1 / DAY, 1.0, 30.0, 365.0, 3650.0]
    cfg = {"error_model": "PCM_Nandakumar", "drift_model": "PCM_Nandakumar", "t_drift": times, "Nruns": 2,
           "seed": 11, "On_off_ratio": 100, "ntest": 300, "adc_bits": 8, "adc_range_option": "max",
           "device_params": {"pcm_read_noise_scale": 0.0}}
    r = run(cfg)
    frame = r.to_frame()
    assert list(frame["t_drift"].unique()) == times
    assert len(frame) == 2 * len(times)
    means = [m for _, m, _ in r.accuracy_vs_time()]
    assert all(b <= a + 1e-12 for a, b in zip(means, means[1:])), means
    assert means[-1] < means[0]
    # the same programmed chip at every time: the first time equals a run with only that time
    single = run({**cfg, "t_drift": times[0]})
    np.testing.assert_allclose(single.accuracies, frame[frame.t_drift == times[0]]["accuracy"].to_numpy())


def test_per_layer_device_models():
    net = load_model("digits_cnn")
    sim = Simulation(net, {"seed": 1, "On_off_ratio": 100, "layers": {"conv2": {"error_model": "PCM_Nandakumar"}}})
    clean = Simulation(net, {"seed": 1, "On_off_ratio": 100})
    assert list(sim.cores) == list(clean.cores)
    for name in sim.cores:
        g, g0 = sim.arrays(name)[0].G, clean.arrays(name)[0].G  # first array's positive plane
        if name == "conv2":  # programming noise of PCM_Nandakumar, relative to its sigma(G)
            inner = (g0 > 0.1) & (g0 < 0.9)
            z = (g[inner] - g0[inner]) / np.array([prog_sigma_hand(v) for v in g0[inner]])
            assert inner.sum() > 500
            assert z.std() == pytest.approx(1.0, rel=0.1)
        else:
            np.testing.assert_array_equal(g, g0)


# ---------------------------------------------------------------- empirical device data
LEVELS_US = [2.0, 6.0, 10.0, 14.0, 20.0]
TIMES_H = [1.0, 24.0, 240.0]


def synthetic_csv(path, n=3000, seed=0, drift=True):
    """Skewed programming deviations (gamma) and log-normal drift ratios whose median falls with time."""
    rng = np.random.default_rng(seed)
    lines = ["G_target_uS,G_programmed_uS" + (",time_h,G_time_uS" if drift else "")]
    truth = {}
    for lv in LEVELS_US:
        dev = 0.08 * lv * (rng.gamma(2.0, 1.0, n) - 2.0)
        prog = lv + dev
        truth[lv] = {"prog": prog}
        if not drift:
            lines += [f"{lv},{p}" for p in prog]
            continue
        for t in TIMES_H:
            ratio = np.exp(-0.02 * math.log1p(t) * (1 + lv / 20) + 0.03 * rng.standard_normal(n))
            truth[lv][t] = ratio
            lines += [f"{lv},{p},{t},{p * r}" for p, r in zip(prog, ratio)]
    path.write_text("\n".join(lines) + "\n")
    return truth


def test_empirical_reproduces_quantiles(tmp_path):
    csv = tmp_path / "dev.csv"
    truth = synthetic_csv(csv)
    times = [t / 24.0 for t in TIMES_H]
    params = DeviceParams(On_off_ratio=0, t_drift=times[0], t_drift_all=tuple(times), device_data=str(csv))
    s = DeviceStack(params, error_model="empirical", drift_model="empirical")
    ps = [0.05, 0.25, 0.5, 0.75, 0.95]
    for lv in LEVELS_US:
        g = lv / 20.0
        state = s.program_state(np.full(100_000, g), np, np.random.default_rng(7))
        want = np.quantile(np.minimum(truth[lv]["prog"] / 20.0, 1.0), ps)  # the stack clips at G_max = 1
        got = np.quantile(state.G, ps)
        spread = want[-1] - want[0]
        np.testing.assert_allclose(got, want, atol=0.03 * spread)
        if lv == LEVELS_US[-1]:
            continue  # drift ratios of clipped devices are cut at G_max too
        for th, t in zip(TIMES_H, times):
            ratio = s.at_time(state, t, np) / state.G
            np.testing.assert_allclose(np.quantile(ratio, ps), np.quantile(truth[lv][th], ps), rtol=0.01)
    # between two levels the quantile functions are interpolated: the median lies between the levels' medians
    mid = s.program_state(np.full(50_000, 8.0 / 20.0), np, np.random.default_rng(8)).G
    lo, hi = np.median(truth[6.0]["prog"]), np.median(truth[10.0]["prog"])
    assert np.median(mid) * 20.0 == pytest.approx((lo + hi) / 2, rel=0.01)


def test_empirical_through_a_run(tmp_path):
    csv = tmp_path / "dev.csv"
    synthetic_csv(csv, n=200)
    r = run({"device_data": str(csv), "On_off_ratio": 10, "t_drift": [0.0, 1.0, 10.0], "ntest": 100, "seed": 2})
    assert r.times == [0.0, 1.0, 10.0]
    assert all(0 <= a <= 1 for a in r.to_frame()["accuracy"])


# ---------------------------------------------------------------- bad input: one line, exit 2
def assert_one_line_error(result, *fragments):
    assert result.exit_code == 2, result.output
    err = result.stderr.strip()
    assert "Traceback" not in result.output
    assert err.count("\n") == 0, err
    for frag in fragments:
        assert frag in err, err


def cli_run(*args):
    return CliRunner().invoke(cli, ["run", "--no-progress", *args])


@pytest.mark.parametrize("value,frag", [("[1.0, 0.5]", "ascending"), ("[-1.0, 2.0]", ">= 0"), ("-2.0", "t_drift"),
                                        ("[]", "non-empty")])
def test_bad_times(value, frag):
    assert_one_line_error(cli_run("--set", f"t_drift={value}"), "t_drift", frag)


def test_time_zero_refused_with_a_drift_that_includes_the_error():
    assert_one_line_error(cli_run("--set", 'drift_model="PCM_Joshi"', "--set", "t_drift=[0.0, 1.0]"),
                          "PCM_Joshi", "time 0")


def test_stuck_sum_above_one():
    assert_one_line_error(cli_run("--set", "stuck_off_fraction=0.6", "--set", "stuck_on_fraction=0.5"),
                          "stuck_off_fraction + stuck_on_fraction", "sum <= 1")


def _bad_csv(tmp_path, text):
    p = tmp_path / "bad.csv"
    p.write_text(text)
    return str(p)


def test_csv_errors(tmp_path):
    many = lambda lv, n=12: "".join(f"{lv},{lv * (1 + 0.01 * k)}\n" for k in range(n))  # noqa: E731
    cases = [
        ("G_target_uS,time_h\n1,2\n", "missing column G_programmed_<unit>"),
        ("G_target_uS,G_programmed_uS\n1,1.1\n2,2.1\n", "1 sample(s); at least 10"),
        ("G_target_uS,G_programmed_uS\n" + many(1) + many(2).replace("2,2.0", "2,-2.0", 1), "must be >= 0"),
        ("G_target_uS,G_programmed_uS\n" + many(1) + "".join(f"2,0.5\n" for _ in range(12)), "not monotone"),
        ("G_target_Ohm,G_programmed_uS\n" + many(1) + many(2), "unit 'Ohm'"),
        ("G_target_uS,G_programmed_uS\n" + many(1) + many(2) + "3,abc\n", "expected a finite number"),
    ]
    for text, frag in cases:
        path = _bad_csv(tmp_path, text)
        assert_one_line_error(cli_run("--set", f'device_data="{path}"', "--set", "ntest=10"), "bad.csv", frag)


def test_csv_without_drift_data_refuses_times(tmp_path):
    csv = tmp_path / "nodrift.csv"
    synthetic_csv(csv, n=20, drift=False)
    assert_one_line_error(cli_run("--set", f'device_data="{csv}"', "--set", "t_drift=[0.0, 1.0]"),
                          "nodrift.csv", "no time_<unit>")


def test_cli_table_per_time_and_plot(tmp_path):
    out = tmp_path / "acc.png"
    res = cli_run("--set", 'error_model="PCM_Nandakumar"', "--set", 'drift_model="PCM_Nandakumar"',
                  "--set", "t_drift=[0.0, 1.0, 30.0]", "--set", "ntest=60", "--set", "Nruns=2",
                  "--set", "On_off_ratio=100", "--plot", str(out), "--csv", str(tmp_path / "r.csv"))
    assert res.exit_code == 0, res.output
    assert res.output.count("simulated accuracy") == 3
    assert "t_drift = 30 d" in res.output
    assert out.stat().st_size > 1000
    import pandas as pd

    assert list(pd.read_csv(tmp_path / "r.csv")["t_drift"]) == [0.0, 1.0, 30.0] * 2
    # an output path that cannot be written is refused before the run
    assert_one_line_error(cli_run("--set", "t_drift=[0.0, 1.0]", "--plot", str(tmp_path / "nope" / "a.png")),
                          "--plot", "does not exist")
