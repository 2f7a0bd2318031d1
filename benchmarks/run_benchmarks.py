"""Speed of simulated inference relative to our own floating-point forward pass (and to CrossSim).

Runs a network under the hardware settings

  a  8-bit weights (BALANCED, one-sided, On/Off 100), 8-bit DAC and ADC, no noise
  b  (a) + generic (alpha) read noise, alpha_noise = 0.02
  c  (a) + input bit slicing, one ADC conversion per input bit
  d  (a) + Nslices = 4 weight bit slices
  e  (a) + Rp = 1e-4, topology B (noRowParasitics, input bit slicing)

and prints for each one ms/image, the ratio to ``Simulation.ideal_forward``
(exact float64 MVMs, same graph, same images, measured in this process) and
the peak traced memory (tracemalloc) of the simulated run, which stays
bounded by ``memory_budget_mb`` and the batch size whatever ``--ntest`` is.

Models: ``resnet20`` -- the CIFAR-10 ResNet-20 shipped with CrossSim's
examples (Keras .h5 read directly; per-layer DAC ranges from its
``input_limits_ResNet20.npy``, ADC ranges from ``adc_limits_ResNet20_balanced.npy``
for (a)/(b) and "max" otherwise); ``digits`` -- the bundled digits CNN.
CIFAR images are not shipped, so the inputs are random but fixed 32x32 crops
of scikit-learn's sample photographs with the per-pixel mean subtracted.

``--crosssim PATH`` also runs CrossSim (a checkout of sandialabs/cross-sim,
its PyTorch interface) on the same network -- a torch module built from the
same folded weights -- with equivalent settings, in a subprocess (both
packages are called ``simulator``), and prints our speed-up over it.

    python benchmarks/run_benchmarks.py [--model resnet20|digits] [--settings a,b,c,d,e]
        [--ntest 256] [--batch 128] [--crosssim /tmp/cross-sim] [--crosssim-ntest 16]
"""
from __future__ import annotations

import argparse
import json
import logging
import os
import pickle
import subprocess
import sys
import tempfile
import time
import tracemalloc
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]

RESNET_DIR = Path(os.environ.get("XBARSIM_CIFAR_MODELS", "/work/shared/models/crosssim_cifar10"))

SETTINGS = {
    "a": ("8b W/DAC/ADC, no noise", {}),
    "b": ("(a) + read noise alpha 0.02", {"noise_model": "alpha", "alpha_noise": 0.02}),
    "c": ("(a) + input bit slicing, ADC per bit", {"input_bitslicing": True, "ADC_per_ibit": True}),
    "d": ("(a) + Nslices 4", {"Nslices": 4}),
    "e": ("(a) + Rp 1e-4 topology B", {"Rp": 1e-4, "noRowParasitics": True, "input_bitslicing": True}),
}


# --------------------------------------------------------------------- xbarsim side
def model_setup(name: str):
    """(network, base config dict, images) for a model name."""
    import numpy as np

    import simulator

    if name == "resnet20":
        net = simulator.load_model(str(RESNET_DIR / "resnet20v1_cifar10.h5"))
        cfg = dict(
            style="BALANCED", balanced_style="one_sided", weight_bits=8, dac_bits=8, adc_bits=8, NrowsMax=1152,
            On_off_ratio=100, digital_bias=True, dac_limits_file=str(RESNET_DIR / "input_limits_ResNet20.npy"),
        )
        calib = str(RESNET_DIR / "adc_limits_ResNet20_balanced.npy")
    elif name == "digits":
        net = simulator.load_model("digits_cnn")
        cfg = dict(style="BALANCED", balanced_style="one_sided", weight_bits=8, dac_bits=8, adc_bits=8,
                   NrowsMax=144, On_off_ratio=100, digital_bias=True)
        calib = None
    else:
        raise SystemExit(f"unknown model {name!r}: expected resnet20 or digits")
    return net, cfg, calib


def make_images(net, n: int, seed: int = 1234):
    """Digits: the bundled test split (tiled to n). ResNets: natural-image crops, pixel mean subtracted.

    The crops (random but fixed, of scikit-learn's two sample photographs) get
    the preprocessing the Keras CIFAR ResNets were trained with; unlike random
    noise they give the network varied, non-degenerate predictions.
    """
    import numpy as np

    shape = tuple(net.input_shape)
    if net.name.startswith("digits"):
        from simulator.io.digits import load_digits_split

        xd = load_digits_split("test")[0]
        return np.concatenate([xd] * (n // len(xd) + 1))[:n].astype(np.float32)
    if shape == (32, 32, 3):
        from resnet_calibrated_agreement import natural_crops

        x = natural_crops(n, seed)
        return (x - x.mean(axis=0)).astype(np.float32)
    rng = np.random.default_rng(seed)
    return rng.random((n,) + shape).astype(np.float32)


def setting_config(base: dict, calib: str | None, key: str, adc: str) -> dict:
    cfg = dict(base, seed=0)
    cfg.update(SETTINGS[key][1])
    if adc == "calibrated" and calib and key in ("a", "b"):
        cfg.update(adc_range_option="calibrated", calibration_file=calib)
    else:
        cfg["adc_range_option"] = "max"
    return cfg


def _run_batches(fn, x, batch: int):
    outs = []
    for s in range(0, len(x), batch):
        outs.append(fn(x[s : s + batch]))
    import numpy as np

    return np.concatenate(outs, axis=0)


def timed(fn, x, batch: int, repeat: int, trace: bool = False):
    """Best wall time over ``repeat`` passes over ``x`` in batches, outputs, peak traced bytes."""
    best, out, peak = float("inf"), None, 0
    for _ in range(repeat):
        t0 = time.perf_counter()
        out = _run_batches(fn, x, batch)
        best = min(best, time.perf_counter() - t0)
    if trace:
        tracemalloc.start()
        tracemalloc.reset_peak()
        _run_batches(fn, x, batch)
        peak = tracemalloc.get_traced_memory()[1]
        tracemalloc.stop()
    return best, out, peak


def run_ours(args, keys):
    import numpy as np

    from simulator.simulation import Simulation

    logging.getLogger("xbarsim.mapping").setLevel(logging.ERROR)  # Nslices 4 with 8-bit weights: partial top slice
    net, base, calib = model_setup(args.model)
    x = make_images(net, args.ntest)
    sim0 = Simulation(net, setting_config(base, calib, "a", args.adc))
    sim0.ideal_forward(x[:2])
    t_ref, y_ref, _ = timed(sim0.ideal_forward, x, args.batch, args.repeat)
    ref_ms = 1e3 * t_ref / len(x)
    print(f"model {args.model} ({net.name}), {len(x)} images in batches of {args.batch}, "
          f"{os.cpu_count()} CPU cores, numpy {np.__version__}")
    print(f"reference: Simulation.ideal_forward (float64) {ref_ms:.3f} ms/image")
    hdr = f"{'set':3} {'description':40} {'dtype':8} {'ms/image':>9} {'x float':>8} {'top1=ideal':>10} {'peak MB':>8}"
    print(hdr)
    print("-" * len(hdr))
    rows = {}
    for key in keys:
        sim = Simulation(net, setting_config(base, calib, key, args.adc))
        sim.forward(x[:2])  # warm-up (caches, thread pools)
        t, y, peak = timed(sim.forward, x, args.batch, args.repeat, trace=not args.no_memory)
        ms = 1e3 * t / len(x)
        agree = float((y.argmax(-1) == y_ref.argmax(-1)).mean())
        rows[key] = dict(ms=ms, ratio=ms / ref_ms, agree=agree, peak_mb=peak / 1e6, dtype=str(sim.dtype))
        pk = f"{peak / 1e6:8.1f}" if not args.no_memory else f"{'-':>8}"
        print(f"{key:3} {SETTINGS[key][0]:40} {str(sim.dtype):8} {ms:9.3f} {ms / ref_ms:8.2f} {agree:10.3f} {pk}",
              flush=True)
    return net, base, calib, x, ref_ms, rows


# --------------------------------------------------------------------- CrossSim side
def export_graph(net, base: dict, calib: str | None, path: Path) -> None:
    """Folded weights and graph of ``net`` (no xbarsim objects) for the CrossSim worker."""
    import numpy as np

    from simulator import ops
    from simulator.simulation import Simulation

    sim = Simulation(net, dict(base, adc_bits=0, dac_bits=0, weight_bits=0, dac_limits_file=None))
    shapes = sim.output_shapes()
    layers = []
    for l in sim.layers:
        d = dict(name=l.name, type=l.type, inputs=list(l.inputs), config={}, weights={})
        c = l.config
        if l.type == "Conv2D":
            kh, kw = c["kernel_size"]
            sh, sw = c.get("strides", (1, 1))
            H, W = (shapes[l.inputs[0]][:2])
            d["config"] = dict(stride=(sh, sw), pads=ops.resolve_padding(c.get("padding", "valid"), H, W, kh, kw, sh, sw),
                               activation=c.get("activation"))
            d["weights"] = dict(kernel=np.asarray(l.weights["kernel"], dtype=np.float32),
                                bias=None if l.weights.get("bias") is None or not c.get("use_bias", True)
                                else np.asarray(l.weights["bias"], dtype=np.float32))
        elif l.type == "Dense":
            d["config"] = dict(activation=c.get("activation"))
            d["weights"] = dict(kernel=np.asarray(l.weights["kernel"], dtype=np.float32),
                                bias=None if l.weights.get("bias") is None or not c.get("use_bias", True)
                                else np.asarray(l.weights["bias"], dtype=np.float32))
        elif l.type in ("AveragePooling2D", "MaxPooling2D"):
            pool = c.get("pool_size", (2, 2))
            d["config"] = dict(pool=tuple(pool), strides=tuple(c.get("strides") or pool))
            if c.get("padding", "valid") != "valid":
                raise SystemExit(f"CrossSim export: pooling padding {c.get('padding')!r} not supported")
        elif l.type == "Activation":
            d["config"] = dict(activation=c.get("activation"))
        elif l.type in ("Input", "Add", "Flatten", "GlobalAveragePooling2D"):
            pass
        else:
            raise SystemExit(f"CrossSim export: layer type {l.type} not supported by this benchmark")
        layers.append(d)
    dac = {}
    if base.get("dac_limits_file"):
        from simulator.calibration_io import load_for_simulation
        from simulator.config import load_config

        dac = load_for_simulation(net, load_config(base))["dac"]
    else:
        dac = {l.name: tuple(l.attrs["input_range"]) for l in net.mvm_layers if "input_range" in l.attrs}
    adc = np.load(calib).tolist() if calib else None
    spec = dict(layers=layers, outputs=list(sim.outputs), input_shape=tuple(net.input_shape), dac=dac, adc=adc,
                NrowsMax=base["NrowsMax"], mvm_order=[l.name for l in net.mvm_layers])
    with open(path, "wb") as f:
        pickle.dump(spec, f)


def run_crosssim(args, net, base, calib, keys):
    """Run the CrossSim worker in a subprocess; returns {key: ms/image} plus 'torch' (float torch forward)."""
    cs = Path(args.crosssim).resolve()
    if not (cs / "simulator" / "algorithms" / "dnn" / "torch" / "convert.py").exists():
        raise SystemExit(f"--crosssim {cs}: not a CrossSim checkout (simulator/algorithms/dnn/torch/convert.py missing)")
    with tempfile.TemporaryDirectory() as tmp:
        spec = Path(tmp) / "graph.pkl"
        export_graph(net, base, calib, spec)
        xs = make_images(net, args.crosssim_ntest)
        import numpy as np

        np.save(Path(tmp) / "x.npy", xs)
        cmd = [sys.executable, str(Path(__file__).resolve()), "--_crosssim-worker", str(cs), "--_spec", str(spec),
               "--_x", str(Path(tmp) / "x.npy"), "--settings", ",".join(keys), "--adc", args.adc,
               "--batch", str(args.crosssim_batch), "--repeat", "1"]
        proc = subprocess.run(cmd, capture_output=True, text=True, cwd=tmp)
        if proc.returncode != 0:
            sys.stderr.write(proc.stdout + proc.stderr)
            raise SystemExit(f"CrossSim worker failed (exit {proc.returncode})")
        line = [ln for ln in proc.stdout.splitlines() if ln.startswith("RESULT ")][-1]
        return json.loads(line[len("RESULT "):])


def crosssim_worker(args):
    """Runs inside the subprocess: only CrossSim's ``simulator`` package is importable here."""
    # Drop the editable-install finder of xbarsim so that ``import simulator`` is CrossSim.
    sys.meta_path[:] = [f for f in sys.meta_path if "editable" not in repr(f).lower()]
    sys.path_hooks[:] = [h for h in sys.path_hooks if "editable" not in repr(h).lower()]
    sys.path_importer_cache.clear()
    sys.path[:] = [p for p in sys.path if Path(p or ".").resolve() != ROOT]
    cs = Path(args._crosssim_worker)
    sys.path.insert(0, str(cs))
    sys.path.insert(1, str(cs / "applications" / "dnn"))
    import warnings

    warnings.filterwarnings("ignore")
    import numpy as np
    import torch
    import torch.nn.functional as F

    import simulator as cs_simulator
    from dnn_inference_params import dnn_inference_params
    from simulator.algorithms.dnn.torch.convert import convertible_modules, from_torch

    assert Path(cs_simulator.__file__).resolve().is_relative_to(cs.resolve()), cs_simulator.__file__
    torch.set_num_threads(os.cpu_count() or 1)
    with open(args._spec, "rb") as f:
        spec = pickle.load(f)
    x = np.load(args._x)

    class Graph(torch.nn.Module):
        """The exported graph in NCHW: Conv2d/Linear modules in MVM order, Keras 'same' pads explicit."""

        def __init__(self):
            super().__init__()
            self.layers = spec["layers"]
            self.mods = torch.nn.ModuleDict()
            for name in spec["mvm_order"]:
                l = next(d for d in self.layers if d["name"] == name)
                k, b = l["weights"]["kernel"], l["weights"]["bias"]
                if l["type"] == "Conv2D":
                    kh, kw, cin, cout = k.shape
                    m = torch.nn.Conv2d(cin, cout, (kh, kw), stride=l["config"]["stride"], padding=0, bias=b is not None)
                    m.weight.data = torch.from_numpy(np.ascontiguousarray(k.transpose(3, 2, 0, 1)))
                else:
                    m = torch.nn.Linear(k.shape[0], k.shape[1], bias=b is not None)
                    m.weight.data = torch.from_numpy(np.ascontiguousarray(k.T))
                if b is not None:
                    m.bias.data = torch.from_numpy(b)
                self.mods[name.replace(".", "_")] = m

        @staticmethod
        def act(y, name):
            if name in (None, "linear"):
                return y
            if name == "relu":
                return torch.relu(y)
            if name == "softmax":
                return torch.softmax(y, dim=-1)
            raise SystemExit(f"activation {name} not supported")

        def forward(self, x):
            acts = {}
            for l in self.layers:
                t, c = l["type"], l["config"]
                ins = [acts[s] for s in l["inputs"]]
                if t == "Input":
                    y = x
                elif t == "Conv2D":
                    (pt, pb), (pl, pr) = c["pads"]
                    y = self.act(self.mods[l["name"].replace(".", "_")](F.pad(ins[0], (pl, pr, pt, pb))), c["activation"])
                elif t == "Dense":
                    y = self.act(self.mods[l["name"].replace(".", "_")](ins[0]), c["activation"])
                elif t == "Activation":
                    y = self.act(ins[0], c["activation"])
                elif t == "Add":
                    y = ins[0]
                    for o in ins[1:]:
                        y = y + o
                elif t == "AveragePooling2D":
                    y = F.avg_pool2d(ins[0], c["pool"], c["strides"])
                elif t == "MaxPooling2D":
                    y = F.max_pool2d(ins[0], c["pool"], c["strides"])
                elif t == "GlobalAveragePooling2D":
                    y = ins[0].mean(dim=(2, 3))
                elif t == "Flatten":  # Keras flattens NHWC
                    y = ins[0].permute(0, 2, 3, 1).reshape(ins[0].shape[0], -1) if ins[0].ndim == 4 else ins[0]
                acts[l["name"]] = y
            return acts[spec["outputs"][0]]

    model = Graph().eval()
    xt = torch.from_numpy(np.ascontiguousarray(x.transpose(0, 3, 1, 2))) if x.ndim == 4 else torch.from_numpy(x)
    n_layers = len(convertible_modules(model))
    assert n_layers == len(spec["mvm_order"])

    def batches(m):
        with torch.no_grad():
            return torch.cat([m(xt[s : s + args.batch]) for s in range(0, len(xt), args.batch)])

    batches(model)
    t0 = time.perf_counter()
    y_float = batches(model).numpy()
    result = {"torch": 1e3 * (time.perf_counter() - t0) / len(xt), "ntest": len(xt)}

    for key in args.settings.split(","):
        over = SETTINGS[key][1]
        params = []
        for i, name in enumerate(spec["mvm_order"]):
            lo, hi = spec["dac"][name]
            kw = dict(
                ideal=False, core_style="BALANCED", balanced_style="ONE_SIDED", Nslices=over.get("Nslices", 1),
                weight_bits=8, weight_percentile=100, digital_bias=True, Rmin=1e4, Rmax=1e6,
                infinite_on_off_ratio=False, error_model="none", noise_model="none", alpha_noise=0.0, drift_model="none",
                NrowsMax=spec["NrowsMax"], NcolsMax=None, interleaved_posneg=False, subtract_current_in_xbar=True,
                current_from_input=True, input_bits=8, input_bitslicing=bool(over.get("input_bitslicing", False)),
                input_slice_size=1, adc_bits=8, adc_type="generic", adc_per_ibit=bool(over.get("ADC_per_ibit", False)),
                positiveInputsOnly=lo >= 0, input_range=np.array([lo, hi]), useGPU=False,
            )
            if "noise_model" in over:
                kw.update(noise_model="generic", alpha_noise=over["alpha_noise"])
            if over.get("Rp"):
                kw.update(Rp_col=over["Rp"] * 1e4, Rp_row=0.0)  # Rp normalized to Rmin = 1e4 ohm
            if args.adc == "calibrated" and spec["adc"] is not None and key in ("a", "b"):
                kw.update(adc_range_option="CALIBRATED", adc_range=np.array(spec["adc"][i]))
            else:
                kw.update(adc_range_option="MAX")
            params.append(dnn_inference_params(**kw))
        analog = from_torch(model, params, bias_rows=0, fuse_batchnorm=False).eval()
        with torch.no_grad():
            analog(xt[:2])
        t0 = time.perf_counter()
        y = batches(analog).numpy()
        ms = 1e3 * (time.perf_counter() - t0) / len(xt)
        agree = float((y.argmax(-1) == y_float.argmax(-1)).mean())
        result[key] = dict(ms=ms, agree=agree)
        print(f"crosssim {key}: {ms:.2f} ms/image", file=sys.stderr, flush=True)
    print("RESULT " + json.dumps(result))


# ----------------------------------------------------------------------------- main
def main(argv=None):
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--model", default="resnet20", choices=["resnet20", "digits"])
    ap.add_argument("--settings", default="a,b,c,d,e", help="comma-separated subset of a,b,c,d,e")
    ap.add_argument("--ntest", type=int, default=256, help="images per timed pass")
    ap.add_argument("--batch", type=int, default=128, help="images per forward call")
    ap.add_argument("--repeat", type=int, default=2, help="timed passes (best is reported)")
    ap.add_argument("--adc", default="calibrated", choices=["calibrated", "max"],
                    help="ResNet-20 ADC ranges for (a), (b): the shipped calibrated limits or 'max'")
    ap.add_argument("--no-memory", action="store_true", help="skip the traced (tracemalloc) pass")
    ap.add_argument("--crosssim", metavar="PATH", help="CrossSim checkout to run side by side")
    ap.add_argument("--crosssim-ntest", type=int, default=16, help="images for CrossSim (it is slow)")
    ap.add_argument("--crosssim-batch", type=int, default=16)
    ap.add_argument("--crosssim-settings", default="a,b,c", help="settings CrossSim runs")
    ap.add_argument("--_crosssim-worker", help=argparse.SUPPRESS)
    ap.add_argument("--_spec", help=argparse.SUPPRESS)
    ap.add_argument("--_x", help=argparse.SUPPRESS)
    args = ap.parse_args(argv)
    keys = [k.strip() for k in args.settings.split(",") if k.strip()]
    bad = [k for k in keys if k not in SETTINGS]
    if bad:
        raise SystemExit(f"unknown setting(s) {bad}: choose from {', '.join(SETTINGS)}")
    if args._crosssim_worker:
        return crosssim_worker(args)
    if str(ROOT) not in sys.path:
        sys.path.insert(0, str(ROOT))
    net, base, calib, x, ref_ms, rows = run_ours(args, keys)
    if args.crosssim:
        cs_keys = [k for k in args.crosssim_settings.split(",") if k in SETTINGS]
        print(f"\nCrossSim ({args.crosssim}) on {args.crosssim_ntest} images, batch {args.crosssim_batch}:", flush=True)
        res = run_crosssim(args, net, base, calib, cs_keys)
        print(f"float torch forward (CrossSim's PyTorch model, not converted): {res['torch']:.3f} ms/image")
        hdr = f"{'set':3} {'CrossSim ms/image':>17} {'xbarsim ms/image':>16} {'speed-up':>9} {'CS top1=float':>13}"
        print(hdr)
        print("-" * len(hdr))
        for k in cs_keys:
            if k not in res:
                continue
            ours = rows[k]["ms"] if k in rows else float("nan")
            print(f"{k:3} {res[k]['ms']:17.2f} {ours:16.3f} {res[k]['ms'] / ours:8.1f}x {res[k]['agree']:13.3f}")


if __name__ == "__main__":
    main()
