#!/usr/bin/env python
"""Compare simulator.witin.chip.WitinChipLayer with witin_nn's eval-mode layers.

Usage::

    python scripts/compare_witin_nn.py /path/to/witin-nn-checkout [--cases 600] [--noise-calls 400]

The checkout is the public witmem/witin-nn repository; its compiled package
for this Python (``py311_linux``) is put on ``sys.path``; nothing of it is
copied. For random weights, inputs and layer configs (x/y/weight bits,
handle_neg_in FALSE/PN/Shift, shift_num, bias_row_N, w_clip, bias_d, auto
and fixed scales, strides, padding, dilation, groups, output_padding) of
WitinLinear, WitinConv2d and WitinConvTranspose2d it counts output elements
that differ (bit-exact comparison at noise_level 0). For noise levels 1..9 it
compares the output noise std (many forward calls) of both implementations.
witin_nn 0.1.3 ships no GRU cell, so GRU cells are not compared.

``--networks all`` (or a list of names) compares whole trained networks
instead (``scripts/witin_networks.py``: conv-relu-conv-linear with pooling,
PN/Shift at 10 and 12 bits, a conv-transpose decoder, plain and witin batch
norm, element-wise operators): mismatching outputs at noise level 0, the
output noise std ratio and the run-to-run accuracy spread at each level::

    python scripts/compare_witin_nn.py /tmp/witin-nn --networks all --epochs 30 --noise-calls 200 --runs 200

The random layers are small (fan-in <= 27 for convolutions), so every
accumulator stays below 2**24, where witin_nn's float32 sums are exact; see
docs/witin_noise.md for what happens above that.
"""
from __future__ import annotations

import argparse
import contextlib
import io
import math
import random
import sys
from pathlib import Path

import numpy as np

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))


def load_witin(checkout: Path):
    tag = f"py{sys.version_info.major}{sys.version_info.minor}_linux"
    pkg = checkout / tag
    if not (pkg / "witin_nn").is_dir():
        sys.exit(f"{checkout}: no {tag}/witin_nn in this checkout (needs the build for this Python)")
    sys.path.insert(0, str(pkg))
    with contextlib.redirect_stdout(io.StringIO()):  # the package prints a banner
        import witin_nn
    return witin_nn


def make_module(wn, kind, cfg_values, rnd: random.Random):
    cfg = wn.LayerConfigFactory.get_default_config()
    cfg.use_quantization = True
    for k, v in cfg_values.items():
        setattr(cfg, k, v)
    if kind == "Linear":
        nin, nout = rnd.choice([1, 7, 64, 200]), rnd.choice([1, 5, 16])
        m = wn.WitinLinear(nin, nout, bias=rnd.random() < 0.85, layer_config=cfg)
        shape = (rnd.choice([1, 4, 9]), nin)
    elif kind == "Conv2d":
        groups = rnd.choice([1, 1, 2])
        if cfg_values.get("to_linear"):
            groups = 1  # witin_nn: to_linear convolutions have groups = 1
        cin = groups * rnd.choice([1, 3])
        cout = groups * rnd.choice([1, 4])
        k = rnd.choice([1, 2, 3])
        pad = rnd.choice([0, 1])
        mode = "reflect" if EXTRA_FIELDS and pad and groups == 1 and rnd.random() < 0.3 else "zeros"
        m = wn.WitinConv2d(cin, cout, k, stride=rnd.choice([1, 2]), padding=pad, padding_mode=mode,
                           dilation=rnd.choice([1, 1, 2]), groups=groups, bias=rnd.random() < 0.85, layer_config=cfg)
        shape = (rnd.choice([1, 2]), cin, rnd.choice([5, 7]), rnd.choice([5, 6]))
    else:
        cin, cout = rnd.choice([1, 3]), rnd.choice([1, 4])
        k = rnd.choice([1, 2, 3])
        stride = rnd.choice([1, 2])
        dil = rnd.choice([1, 1, 2])
        op = rnd.choice([0, stride - 1])
        m = wn.WitinConvTranspose2d(cin, cout, k, stride=stride, padding=rnd.choice([0, 1]),
                                    output_padding=op, dilation=dil, bias=rnd.random() < 0.85, layer_config=cfg)
        shape = (rnd.choice([1, 2]), cin, rnd.choice([3, 5]), rnd.choice([4, 5]))
    return m, shape


def random_config(kind, rnd: random.Random, noise_level=0):
    wn_enum = WN.HandleNegInType
    xb = rnd.choice([8, 8, 9, 10, 11, 12])
    neg = rnd.choice(["FALSE", "PN"] + (["Shift"] if kind != "ConvTranspose2d" else []))
    values = {
        "x_quant_bits": xb,
        "y_quant_bits": rnd.choice([8, 8, 9, 10, 12]),
        "weight_quant_bits": rnd.choice([8, 8, 8, 6, 4]),
        "bias_row_N": rnd.choice([1, 2, 4, 8, 8, 16]),
        "handle_neg_in": getattr(wn_enum, neg),
        "shift_num": rnd.choice([0.25, 0.5, 1.0, 0.3, 0.77, 2.0]),
        "noise_level": noise_level,
    }
    if rnd.random() < 0.2:
        values["w_clip"] = rnd.choice([0.05, 0.2, 0.5])
    if EXTRA_FIELDS:
        if rnd.random() < 0.2:
            values["output_fp_clip"] = rnd.choice([0.05, 0.3, 1.0])
        if kind == "Conv2d" and rnd.random() < 0.25:
            values["to_linear"] = True
        if rnd.random() < 0.1 and noise_level == 0:
            values["use_quantization"] = False
        if DRAW_VPU and rnd.random() < 0.2:
            values["hardware"] = WN.HardwareType.VPU
    if xb > 8 and rnd.random() < 0.3:
        import torch

        values["bias_d"] = torch.tensor(rnd.choice([0.01, -0.2, 0.5, 2.0]))
    auto = rnd.random() < 0.85
    values["use_auto_scale"] = auto
    if not auto:
        values["scale_x"] = rnd.choice([16, 64, 100, 256])
        values["scale_weight"] = rnd.choice([32, 128, 50])
        values["scale_y"] = rnd.choice([4, 16, 10])
    return values, neg


def build_case(kind, rnd, noise_level=0, extra=None):
    import torch

    values, neg = random_config(kind, rnd, noise_level)
    values.update(extra or {})
    m, shape = make_module(WN, kind, values, rnd)
    m.eval()
    io = (rnd.uniform(0.1, 4), rnd.uniform(0.05, 1), rnd.uniform(0.5, 20))
    with torch.no_grad():
        m.autoscale_x_obj.io_max.fill_(io[0])
        m.autoscale_weight_obj.io_max.fill_(io[1])
        m.autoscale_y_obj.io_max.fill_(io[2])
        m.weight.mul_(rnd.uniform(0.5, 4))
        if m.bias is not None:
            m.bias.mul_(rnd.uniform(0, 20))
    lo = -0.6 if neg != "FALSE" else -0.2
    x = (torch.rand(*shape) * (1.2 - lo) + lo) * io[0]
    return m, x, values


def ours(m, x, rng, params=None):
    import torch

    from simulator.io.torch_import import from_torch
    from simulator.witin.chip import WitinChipLayer

    net = from_torch(torch.nn.Sequential(m), x)
    layer = net.layers[1]
    chip = WitinChipLayer(layer, params, np, rng)
    xn = x.numpy()
    if xn.ndim == 4:
        xn = xn.transpose(0, 2, 3, 1)
    y = chip.forward(xn)
    if y.ndim == 4:
        y = y.transpose(0, 3, 1, 2)
    return y, chip


def compare_exact(n_cases: int, seed: int, kinds=("Linear", "Conv2d", "ConvTranspose2d"), negs=None):
    import torch

    rnd = random.Random(seed)
    torch.manual_seed(seed)
    rng = np.random.default_rng(seed)
    stats = {}
    examples = []
    for i in range(n_cases):
        kind = kinds[i % len(kinds)]
        m, x, values = build_case(kind, rnd)
        if negs and _neg_name(values) not in negs:
            continue
        with torch.no_grad(), contextlib.redirect_stderr(io.StringIO()):
            ref = m(x).numpy()
        y, chip = ours(m, x, rng)
        if values.get("use_quantization", True) is False:  # float mode: float32 sums in another order
            diff = np.abs(y.astype(np.float32) - ref) > 1e-5 * max(1.0, float(np.abs(ref).max()))
        else:
            diff = y.astype(np.float32) != ref
        bad = int(diff.sum())
        tag = "x>8" if values["x_quant_bits"] > 8 else "x=8"
        if EXTRA_FIELDS:
            tag += "".join(f" {k}" for k in ("output_fp_clip", "to_linear") if k in values)
            tag += " float" if values.get("use_quantization", True) is False else ""
            tag += " reflect" if getattr(m, "padding_mode", "zeros") == "reflect" else ""
            tag += " VPU" if "hardware" in values else ""
        s = stats.setdefault((kind, _neg_name(values), tag), [0, 0, 0, 0])
        s[0] += 1
        s[1] += ref.size
        s[2] += bad
        s[3] += bad > 0
        if bad and len(examples) < 10:
            steps = float(np.max(np.abs(y[diff] - ref[diff]))) * getattr(chip.product.spec, "scale_y", 1.0)
            examples.append((kind, {k: (v.item() if hasattr(v, "item") else str(v)) for k, v in values.items()}, bad,
                             ref.size, f"max {steps:g} output steps"))
    return stats, examples


def _neg_name(values) -> str:
    return str(values["handle_neg_in"]).split(".")[-1]


def std_ratio(m, x, rng, calls: int, witin_call):
    """sqrt(element-averaged output variance ours / witin_nn's) over ``calls`` calls (None if witin's is 0).

    The layer's output io_max is raised 8x first, so that the noise is many
    output steps and rarely saturates; ``witin_call(m, x)`` is one witin_nn output.
    """
    import torch

    with torch.no_grad():
        m.autoscale_y_obj.io_max.fill_(m.autoscale_y_obj.io_max.item() * 8)
    with torch.no_grad(), contextlib.redirect_stderr(io.StringIO()):
        ref = np.stack([witin_call(m, x) for _ in range(calls)])
    _, chip = ours(m, x, rng)
    xn = x.numpy().transpose(0, 2, 3, 1) if x.dim() == 4 else x.numpy()
    ys = np.stack([chip.forward(xn) for _ in range(calls)])
    if ys.ndim == 5:
        ys = ys.transpose(0, 1, 4, 2, 3)
    v_ref, v_our = ref.var(axis=0).mean(), ys.var(axis=0).mean()
    return math.sqrt(v_our / v_ref) if v_ref > 0 else None


def compare_noise(levels, calls: int, seed: int):
    """Ratio of our output noise std to witin_nn's, per level, pooled over elements and layer kinds."""
    import torch

    rnd = random.Random(seed + 1)
    torch.manual_seed(seed + 1)
    rng = np.random.default_rng(seed + 1)
    rows = []
    for level in levels:
        ratios = []
        for kind in ("Linear", "Conv2d", "ConvTranspose2d"):
            for _ in range(2):
                m, x, _values = build_case(kind, rnd, noise_level=level)
                r = std_ratio(m, x, rng, calls, lambda m, x: m(x).numpy())
                if r is not None:
                    ratios.append(r)
        rows.append((level, float(np.mean(ratios)), float(np.min(ratios)), float(np.max(ratios)), len(ratios)))
    return rows


def first_call(m, x):
    """Output of the first forward call of a fresh copy of ``m`` (a copy made before any call).

    witin_nn 0.1.3's SIMPLE noise multiplies the stds of its row and output
    noise by ``noise_level / 4`` again on every call of a layer (so they
    shrink or grow geometrically with the call count); the first call draws
    the model's distribution, which is what xbarsim simulates.
    """
    import copy

    return copy.deepcopy(m)(x).numpy()


def compare_noise_models(levels, calls: int, seed: int, cases: int = 4):
    """Output noise std ours / witin_nn for noise_model SIMPLE and MBS, per model, layer kind and level.

    Each row pools ``cases`` random layers: the ratio of the element-averaged
    output variances over ``calls`` forward calls (one noise draw each).
    MBS exists for WitinLinear and ``to_linear`` convolutions only.
    """
    import torch

    rnd = random.Random(seed + 2)
    torch.manual_seed(seed + 2)
    rng = np.random.default_rng(seed + 2)
    rows = []
    for model in ("SIMPLE", "MBS"):
        kinds = (("Linear", {}), ("Conv2d", {}), ("ConvTranspose2d", {})) if model == "SIMPLE" else ()
        kinds += (("Linear", {}), ("Conv2d", {"to_linear": True})) if model == "MBS" else ()
        kinds += (("Conv2d", {"to_linear": True}),) if model == "SIMPLE" else ()
        for kind, extra in kinds:
            for level in levels:
                ratios = []
                for _ in range(cases):
                    m, x, _values = build_case(kind, rnd, noise_level=level,
                                               extra={"noise_model": getattr(WN.NoiseModel, model), **extra})
                    r = std_ratio(m, x, rng, calls, first_call)
                    if r is not None:
                        ratios.append(r)
                tag = kind + (" to_linear" if extra else "")
                rows.append((model, tag, level, float(np.mean(ratios)), float(np.min(ratios)), float(np.max(ratios)),
                             len(ratios)))
                print(f"{model:<8}{tag:<20}{level:>6}{rows[-1][3]:>8.3f}{rows[-1][4]:>8.3f}{rows[-1][5]:>8.3f}"
                      f"{rows[-1][6]:>7}", flush=True)
    return rows


def compare_networks(names, epochs: int, calls: int, runs: int, levels, seed: int):
    """Whole trained networks (scripts/witin_networks.py) imported with from_torch and run by Simulation.

    io_max is recorded on the float network (``witin_networks.quantized(record_float=True)``).
    Prints, per network: mismatching outputs at noise level 0 on the 540 test
    digits; per noise level, the ratio of the per-element output std (``calls``
    forward calls on 64 digits) and, for classifiers, the mean and std of the
    test accuracy over ``runs`` runs (each run one call on all test digits, so
    one noise draw per layer in both implementations).
    """
    import torch

    import witin_networks as W

    from simulator.io.torch_import import from_torch
    from simulator.simulation import Simulation

    _, _, xte, yte = W.digits()
    y_np = yte.numpy()
    for name in names:
        state = W.train_float(WN, name, seed=seed, epochs=epochs)
        clean = W.quantized(WN, name, state, record_float=True)
        model = from_torch(clean, xte[:8], name=name)
        with torch.no_grad():
            ref = clean(xte).numpy()
        out = Simulation(model, {"seed": seed}, seed=seed).forward(xte.numpy())
        bad = int((out != ref).sum())
        acc0 = float((ref.argmax(1) == y_np).mean()) if name in W.CLASSIFIERS else float("nan")
        print(f"\nnetwork {name}: {bad} of {ref.size} outputs differ at noise level 0; accuracy {acc0:.4f}")
        print(f"{'level':>5}{'std ratio':>10}{'witin acc mean':>15}{'std':>8}{'ours acc mean':>14}{'std':>8}{'std ratio':>10}")
        for level in levels:
            noisy = W.quantized(WN, name, state, noise_level=level, io_from=clean)
            torch.manual_seed(seed + level)
            sim = Simulation(model, {"seed": seed + level, "noise_level": level}, seed=seed + level)
            x64 = xte[:64]
            with torch.no_grad(), contextlib.redirect_stderr(io.StringIO()):
                r = np.stack([noisy(x64).numpy() for _ in range(calls)])
            o = np.stack([sim.forward(x64.numpy()) for _ in range(calls)])
            std_ratio = float(o.std(axis=0).mean() / r.std(axis=0).mean())
            row = f"{level:>5}{std_ratio:>10.3f}"
            if name in W.CLASSIFIERS and runs > 1:
                with torch.no_grad(), contextlib.redirect_stderr(io.StringIO()):
                    aw = np.array([(noisy(xte).numpy().argmax(1) == y_np).mean() for _ in range(runs)])
                ao = np.array([(sim.forward(xte.numpy()).argmax(1) == y_np).mean() for _ in range(runs)])
                row += f"{aw.mean():>15.4f}{aw.std(ddof=1):>8.4f}{ao.mean():>14.4f}{ao.std(ddof=1):>8.4f}"
                row += f"{ao.std(ddof=1) / aw.std(ddof=1):>10.3f}"
            print(row, flush=True)


def main(argv=None):
    global WN
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("checkout", type=Path, help="path of a witmem/witin-nn checkout")
    ap.add_argument("--cases", type=int, default=600)
    ap.add_argument("--noise-calls", type=int, default=300)
    ap.add_argument("--seed", type=int, default=0)
    ap.add_argument("--no-noise", action="store_true")
    ap.add_argument("--kinds", default="Linear,Conv2d,ConvTranspose2d", help="comma-separated layer kinds")
    ap.add_argument("--neg", default="", help="only these handle_neg_in values (comma-separated)")
    ap.add_argument("--networks", default="", help="compare whole networks instead of single layers: 'all' or a "
                    "comma-separated list of scripts/witin_networks.py names")
    ap.add_argument("--epochs", type=int, default=30, help="float-training epochs of each network")
    ap.add_argument("--runs", type=int, default=200, help="accuracy runs per noise level (networks)")
    ap.add_argument("--levels", default="1,2,3,4,5,6,7,8,9", help="noise levels (networks)")
    ap.add_argument("--fields", action="store_true", help="also draw output_fp_clip, to_linear, padding_mode "
                    "reflect, use_quantization = False (float mode) and hardware = VPU")
    ap.add_argument("--noise-models", action="store_true", help="compare the output noise std of noise_model "
                    "SIMPLE and MBS (per layer kind, at --levels) instead of the bit-exact comparison")
    args = ap.parse_args(argv)
    WN = load_witin(args.checkout)
    global EXTRA_FIELDS, DRAW_VPU
    EXTRA_FIELDS = DRAW_VPU = args.fields
    if args.networks:
        sys.path.insert(0, str(Path(__file__).resolve().parent))
        import witin_networks as W

        names = W.NAMES if args.networks == "all" else tuple(args.networks.split(","))
        compare_networks(names, args.epochs, args.noise_calls, args.runs,
                         [int(v) for v in args.levels.split(",")], args.seed)
        return 0
    if args.noise_models:
        print(f"output noise std ratio ours / witin_nn ({args.noise_calls} calls per case)")
        print(f"{'model':<8}{'layer':<20}{'level':>6}{'mean':>8}{'min':>8}{'max':>8}{'cases':>7}")
        compare_noise_models([int(v) for v in args.levels.split(",")], args.noise_calls, args.seed,
                             max(1, args.cases))
        return 0
    negs = tuple(args.neg.split(",")) if args.neg else None
    stats, examples = compare_exact(args.cases, args.seed, tuple(args.kinds.split(",")), negs)
    print("bit-exact comparison at noise_level 0 (witin_nn eval vs WitinChipLayer)")
    print(f"{'layer':<18}{'neg_in':<7}{'x bits / fields':<7}{'cases':>7}{'elements':>11}{'mismatch':>10}{'cases w/ mismatch':>19}")
    totals = [0, 0, 0, 0]
    for (kind, neg, xb), (n, el, bad, badc) in sorted(stats.items()):
        print(f"{kind:<18}{neg:<7}{xb:<7}{n:>7}{el:>11}{bad:>10}{badc:>19}" if not EXTRA_FIELDS
              else f"{kind:<18}{neg:<7}{xb:<34}{n:>7}{el:>11}{bad:>10}{badc:>19}")
        totals = [a + b for a, b in zip(totals, (n, el, bad, badc))]
    print(f"{'total':<32}{totals[0]:>7}{totals[1]:>11}{totals[2]:>10}{totals[3]:>19}")
    for ex in examples:
        print("  mismatch:", ex)
    if not args.no_noise:
        print(f"\noutput noise std ratio ours / witin_nn ({args.noise_calls} calls per case)")
        print(f"{'level':>5}{'mean':>8}{'min':>8}{'max':>8}{'cases':>7}")
        for level, mean, lo, hi, n in compare_noise(range(1, 10), args.noise_calls, args.seed):
            print(f"{level:>5}{mean:>8.3f}{lo:>8.3f}{hi:>8.3f}{n:>7}")
    return 0


WN = None
EXTRA_FIELDS = False
DRAW_VPU = False  # --fields also draws hardware = VPU (the stored witin_fields.npz was drawn without it)

if __name__ == "__main__":
    sys.exit(main())
