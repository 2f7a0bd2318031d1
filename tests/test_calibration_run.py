"""Calibration wired into the simulator: profiling, `xbarsim calibrate`, calibrated runs (manual 9.3-9.6)."""
from __future__ import annotations

import logging
import math
import tracemalloc
from pathlib import Path

import h5py
import numpy as np
import pytest
from click.testing import CliRunner

from adc_calibration.calibrate import calibrate
from simulator.calibration_file import HardwareKey, default_path, load_calibration
from adc_calibration.profiling import profile, profiling_config
from simulator.cli import cli
from simulator.config import load_config
from simulator.model_files import load_model
from simulator.runner import run
from simulator.simulation import Simulation

REPO = Path(__file__).resolve().parents[1]

#: the hardware of configs/digits_balanced_8bit.toml, without device errors
BASE = dict(
    model_name="digits_cnn", task="digits", seed=0, style="BALANCED", balanced_style="one_sided", weight_bits=8,
    NrowsMax=144, On_off_ratio=100, digital_bias=True,
)


@pytest.fixture(scope="module")
def net():
    return load_model("digits_cnn")


def _cfg(**kw):
    return load_config({**BASE, **kw})


# ---------------------------------------------------------------------------
# accuracy
# ---------------------------------------------------------------------------
@pytest.mark.parametrize("bits", [6, 4])
def test_committed_calibration_beats_max_ranges(bits, net, monkeypatch):
    """The example configs load the committed files; calibrated >= "max" ranges, close to ideal."""
    monkeypatch.chdir(REPO)
    cfg = load_config(REPO / "configs" / f"digits_calibrated_{bits}bit.toml").with_overrides({"Nruns": 2})
    assert cfg.adc_bits == cfg.dac_bits == bits and cfg.adc_range_option == "calibrated"
    cal = run(cfg, network=net)
    mx = run(cfg.with_overrides({"adc_range_option": "max"}), network=net)
    assert cal.n_images == 540 and cal.seeds == mx.seeds == [0, 1]
    assert cal.mean >= mx.mean
    assert cal.mean >= cal.ideal_accuracy - 0.02


def test_fresh_calibration_6bit_beats_max_and_8bit_matches_unquantized(net, tmp_path):
    ntest = dict(ntest=270, Nruns=1)
    c6 = _cfg(adc_bits=6, dac_bits=6, **ntest)
    path, table = calibrate(c6, out=tmp_path / "c6.h5", ntest=100, network=net)
    assert "conv1" in table and "fc2" in table and str(path) in table
    cal6 = run(c6.with_overrides({"adc_range_option": "calibrated", "calibration_file": str(path)}), network=net)
    max6 = run(c6, network=net)
    assert cal6.mean >= max6.mean and cal6.mean >= cal6.ideal_accuracy - 0.015

    c8 = _cfg(adc_bits=8, dac_bits=8, **ntest)
    p8, _ = calibrate(c8, out=tmp_path / "c8.h5", ntest=100, network=net)
    cal8 = run(c8.with_overrides({"adc_range_option": "calibrated", "calibration_file": str(p8)}), network=net)
    unq = run(c8.with_overrides({"adc_bits": 0, "dac_bits": 0}), network=net)
    assert abs(cal8.mean - unq.mean) <= 0.01


def test_user_optimizer_and_activation_ranges(net, tmp_path):
    cfg = _cfg(adc_bits=6, dac_bits=6)
    path, _ = calibrate(cfg, out=tmp_path / "mm.h5", ntest=20, optimizer="adc_calibration.optimizers:minmax_range",
                        network=net)
    store = profile(cfg, net, what="adc", ntest=20)
    cal = load_calibration(path, "digits_cnn", HardwareKey.from_config(cfg), ["conv1", "fc2"], require_dac=True)
    h = store.adc_histogram("fc2")
    # "both": the ADC pass ran with the freshly calibrated activation ranges; minmax of that profile
    assert cal.adc_ranges["fc2"][0] < 0 < cal.adc_ranges["fc2"][1]
    assert cal.adc_ranges["fc2"][1] == pytest.approx(h.max, rel=0.1)
    for layer, (lo, hi) in cal.dac_ranges.items():
        assert lo == 0.0 and hi > 0  # every MVM input of digits_cnn is non-negative
    assert cal.meta["optimizer"] == "adc_calibration.optimizers:minmax_range"


# ---------------------------------------------------------------------------
# profiling: bounded memory, units, ReLU-aware
# ---------------------------------------------------------------------------
def _peak(fn) -> int:
    tracemalloc.start()
    try:
        fn()
        return tracemalloc.get_traced_memory()[1]
    finally:
        tracemalloc.stop()


def test_profiling_memory_is_flat_in_ntest(net):
    cfg = _cfg(adc_bits=6, dac_bits=6, ntest_batch=25)
    profile(cfg, net, what="both", ntest=25)  # warm up imports and caches
    small = _peak(lambda: profile(cfg, net, what="both", ntest=50))
    large = _peak(lambda: profile(cfg, net, what="both", ntest=300))
    assert large / small < 1.5, (small, large)


def test_adc_inputs_in_algorithmic_units(net):
    """Unsliced ADC inputs are the layer's pre-bias outputs: y + b equals the ideal pre-activation."""
    cfg = _cfg(NrowsMax=0, On_off_ratio=0, weight_bits=0)
    store = profile(cfg, net, what="adc", ntest=10)
    from simulator.io.digits import load_digits_split

    sim = Simulation(net, profiling_config(cfg, "adc"))
    h = store.adc_histogram("fc2")
    x, _ = load_digits_split("calibration")
    logits = sim.ideal_forward(x[:10])
    b = next(l for l in net.layers if l.name == "fc2").weights["bias"]
    pre = logits - b
    assert h.count == pre.size
    assert h.min == pytest.approx(pre.min(), abs=1e-3) and h.max == pytest.approx(pre.max(), abs=1e-3)


def test_relu_aware_drops_values_below_minus_bias(net, tmp_path):
    cfg = _cfg(NrowsMax=0, adc_bits=6, dac_bits=6)
    full = profile(cfg, net, what="adc", ntest=20, raw_dir=tmp_path / "full", relu_aware=False)
    relu = profile(cfg, net, what="adc", ntest=20, raw_dir=tmp_path / "relu", relu_aware=True)
    sim = Simulation(net, profiling_config(cfg, "adc"))
    for layer in ("conv1", "conv2", "conv3", "fc1"):  # conv1: BN folded, then an Activation relu layer
        assert relu.layer_info[layer].relu_aware, relu.layer_info[layer]
        m = sim.mapping(layer)
        raw = np.asarray(full.load_raw((layer, 0, None))).reshape(-1, m.n_out)
        b = np.asarray(m.digital_bias, dtype=np.float32)
        kept = raw[raw + b >= 0]
        got = np.sort(np.asarray(relu.load_raw((layer, 0, None))))
        assert got.size == kept.size < raw.size
        np.testing.assert_array_equal(got, np.sort(kept))
        assert relu[(layer, 0, None)].min >= -float(b.max()) - 1e-6
    # fc2 is the network output: not ReLU-aware, nothing dropped
    assert not relu.layer_info["fc2"].relu_aware
    assert relu[("fc2", 0, None)].count == full[("fc2", 0, None)].count


@pytest.mark.parametrize(
    "overrides, layers, fragment",
    [
        (dict(NrowsMax=144), ["conv3", "fc1"], "partitions"),
        (dict(NrowsMax=0, weight_bits=9, Nslices=2), ["conv1", "conv2", "conv3", "fc1"], "weight bit slicing"),
        (dict(NrowsMax=0, dac_bits=4, input_bitslicing=True, ADC_per_ibit=True), ["conv1", "conv2", "conv3", "fc1"],
         "ADC after every input bit"),
    ],
)
def test_relu_aware_turned_off_with_a_log_line(overrides, layers, fragment, net, caplog):
    cfg = _cfg(**overrides)
    with caplog.at_level(logging.INFO, logger="xbarsim.calibration"):
        store = profile(cfg, net, what="adc", ntest=5, relu_aware=True)
    for layer in layers:
        li = store.layer_info[layer]
        assert not li.relu_aware and fragment in li.relu_note
        assert any(layer in r.getMessage() and fragment in r.getMessage() and "ReLU-aware profiling off" in r.getMessage()
                   for r in caplog.records), caplog.text
    if overrides.get("NrowsMax") == 144:
        assert store.layer_info["conv1"].relu_aware and store.layer_info["conv2"].relu_aware


def test_config_flag_turns_relu_aware_on(net):
    store = profile(_cfg(NrowsMax=0, profile_adc_biased=True), net, what="adc", ntest=5)
    assert store.layer_info["conv2"].relu_aware and not store.layer_info["fc2"].relu_aware


# ---------------------------------------------------------------------------
# bit-sliced layers
# ---------------------------------------------------------------------------
@pytest.mark.parametrize("pct", [None, 99.9])
def test_bitsliced_exponents_cover_pct_and_differ_by_powers_of_two(pct, net, tmp_path):
    cfg = _cfg(NrowsMax=0, weight_bits=9, Nslices=4, adc_bits=6, dac_bits=6)
    path, table = calibrate(cfg, what="adc", pct=pct, out=tmp_path / "s.h5", ntest=40, network=net)
    use = 99.99 if pct is None else pct
    key = HardwareKey.from_config(cfg if pct is None else cfg.with_overrides({"pct": pct}))
    assert key.pct == pct and "C = [" in table
    cal = load_calibration(path, "digits_cnn", key, ["conv1", "conv2", "conv3", "fc1", "fc2"])
    store = profile(cfg, net, what="adc", ntest=40)  # same seed, no noise: the same profile
    run_cfg = cfg.with_overrides({"adc_range_option": "calibrated", "calibration_file": str(path),
                                  **({} if pct is None else {"pct": pct})})
    sim = Simulation(net, run_cfg)
    for layer, exps in cal.adc_ranges.items():
        assert exps.dtype.kind == "i" and exps.shape == (4,)
        li = store.layer_info[layer]
        for s, c in enumerate(exps):
            h = store.adc_histogram(layer, s)
            a = max(abs(h.percentile(use)), abs(h.percentile(100 - use)))
            top = li.y_max * 2.0 ** -int(c)
            assert a <= top and (a == 0 or a > top / 2)  # covers the percentile; C is the largest that does
        # the simulator's ADC limits of the slices differ only by powers of two
        ranges = sim.mapping(layer).adc_ranges
        his = [hi for _, hi in ranges]
        for hi in his:
            r = math.log2(hi / his[0])
            assert r == round(r)
            assert ranges[0][0] == -his[0]


# ---------------------------------------------------------------------------
# the CLI
# ---------------------------------------------------------------------------
def _cli(*args):
    return CliRunner().invoke(cli, [str(a) for a in args])


def _one_line_error(result, *fragments):
    assert result.exit_code == 2, result.output
    err = result.stderr.strip()
    assert "Traceback" not in result.output and err.count("\n") == 0, err
    assert err.startswith("xbarsim: error:")
    for f in fragments:
        assert f in err, err
    return err


def test_cli_calibrate_then_run_loads_the_default_file(tmp_path):
    cdir = tmp_path / "cal"
    cfg = tmp_path / "cfg.toml"
    cfg.write_text(
        "\n".join(f"{k} = {v!r}".replace("'", '"').replace("True", "true") for k, v in BASE.items())
        + f'\nadc_bits = 6\ndac_bits = 6\nadc_range_option = "calibrated"\ncalibration_dir = "{cdir}"\nntest = 200\n'
    )
    res = _cli("calibrate", cfg, "--ntest", 50, "--plots", tmp_path / "plots", "--no-progress", "--relu-aware")
    assert res.exit_code == 0, res.output
    expected = default_path("digits_cnn", HardwareKey.from_config(load_config(cfg)), cdir)
    assert expected.is_file() and f"wrote {expected}" in res.output
    assert "ReLU-aware off" in res.output and "partitions" in res.output
    assert (tmp_path / "plots" / "conv1_adc.png").is_file() and (tmp_path / "plots" / "fc1_act.png").is_file()
    with h5py.File(expected) as f:
        assert len(f["adc"]) == 5 and len(f["dac"]) == 5

    res = _cli("run", cfg, "--no-progress")
    assert res.exit_code == 0, res.output
    assert "simulated accuracy" in res.output
    acc = float(res.output.split("simulated accuracy")[1].split("%")[0])
    assert acc > 90

    # key mismatch with an explicitly named file: one line naming the parameter and the command
    err = _one_line_error(_cli("run", cfg, "--set", f"calibration_file={expected}", "--set", "NrowsMax=72"),
                          "hardware key mismatch", "NrowsMax = 144 in the file but 72 in the config",
                          f"xbarsim calibrate {cfg}", "--set NrowsMax=72")
    # no file for this hardware at the default location: names the file, the nearest one and the command
    err = _one_line_error(_cli("run", cfg, "--set", "NrowsMax=72"), "does not exist",
                          "NrowsMax = 144 there but 72 in the config", f"`xbarsim calibrate {cfg} --set NrowsMax=72`")
    assert "NrowsMax72" in err


def test_cli_what_dac_then_adc_keeps_both(tmp_path):
    out = tmp_path / "x.h5"
    base = ["--set", "adc_bits=6", "--set", "dac_bits=6", "--set", "NrowsMax=0", "--ntest", 20, "--no-progress",
            "--out", out, "--optimizer", "minmax"]
    assert _cli("calibrate", "--what", "dac", *base).exit_code == 0
    with h5py.File(out) as f:
        assert len(f["dac"]) == 5 and len(f["adc"]) == 0
    res = _cli("calibrate", "--what", "adc", *base)
    assert res.exit_code == 0, res.output
    with h5py.File(out) as f:
        assert len(f["dac"]) == 5 and len(f["adc"]) == 5


def test_cli_missing_file_and_bad_options(tmp_path):
    cfg = tmp_path / "c.toml"
    cfg.write_text(f'adc_bits = 6\nadc_range_option = "calibrated"\ncalibration_dir = "{tmp_path / "none"}"\n')
    _one_line_error(_cli("run", cfg), "does not exist", f"`xbarsim calibrate {cfg}`")
    _one_line_error(_cli("calibrate", cfg, "--optimizer", "msee"), "did you mean 'mse'")
    _one_line_error(_cli("calibrate", cfg, "--out", tmp_path / "x.npy"), ".h5")
    _one_line_error(_cli("calibrate", cfg, "--set", "adc_bitz=3"), "did you mean 'adc_bits'")


def test_gru_cell_cores_are_profiled_and_calibrated_separately(tmp_path):
    from simulator.network import Layer, Network

    rng = np.random.default_rng(3)
    Fin, H = 6, 5
    w = {"weight_ih": rng.normal(size=(Fin, 3 * H)), "weight_hh": rng.normal(size=(H, 3 * H)),
         "bias_ih": rng.normal(size=3 * H), "bias_hh": rng.normal(size=3 * H)}
    net = Network("gru", [Layer("input", "Input"), Layer("gru", "GRUCell", ["input"], {"units": H}, w)], ["gru"],
                  "NHWC", (Fin,))
    np.savez(tmp_path / "d.npz", x_test=rng.normal(size=(8, Fin)).astype(np.float32), y_test=np.zeros(8, np.int64),
             x_calib=rng.normal(size=(16, Fin)).astype(np.float32), y_calib=np.zeros(16, np.int64), num_classes=5)
    cfg = load_config({"task": "npz", "dataset_path": str(tmp_path / "d.npz"), "adc_bits": 8, "dac_bits": 8,
                       "seed": 0, "profile_adc_biased": True})
    store = profile(cfg, net, what="both")
    assert set(store.layer_info) == {"gru/ih", "gru/hh"} and set(store.activations) == {"gru/ih", "gru/hh"}
    assert store[("gru/ih", 0, None)].count == 16 * 3 * H and not store.layer_info["gru/ih"].relu_aware
    path, _ = calibrate(cfg, out=tmp_path / "g.h5", network=net)
    cal = load_calibration(path, "gru", HardwareKey.from_config(cfg), ["gru/ih", "gru/hh"], require_dac=True)
    assert cal.dac_ranges["gru/ih"][0] < 0  # signed inputs keep a negative lower limit
    sim = Simulation(net, cfg.with_overrides({"adc_range_option": "calibrated", "calibration_file": str(path)}))
    ih, hh = sim.mapping("gru/ih"), sim.mapping("gru/hh")
    assert ih.input_range == cal.dac_ranges["gru/ih"] and hh.input_range == cal.dac_ranges["gru/hh"]
    x = rng.normal(size=(4, Fin)).astype(np.float32)
    assert np.allclose(sim.forward(x), sim.ideal_forward(x), atol=0.05)
