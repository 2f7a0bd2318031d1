"""The first run a newcomer sees: ``xbarsim run`` without arguments, the timing line, the "max" ADC range warning,
``simulator.load_dataset`` and the README's Python API example."""
from __future__ import annotations

import re
from pathlib import Path

import numpy as np
import pytest
from click.testing import CliRunner

import simulator
from simulator.cli import cli
from simulator.errors import ConfigError
from simulator.io.digits import load_digits_split
from simulator.runner import Result, adc_range_warnings

ROOT = Path(__file__).resolve().parents[1]
FIRST_RUN = ROOT / "simulator" / "data" / "first_run.toml"


def _number(text: str, label: str) -> float:
    return float(re.search(re.escape(label) + r"\s+(-?[0-9.]+)", text).group(1))


def test_first_run_simulates_a_realistic_calibrated_chip(tmp_path):
    csv = tmp_path / "runs.csv"
    res = CliRunner().invoke(cli, ["run", "--no-progress", "--csv", str(csv)])
    assert res.exit_code == 0, res.output
    out = res.output
    # the parameters that differ from an ideal chip, named
    chip = out.split("chip, where it differs from an ideal one:")[1].splitlines()[0]
    for key in ("weight_bits=8", "adc_bits=8", "dac_bits=8", "alpha_error=0.05", "alpha_noise=0.02",
                "adc_range_option=calibrated", "On_off_ratio=100.0"):
        assert key in chip, chip
    assert "5 run(s), seeds 0..4" in out  # seed 0: reproducible
    import pandas as pd

    df = pd.read_csv(csv)
    assert list(df["seed"]) == [0, 1, 2, 3, 4]
    # the printed mean, spread and drop are those of the per-run accuracies (computed here independently)
    acc = 100 * df["accuracy"].to_numpy()
    ideal = _number(out, "ideal accuracy")
    assert _number(out, "simulated accuracy") == pytest.approx(acc.mean(), abs=0.006)
    assert f"+- {acc.std(ddof=1):.2f} %" in out
    drop = ideal - acc
    assert _number(out, "accuracy drop") == pytest.approx(drop.mean(), abs=0.011)
    assert f"{drop.mean():.2f} +- {drop.std(ddof=1):.2f} points against ideal" in out
    # a realistic chip with calibrated 8-bit converters loses little, an ideal one nothing: the run is not ideal
    assert 0 < drop.mean() < 2.0 and acc.std() > 0
    # the float reference: the bundled model's floating-point accuracy on the digits test split
    net = simulator.load_model("digits_cnn")
    x, y = load_digits_split("test")
    assert ideal == pytest.approx(100 * (net_forward(net, x).argmax(1) == y).mean(), abs=0.006)
    assert "configs/" in out and "docs/parameters.md" in out
    assert "warning" not in out  # calibrated ranges: no "max" range warning


def net_forward(net, x):
    return simulator.Simulation(net, {"model_name": "digits_cnn"}, seed=0).ideal_forward(x)


def test_first_run_config_ships_its_calibration():
    cfg = simulator.load_config(FIRST_RUN)
    path = Path(cfg.calibration_file).resolve()
    assert path.is_file() and path.parent == ROOT / "adc_calibration" / "data"
    assert cfg.Nruns == 5 and cfg.seed == 0 and cfg.adc_bits == cfg.dac_bits == cfg.weight_bits == 8


def test_set_without_config_keeps_the_ideal_defaults():
    res = CliRunner().invoke(cli, ["run", "--no-progress", "--set", "ntest=40"])
    assert res.exit_code == 0, res.output
    assert "nothing (ideal chip)" in res.output


def _result(sim_s: float, f32_s: float | None) -> Result:
    rows = [{"run": 0, "seed": 0, "t_drift": 0.0, "accuracy": 0.9, "seconds_per_image": sim_s}]
    return Result(config=simulator.load_config(None), model_name="m", rows=rows, ideal_accuracy=0.95,
                  seconds_per_image=sim_s, ideal_seconds_per_image=4e-3, n_images=10, float32_seconds_per_image=f32_s)


def test_timing_line_in_plain_words_against_float32():
    slow = _result(2e-3, 1e-3).timing()
    assert "2.000 ms simulated" in slow and "plain float32 forward pass" in slow and "1.000 ms" in slow
    assert "2.0 times slower" in slow
    assert "4.0 times faster" in _result(0.25e-3, 1e-3).timing()
    # without a float32 pass (torch host) the float64 reference is named as such
    assert "float64 forward pass" in _result(2e-3, None).timing() and "2.0 times faster" in _result(2e-3, None).timing()
    table = _result(2e-3, 1e-3).table()
    assert "(one run)" in table and "+-" not in table
    assert "5.00 points against ideal (one run)" in table


def test_ideal_forward_in_float32_matches_float64():
    net = simulator.load_model("digits_cnn")
    x, _ = load_digits_split("test")
    sim = simulator.Simulation(net, {"model_name": "digits_cnn"}, seed=0)
    y64, y32 = sim.ideal_forward(x), sim.ideal_forward(x, dtype="float32")
    assert y64.dtype == np.float64 and y32.dtype == np.float32
    # float32 rounding (2**-24 relative per operation, a few hundred accumulations): far below 1e-4 of the scale
    assert np.abs(y32 - y64).max() < 1e-4 * np.abs(y64).max()
    assert sim.ideal_forward(x).dtype == np.float64  # the float32 call does not stick


def test_max_range_warning_names_unused_levels_and_calibration():
    cfg = simulator.load_config(ROOT / "configs" / "digits_balanced_8bit.toml").with_overrides(
        {"adc_bits": 6, "ntest": 100})
    lines = adc_range_warnings(cfg)
    assert lines and "most ADC levels unused" in lines[0] and "xbarsim calibrate" in lines[1]
    for layer in ("conv1", "conv2", "conv3", "fc1", "fc2"):
        assert f"{layer} " in lines[0]
    # the 6-bit "max" chip does collapse (README's second example), the warning is not decoration
    assert simulator.run(cfg).mean < 0.5
    assert adc_range_warnings(ROOT / "configs" / "digits_calibrated_6bit.toml") == []
    assert adc_range_warnings(ROOT / "configs" / "digits_ideal.toml") == []


def test_readme_second_example_prints_the_warning():
    res = CliRunner().invoke(cli, ["run", str(ROOT / "configs" / "digits_balanced_8bit.toml"), "--no-progress",
                                   "--set", "adc_bits=6", "--set", "layers.fc1.adc_bits=8", "--set", "ntest=60"])
    assert res.exit_code == 0, res.output
    assert "warning: \"max\" ADC ranges leave most ADC levels unused" in res.output
    assert "fc1 " in res.output and "of 256" in res.output  # fc1's 8-bit ADC: 256 levels


def test_load_dataset_in_model_layout_and_scaling():
    cfg = simulator.load_config(ROOT / "configs" / "digits_noisy.toml")
    x, y = simulator.load_dataset(cfg, n=50)
    xs, ys = load_digits_split("test")  # sklearn's pixels / 16, NHWC
    assert x.shape == (50, 8, 8, 1) and x.dtype == np.float32
    np.testing.assert_array_equal(x, xs[:50])
    np.testing.assert_array_equal(y, ys[:50])
    xc, yc = simulator.load_dataset(cfg, split="calibration", n=10)
    assert not any((xc[i] == xs).all(axis=(1, 2, 3)).any() for i in range(10))  # never test images
    with pytest.raises(ConfigError, match="n = 0"):
        simulator.load_dataset(cfg, n=0)


def test_load_dataset_nchw_for_torch_models():
    torch = pytest.importorskip("torch")
    module = torch.nn.Sequential(torch.nn.Conv2d(1, 4, 3), torch.nn.ReLU(), torch.nn.Flatten(),
                                 torch.nn.Linear(4 * 6 * 6, 10)).eval()
    net = simulator.from_torch(module, torch.zeros(1, 1, 8, 8))
    assert net.input_layout == "NCHW"
    x, _ = simulator.load_dataset({"task": "digits"}, n=20, network=net)
    xs, _ = load_digits_split("test")
    np.testing.assert_array_equal(x, xs[:20].transpose(0, 3, 1, 2))
    with torch.no_grad():
        ref = module(torch.from_numpy(x)).numpy()
    out = simulator.Simulation(net, {"task": "digits"}, seed=0).ideal_forward(x)
    np.testing.assert_allclose(out, ref, rtol=1e-4, atol=1e-5)


def test_readme_api_example_runs():
    text = (ROOT / "README.md").read_text()
    block = re.search(r"Python API:\n\n```python\n(.*?)```", text, re.S).group(1)
    import os

    cwd = os.getcwd()
    os.chdir(ROOT)
    try:
        env: dict = {}
        exec(compile(block.replace("result = simulator.run(cfg)", "result = simulator.run(cfg.with_overrides("
                                   "{'Nruns': 1, 'ntest': 20}))"), "README", "exec"), env)
    finally:
        os.chdir(cwd)
    assert env["x"].shape == (100, 8, 8, 1) and env["y"].shape == (100, 10)
    assert (env["y_ref"].argmax(1) == env["labels"]).mean() > 0.9


def test_float32_reference_skipped_for_weights_beyond_float32(recwarn):
    """A model float32 cannot hold (weights 1e300) has no float32 pass: the timing falls back to float64,
    without overflow warnings or a time computed from inf/NaN."""
    import warnings

    from simulator.network import Layer, Network

    layers = [Layer("input", "Input"),
              Layer("fc", "Dense", ["input"], {"units": 3}, {"kernel": np.full((4, 3), 1e300), "bias": np.zeros(3)})]
    net = Network("big", layers, ["fc"], "NHWC", (4,))

    class Data:
        def iter_batches(self, layout=None):
            yield np.linspace(0, 1, 20, dtype=np.float32).reshape(5, 4), np.zeros(5, np.int64)

    with warnings.catch_warnings():
        warnings.simplefilter("error", RuntimeWarning)
        res = simulator.run({"seed": 0}, network=net, dataset=Data())
    assert res.float32_seconds_per_image is None and "float64 forward pass" in res.timing()
