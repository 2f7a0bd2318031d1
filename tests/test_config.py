"""Config loading and validation: TOML, dict, CrossSim-style .py modules, overrides."""
import pytest

from simulator.config import Config, load_config, parse_value
from simulator.errors import ConfigError


def test_defaults_and_dict():
    cfg = load_config()
    assert cfg.model_name == "digits_cnn" and cfg.task == "digits" and cfg.style == "BALANCED"
    assert load_config({"adc_bits": 6}).adc_bits == 6


def test_crosssim_python_config(tmp_path):
    p = tmp_path / "inference_config_test.py"
    p.write_text("import math\nNruns = 3\nweight_bits = 8\nstyle = 'OFFSET'\ntopk = (1, 5)\nalpha_error = 0.01 * 2\n")
    cfg = load_config(p)
    assert cfg.Nruns == 3 and cfg.weight_bits == 8 and cfg.style == "OFFSET" and cfg.topk == [1, 5]
    assert cfg.alpha_error == pytest.approx(0.02)


def test_crosssim_python_config_errors(tmp_path):
    p = tmp_path / "inference_config_bad.py"
    p.write_text("adc_bits_vec = [8, 8]\n")
    with pytest.raises(ConfigError, match="adc_bits_vec is not supported"):
        load_config(p)
    p.write_text("weight_bitz = 8\n")
    with pytest.raises(ConfigError, match="did you mean 'weight_bits'"):
        load_config(p)
    p.write_text("raise RuntimeError('boom')\n")
    with pytest.raises(ConfigError, match="failed to run"):
        load_config(p)


def test_invalid_toml(tmp_path):
    p = tmp_path / "bad.toml"
    p.write_text("adc_bits = = 3\n")
    with pytest.raises(ConfigError, match="bad.toml: invalid TOML"):
        load_config(p)


def test_per_layer_overrides_and_ranges():
    cfg = load_config({"adc_bits": 8, "layers": {"fc1": {"adc_bits": 4, "dac_range": [0, 2]}}})
    assert cfg.for_layer("fc1").adc_bits == 4 and cfg.for_layer("fc2").adc_bits == 8
    assert cfg.for_layer("fc1").dac_range == (0.0, 2.0)
    with pytest.raises(ConfigError, match="layers.fc1.weight_bits"):
        load_config({"layers": {"fc1": {"weight_bits": 99}}})
    with pytest.raises(ConfigError, match="layers.fc1.Nslices = 2 requires weight_bits"):
        load_config({"layers": {"fc1": {"Nslices": 2}}})


@pytest.mark.parametrize("bad,msg", [
    ({"On_off_ratio": 0.5}, "On_off_ratio must be 0"),
    ({"Rp": 1e-4, "noRowParasitics": True}, "input_bitslicing"),
    ({"Icol_max": 1e-5}, "needs Icell_max > 0"),
    ({"input_bitslicing": True}, "dac_bits > 0"),
    ({"weight_levels": 4}, "weight_quantizer = 'lloyd'"),
    ({"weight_quantizer": "lloyd"}, "requires weight_levels"),
    ({"weight_quantizer": "lloyd", "weight_levels": 1}, "greater than or equal to 2"),
    ({"Nslices": 9, "weight_bits": 8}, "more than the 7 bits"),
    ({"Nslices": 2, "weight_bits": 8, "adc_exponents": [1]}, "adc_exponents has 1 entries"),
    ({"topk": "five"}, "topk"),
    ({"t_drift": -1.0}, "t_drift"),
    ({"alpha_noise": -0.01}, "alpha_noise"),
])
def test_invalid_combinations(bad, msg):
    with pytest.raises(ConfigError, match=msg):
        load_config(bad, name="x.toml")


def test_overrides_and_toml_round_trip(tmp_path):
    cfg = load_config({"adc_bits": 8, "layers": {"fc1": {"adc_bits": 4}}})
    new = cfg.with_overrides({"dac_bits": 6, "layers.fc2.adc_bits": 3})
    assert new.dac_bits == 6 and new.for_layer("fc2").adc_bits == 3 and new.for_layer("fc1").adc_bits == 4
    p = tmp_path / "round.toml"
    p.write_text(new.to_toml())
    again = load_config(p)
    # relative paths in a config file are relative to its folder
    assert again.calibration_dir == str(tmp_path / new.calibration_dir)
    assert {**again.to_dict(), "calibration_dir": new.calibration_dir} == new.to_dict()
    with pytest.raises(ConfigError, match="layers.<layer name>.<key>"):
        cfg.with_overrides({"layers.fc1": 3})


def test_parse_value():
    assert parse_value("4") == 4 and parse_value("1e-3") == 1e-3 and parse_value("true") is True
    assert parse_value("OFFSET") == "OFFSET" and parse_value("[1, 5]") == [1, 5]
