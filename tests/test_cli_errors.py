"""Bad input reaches the user as one clear line and exit code 2, never a traceback."""
import numpy as np
import pytest
from click.testing import CliRunner

from simulator.cli import cli
from simulator.models import resolve_model_path


def run_cli(*args):
    return CliRunner().invoke(cli, list(args))


def assert_one_line_error(result, *fragments):
    assert result.exit_code == 2, result.output
    err = result.stderr.strip()
    assert "Traceback" not in result.output
    assert err.count("\n") == 0, err
    assert err.startswith("xbarsim: error:")
    for frag in fragments:
        assert frag in err, err


def write(tmp_path, text, name="cfg.toml"):
    p = tmp_path / name
    p.write_text(text)
    return str(p)


def test_unknown_key_suggests(tmp_path):
    cfg = write(tmp_path, "adc_bitz = 8\n")
    assert_one_line_error(run_cli("run", cfg), "cfg.toml", "adc_bitz", "did you mean 'adc_bits'")


def test_wrong_type(tmp_path):
    cfg = write(tmp_path, 'weight_bits = "eight"\n')
    assert_one_line_error(run_cli("run", cfg), "cfg.toml", "weight_bits", "integer")


def test_out_of_range(tmp_path):
    cfg = write(tmp_path, "alpha_error = -0.1\n")
    assert_one_line_error(run_cli("run", cfg), "alpha_error", "greater than or equal to 0")


def test_bad_literal(tmp_path):
    cfg = write(tmp_path, 'style = "DIFFERENTIAL"\n')
    assert_one_line_error(run_cli("run", cfg), "style", "'BALANCED' or 'OFFSET'")


def test_bad_combination(tmp_path):
    cfg = write(tmp_path, 'adc_bits = 6\nadc_range_option = "granular"\n')
    assert_one_line_error(run_cli("run", cfg), "granular", "input_bitslicing")


def test_unknown_layer_override(tmp_path):
    cfg = write(tmp_path, "[layers.fc9]\nadc_bits = 4\n")
    assert_one_line_error(run_cli("run", cfg), "layers.fc9", "did you mean 'fc")


def test_set_override_errors():
    assert_one_line_error(run_cli("run", "--set", "adc_bits"), "KEY=VALUE")
    assert_one_line_error(run_cli("run", "--set", "dac_bitz=4"), "did you mean 'dac_bits'")


def test_missing_config_file(tmp_path):
    assert_one_line_error(run_cli("run", str(tmp_path / "nope.toml")), "nope.toml", "not found")


def test_missing_model_file(tmp_path):
    cfg = write(tmp_path, f'model_name = "{tmp_path / "missing.h5"}"\n')
    assert_one_line_error(run_cli("run", cfg), "missing.h5", "not found")


def test_corrupt_hdf5(tmp_path):
    bad = tmp_path / "garbage.h5"
    bad.write_bytes(b"this is not an HDF5 file at all" * 10)
    cfg = write(tmp_path, f'model_name = "{bad}"\n')
    assert_one_line_error(run_cli("run", cfg), "garbage.h5", "HDF5")


def test_truncated_hdf5(tmp_path):
    data = resolve_model_path("digits_cnn").read_bytes()
    bad = tmp_path / "truncated.h5"
    bad.write_bytes(data[: len(data) // 3])
    cfg = write(tmp_path, f'model_name = "{bad}"\n')
    assert_one_line_error(run_cli("run", cfg), "truncated.h5")


def test_hdf5_that_is_not_a_model(tmp_path):
    import h5py

    p = tmp_path / "other.h5"
    with h5py.File(p, "w") as f:
        f["x"] = np.zeros(3)
    cfg = write(tmp_path, f'model_name = "{p}"\n')
    assert_one_line_error(run_cli("run", cfg), "other.h5", "not an xbarsim model")


def test_calibration_file_missing(tmp_path):
    cfg = write(tmp_path, f'adc_bits = 8\nadc_range_option = "calibrated"\ncalibration_file = "{tmp_path / "none.npy"}"\n')
    assert_one_line_error(run_cli("run", cfg), "none.npy", "not found")


def test_calibration_file_wrong_shape(tmp_path):
    p = tmp_path / "limits.npy"
    np.save(p, np.ones((3, 2)))  # digits_cnn has 5 MVM layers
    cfg = write(tmp_path, f'adc_bits = 8\nadc_range_option = "calibrated"\ncalibration_file = "{p}"\n')
    assert_one_line_error(run_cli("run", cfg), "limits.npy", "5 analog MVM arrays")


def test_calibration_file_bad_values(tmp_path):
    p = tmp_path / "limits.npy"
    arr = np.tile([[-1.0, 1.0]], (5, 1))
    arr[2] = [1.0, -1.0]
    np.save(p, arr)
    cfg = write(tmp_path, f'adc_bits = 8\nadc_range_option = "calibrated"\ncalibration_file = "{p}"\n')
    assert_one_line_error(run_cli("run", cfg), "min < max")


def test_dac_bits_without_range(tmp_path):
    import h5py
    import simulator

    net = simulator.load_model("digits_mlp")
    for l in net.layers:
        l.attrs.pop("input_range", None)
    p = tmp_path / "norange.h5"
    simulator.save_model(net, p)
    cfg = write(tmp_path, f'model_name = "{p}"\ndac_bits = 8\n')
    assert_one_line_error(run_cli("run", cfg), "dac_bits = 8 needs the layer's input range")


def test_gpu_without_cupy(tmp_path):
    try:
        import cupy  # noqa: F401
        pytest.skip("CuPy is installed here")
    except ImportError:
        pass
    cfg = write(tmp_path, "useGPU = true\n")
    assert_one_line_error(run_cli("run", cfg), "CuPy")
