"""CrossSim 3 configs load unchanged: the flat inference_config.py, dnn_inference_params keys, JSON presets."""
import logging

import numpy as np
import pytest
from click.testing import CliRunner

from crosssim_fixtures import FLAT_CONFIG, PRESETS, write_preset
from simulator.cli import cli
from simulator.config import load_config
from simulator.errors import ConfigError


def one_line_exit2(*args, fragments=()):
    res = CliRunner().invoke(cli, list(args))
    assert res.exit_code == 2, res.output
    err = res.stderr.strip()
    assert "Traceback" not in res.output and err.count("\n") == 0, err
    for frag in fragments:
        assert frag in err, err
    return err


def flat(tmp_path, text=FLAT_CONFIG, name="inference_config.py"):
    p = tmp_path / name
    p.write_text(text)
    return p


# ------------------------------------------------------------------ flat module
def test_flat_crosssim32_config_maps_every_key(tmp_path, caplog):
    cfg = load_config(flat(tmp_path))
    # values as the manual / CrossSim define them
    assert cfg.On_off_ratio == 0.0  # infinite_on_off_ratio = True
    assert cfg.style == "BALANCED" and cfg.balanced_style == "one_sided"
    assert cfg.NrowsMax == 1152 and cfg.NcolsMax == 0 and cfg.weight_bits == 8 and cfg.dac_bits == 8
    assert cfg.adc_bits == 0 and cfg.adc_range_option == "max"  # no ADC: the CALIBRATED option has nothing to do
    assert cfg.Rp == 0 and cfg.Rp_row is None and cfg.Rp_col is None and not cfg.noRowParasitics
    assert cfg.subtract_current_in_xbar and cfg.input_slice_size == 1 and cfg.adc_type == "generic"
    assert cfg.Icol_max == 0 and cfg.time_interval is True and not cfg.export_conductances
    assert cfg.topk == 1 and cfg.proportional_error and cfg.proportional_noise


def test_flat_config_runs_on_digits(tmp_path):
    import simulator

    res = simulator.run(load_config(flat(tmp_path)))
    df = res.to_frame()
    acc = float(df["accuracy"].iloc[0]) if "accuracy" in df else float(df.iloc[0]["top1"])
    ideal = res.ideal_accuracy if hasattr(res, "ideal_accuracy") else None
    assert acc > 0.85
    if ideal is not None:
        assert abs(acc - float(ideal)) < 0.05


def test_output_only_keys_accepted_with_a_note(tmp_path, caplog):
    text = FLAT_CONFIG.replace("show_HW_config = False", "show_HW_config = True").replace(
        "return_network_output = False", "return_network_output = True")
    with caplog.at_level(logging.WARNING, logger="xbarsim.crosssim"):
        load_config(flat(tmp_path, text))
    notes = " ".join(r.getMessage() for r in caplog.records)
    assert "show_HW_config is accepted" in notes and "return_network_output is accepted" in notes


def test_dnn_inference_params_keys(tmp_path):
    text = "\n".join([
        "core_style = 'OFFSET'", "input_bits = 6", "adc_bits = 8", "adc_per_ibit = True", "input_bitslicing = True",
        "input_slice_size = 2", "Rp_row = 2.0", "Rp_col = 5.0", "Rmin = 1e4", "Rmax = 1e6",
        "infinite_on_off_ratio = False", "current_from_input = True", "selected_rows = 'top'", "Vread = 0.1",
        "Rp_row_terminal = 0", "Rp_col_terminal = 0", "adc_range_option = 'MAX'", "error_model = 'generic'",
        "alpha_error = 0.01", "noise_model = 'generic'", "drift_model = None", "gpu_id = 0", "ntest = 10",
        "profile_xbar_inputs = False", "profile_adc_inputs = False", "positiveInputsOnly = False",
        "x_par = 1", "y_par = 1", "Nslices = 1", "digital_offset = True", "weight_bits = 8",
        "adc_type = 'SAR'", "NcolsMax = 32", "NrowsMax = 64", "weight_percentile = 100",
        "subtract_current_in_xbar = True", "interleaved_posneg = False", "Icol_max = 0", "digital_bias = True",
        "balanced_style = 'one_sided'", "input_range = [-2.0, 2.0]", "adc_range = [-3.0, 5.0]", "ideal = False",
    ])
    cfg = load_config(flat(tmp_path, text, "inference_config_kw.py"))
    assert cfg.style == "OFFSET" and cfg.dac_bits == 6 and cfg.ADC_per_ibit and cfg.input_slice_size == 2
    assert cfg.Rp_row == pytest.approx(2e-4) and cfg.Rp_col == pytest.approx(5e-4)  # ohms / Rmin
    assert cfg.On_off_ratio == pytest.approx(100.0)
    assert cfg.error_model == "alpha" and cfg.noise_model == "alpha" and cfg.drift_model == "none"
    assert cfg.adc_type == "sar" and cfg.adc_range_option == "max" and cfg.NcolsMax == 32
    assert cfg.dac_range == (-2.0, 2.0) and cfg.adc_xbar_range is None  # no calibrated range: 'max' drops it
    icol = load_config(flat(tmp_path, "Icol_max = 3.0\nRmin = 1e3\n", "inference_config_icol.py"))
    assert icol.Icol_max / icol.Icell_max == 3.0  # dnn_inference_params: units of one cell's max current
    cal = load_config(flat(tmp_path, "adc_bits = 6\nadc_range_option = 'CALIBRATED'\nadc_range = [-3.0, 5.0]\n"
                                     "Rmin = 1e3\n", "inference_config_cal.py"))
    assert cal.adc_xbar_range == [(-3.0, 5.0)]


def test_value_aliases_and_case(tmp_path):
    cfg = load_config({"style": "balanced", "balanced_style": "TWO_SIDED", "adc_range_option": "MAX",
                       "error_model": "PCMJoshi", "adc_type": "RampADC", "adc_bits": 6,
                       "layers": {"fc1": {"adc_range_option": "Granular", "input_bitslicing": True, "dac_bits": 4,
                                          "ADC_per_ibit": True, "weight_bits": 4}}})
    assert cfg.style == "BALANCED" and cfg.balanced_style == "two_sided" and cfg.adc_range_option == "max"
    assert cfg.error_model == "PCM_Joshi" and cfg.for_layer("fc1").adc_range_option == "granular"
    assert load_config({"noise_model": "generic"}).noise_model == "alpha"


def test_crosssim_sonos_means_the_2022_fit(tmp_path):
    text = "error_model = 'SONOS'\ndrift_model = 'SONOS'\nRmin = 1e6 / 1.6\nRmax = 1e12\nVread = 1.0\n"
    cfg = load_config(flat(tmp_path, text, "inference_config_sonos.py"))
    assert cfg.error_model == "SONOS_Agrawal" and cfg.drift_model == "SONOS_Agrawal"
    assert cfg.device_params["sonos_Imax_nA"] == pytest.approx(1600.0)
    # a v2.0-style module (no CrossSim 3 keys) keeps the manual's SONOS
    assert load_config(flat(tmp_path, "error_model = 'SONOS'\n", "inference_config_v2.py")).error_model == "SONOS"


def test_icell_max_alone_is_no_conflict():
    assert load_config({"Icell_max": 1.8e-6}).Icol_max == 0
    with pytest.raises(ConfigError, match="needs Icell_max"):
        load_config({"Icol_max": 1e-5})


# ------------------------------------------------------------------ JSON presets
EXPECTED = {
    "default": dict(style="BALANCED", Nslices=1, NrowsMax=1024, NcolsMax=1024, weight_bits=0, adc_bits=0, dac_bits=0,
                    On_off_ratio=10.0, input_bitslicing=False, subtract_current_in_xbar=True),
    "ISAAC": dict(style="OFFSET", Nslices=8, NrowsMax=128, NcolsMax=128, weight_bits=16, digital_offset=False,
                  On_off_ratio=1000.0, adc_bits=9, adc_type="generic", adc_range_option="granular",
                  ADC_per_ibit=True, dac_bits=16, dac_type="generic", input_bitslicing=True,
                  dac_range=(-152.0, 152.0)),
    "ISAAC-SarADC": dict(style="OFFSET", Nslices=8, adc_type="sar", adc_bits=9, adc_range_option="granular",
                         adc_params={"gain_db": 100, "sigma_capacitor": 0.0, "sigma_comparator": 0.0,
                                     "split_cdac": True, "group_size": 128}),
    "PRIME": dict(style="BALANCED", Nslices=2, NrowsMax=256, NcolsMax=256, weight_bits=8, On_off_ratio=20.0,
                  subtract_current_in_xbar=False, adc_type="ramp", adc_bits=6, adc_range_option="calibrated",
                  adc_xbar_range=[(-36.75, 36.75), (-2.296875, 2.296875)], dac_bits=6, input_slice_size=3,
                  ADC_per_ibit=True),
    "SONOS-TCAS": dict(style="BALANCED", Nslices=1, NrowsMax=1152, NcolsMax=256, weight_bits=8,
                       error_model="SONOS_Agrawal", drift_model="SONOS_Agrawal", adc_type="ramp", adc_bits=8,
                       adc_range_option="calibrated", adc_xbar_range=[(-2.9185207451767736, 4.271561324751555)],
                       On_off_ratio=6e12 / 35000.0, dac_bits=8, input_bitslicing=True, ADC_per_ibit=False),
}


@pytest.mark.parametrize("name", PRESETS)
def test_json_preset_maps(tmp_path, name):
    cfg = load_config(write_preset(tmp_path / f"{name}.json", name))
    for key, value in EXPECTED[name].items():
        got = getattr(cfg, key)
        if isinstance(value, float):
            assert got == pytest.approx(value), key
        elif isinstance(value, list):
            assert [tuple(r) for r in got] == [tuple(r) for r in value], key
        else:
            assert got == value, key
    if name == "SONOS-TCAS":
        assert cfg.device_params["sonos_Imax_nA"] == pytest.approx(0.1 / 35000 * 1e9)


@pytest.mark.parametrize("name", PRESETS)
def test_json_preset_runs_on_digits(tmp_path, name):
    """Each chip preset, unchanged, simulates the bundled digits CNN. Only the presets' one input range for every
    layer (+-152, made for another network) gives way to the digits model's per-layer input ranges -- what CrossSim
    takes from its calibrated input limits."""
    from simulator.io.datasets import load_dataset
    from simulator.model_files import load_model
    from simulator.simulation import Simulation

    cfg = load_config(write_preset(tmp_path / f"{name}.json", name))
    cfg = cfg.with_overrides({"task": "digits", "model_name": "digits_cnn", "ntest": 40, "dac_range": None})
    net = load_model("digits_cnn")
    data = load_dataset(cfg.model_dump(), split="test")
    x, y = next(iter(data.iter_batches(layout=net.input_layout)))
    x, y = x[:40], np.asarray(y[:40])
    sim = Simulation(net, cfg, seed=1)
    out = sim.forward(x)
    assert np.all(np.isfinite(out))
    ideal = sim.ideal_forward(x).argmax(axis=1)
    agree = float(np.mean(out.argmax(axis=1) == ideal))
    assert agree >= (0.8 if name != "SONOS-TCAS" else 0.5), agree


# ------------------------------------------------------------------ bad input
def test_contradictory_rp_and_rp_row(tmp_path):
    p = flat(tmp_path, "Rp = 1e-4\nRp_row = 1.0\nRmin = 1e3\n", "inference_config_rp.py")
    one_line_exit2("run", str(p), fragments=("Rp and Rp_row both set the wire resistance", "inference_config_rp.py"))
    with pytest.raises(ConfigError, match="both set the wire resistance"):
        load_config({"Rp": 1e-4, "Rp_col": 1e-4})


def test_unknown_json_section(tmp_path):
    p = tmp_path / "chip.json"
    write_preset(p, "default")
    import json

    doc = json.loads(p.read_text())
    doc["analog"] = {}
    p.write_text(json.dumps(doc))
    one_line_exit2("run", str(p), fragments=("chip.json", "unknown section 'analog'"))
    doc.pop("analog")
    doc["xbar"]["device"]["Rmaxx"] = 5
    p.write_text(json.dumps(doc))
    one_line_exit2("run", str(p), fragments=("unknown key xbar.device.Rmaxx", "did you mean 'Rmax'"))


def test_json_current_from_input_false_needs_one_bit_slices(tmp_path):
    p = tmp_path / "gated.json"
    write_preset(p, "default", **{"xbar.array.parasitics.enable": True, "xbar.array.parasitics.Rp_col": 1.0,
                                  "xbar.array.parasitics.current_from_input": False})
    one_line_exit2("run", str(p), fragments=("current_from_input = false", "input_bitslicing = true"))
    write_preset(p, "SONOS-TCAS", **{"xbar.array.parasitics.enable": True, "xbar.array.parasitics.Rp_col": 1.0,
                                     "xbar.array.parasitics.Rp_row": 3.0,
                                     "xbar.array.parasitics.current_from_input": False})
    cfg = load_config(str(p))
    assert cfg.noRowParasitics and cfg.Rp_row == 0 and cfg.Rp_col == pytest.approx(1.0 / 35000.0)


def test_adc_parameter_for_the_wrong_model(tmp_path):
    p = tmp_path / "ramp.json"
    write_preset(p, "PRIME", **{"xbar.adc.mvm.split_cdac": True})
    one_line_exit2("run", str(p), fragments=("xbar.adc.mvm.split_cdac", "sar ADC", "RampADC"))
    t = tmp_path / "ramp.toml"
    t.write_text('adc_bits = 6\nadc_type = "ramp"\n[adc_params]\ngroup_size = 8\n')
    one_line_exit2("run", str(t), fragments=("adc_params.group_size", "'cyclic', 'pipeline', 'sar'", "'ramp'"))


@pytest.mark.parametrize("text,frag", [
    ("Rp_row_terminal = 5\n", "Rp_row_terminal"),
    ("selected_rows = 'bottom'\nRmin = 1e3\n", "selected_rows"),
    ("bias_bits = 'adc'\nRmin = 1e3\n", "bias_bits = 'adc'"),
    ("subtract_current_in_xbar = False\ninterleaved_posneg = True\n", "contradicts interleaved_posneg"),
    ("gate_input = True\ncurrent_from_input = True\n", "contradict"),
    ("gate_input = True\nRp_col = 1.0\nRmin = 1e3\ndac_bits = 8\n", "gate_input = True .* requires input_bitslicing"),
])
def test_flat_keys_we_cannot_honour(tmp_path, text, frag):
    with pytest.raises(ConfigError, match=frag.replace("(", r"\(")):
        load_config(flat(tmp_path, text, "inference_config_bad.py"))


@pytest.mark.parametrize("cfg,frag", [
    ({"adc_type": "sar"}, "adc_type = 'sar' has no effect: no layer has an ADC"),
    ({"adc_params": {"gain_db": 60.0}}, "adc_params has no effect"),
    ({"dac_type": "quantizer"}, "dac_type = 'quantizer' has no effect: no layer has a DAC"),
    ({"dac_type": "quantizer", "dac_bits": 4, "input_bitslicing": True}, "has no effect with input_bitslicing"),
])
def test_converter_keys_without_a_converter(cfg, frag):
    with pytest.raises(ConfigError, match=frag):
        load_config(cfg)


def test_converter_model_used_by_one_layer_only():
    cfg = load_config({"adc_type": "ramp", "layers": {"fc1": {"adc_bits": 6}}})
    assert cfg.for_layer("fc1").adc_type == "ramp" and cfg.for_layer("fc1").adc_bits == 6
