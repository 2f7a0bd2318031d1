"""CrossSim 3.2 configs re-stated for the tests (written here, not copied): the flat
``inference_config.py`` and the five CrossSimParameters JSON chip presets.

The flat module sets every key of CrossSim 3.2's shipped inference config with its
shipped value, except the task and model (digits instead of MNIST's CNN6_v2) and a
small ntest. The presets are built from one default document and the changes each
preset makes to it.
"""
from __future__ import annotations

import copy
import json

#: CrossSim 3.2's applications/dnn/inference/inference_config.py, key by key
FLAT_CONFIG = '''
useGPU = False
gpu_num = 0
Nruns = 1
task = "digits"
model_name = "digits_cnn"
ntest = 200
ntest_batch = 200
nstart = 0
randomSampling = False
count_interval = 100
topk = 1
time_interval = True
return_network_output = False
show_model_summary = False
show_HW_config = False
export_conductances = False
conductances_dir = "./"
disable_SW_packing = False
weight_bits = 8
weight_percentile = 100
Nslices = 1
NrowsMax = 1152
NcolsMax = 0
style = "BALANCED"
balanced_style = "ONE_SIDED"
subtract_current_in_xbar = True
digital_offset = True
Rp_row = 0
Rp_col = 0
gate_input = False
interleaved_posneg = False
Icol_max = 0
Icell_max = 1.8e-6
fold_batchnorm = True
digital_bias = True
bias_bits = 0
Rmin = 1e3
Rmax = 1e6
infinite_on_off_ratio = True
error_model = "none"
alpha_error = 0.00
proportional_error = True
noise_model = "none"
alpha_noise = 0.00
proportional_noise = True
t_drift = 0
drift_model = "none"
adc_bits = 0
dac_bits = 8
input_bitslicing = False
input_slice_size = 1
ADC_per_ibit = False
adc_range_option = "CALIBRATED"
adc_type = "generic"
'''


def _paired(d):
    return {"_match": True, "mvm": copy.deepcopy(d), "vmm": copy.deepcopy(d)}


def default_preset() -> dict:
    """CrossSim 3.2 simulator/configs/default.json as a dict."""
    ideal = {"enable": False, "model": "IdealDevice", "magnitude": 0}
    return {
        "core": {
            "style": 1, "rows_max": 1024, "cols_max": 1024, "weight_bits": 0,
            "complex_matrix": False, "complex_input": False,
            "balanced": {"style": 1, "interleaved_posneg": False, "subtract_current_in_xbar": True},
            "bit_sliced": {"style": 1, "num_slices": 2},
            "offset": {"style": 1},
            "mapping": {
                "weights": {"clipping": True, "min": None, "max": None, "percentile": 1.0,
                            "row_partition_priority": [], "col_partition_priority": [],
                            "row_partition_strategy": 2, "col_partition_strategy": 2},
                "inputs": _paired({"clipping": False, "min": -1.0, "max": 1.0, "percentile": None}),
            },
        },
        "simulation": {
            "convolution": {"is_conv_core": False, "x_par": 1, "y_par": 1, "Nwindows": 1},
            "analytics": {"profile_adc_inputs": False, "ntest": 0},
            "useGPU": False, "gpu_id": 0, "Niters_max_parasitics": 100, "Verr_th_mvm": 0.001,
            "relaxation_gamma": 1, "disable_fast_balanced": False, "disable_fast_matmul": False,
            "hide_convergence_msg": False,
        },
        "xbar": {
            "device": {"cell_bits": 0, "Rmin": 1000, "Rmax": 10000, "time": 0, "infinite_on_off_ratio": False,
                       "clip_conductance": False, "read_noise": dict(ideal), "programming_error": dict(ideal),
                       "drift_error": dict(ideal)},
            "array": {"Icol_max": 0, "parasitics": {"enable": False, "Rp_row": 0, "Rp_col": 0,
                                                    "current_from_input": True}},
            "adc": _paired({"model": "IdealADC", "bits": 0, "signed": True, "stochastic_rounding": False,
                            "adc_per_ibit": False, "calibrated_range": None, "adc_range_option": 1}),
            "dac": _paired({"model": "IdealDAC", "bits": 0, "input_bitslicing": False, "signed": True,
                            "slice_size": 1}),
        },
    }


def _set_paired(doc, section, **kw):
    for half in ("mvm", "vmm"):
        doc["xbar"][section][half].update(copy.deepcopy(kw))


def _inputs(doc, lo, hi):
    for half in ("mvm", "vmm"):
        doc["core"]["mapping"]["inputs"][half].update(min=lo, max=hi)


def preset(name: str) -> dict:
    """One of CrossSim 3.2's shipped chip presets: default, ISAAC, ISAAC-SarADC, PRIME, SONOS-TCAS."""
    doc = default_preset()
    if name == "default":
        return doc
    doc["simulation"]["convolution"]["is_conv_core"] = True
    _inputs(doc, -152.0, 152.0)
    core, dev = doc["core"], doc["xbar"]["device"]
    if name in ("ISAAC", "ISAAC-SarADC"):
        core.update(style=2, rows_max=128, cols_max=128, weight_bits=16)
        core["bit_sliced"] = {"style": 3, "num_slices": 8}
        core["offset"] = {"style": 2}
        dev.update(cell_bits=2, Rmin=2000.0, Rmax=2000000.0)
        _set_paired(doc, "dac", model="SignMagnitudeDAC", bits=16, input_bitslicing=True)
        adc = dict(bits=9, adc_per_ibit=True, adc_range_option=3)
        if name == "ISAAC":
            _set_paired(doc, "adc", model="SignMagnitudeADC", **adc)
        else:
            _set_paired(doc, "adc", model="SarADC", gain_db=100, sigma_capacitor=0.0, sigma_comparator=0.0,
                        split_cdac=True, group_size=128, **adc)
    elif name == "PRIME":
        core.update(style=2, rows_max=256, cols_max=256, weight_bits=8)
        core["balanced"]["subtract_current_in_xbar"] = False
        dev.update(cell_bits=4, Rmin=1000.0, Rmax=20000.0)
        _set_paired(doc, "dac", model="SignMagnitudeDAC", bits=6, input_bitslicing=True, slice_size=3)
        _set_paired(doc, "adc", model="RampADC", bits=6, adc_per_ibit=True,
                    calibrated_range=[[-36.75, 36.75], [-2.296875, 2.296875]], adc_range_option=1,
                    gain_db=100, sigma_capacitor=0.0, sigma_comparator=0.0, symmetric_cdac=True)
    elif name == "SONOS-TCAS":
        core.update(style=1, rows_max=1152, cols_max=256, weight_bits=8)
        dev.update(cell_bits=7, Rmin=35000.0, Rmax=6000000000000.0)
        dev["programming_error"] = {"enable": True, "model": "SONOS", "magnitude": 0}
        dev["drift_error"] = {"enable": True, "model": "SONOS", "magnitude": 0}
        _set_paired(doc, "dac", model="SignMagnitudeDAC", bits=8, input_bitslicing=True)
        _set_paired(doc, "adc", model="RampADC", bits=8, calibrated_range=[-2.9185207451767736, 4.271561324751555],
                    adc_range_option=1, gain_db=100, sigma_capacitor=0.0, sigma_comparator=0.0, symmetric_cdac=True)
    else:
        raise KeyError(name)
    return doc


PRESETS = ("default", "ISAAC", "ISAAC-SarADC", "PRIME", "SONOS-TCAS")


def write_preset(path, name: str, **changes) -> str:
    doc = preset(name)
    for dotted, value in changes.items():
        node = doc
        *head, last = dotted.split(".")
        for h in head:
            node = node[h]
        node[last] = value
    path.write_text(json.dumps(doc, indent=2))
    return str(path)
