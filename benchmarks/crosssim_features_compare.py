"""Side-by-side MVMs: xbarsim vs CrossSim 3.2 on the CrossSim 3 array options, from one JSON file each.

For every setting, one CrossSimParameters JSON document is written; CrossSim
builds an ``AnalogCore`` from it (``CrossSimParameters.from_json``) and xbarsim
loads the *same file* with ``simulator.load_config`` and runs it on a one-layer
network (a Dense layer holding the matrix) through ``Simulation.forward``. The
script prints, per setting, the largest difference of the two outputs relative
to the largest output, and the fraction of outputs within 1e-6 of it (both
simulators compute these settings in float32).

    python benchmarks/crosssim_features_compare.py --crosssim /tmp/cross-sim

Get a checkout of sandialabs/cross-sim (3.2) outside this repository. CrossSim
runs in a subprocess since both packages are called ``simulator``. Settings
where the two differ by design (docs/crosssim.md) are not listed here.
"""
from __future__ import annotations

import argparse
import copy
import json
import os
import subprocess
import sys
import tempfile
from pathlib import Path

import numpy as np

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT / "tests"))


def m(*parts: dict) -> dict:
    """Merge dicts, later ones winning."""
    out: dict = {}
    for d in parts:
        out.update(d)
    return out


def settings() -> dict[str, dict]:
    """name -> {dotted JSON path: value} changes to CrossSim's default document."""
    ideal = {"xbar.device.infinite_on_off_ratio": True, "core.rows_max": 0, "core.cols_max": 0}
    dac8 = {"xbar.dac.mvm.model": "SignMagnitudeDAC", "xbar.dac.mvm.bits": 8}
    sliced = m(dac8, {"xbar.dac.mvm.input_bitslicing": True})
    adc = {"xbar.adc.mvm.model": "SignMagnitudeADC", "xbar.adc.mvm.bits": 6, "xbar.adc.mvm.adc_range_option": 1,
           "xbar.adc.mvm.calibrated_range": [-6.0, 6.0]}
    par = {"xbar.array.parasitics.enable": True, "xbar.device.Rmin": 1000.0, "simulation.Niters_max_parasitics": 5000,
           "simulation.Verr_th_mvm": 1e-9, "simulation.relaxation_gamma": 0.5}
    out = {
        "ideal": m(ideal),
        "NrowsMax 16, NcolsMax 8": m(ideal, {"core.rows_max": 16, "core.cols_max": 8}),
        "Rp_row 0.5 ohm, Rp_col 2 ohm": m(ideal, par, dac8, {"xbar.array.parasitics.Rp_row": 0.5,
                                                             "xbar.array.parasitics.Rp_col": 2.0}),
        "Rp_row 2 ohm, Rp_col 0.5 ohm": m(ideal, par, dac8, {"xbar.array.parasitics.Rp_row": 2.0,
                                                             "xbar.array.parasitics.Rp_col": 0.5}),
        "NcolsMax 8 + Rp 1 ohm": m(ideal, par, dac8, {"core.cols_max": 8, "xbar.array.parasitics.Rp_row": 1.0,
                                                      "xbar.array.parasitics.Rp_col": 1.0}),
        "input slices 1 bit, no ADC": m(ideal, sliced),
        "input slices 2 bits, no ADC": m(ideal, sliced, {"xbar.dac.mvm.slice_size": 2}),
        "input slices 4 bits, no ADC": m(ideal, sliced, {"xbar.dac.mvm.slice_size": 4}),
        "input slices 2 bits, ADC per slice": m(ideal, sliced, adc, {"xbar.dac.mvm.slice_size": 2,
                                                                   "xbar.adc.mvm.adc_per_ibit": True,
                                                                   "xbar.adc.mvm.calibrated_range": [-3.0, 3.0]}),
        "ADC 6 bits calibrated": m(ideal, dac8, adc),
        "subtract_current_in_xbar false, ADC": m(ideal, dac8, adc, {"core.balanced.subtract_current_in_xbar": False}),
        "subtract false, 2-bit slices, ADC per slice": m(
            ideal, sliced, adc, {"core.balanced.subtract_current_in_xbar": False, "xbar.dac.mvm.slice_size": 2,
                                 "xbar.adc.mvm.adc_per_ibit": True, "xbar.adc.mvm.calibrated_range": [-3.0, 3.0]}),
    }
    for model, extra in (("RampADC", {"symmetric_cdac": True}), ("SarADC", {"split_cdac": True, "group_size": 8}),
                         ("SarADC", {"split_cdac": False, "group_size": 8}), ("PipelineADC", {"group_size": 8}),
                         ("CyclicADC", {"group_size": 8})):
        name = f"{model} ideal parts" + (f" split_cdac={extra['split_cdac']}" if "split_cdac" in extra else "")
        changes = m(ideal, dac8, adc, {"xbar.adc.mvm.model": model, "xbar.adc.mvm.gain_db": 300})
        changes.update({f"xbar.adc.mvm.{k}": v for k, v in extra.items()})
        out[name] = changes
    return out


#: (CrossSim class, xbarsim adc_type, mismatch parameters): transfer-error statistics with mismatch
MISMATCH = (
    ("RampADC", "ramp", {"sigma_capacitor": 0.05, "symmetric_cdac": True}),
    ("RampADC", "ramp", {"sigma_capacitor": 0.05, "symmetric_cdac": False}),
    ("RampADC", "ramp", {"sigma_comparator": 0.01}),
    ("SarADC", "sar", {"sigma_capacitor": 0.05, "split_cdac": False, "group_size": 1}),
    ("SarADC", "sar", {"sigma_capacitor": 0.05, "split_cdac": True, "group_size": 1}),
    ("SarADC", "sar", {"gain_db": 30.0, "split_cdac": False, "group_size": 1}),
    ("PipelineADC", "pipeline", {"sigma_C1": 0.02, "sigma_C2": 0.02, "sigma_Cpar": 0.02, "group_size": 1}),
    ("PipelineADC", "pipeline", {"sigma_comparator": 0.05, "gain_db": 40.0, "group_size": 1}),
    ("CyclicADC", "cyclic", {"sigma_C1": 0.02, "sigma_C2": 0.02, "sigma_Cpar": 0.02, "group_size": 1}),
)
ADC_BITS = 6
SWEEP = np.linspace(-0.999, 0.999, 4001)


def transfer_rms(out):
    """RMS transfer error in LSB against the ideal 2**bits-code mid-rise quantizer on [-1, 1]."""
    n = 2**ADC_BITS
    ideal = -1 + (np.clip(np.floor((SWEEP + 1) * n / 2), 0, n - 1) + 0.5) * 2 / n
    return float(np.sqrt(np.mean(((np.asarray(out) - ideal) / (2 / n)) ** 2)))


def xbarsim_mismatch(adc_type, params, n):
    from simulator.circuits.converters import make_adc

    defaults = {"gain_db": 100.0}
    return [transfer_rms(make_adc(adc_type, ADC_BITS, -1.0, 1.0, n_cols=1, params={**defaults, **params},
                                  rng=np.random.default_rng(1000 + i))(SWEEP[:, None], np)[:, 0]) for i in range(n)]


def document(changes: dict) -> dict:
    from crosssim_fixtures import default_preset

    doc = default_preset()
    for dotted, value in changes.items():
        *head, last = dotted.split(".")
        for half in ("mvm", "vmm") if head[-1] == "mvm" else (None,):
            node = doc
            for h in head:
                node = node["vmm" if (h == "mvm" and half == "vmm") else h]
            node[last] = copy.deepcopy(value)
    return doc


def xbarsim_output(path: str, W, X):
    from simulator.config import load_config
    from simulator.network import Layer, Network
    from simulator.simulation import Simulation

    cfg = load_config(path).with_overrides({"dac_range": [-1.0, 1.0]})
    net = Network("one_dense", [Layer("in", "Input"),
                                Layer("dense", "Dense", ["in"], {"activation": "linear", "use_bias": False},
                                      {"kernel": W}, {"input_range": [-1.0, 1.0]})],
                  ["dense"], input_shape=(W.shape[0],))
    return Simulation(net, cfg, seed=0).forward(X)


def worker(cs_path: str, spec_path: str) -> None:
    """Subprocess: only CrossSim's ``simulator`` package is importable."""
    sys.meta_path[:] = [f for f in sys.meta_path if "editable" not in repr(f).lower()]
    sys.path_hooks[:] = [h for h in sys.path_hooks if "editable" not in repr(h).lower()]
    sys.path_importer_cache.clear()
    sys.path[:] = [p for p in sys.path if Path(p or ".").resolve() not in (ROOT, ROOT / "tests", ROOT / "benchmarks")]
    sys.path.insert(0, cs_path)
    import warnings

    warnings.filterwarnings("ignore")
    from simulator import AnalogCore, CrossSimParameters

    spec = np.load(spec_path, allow_pickle=True).item()
    outs = {}
    from simulator.backend import ComputeBackend

    ComputeBackend(use_gpu=False)
    import importlib

    for i, (cls_name, _, params) in enumerate(MISMATCH):
        module = {"RampADC": "ramp_adc", "SarADC": "sar_adc", "PipelineADC": "pipeline_adc", "CyclicADC": "cyclic_adc"}
        cls = getattr(importlib.import_module(f"simulator.circuits.adc.{module[cls_name]}"), cls_name)
        stats = []
        for k in range(spec["n_instances"]):
            p = CrossSimParameters()
            p.xbar.adc.mvm.model = cls_name
            p.xbar.adc.mvm.bits = ADC_BITS
            p.xbar.adc.mvm.adc_range_option = "CALIBRATED"
            p.xbar.adc.mvm.calibrated_range = [-1.0, 1.0]
            p.xbar.adc.mvm.gain_db = 100.0
            for key, value in params.items():
                setattr(p.xbar.adc.mvm, key, value)
            np.random.seed(k)
            adc = cls(p.xbar.adc.mvm, p.xbar.dac.mvm, p.core, p.simulation, None)
            adc.set_limits(np.zeros((1, 1)))
            stats.append(transfer_rms([float(adc.convert(np.array([v]))[0]) for v in SWEEP]))
        outs[f"mismatch{i}"] = np.array(stats)
    for name, path in spec["files"].items():
        params = CrossSimParameters.from_json(path)
        core = AnalogCore(spec["W"].T.copy(), params)  # CrossSim: (outputs, inputs)
        outs[name] = np.asarray(core @ spec["X"].T).T
    np.save(spec["out"], outs, allow_pickle=True)


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("--crosssim", required=False, help="CrossSim 3.2 checkout")
    ap.add_argument("--rows", type=int, default=40)
    ap.add_argument("--cols", type=int, default=20)
    ap.add_argument("--mvms", type=int, default=64)
    ap.add_argument("--instances", type=int, default=100, help="ADCs drawn per mismatch setting")
    ap.add_argument("--_worker", nargs=2, help=argparse.SUPPRESS)
    args = ap.parse_args()
    if args._worker:
        return worker(*args._worker)
    if not args.crosssim:
        ap.error("--crosssim PATH is required")
    rng = np.random.default_rng(0)
    W = rng.uniform(-1, 1, (args.rows, args.cols))
    X = rng.uniform(-1, 1, (args.mvms, args.rows))
    with tempfile.TemporaryDirectory() as tmp:
        files = {}
        for i, (name, changes) in enumerate(settings().items()):
            p = Path(tmp) / f"s{i}.json"
            p.write_text(json.dumps(document(changes)))
            files[name] = str(p)
        spec = {"W": W, "X": X, "files": files, "out": str(Path(tmp) / "cs.npy"), "n_instances": args.instances}
        np.save(Path(tmp) / "spec.npy", spec, allow_pickle=True)
        env = dict(os.environ, PYTHONPATH=args.crosssim)
        subprocess.run([sys.executable, __file__, "--_worker", args.crosssim, str(Path(tmp) / "spec.npy")],
                       check=True, env=env, cwd=tmp)
        cs = np.load(spec["out"], allow_pickle=True).item()
        import logging

        logging.getLogger("xbarsim").setLevel(logging.ERROR)
        print(f"{'setting':48s} {'max |diff| / max |y|':>22s} {'within 1e-6':>12s}")
        for name, path in files.items():
            ours = xbarsim_output(path, W, X)
            ref = cs[name]
            rel = float(np.max(np.abs(ours - ref)) / np.max(np.abs(ref)))
            same = float(np.mean(np.abs(ours - ref) <= 1e-6 * np.max(np.abs(ref))))
            print(f"{name:48s} {rel:22.3g} {same:12.3f}")
        print(f"\nADC transfer error with mismatch ({ADC_BITS} bits, {args.instances} instances each): RMS error in LSB"
              " against the ideal quantizer, mean [10th, 90th percentile]")
        print(f"{'model and mismatch':66s} {'CrossSim 3.2':>22s} {'xbarsim':>22s}")
        for i, (cls_name, adc_type, params) in enumerate(MISMATCH):
            a = cs[f"mismatch{i}"]
            b = np.array(xbarsim_mismatch(adc_type, params, args.instances))
            label = f"{cls_name} " + ", ".join(f"{k}={v}" for k, v in params.items())
            fmt = lambda v: f"{np.mean(v):.3f} [{np.percentile(v, 10):.3f}, {np.percentile(v, 90):.3f}]"  # noqa: E731
            print(f"{label:66s} {fmt(a):>22s} {fmt(b):>22s}")


if __name__ == "__main__":
    main()
