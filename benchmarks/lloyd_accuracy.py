"""Lloyd-Max vs uniform weight levels on the bundled digits models, without and with weight noise.

For n = 3, 4, 8 levels per layer, both models (digits_cnn, digits_mlp) are
simulated with

* Lloyd: ``weight_quantizer = "lloyd"``, ``weight_levels = n`` (levels fitted
  per layer to W / W_max);
* uniform: the n equally spaced levels of
  :func:`simulator.quantization.uniform_levels` over [-max|W|, max|W|] per
  layer, applied to a copy of the model (``weight_bits = 0`` then maps those
  values unchanged). For n = 3 this is exactly ``weight_bits = 2`` BALANCED
  (checked below); 4 and 8 levels have no BALANCED ``weight_bits`` (it gives
  2^B - 1 levels), hence the helper.

Both map the levels BALANCED one-sided with G_min = 0 (On_off_ratio = 0), no
ADC/DAC, so max|W_q| sits at G_max in both. Noise: ``error_model =
"relative_max"`` with ``alpha_error = delta / sqrt(3/2 - 1/(2 pi))`` -- the
weight-unit std of a non-zero, non-extreme weight is then delta * max|W_q|
(one device gets N(0, (alpha max|W_q|)^2), its partner at G_min = 0 a clipped
max(e, 0); see devices/relative_max.py). The script also prints the measured
weight-unit std over all weights of each layer. Without noise the result is
deterministic (one run); with noise it is the mean (+- std) of ``--runs`` runs.

    python benchmarks/lloyd_accuracy.py [--runs 10] [--delta 0.02]
"""
from __future__ import annotations

import argparse
import copy
import math
import os
import sys

import numpy as np

sys.path.insert(0, os.path.dirname(os.path.dirname(os.path.abspath(__file__))))

import simulator  # noqa: E402
from simulator.io.digits import load_digits_split  # noqa: E402
from simulator.quantization import quantize_uniform  # noqa: E402
from simulator.executor.graph_passes import fold_batchnorm  # noqa: E402

KERNEL = {"Dense": "kernel", "Conv2D": "kernel", "DepthwiseConv2D": "depthwise_kernel"}
BASE = {"style": "BALANCED", "balanced_style": "one_sided", "On_off_ratio": 0, "adc_bits": 0, "dac_bits": 0,
        "precision": "float64"}


def uniform_model(net, n):
    """Copy of ``net`` (batchnorm folded, as the simulator does) with n uniform levels per MVM layer."""
    q = copy.deepcopy(net)
    q.layers, q.outputs = fold_batchnorm(q.layers, q.outputs)
    for layer in q.layers:
        if layer.type in KERNEL:
            k = layer.weights[KERNEL[layer.type]]
            layer.weights[KERNEL[layer.type]] = quantize_uniform(k, n, float(np.abs(k).max()))[0]
    return q


def acc(net, cfg, x, y, seed):
    return float((simulator.Simulation(net, cfg, seed=seed).forward(x).argmax(axis=1) == y).mean())


def weight_noise_std(net, cfg, seed=0):
    """Measured weight-unit std / max|W_q| per Dense layer (effective weights from one-hot inputs)."""
    sim = simulator.Simulation(net, cfg, seed=seed)
    clean = simulator.Simulation(net, {**cfg, "error_model": "none", "alpha_error": 0.0}, seed=seed)
    out = {}
    for name, core in sim.cores.items():
        n_in = core.n_in
        eye = np.eye(n_in)
        d = core(eye) - clean.cores[name](eye)
        wq = clean.cores[name](eye) - (clean.cores[name](np.zeros((1, n_in))) if core.bias is not None else 0)
        out[name] = float(np.std(d) / np.abs(wq).max())
    return out


def main(argv=None):
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--runs", type=int, default=10)
    ap.add_argument("--delta", type=float, default=0.02)
    args = ap.parse_args(argv)
    x, y = load_digits_split("test")
    alpha = args.delta / math.sqrt(1.5 - 1 / (2 * math.pi))
    noise = {"error_model": "relative_max", "alpha_error": alpha}
    print(f"{len(y)} test images; noise: relative_max, alpha_error = {alpha:.5f} (delta = {args.delta:g}), "
          f"{args.runs} runs; BALANCED one-sided, G_min = 0, no ADC/DAC\n")
    header = f"{'model':<11} {'levels':>6} {'quantizer':<9} {'no noise %':>11} {'delta noise %':>17}"
    print(header)
    print("-" * len(header))
    measured = {}
    for model in ("digits_cnn", "digits_mlp"):
        net = simulator.load_model(model)
        fl = float((simulator.Simulation(net, {}, seed=0).ideal_forward(x).argmax(axis=1) == y).mean())
        print(f"{model:<11} {'float':>6} {'-':<9} {100 * fl:>11.2f}")
        for n in (3, 4, 8):
            lloyd_cfg = {**BASE, "weight_quantizer": "lloyd", "weight_levels": n}
            uni_net = uniform_model(net, n)
            cases = [("lloyd", net, lloyd_cfg), ("uniform", uni_net, dict(BASE))]
            if n == 3:  # the helper's 3 levels are exactly weight_bits = 2 BALANCED
                a = simulator.Simulation(net, {**BASE, "weight_bits": 2}, seed=0).forward(x)
                b = simulator.Simulation(uni_net, BASE, seed=0).forward(x)
                assert np.abs(a - b).max() <= 1e-9 * np.abs(b).max()
            for qname, m, cfg in cases:
                clean = acc(m, cfg, x, y, 0)
                accs = np.array([acc(m, {**cfg, **noise}, x, y, s) for s in range(args.runs)])
                print(f"{model:<11} {n:>6} {qname:<9} {100 * clean:>11.2f} {100 * accs.mean():>8.2f} +- "
                      f"{100 * accs.std(ddof=1):.2f}")
                if n == 4:
                    measured[(model, qname)] = weight_noise_std(m, {**cfg, **noise})
    print("\nmeasured weight-unit noise std / max|W_q| per layer (4 levels, all weights incl. zeros and extremes):")
    for (model, qname), d in measured.items():
        print(f"  {model:<11} {qname:<8} " + ", ".join(f"{k} {100 * v:.2f} %" for k, v in d.items()))


if __name__ == "__main__":
    main()
