"""Property-based fuzzing of the entry points (issue 15): configs, model files, datasets, calibration files.

Every generated case must end either in a normal run (exit 0) or in exit 2
with one ``xbarsim: error:`` line -- never a traceback, another exit code or a
hang (each example has a deadline). Examples are bounded so the whole module
runs in well under a minute.
"""
from __future__ import annotations

import json
import math
import shutil
from datetime import timedelta
from pathlib import Path

import h5py
import numpy as np
import pytest
from click.testing import CliRunner
from hypothesis import HealthCheck, event, given, settings
from hypothesis import strategies as st

from simulator.cli import cli
from simulator.config import Config
from simulator.models import resolve_model_path

FAST = {"ntest": 4, "Nruns": 1}  # every example runs a few images only
SETTINGS = dict(deadline=timedelta(seconds=30), suppress_health_check=[HealthCheck.function_scoped_fixture,
                                                                       HealthCheck.too_slow], derandomize=True)


def invoke(*args):
    return CliRunner().invoke(cli, [str(a) for a in args])


def assert_clean(result, *, allow_ok: bool = True):
    """Exit 0 (when allowed) or exit 2 with exactly one error line; never an escaped exception."""
    event(f"exit {result.exit_code}")
    exc = result.exception
    assert exc is None or isinstance(exc, SystemExit), f"{type(exc).__name__}: {exc}\n{result.output}"
    assert "Traceback" not in result.output, result.output
    if result.exit_code == 0 and allow_ok:
        return
    assert result.exit_code == 2, (result.exit_code, result.output)
    errors = [l for l in result.stderr.splitlines() if l.startswith("xbarsim: error:")]
    assert len(errors) == 1 and errors[0] == result.stderr.strip().splitlines()[-1], result.stderr


def _sets(d: dict) -> list[str]:
    out = []
    for k, v in d.items():
        out += ["--set", f"{k}={json.dumps(v) if not isinstance(v, float) or math.isfinite(v) else repr(v)}"]
    return out


# ------------------------------------------------------------------ configs
_SAFE_KEYS = sorted(set(Config.model_fields) - {"layers", "source", "Nruns", "ntest", "ntest_batch", "useGPU",
                                                 "model_name", "dataset_path", "device_path", "calibration_dir",
                                                 "calibration_file", "dac_limits_file", "device_data", "module"})
_values = st.one_of(
    st.booleans(), st.integers(-3, 40), st.sampled_from([0.0, 0.5, 1.0, 2.5, 100.0, -1.0, 1e-9]),
    st.sampled_from([float("nan"), float("inf"), -float("inf")]),
    st.sampled_from(["BALANCED", "OFFSET", "one_sided", "calibrated", "max", "granular", "alpha", "none", "x", ""]),
    st.lists(st.integers(-2, 9), max_size=3), st.lists(st.floats(-2, 2, allow_nan=False), min_size=2, max_size=2),
)
_configs = st.dictionaries(st.one_of(st.sampled_from(_SAFE_KEYS), st.sampled_from(["adc_bitz", "noise", "Layers"])),
                           _values, max_size=4)


# valid values of hardware keys: their combinations are runs or refused combinations, and reach the cores
_HARDWARE = {
    "weight_bits": st.sampled_from([0, 2, 4, 8]), "Nslices": st.sampled_from([1, 2]), "NrowsMax": st.sampled_from([0, 9, 40]),
    "style": st.sampled_from(["BALANCED", "OFFSET"]), "balanced_style": st.sampled_from(["one_sided", "two_sided"]),
    "digital_offset": st.booleans(), "digital_bias": st.booleans(), "bias_bits": st.sampled_from([0, 4]),
    "input_bitslicing": st.booleans(), "ADC_per_ibit": st.booleans(), "adc_bits": st.sampled_from([0, 1, 4, 8, 20]),
    "dac_bits": st.sampled_from([0, 1, 4, 8]), "adc_range_option": st.sampled_from(["max", "granular"]),
    "On_off_ratio": st.sampled_from([0.0, 2.0, 100.0]), "error_model": st.sampled_from(["none", "alpha", "relative_max"]),
    "alpha_error": st.sampled_from([0.0, 0.05, 3.0]), "noise_model": st.sampled_from(["none", "alpha", "parabolic"]),
    "alpha_noise": st.sampled_from([0.0, 0.02, 5.0]), "read_noise_mode": st.sampled_from(["auto", "exact", "output"]),
    "Rp": st.sampled_from([0.0, 1e-4]), "noRowParasitics": st.booleans(), "interleaved_posneg": st.booleans(),
    "memory_budget_mb": st.sampled_from([0.01, 512.0]), "weight_percentile": st.sampled_from([50.0, 100.0]),
    "model_name": st.sampled_from(["digits_cnn", "digits_mlp"]), "topk": st.sampled_from([1, 3, [1, 2]]),
}
_hardware = st.fixed_dictionaries({}, optional=_HARDWARE)


@settings(max_examples=30, **SETTINGS)
@given(cfg=_hardware)
def test_fuzz_hardware_combinations(cfg):
    assert_clean(invoke("run", "--no-progress", *_sets({**cfg, **FAST})))


@settings(max_examples=40, **SETTINGS)
@given(cfg=_configs, as_file=st.booleans())
def test_fuzz_configs(tmp_path, cfg, as_file):
    if as_file:  # through a JSON config file (TOML cannot hold every generated value)
        text = json.dumps(cfg, allow_nan=True)
        p = tmp_path / "c.json"
        p.write_text(text)
        res = invoke("run", p, "--no-progress", *_sets(FAST))
    else:
        res = invoke("run", "--no-progress", *_sets({**cfg, **FAST}))
    assert_clean(res)


@settings(max_examples=10, **SETTINGS)
@given(data=st.binary(min_size=0, max_size=300), suffix=st.sampled_from([".toml", ".json", ".py", ".txt"]))
def test_fuzz_config_bytes(tmp_path, data, suffix):
    p = tmp_path / f"junk{suffix}"
    p.write_bytes(data)
    assert_clean(invoke("run", p, "--no-progress", *_sets(FAST)))


# ------------------------------------------------------------------ model files
@pytest.fixture(scope="module")
def model_copy(tmp_path_factory):
    return resolve_model_path("digits_mlp")


_mutations = st.sampled_from(["nan", "inf", "transpose", "extra_dim", "drop", "bytes", "int8", "bool", "graph",
                              "empty", "huge_value", "outputs"])


@settings(max_examples=24, **SETTINGS)
@given(mutation=_mutations, layer=st.integers(0, 5), seed=st.integers(0, 2**16))
def test_fuzz_model_files(tmp_path, model_copy, mutation, layer, seed):
    rng = np.random.default_rng(seed)
    p = tmp_path / "m.h5"
    shutil.copy(model_copy, p)
    with h5py.File(p, "a") as f:
        names = []
        f["weights"].visit(lambda n: names.append(n) if isinstance(f["weights"][n], h5py.Dataset) else None)
        key = names[layer % len(names)]
        arr = f["weights"][key][()]
        new = None
        if mutation == "nan":
            new = arr.astype(np.float64)
            new.flat[rng.integers(new.size)] = np.nan
        elif mutation == "inf":
            new = arr.astype(np.float64)
            new.flat[rng.integers(new.size)] = -np.inf
        elif mutation == "transpose":
            new = arr.T.copy() if arr.ndim > 1 else np.concatenate([arr, arr])
        elif mutation == "extra_dim":
            new = arr[..., None]
        elif mutation == "int8":
            new = np.clip(arr * 50, -128, 127).astype(np.int8)
        elif mutation == "bool":
            new = arr > 0
        elif mutation == "huge_value":
            new = arr.astype(np.float64) * 1e300
        elif mutation == "empty":
            new = np.zeros((0,) + arr.shape[1:], dtype=arr.dtype)
        if mutation == "drop" or new is not None:
            del f["weights"][key]
            if new is not None:
                f["weights"].create_dataset(key, data=new)
        if mutation == "graph":
            g = f.attrs["graph"]
            g = g.decode() if isinstance(g, bytes) else g
            cut = int(rng.integers(1, len(g)))
            f.attrs["graph"] = g[:cut]
        if mutation == "outputs":
            f.attrs["outputs"] = json.dumps(["nope"])
    if mutation == "bytes":
        p.write_bytes(rng.integers(0, 256, 2048, dtype=np.uint8).tobytes())
    assert_clean(invoke("run", "--no-progress", "--set", f'model_name="{p}"', *_sets(FAST)))
    assert_clean(invoke("inspect", p))


# ------------------------------------------------------------------ datasets
@settings(max_examples=20, **SETTINGS)
@given(
    n=st.integers(0, 6), shape=st.sampled_from([(8, 8, 1), (8, 8), (64,), (8, 8, 3), (1, 8, 8)]),
    dtype=st.sampled_from(["float32", "float64", "uint8", "int64", "bool", "complex64"]),
    label_kind=st.sampled_from(["ok", "big", "negative", "float", "nan", "2d", "short"]),
    poison=st.sampled_from([None, "nan", "inf"]),
)
def test_fuzz_datasets(tmp_path, n, shape, dtype, label_kind, poison):
    rng = np.random.default_rng(n)
    x = rng.uniform(0, 1, (n,) + shape)
    if poison and n:
        x.flat[0] = np.nan if poison == "nan" else np.inf
    x = x.astype(dtype) if dtype != "bool" else x > 0.5
    y = rng.integers(0, 10, n)
    y = {"ok": y, "big": y + 10, "negative": y - 11, "float": y + 0.5, "nan": np.full(n, np.nan), "2d": y[:, None],
         "short": y[: max(n - 1, 0)]}[label_kind]
    p = tmp_path / "d.npz"
    np.savez(p, x_test=x, y_test=y)
    assert_clean(invoke("run", "--no-progress", "--set", "task=npz", "--set", f'dataset_path="{p}"', *_sets(FAST)))


# ------------------------------------------------------------------ calibration files
@pytest.fixture(scope="module")
def calibration(tmp_path_factory):
    folder = tmp_path_factory.mktemp("cal")
    out = folder / "base.h5"
    res = invoke("calibrate", "--ntest", 20, "--no-progress", "--out", out, "--optimizer", "minmax",
                 "--set", "adc_bits=6", "--set", "dac_bits=6", "--set", "NrowsMax=144")
    assert res.exit_code == 0, res.output
    return out


@settings(max_examples=20, **SETTINGS)
@given(mutation=st.sampled_from(["nan", "inf", "swap", "shape", "drop_group", "drop_attr", "bytes", "string", "huge",
                                 "empty"]), which=st.integers(0, 9), group=st.sampled_from(["adc", "dac"]))
def test_fuzz_calibration_files(tmp_path, calibration, mutation, which, group):
    p = tmp_path / "cal.h5"
    shutil.copy(calibration, p)
    if mutation == "bytes":
        p.write_bytes(np.random.default_rng(which).integers(0, 256, 1024, dtype=np.uint8).tobytes())
    else:
        with h5py.File(p, "a") as f:
            names = sorted(f[group].keys())
            key = names[which % len(names)]
            v = np.array(f[group][key][()], dtype=np.float64)
            new = None
            if mutation == "nan":
                v.flat[0] = np.nan
                new = v
            elif mutation == "inf":
                v.flat[-1] = np.inf
                new = v
            elif mutation == "swap":
                new = v[::-1].copy()
            elif mutation == "shape":
                new = np.concatenate([v.ravel(), v.ravel()])
            elif mutation == "huge":
                new = v * 1e308
            elif mutation == "empty":
                new = np.zeros(0)
            elif mutation == "string":
                new = np.array([b"lo", b"hi"])
            if mutation == "drop_group":
                del f[group]
            elif mutation == "drop_attr" and len(f.attrs):
                del f.attrs[sorted(f.attrs.keys())[which % len(f.attrs)]]
            elif new is not None:
                attrs = dict(f[group][key].attrs)
                del f[group][key]
                ds = f[group].create_dataset(key, data=new)
                for a, b in attrs.items():
                    ds.attrs[a] = b
    res = invoke("run", "--no-progress", "--set", "adc_bits=6", "--set", "dac_bits=6", "--set", "NrowsMax=144",
                 "--set", 'adc_range_option="calibrated"', "--set", f'calibration_file="{p}"', *_sets(FAST))
    assert_clean(res)
