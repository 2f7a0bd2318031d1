"""Device models (devices/): sampled statistics vs. formulas, drift, DeviceStack rules, plugins, CLI."""
from __future__ import annotations

import logging
import math
import textwrap

import numpy as np
import pytest
from click.testing import CliRunner

from devices import DeviceParams, available_models, get_model
from devices.base import DeviceModel
from devices.stack import DeviceStack
from simulator.errors import DeviceModelError

N = 100_000  # samples per conductance level
LEVELS = (0.3, 0.6, 0.9)
DAY = 86400.0


@pytest.fixture
def rng():
    return np.random.default_rng(20240607)


def _check_stats(samples, mean, sigma, tol=0.05):
    """Sample std within ``tol`` of ``sigma``; sample mean within 5 standard errors of ``mean``."""
    assert np.std(samples) == pytest.approx(sigma, rel=tol)
    assert abs(np.mean(samples) - mean) < 5 * sigma / math.sqrt(samples.size) + 1e-12


# -- expected sigma(G) in normalized units, written out from the published fits --------------------
def sonos_sigma(G):
    I = 1600.0 * G  # nA
    return 39.5656 * (1 - math.exp(-1.88704e-3 * I)) / 1600.0


def pcm_sigma(G):
    g = 25.0 * G  # uS
    return (-1.78767e-3 * g**2 + 7.585724e-2 * g + 0.28638599) / 25.0


def rram_sigma(G):
    g = 225.0 * G  # uS
    return max(-9.107e-3 * g + 4.782321, 0.0) / 225.0


def parabolic_sigma(G):
    g = 1000.0 * G  # nS
    return (2e-4 * g**2 + 2e-2 * g + 10.0) / 1000.0


ERROR_CASES = [
    ("SONOS", DeviceParams(On_off_ratio=0), sonos_sigma),
    ("SONOS", DeviceParams(On_off_ratio=1e3), sonos_sigma),
    ("PCM_Joshi", DeviceParams(On_off_ratio=100), pcm_sigma),
    ("RRAM_Milo", DeviceParams(On_off_ratio=4.5), rram_sigma),
    ("alpha", DeviceParams(alpha_error=0.04), lambda G: 0.04),
    ("alpha", DeviceParams(alpha_error=0.05, proportional_error=True), lambda G: 0.05 * G),
]


# ---------------------------------------------------------------------------------------------------
# programming error
@pytest.mark.parametrize("name,params,expected", ERROR_CASES, ids=lambda v: v if isinstance(v, str) else "")
def test_programming_error_statistics(name, params, expected, rng):
    model = get_model(name, "error")(params)
    for g in LEVELS:
        G = np.full(N, g)
        sigma = expected(g)
        assert float(model.programming_sigma(np.array([g]), np)[0]) == pytest.approx(sigma, rel=1e-9)
        _check_stats(model.programming_error(G, np, rng), g, sigma)


@pytest.mark.parametrize("name,params,expected", ERROR_CASES, ids=lambda v: v if isinstance(v, str) else "")
def test_programming_error_clipped_to_physical_range(name, params, expected, rng):
    stack = DeviceStack(params, error_model=name)
    G = np.concatenate([np.full(N // 2, params.Gmin), np.full(N // 2, 1.0)])
    out = stack.program(G, np, rng)
    assert out.min() >= params.Gmin and out.max() <= 1.0
    assert np.any(out == 1.0)  # the upper level has error, so part of it is clipped
    assert out.shape == G.shape and out.dtype == G.dtype


def test_float32_preserved(rng):
    for name in ("SONOS", "PCM_Joshi", "RRAM_Milo"):
        model = get_model(name, "error")(DeviceParams(On_off_ratio=100))
        G = np.full((4, 5), 0.5, dtype=np.float32)
        assert model.programming_error(G, np, rng).dtype == np.float32
    drift = get_model("PCM_Joshi", "drift")(DeviceParams(On_off_ratio=100, t_drift=1))
    assert drift.drift(np.full(3, 0.5, dtype=np.float32), 1.0, np, rng).dtype == np.float32


def test_rram_warns_outside_data(caplog):
    with caplog.at_level(logging.WARNING, logger="xbarsim.devices"):
        get_model("RRAM_Milo", "error")(DeviceParams(On_off_ratio=37.0))
    assert "below the 50 uS" in caplog.text


def test_physical_scale_override_and_validation():
    model = get_model("PCM_Joshi", "error")(DeviceParams(On_off_ratio=100, extra={"pcm_Gmax_uS": 20}))
    g = 20.0 * 0.5
    want = (-1.78767e-3 * g**2 + 7.585724e-2 * g + 0.28638599) / 20.0
    assert float(model.programming_sigma(np.array([0.5]), np)[0]) == pytest.approx(want)
    with pytest.raises(DeviceModelError, match="pcm_Gmax_uS"):
        get_model("PCM_Joshi", "error")(DeviceParams(extra={"pcm_Gmax_uS": 40}))
    with pytest.raises(DeviceModelError, match="parabolic_coeffs"):
        get_model("parabolic", "noise")(DeviceParams(extra={"parabolic_coeffs": [1, 2]}))


# ---------------------------------------------------------------------------------------------------
# read noise
def test_parabolic_read_noise_statistics(rng):
    params = DeviceParams(On_off_ratio=0)
    stack = DeviceStack(params, noise_model="parabolic")
    assert stack.output_equivalent_ok
    for g in LEVELS + (0.0,):
        G = np.full(N, g)
        sigma = stack.noise_sigma(G, np)
        assert sigma[0] == pytest.approx(parabolic_sigma(g))
        _check_stats(stack.sample_read(G, sigma, np, rng), g, parabolic_sigma(g))


def test_parabolic_custom_coefficients():
    model = get_model("parabolic", "noise")(DeviceParams(extra={"parabolic_coeffs": [0.0, 0.0, 5.0]}))
    assert np.allclose(model.read_noise_sigma(np.linspace(0, 1, 5), np), 0.005)


def test_read_noise_output_equivalence(rng):
    """Per-conductance sampling and drawing the noise at the column output agree in distribution."""
    stack = DeviceStack(DeviceParams(On_off_ratio=10), noise_model="parabolic")
    G = rng.uniform(0.1, 1.0, size=(16, 3))
    x = rng.uniform(0, 1, size=16)
    sigma = stack.noise_sigma(G, np)
    exact = np.array([x @ stack.sample_read(G, sigma, np, rng) for _ in range(20000)])
    out_sd = np.sqrt((sigma**2 * x[:, None] ** 2).sum(axis=0))
    assert np.allclose(exact.mean(axis=0), x @ G, atol=5 * out_sd.max() / math.sqrt(20000))
    assert np.allclose(exact.std(axis=0), out_sd, rtol=0.05)


def test_output_equivalent_flags():
    assert get_model("parabolic", "noise").read_noise_output_equivalent is True
    assert get_model("alpha", "noise").read_noise_output_equivalent is True
    assert DeviceStack(DeviceParams()).output_equivalent_ok  # no noise at all


# ---------------------------------------------------------------------------------------------------
# drift
# SONOS retention data of Xiao et al., IEEE TCAS-I 69(4), 2022, Fig. 4(e), as published with CrossSim v2.0
# (sandialabs/cross-sim, cross_sim/xbar_simulator/parameters/custom_device/weight_drift_device_custom.py,
# SONOS_interpolate): mean current (nA) of 16 programmed levels at t = 0, 1, 2, 5 days and the spread fit
# sigma_I = B (1 - exp(-A I)) per time. The model is checked against CrossSim's procedure rebuilt here with
# scipy (per-level linear interpolation/extrapolation in time, then a piecewise-linear map of the programmed
# current, extended linearly beyond the end levels), not against its own table.
XIAO_DAYS = (0.0, 1.0, 2.0, 5.0)
XIAO_NA = np.array([
    [52.36, 101.54, 151.1, 202.17, 254.18, 305.76, 361.97, 408.88,
     512.92, 607.13, 721.61, 825.66, 930.48, 1034.71, 1303.16, 1585.32],
    [54.94, 103.82, 155.11, 206.69, 259.1, 308.48, 363.51, 411.18,
     512.22, 601.67, 711.76, 817.82, 917.37, 1019.99, 1281.87, 1553.01],
    [56.51, 105.8, 157.73, 210.48, 262.89, 312.24, 369.76, 417.15,
     519.34, 604.93, 715.29, 814.42, 918.3, 1019.02, 1278.3, 1550.17],
    [58.44, 110.93, 162.27, 213.43, 273.47, 319.09, 377.16, 421.33,
     524.99, 608.45, 717.14, 819.56, 918.27, 1023.06, 1278.56, 1543.26],
])
XIAO_AB = np.array([[0.00188704, 39.5656], [0.00203079, 46.1065], [0.00205587, 50.3982], [0.00217328, 53.4358]])


def _xiao_reference(G, t):
    """(mean, sigma) of the drifted conductance (normalized, I_max = 1600 nA, On/Off infinite) after t days."""
    from scipy.interpolate import interp1d

    levels = interp1d(XIAO_DAYS, XIAO_NA, axis=0, kind="linear", fill_value="extrapolate")(t)
    A, B = interp1d(XIAO_DAYS, XIAO_AB, axis=0, kind="linear", fill_value="extrapolate")(t)
    I = interp1d(XIAO_NA[0], levels, kind="linear", fill_value="extrapolate")(1600.0 * np.asarray(G))
    return I / 1600.0, np.maximum(B - B * np.exp(-A * I), 0) / 1600.0


@pytest.mark.parametrize("t", [0.5, 1.0, 2.0, 3.5, 5.0, 8.0])
def test_sonos_drift_matches_published_data(t):
    model = get_model("SONOS_interpolate", "drift")(DeviceParams(t_drift=t))
    # the measured levels, points between them, and currents below the first / above the last level
    G = np.concatenate([XIAO_NA[0] / 1600.0, np.linspace(0.005, 0.999, 97)])
    mean, sigma = _xiao_reference(G, t)
    np.testing.assert_allclose(model.drift_mean(G, t, np), mean, rtol=1e-12, atol=1e-15)
    np.testing.assert_allclose(model.drift_sigma(G, t, np), sigma, rtol=1e-12, atol=1e-15)
    if t in XIAO_DAYS:  # at a measurement time the programmed levels land on the measured currents
        np.testing.assert_allclose(1600.0 * model.drift_mean(XIAO_NA[0] / 1600.0, t, np),
                                   XIAO_NA[XIAO_DAYS.index(t)], rtol=1e-12)


def test_sonos_drift_statistics(rng):
    model = get_model("SONOS_interpolate", "drift")(DeviceParams(t_drift=5))
    for g in LEVELS:
        G = np.full(N, g)
        mean = float(model.drift_mean(G[:1], 5.0, np)[0])
        sigma = 53.4358 * (1 - math.exp(-2.17328e-3 * 1600 * mean)) / 1600  # spread fit at 5 days
        assert float(model.drift_sigma(G[:1], 5.0, np)[0]) == pytest.approx(sigma)
        _check_stats(model.drift(G, 5.0, np, rng), mean, sigma)


def test_pcm_drift_deterministic_part():
    model = get_model("PCM_Joshi", "drift")(DeviceParams(On_off_ratio=100, t_drift=1))
    for g in (0.1, 0.5, 0.9):
        gu = 25 * g
        mu = max(-0.0045 * gu + 0.08, min(0.06, max(-0.00169 * gu + 0.0825, 0.055)))
        for t in (0.01, 1.0, 100.0):
            want = g * (t * DAY / 20.0) ** (-mu)
            assert float(model.drift_mean(np.array([g]), t, np)[0]) == pytest.approx(want, rel=1e-9)


def test_pcm_drift_statistics(rng):
    t = 1.0
    model = get_model("PCM_Joshi", "drift")(DeviceParams(On_off_ratio=100, t_drift=t))
    for g in LEVELS:
        G = np.full(N, g)
        gu = 25 * g
        mu = max(-0.0045 * gu + 0.08, min(0.06, max(-0.00169 * gu + 0.0825, 0.055)))
        s = 1 / (8 * gu + 30.032)
        L = math.log(t * DAY / 20.0)
        mean = g * math.exp(-mu * L + 0.5 * (s * L) ** 2)  # E[G0 (t/20s)^-nu], nu ~ N(mu, s^2)
        samples = model.drift(G, t, np, rng)
        sigma = float(model.drift_sigma(G[:1], t, np)[0])
        _check_stats(samples, mean, sigma)
        # the spread holds the programming noise: more than the t0 error drifted to t alone
        assert sigma > pcm_sigma(g) * math.exp(-mu * math.log(t * DAY / 27.36)) * 0.99


def test_pcm_drift_rejects_too_short_times(rng):
    model = get_model("PCM_Joshi", "drift")(DeviceParams(t_drift=1e-4))
    with pytest.raises(DeviceModelError, match="55.39"):
        model.drift(np.full(3, 0.5), 1e-4, np, rng)


@pytest.mark.parametrize("name", ["SONOS_interpolate", "PCM_Joshi"])
def test_zero_drift_time_leaves_g_unchanged(name, rng):
    G = rng.uniform(0.01, 1.0, 100)
    model = get_model(name, "drift")(DeviceParams(On_off_ratio=100))
    assert np.array_equal(model.drift(G, 0.0, np, rng), G)
    assert np.array_equal(model.drift_mean(G, 0.0, np), G)
    stack = DeviceStack(DeviceParams(On_off_ratio=100, t_drift=0.0), drift_model=name)
    assert stack.drift is None
    assert np.array_equal(stack.program(G, np, rng), G)


@pytest.mark.parametrize("name", ["SONOS_interpolate", "PCM_Joshi"])
def test_drift_clipped_to_physical_range(name, rng):
    params = DeviceParams(On_off_ratio=100, t_drift=4)
    stack = DeviceStack(params, drift_model=name)
    G = np.concatenate([np.full(N // 2, params.Gmin), np.full(N // 2, 1.0)])
    out = stack.program(G, np, rng)
    assert out.min() >= params.Gmin and out.max() <= 1.0


# ---------------------------------------------------------------------------------------------------
# DeviceStack rules
def test_custom_error_off_while_drifting_but_alpha_kept():
    on = DeviceStack(DeviceParams(t_drift=1), error_model="SONOS", drift_model="SONOS_interpolate")
    assert on.error is None and on.drift is not None
    alpha = DeviceStack(DeviceParams(t_drift=1, alpha_error=0.01), error_model="alpha", drift_model="SONOS_interpolate")
    assert alpha.error is not None and alpha.error.name == "alpha"
    no_drift = DeviceStack(DeviceParams(t_drift=0), error_model="SONOS", drift_model="SONOS_interpolate")
    assert no_drift.error is not None and no_drift.drift is None


def test_misspelled_model_is_an_error_even_when_unused():
    with pytest.raises(DeviceModelError, match="SONOSS"):
        DeviceStack(DeviceParams(t_drift=1), error_model="SONOSS", drift_model="SONOS_interpolate")
    with pytest.raises(DeviceModelError, match="drift_model"):
        DeviceStack(DeviceParams(t_drift=0), drift_model="PCM")


def test_warns_beyond_sonos_data(caplog):
    with caplog.at_level(logging.WARNING, logger="xbarsim.devices"):
        DeviceStack(DeviceParams(t_drift=3), drift_model="SONOS_interpolate")
    assert not caplog.records
    with caplog.at_level(logging.WARNING, logger="xbarsim.devices"):
        DeviceStack(DeviceParams(t_drift=30), drift_model="SONOS_interpolate")
    assert any("beyond the 5 days" in r.getMessage() for r in caplog.records)


def test_unknown_model_lists_available():
    with pytest.raises(DeviceModelError) as info:
        get_model("HfO2_nonexistent", "error")
    msg = str(info.value)
    assert "\n" not in msg and "error_model = 'HfO2_nonexistent'" in msg
    for name in ("SONOS", "PCM_Joshi", "RRAM_Milo", "alpha"):
        assert name in msg
    with pytest.raises(DeviceModelError, match="provides only: drift"):
        get_model("SONOS_interpolate", "error")


def test_builtin_models_are_documented():
    names = set(available_models())
    assert {"SONOS", "SONOS_interpolate", "PCM_Joshi", "RRAM_Milo", "parabolic", "alpha"} <= names
    assert {"PCM_Joshi", "SONOS_interpolate"} <= set(available_models("drift"))
    assert {"parabolic", "alpha"} <= set(available_models("noise"))
    for name, kind in [("SONOS", "error"), ("SONOS_interpolate", "drift"), ("PCM_Joshi", "error"),
                       ("PCM_Joshi", "drift"), ("RRAM_Milo", "error"), ("parabolic", "noise"), ("alpha", "noise")]:
        cls = get_model(name, kind)
        assert cls.__doc__ and kind in cls.provides and cls.__module__.startswith("devices.")


# ---------------------------------------------------------------------------------------------------
# plugins
PLUGIN = """
from devices.base import DeviceModel


class Halver(DeviceModel):
    '''Test device: programming halves every conductance.'''
    name = "{name}"
    provides = frozenset({{"error"}})

    def programming_error(self, G, xp, rng):
        return {expr}
"""


def _plugin(tmp_path, monkeypatch, name, expr):
    folder = tmp_path / "plugins"
    folder.mkdir(exist_ok=True)
    (folder / f"{name}.py").write_text(PLUGIN.format(name=name, expr=expr))
    monkeypatch.setenv("XBARSIM_DEVICE_PATH", str(folder))
    return folder


def test_plugin_found_by_name(tmp_path, monkeypatch, rng):
    _plugin(tmp_path, monkeypatch, "halver_dev", "G * 0.5")
    cls = get_model("halver_dev", "error")
    assert issubclass(cls, DeviceModel) and cls.name == "halver_dev"
    assert "halver_dev" in available_models("error")
    G = np.full((3, 4), 0.8)
    assert np.allclose(DeviceStack(DeviceParams(), error_model="halver_dev").program(G, np, rng), 0.4)


def test_plugin_via_extra_paths(tmp_path, monkeypatch):
    folder = _plugin(tmp_path, monkeypatch, "halver_extra", "G")
    monkeypatch.delenv("XBARSIM_DEVICE_PATH")
    with pytest.raises(DeviceModelError):
        get_model("halver_extra", "error")
    assert get_model("halver_extra", "error", extra_paths=[folder]).name == "halver_extra"


@pytest.mark.parametrize(
    "expr,match",
    [("G[:1]", "shape"), ("G * float('nan')", "NaN"), ("G.tolist()", "shape"), ("1 / 0", "ZeroDivisionError")],
)
def test_broken_plugin_gives_one_line_error(tmp_path, monkeypatch, rng, expr, match):
    name = f"broken_{abs(hash(expr))}"
    _plugin(tmp_path, monkeypatch, name, expr)
    stack = DeviceStack(DeviceParams(), error_model=name)
    with pytest.raises(DeviceModelError, match=match) as info:
        stack.program(np.full((2, 3), 0.5), np, rng)
    assert name in str(info.value) and "\n" not in str(info.value)


def test_plugin_that_fails_to_import(tmp_path, monkeypatch):
    folder = tmp_path / "bad"
    folder.mkdir()
    (folder / "oops.py").write_text("import not_a_module_anywhere\n")
    monkeypatch.setenv("XBARSIM_DEVICE_PATH", str(folder))
    with pytest.raises(DeviceModelError, match="oops.py"):
        get_model("SONOS", "error")


def test_plugin_separate_classes_share_a_name(tmp_path, monkeypatch):
    folder = tmp_path / "hfo2"
    folder.mkdir()
    (folder / "hfo2.py").write_text(textwrap.dedent("""
        from devices.base import DeviceModel

        class HfO2Error(DeviceModel):
            name = "HfO2_test"
            provides = frozenset({"error"})
            def programming_error(self, G, xp, rng):
                return G

        class HfO2Drift(DeviceModel):
            name = "HfO2_test"
            provides = frozenset({"drift"})
            def drift(self, G, t_days, xp, rng):
                return G * 0.9
    """))
    monkeypatch.setenv("XBARSIM_DEVICE_PATH", str(folder))
    assert get_model("HfO2_test", "error").__name__ == "HfO2Error"
    assert get_model("HfO2_test", "drift").__name__ == "HfO2Drift"


def test_missing_plugin_folder(monkeypatch, tmp_path):
    monkeypatch.setenv("XBARSIM_DEVICE_PATH", str(tmp_path / "nope"))
    with pytest.raises(DeviceModelError, match="does not exist"):
        available_models()


# ---------------------------------------------------------------------------------------------------
# plots and CLI
def test_cli_device_plot(tmp_path):
    from simulator.cli import cli

    out = tmp_path / "tmp.png"
    result = CliRunner().invoke(cli, ["device", "plot", "SONOS", "--out", str(out)])
    assert result.exit_code == 0, result.output
    assert out.read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"


def test_cli_device_plot_drift_and_params(tmp_path):
    from simulator.cli import cli

    out = tmp_path / "pcm.png"
    args = ["device", "plot", "PCM_Joshi", "--out", str(out), "--on-off-ratio", "100", "--t-drift", "30",
            "--param", "pcm_Gmax_uS=20"]
    result = CliRunner().invoke(cli, args)
    assert result.exit_code == 0, result.output
    assert out.stat().st_size > 1000


def test_cli_unknown_model_exits_2(tmp_path):
    from simulator.cli import cli

    result = CliRunner().invoke(cli, ["device", "plot", "NoSuchDevice", "--out", str(tmp_path / "x.png")])
    assert result.exit_code == 2
    assert "NoSuchDevice" in result.output and "SONOS" in result.output
    assert not (tmp_path / "x.png").exists()
    bad = CliRunner().invoke(cli, ["device", "plot", "PCM_Joshi", "--param", "pcm_Gmax_uS=99",
                                   "--out", str(tmp_path / "y.png")])
    assert bad.exit_code == 2 and "pcm_Gmax_uS" in bad.output


def test_cli_device_list():
    from simulator.cli import cli

    result = CliRunner().invoke(cli, ["device", "list"])
    assert result.exit_code == 0, result.output
    for key in ("error_model:", "drift_model:", "noise_model:", "SONOS_interpolate", "parabolic", "RRAM_Milo"):
        assert key in result.output


def test_plot_device_every_builtin(tmp_path):
    from devices.plotting import plot_device

    for name in ("SONOS", "SONOS_interpolate", "PCM_Joshi", "RRAM_Milo", "parabolic", "alpha"):
        path = plot_device(name, DeviceParams(On_off_ratio=100, alpha_error=0.02, t_drift=2), tmp_path / f"{name}.png")
        assert path.exists() and path.stat().st_size > 1000


# ---------------------------------------------------------------------------------------------------
# example configs
@pytest.mark.parametrize("name", ["device_sonos", "device_pcm_joshi", "device_rram_milo", "device_parabolic",
                                  "device_sonos_drift", "device_pcm_drift"])
def test_example_configs_build_a_device_stack(name, rng):
    from pathlib import Path

    from simulator.config import load_config

    cfg = load_config(Path(__file__).resolve().parent.parent / "configs" / f"{name}.toml")
    params = DeviceParams(On_off_ratio=cfg.On_off_ratio, alpha_error=cfg.alpha_error, alpha_noise=cfg.alpha_noise,
                          t_drift=cfg.t_drift, extra=dict(cfg.device_params))
    stack = DeviceStack(params, cfg.error_model, cfg.drift_model, cfg.noise_model)
    assert any(m is not None for m in (stack.error, stack.drift, stack.noise))
    G = stack.program(np.linspace(params.Gmin, 1.0, 50), np, rng)
    assert G.min() >= params.Gmin and G.max() <= 1.0
