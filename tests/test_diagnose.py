"""xbarsim diagnose / Simulation.observe on the bundled digits CNN.

References are independent of the recorder: clipping fractions are counted
from an im2col of the test images written here with NumPy, and the causes
are checked against configs where only one non-ideality exists.
"""
import math

import numpy as np
import pytest
from click.testing import CliRunner

import simulator
from simulator.cli import cli
from simulator.diagnosis import CAUSES, diagnose
from simulator.errors import ConfigError
from simulator.runner import load_test_dataset

# 8-bit weights, DAC and ADC with the shipped calibrated ranges, no device errors
BASE = dict(model_name="digits_cnn", task="digits", weight_bits=8, dac_bits=8, adc_bits=8, NrowsMax=144,
            On_off_ratio=100, adc_range_option="calibrated", calibration_file="calibration/digits_cnn_6bit.h5",
            seed=0, ntest=120)


@pytest.fixture(scope="module", autouse=True)
def _repo_cwd(request):
    """Calibration files are found relative to the repository root."""
    import os
    from pathlib import Path

    old = os.getcwd()
    os.chdir(Path(__file__).resolve().parents[1])
    yield
    os.chdir(old)


def test_three_bit_adc_layer_ranked_first_with_adc_cause():
    rep = diagnose(dict(BASE, layers={"conv2": {"adc_bits": 3}}), workers=1)
    first = rep.ranking()[0]
    assert first.core == "conv2"
    assert first.main_cause == "adc"
    assert first.cause_share["adc"] > 0.9
    assert first.adc["bits"] == 3
    others = [d for d in rep.layers if d.core != "conv2"]
    assert all(d.snr_db > first.snr_db + 10 for d in others)
    assert rep.summary()[1].startswith("conv2:")
    # sensitivity runs happened: accuracies are fractions of the 120 images
    for d in rep.layers:
        assert 0 <= d.acc_only_nonideal <= 1 and 0 <= d.acc_only_ideal <= 1
        assert abs(d.acc_only_ideal * 120 - round(d.acc_only_ideal * 120)) < 1e-9


def test_max_range_on_small_outputs_ranked_first_with_level_hint():
    rep = diagnose(dict(BASE, layers={"fc1": {"adc_range_option": "max"}}), sensitivity=False)
    first = rep.ranking()[0]
    assert first.core == "fc1" and first.main_cause == "adc"
    assert first.adc["levels_used_fraction"] < 0.2
    assert "levels" in rep.hint(first) and "calibrat" in rep.hint(first)


def test_everything_ideal_gives_infinite_snr_and_zero_errors():
    rep = diagnose(dict(model_name="digits_cnn", seed=0, ntest=60), workers=1)
    assert rep.nothing_nonideal
    assert rep.layers, "every MVM layer is analog"
    for d in rep.layers:
        assert d.snr_db == math.inf
        assert d.relative_rms_error == 0.0
        assert all(e == 0.0 for e in d.cause_error.values())
    assert rep.accuracy == rep.ideal_accuracy
    assert "nothing is non-ideal" in rep.summary()[0]


def test_read_noise_only_is_attributed_to_read_noise():
    cfg = dict(model_name="digits_cnn", seed=0, ntest=60, noise_model="alpha", alpha_noise=0.05)
    rep = diagnose(cfg, sensitivity=False, samples=4096)
    for d in rep.layers:
        assert d.main_cause == "read_noise"
        assert d.cause_share["read_noise"] == 1.0
        assert all(d.cause_error[c] == 0.0 for c in CAUSES if c != "read_noise")
        # read noise alone (on sampled inputs) matches the whole error (on every input)
        assert d.cause_error["read_noise"] == pytest.approx(d.relative_rms_error, rel=0.15)
        assert d.snr_db < 60


def _conv1_adc_inputs(images, kernel):
    """conv1's pre-bias outputs (N*64, 16): 3x3 windows of the zero-padded 8x8 images times the kernel."""
    x = np.pad(images[..., 0].astype(np.float64), ((0, 0), (1, 1), (1, 1)))
    win = np.lib.stride_tricks.sliding_window_view(x, (3, 3), axis=(1, 2))  # (N, 8, 8, 3, 3)
    return np.einsum("nhwij,ijo->nhwo", win, kernel[:, :, 0, :].astype(np.float64)).reshape(-1, kernel.shape[-1])


def test_adc_clipping_fractions_match_a_direct_count():
    net = simulator.load_model("digits_cnn")
    kernel = next(l for l in net.layers if l.name == "conv1").weights["kernel"]
    cfg0 = dict(model_name="digits_cnn", seed=0, ntest=50, fold_batchnorm=False, precision="float64")
    data = load_test_dataset(simulator.load_config(cfg0))
    images, _ = data.load_all()
    y = _conv1_adc_inputs(images, kernel)
    a = float(np.percentile(np.abs(y), 85))
    bits = 5
    step = 2 * a / (2**bits - 2)  # signed range: 2**bits - 1 levels, one at zero
    high = np.mean(y > a + step / 2)
    low = np.mean(y < -a - step / 2)
    assert high > 0.02 and low > 0.02
    cfg = dict(cfg0, layers={"conv1": {"adc_bits": bits, "adc_range_option": "calibrated", "adc_range": [-a, a]}})
    # the observe API directly
    sim = simulator.Simulation(net, cfg, seed=0)
    with sim.observe(layers=["conv1"]) as rec:
        sim.forward(images)
    use = rec["conv1"].adc.main
    assert use.n == y.size
    assert use.clipped_high_fraction == high
    assert use.clipped_low_fraction == low
    codes = np.clip(np.rint(y / step), -(2 ** (bits - 1) - 1), 2 ** (bits - 1) - 1)
    assert use.levels_used == len(np.unique(codes))
    # and through diagnose
    rep = diagnose(cfg, sensitivity=False)
    d = next(d for d in rep.layers if d.core == "conv1")
    assert d.adc["clipped_high"] == high and d.adc["clipped_low"] == low
    assert d.main_cause == "adc"


def test_observe_keeps_bounded_samples_and_detaches():
    net = simulator.load_model("digits_cnn")
    sim = simulator.Simulation(net, dict(BASE), seed=0)
    x = load_test_dataset(simulator.load_config(BASE)).load_all()[0]
    before = sim.forward(x)
    with sim.observe(samples=100, seed=3) as rec:
        during = sim.forward(x)
    after = sim.forward(x)
    np.testing.assert_array_equal(before, during)  # observing changes no simulated number
    np.testing.assert_array_equal(before, after)
    assert rec["conv2"].rows == len(x) * 64 and rec["conv2"].samples.shape == (100, 144)
    assert rec["fc2"].samples.shape == (100, 64)
    assert all(core.observer is None for core in sim.cores.values() if hasattr(core, "observer"))
    with pytest.raises(ConfigError, match="names no analog layer"):
        with sim.observe(layers=["nope"]):
            pass


def test_sensitivity_on_worker_processes_matches_in_process():
    cfg = dict(BASE, ntest=40, layers={"fc1": {"adc_range_option": "max", "adc_bits": 4}})
    a = diagnose(cfg, layers=["fc1"], workers=1)
    b = diagnose(cfg, layers=["fc1"], workers=2)
    assert [d.core for d in a.layers] == ["fc1"]
    da, db = a.layers[0], b.layers[0]
    assert (da.acc_only_nonideal, da.acc_only_ideal) == (db.acc_only_nonideal, db.acc_only_ideal)
    assert da.acc_only_ideal >= da.acc_only_nonideal


def test_sensitivity_on_a_dask_cluster_matches_in_process():
    distributed = pytest.importorskip("distributed")
    cfg = dict(BASE, ntest=40, layers={"fc1": {"adc_range_option": "max", "adc_bits": 4}})
    a = diagnose(cfg, layers=["fc1", "fc2"], workers=1)
    with distributed.LocalCluster(n_workers=1, processes=False, threads_per_worker=2, dashboard_address=":0",
                                  silence_logs=40) as cluster:
        b = diagnose(cfg, layers=["fc1", "fc2"], workers=None, scheduler=cluster.scheduler_address)
    for da, db in zip(a.layers, b.layers):
        assert (da.core, da.acc_only_nonideal, da.acc_only_ideal) == (db.core, db.acc_only_nonideal, db.acc_only_ideal)


def test_report_files(tmp_path):
    rep = diagnose(dict(BASE, ntest=40, layers={"conv3": {"adc_bits": 3}}), layers=["conv3", "fc2"], workers=1,
                   out=tmp_path / "d")
    import pandas as pd

    frame = pd.read_csv(tmp_path / "d" / "diagnose.csv")
    assert list(frame["core"])[0] == "conv3" and frame["main_cause"][0] == "adc"
    for name in ("snr_by_cause.png", "adc_histograms.png", "sensitivity.png"):
        assert (tmp_path / "d" / name).read_bytes()[:4] == b"\x89PNG"
    page = (tmp_path / "d" / "report.html").read_text()
    assert page.count("data:image/png;base64,") == 3 and "conv3" in page and "<table" in page
    assert "conv3" in rep.table().splitlines()[2]


# ------------------------------------------------------------------ command line
def _cli(*args):
    return CliRunner().invoke(cli, list(args))


def _one_line(result, *frags):
    assert result.exit_code == 2, result.output
    err = result.stderr.strip()
    assert "Traceback" not in result.output and err.count("\n") == 0, err
    for f in frags:
        assert f in err, err


def test_cli_nothing_nonideal_says_so_and_exits_0(tmp_path):
    p = tmp_path / "ideal.toml"
    p.write_text('model_name = "digits_cnn"\n')
    r = _cli("diagnose", str(p), "--out", str(tmp_path / "o"))
    assert r.exit_code == 0, r.output
    assert "nothing is non-ideal" in r.output


def test_cli_layer_filter_naming_no_layer(tmp_path):
    p = tmp_path / "c.toml"
    p.write_text('model_name = "digits_cnn"\nadc_bits = 4\n')
    _one_line(_cli("diagnose", str(p), "--layers", "conv9", "--out", str(tmp_path / "o")), "conv9", "no analog layer")


def test_cli_unwritable_output_folder(tmp_path):
    p = tmp_path / "c.toml"
    p.write_text('model_name = "digits_cnn"\nadc_bits = 4\n')
    blocker = tmp_path / "file"
    blocker.write_text("x")
    _one_line(_cli("diagnose", str(p), "--out", str(blocker / "sub"), "--no-progress"), str(blocker / "sub"),
              "cannot be written")


def test_cli_writes_table_and_files(tmp_path):
    p = tmp_path / "c.toml"
    p.write_text('model_name = "digits_cnn"\nadc_bits = 3\nntest = 30\nseed = 0\n')
    r = _cli("diagnose", str(p), "--out", str(tmp_path / "o"), "-j", "1", "--no-progress", "--layers", "fc2,fc1")
    assert r.exit_code == 0, r.output
    assert "SNR dB" in r.output and (tmp_path / "o" / "report.html").exists()


def test_torch_host_route():
    """The same diagnosis on a torch module (its cores are NeuralCores keyed by qualified names)."""
    torch = pytest.importorskip("torch")
    from simulator.torch_host import from_torch

    torch.manual_seed(0)
    model = torch.nn.Sequential(torch.nn.Conv2d(1, 4, 3, padding=1), torch.nn.ReLU(), torch.nn.Flatten(),
                                torch.nn.Linear(256, 10)).eval()
    net = from_torch(model, torch.zeros(1, 1, 8, 8))
    cfg = dict(task="digits", ntest=20, seed=0, noise_model="alpha", alpha_noise=0.05)
    rep = diagnose(cfg, net, workers=1)
    assert sorted(d.core for d in rep.layers) == ["0", "3"]
    for d in rep.layers:
        assert d.main_cause == "read_noise" and d.cause_share["read_noise"] == 1.0
        assert d.cause_error["read_noise"] == pytest.approx(d.relative_rms_error, rel=0.2)
        assert 0 <= d.acc_only_nonideal <= 1 and 0 <= d.acc_only_ideal <= 1


def test_only_this_layer_nonideal_equals_a_config_written_by_hand():
    cfg = dict(BASE, ntest=60, layers={"conv2": {"adc_bits": 2}})
    rep = diagnose(cfg, layers=["conv2"], workers=1)
    d = rep.layers[0]
    by_hand = dict(model_name="digits_cnn", task="digits", seed=0, ntest=60, NrowsMax=144, On_off_ratio=100,
                   calibration_file="calibration/digits_cnn_6bit.h5",
                   layers={"conv2": {"weight_bits": 8, "dac_bits": 8, "adc_bits": 2,
                                     "adc_range_option": "calibrated"}})
    assert d.acc_only_nonideal == simulator.run(by_hand).mean
    rest = dict(BASE, ntest=60, layers={"conv2": {"weight_bits": 0, "dac_bits": 0, "adc_bits": 0,
                                                  "adc_range_option": "max"}})
    assert d.acc_only_ideal == simulator.run(rest).mean


def test_current_limit_clipping_matches_a_direct_count():
    """BALANCED one-sided, G_min = 0: plane currents x @ max(w, 0), x @ max(-w, 0), w = W / max|W| (manual 6.1, 8.4)."""
    net = simulator.load_model("digits_cnn")
    kernel = next(l for l in net.layers if l.name == "conv1").weights["kernel"].astype(np.float64)
    cfg0 = dict(model_name="digits_cnn", seed=0, ntest=40, fold_batchnorm=False, precision="float64")
    images, _ = load_test_dataset(simulator.load_config(cfg0)).load_all()
    w = kernel / np.abs(kernel).max()
    i_pos = _conv1_adc_inputs(images, np.maximum(w, 0))
    i_neg = _conv1_adc_inputs(images, np.maximum(-w, 0))
    limit = float(np.percentile(np.concatenate([i_pos.ravel(), i_neg.ravel()]), 90))
    expected = (np.count_nonzero(i_pos > limit) + np.count_nonzero(i_neg > limit)) / (i_pos.size + i_neg.size)
    cfg = dict(cfg0, layers={"conv1": {"Icol_max": limit * 1e-6, "Icell_max": 1e-6}})
    rep = diagnose(cfg, layers=["conv1"], sensitivity=False)
    d = rep.layers[0]
    assert d.icol_clipped == pytest.approx(expected, abs=1e-12)
    assert d.main_cause == "icol" and "Icol_max" in rep.hint(d)


def test_witin_layers_on_arrays_count_causes_above_their_fixed_quantization():
    """witin layers on arrays keep witin's input/output quantization with every cause off: a floor, not a cause."""
    rep = diagnose("configs/witin_arrays_sonos.toml", ntest=30, sensitivity=False)
    assert rep.layers
    for d in rep.layers:
        assert d.floor_error > 0
        assert d.cause_error["parasitics"] == 0.0 and d.cause_error["icol"] == 0.0
        assert d.main_cause == "programming"
    assert any("every cause switched off" in n for n in rep.notes)
