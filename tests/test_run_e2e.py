"""End-to-end runs on the bundled digits model: API, CLI and the example configs."""
from pathlib import Path

import pytest
from click.testing import CliRunner

import simulator
from simulator.cli import cli

CONFIGS = Path(__file__).resolve().parents[1] / "configs"


def test_run_api_records_runs_and_seeds():
    result = simulator.run({"ntest": 100, "Nruns": 3, "seed": 10, "weight_bits": 8, "error_model": "alpha",
                            "alpha_error": 0.05, "topk": [1, 3]})
    df = result.to_frame()
    assert list(df["run"]) == [0, 1, 2]
    assert list(df["seed"]) == [10, 11, 12]
    assert {"run", "seed", "accuracy", "top3", "seconds_per_image"} <= set(df.columns)
    assert (df["top3"] >= df["accuracy"]).all()
    assert result.n_images == 100 and 0.8 < result.ideal_accuracy <= 1.0
    assert result.seconds_per_image > 0 and result.ideal_seconds_per_image > 0
    again = simulator.run({"ntest": 100, "Nruns": 3, "seed": 10, "weight_bits": 8, "error_model": "alpha",
                           "alpha_error": 0.05, "topk": [1, 3]}, runs=[1])
    assert again.rows[0]["seed"] == 11 and again.rows[0]["accuracy"] == df["accuracy"][1]  # reproducible per run


def test_ideal_config_reaches_float_accuracy():
    result = simulator.run(CONFIGS / "digits_ideal.toml")
    assert result.mean == result.ideal_accuracy > 0.95


def test_default_run_cli():
    res = CliRunner().invoke(cli, ["run", "--no-progress", "--set", "ntest=60"])
    assert res.exit_code == 0, res.output
    assert "simulated accuracy" in res.output and "ideal accuracy" in res.output and "ms" in res.output


@pytest.mark.parametrize("name", ["digits_balanced_8bit", "digits_offset", "digits_noisy", "digits_bitsliced",
                                  "digits_crosssim3_arrays"])
def test_example_configs_run(name, tmp_path):
    out = tmp_path / "runs.csv"
    res = CliRunner().invoke(cli, ["run", str(CONFIGS / f"{name}.toml"), "--no-progress", "--set", "ntest=80",
                                   "--set", "Nruns=2", "--csv", str(out)])
    assert res.exit_code == 0, res.output
    import pandas as pd

    df = pd.read_csv(out)
    assert len(df) == 2 and (df["accuracy"] > 0.7).all()


def test_inspect_counts_arrays():
    res = CliRunner().invoke(cli, ["inspect", "digits_cnn", str(CONFIGS / "digits_bitsliced.toml"), "--set", "NrowsMax=72"])
    assert res.exit_code == 0, res.output
    # fc1: 512 rows / 72 -> 8 partitions x 4 slices x 2 polarities = 64 arrays (manual 1.2.1's way of counting)
    assert "fc1: 8 partition(s) x 4 slice(s) x 2 polarity = 64 arrays" in res.output


def test_inspect_weights_reports_uniform_and_lloyd(tmp_path):
    cfg = tmp_path / "lloyd.toml"
    cfg.write_text('model_name = "digits_mlp"\nweight_quantizer = "lloyd"\nweight_levels = 4\n')
    res = CliRunner().invoke(cli, ["inspect", "digits_mlp", str(cfg), "--weights"])
    assert res.exit_code == 0, res.output
    assert res.output.count("uniform MSE") == 2 and "Lloyd levels:" in res.output
    import re

    for uni, lloyd in re.findall(r"uniform MSE ([0-9.e+-]+), Lloyd MSE ([0-9.e+-]+)", res.output):
        assert float(lloyd) <= float(uni)  # at 4 levels Lloyd never loses to uniform
