"""Accuracy of the bundled digits CNN under every device model, and the read-noise speed-up.

1. Every ``configs/device_*.toml`` at its default parameters, plus the generic
   ``alpha`` model with 5 % state-proportional programming error (same array
   settings as the device configs: 8-bit BALANCED one-sided weights, ideal
   ADC/DAC), ``Nruns`` runs (seeds 0..Nruns-1) on the 540-image test split:
   accuracy mean +- std (sample std over runs).
2. Output-equivalent vs exact read noise on the same network
   (``configs/digits_noisy.toml``: 5 % proportional programming error, 2 %
   state-independent read noise): time of one forward pass over the test split
   in each mode, measured in this process, and the accuracies they give.

    python benchmarks/device_accuracy.py [--runs 3] [--repeat 2]
"""
from __future__ import annotations

import argparse
import glob
import os
import sys
import time

import numpy as np

sys.path.insert(0, os.path.dirname(os.path.dirname(os.path.abspath(__file__))))

import simulator  # noqa: E402
from simulator.io.digits import load_digits_split  # noqa: E402

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))


def accuracy(net, cfg, x, y, seed):
    return float((simulator.Simulation(net, cfg, seed=seed).forward(x).argmax(axis=1) == y).mean())


def describe(cfg) -> str:
    parts = []
    drifting = cfg.drift_model != "none" and cfg.t_drift > 0
    for key, label in (("error_model", "error"), ("drift_model", "drift"), ("noise_model", "noise")):
        v = getattr(cfg, key)
        if v == "none" or (key == "drift_model" and not drifting):
            continue
        if key == "error_model" and drifting and v != "alpha":
            continue  # manual 7.3: the drift model includes its own programming error
        parts.append(f"{label}={v}")
    if cfg.t_drift:
        parts.append(f"t={cfg.t_drift:g} d")
    if cfg.error_model == "alpha":
        parts.append(f"alpha_error={cfg.alpha_error:g}{' prop' if cfg.proportional_error else ''}")
    parts.append(f"On/Off={cfg.On_off_ratio:g}")
    return ", ".join(parts)


def main(argv=None):
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--runs", type=int, default=3)
    ap.add_argument("--repeat", type=int, default=2, help="timing repeats (best is kept)")
    args = ap.parse_args(argv)

    net = simulator.load_model("digits_cnn")
    x, y = load_digits_split("test")
    ideal = float((simulator.Simulation(net, {}, seed=0).ideal_forward(x).argmax(axis=1) == y).mean())

    cases = []
    for path in sorted(glob.glob(os.path.join(ROOT, "configs", "device_*.toml"))):
        cases.append((os.path.basename(path), simulator.load_config(path)))
    base = simulator.load_config(os.path.join(ROOT, "configs", "device_sonos.toml")).to_dict()
    base.update({"error_model": "alpha", "alpha_error": 0.05, "proportional_error": True, "On_off_ratio": 100,
                 "device_params": {}})
    cases.append(("generic alpha 5 % prop.", simulator.load_config(base, name="alpha")))

    print(f"digits_cnn, {len(y)} test images, ideal (float) accuracy {100 * ideal:.2f} %, {args.runs} runs each\n")
    print(f"{'config':<26} {'device models':<58} {'accuracy %':>16}")
    print("-" * 102)
    for name, cfg in cases:
        accs = np.array([accuracy(net, cfg, x, y, seed) for seed in range(args.runs)])
        std = accs.std(ddof=1) if len(accs) > 1 else 0.0
        print(f"{name:<26} {describe(cfg):<58} {100 * accs.mean():>7.2f} +- {100 * std:<5.2f}")

    # ---- read noise: output-equivalent vs exact
    cfg = simulator.load_config(os.path.join(ROOT, "configs", "digits_noisy.toml"))
    times, accs = {}, {}
    for mode in ("output", "exact"):
        c = cfg.with_overrides({"read_noise_mode": mode})
        sim = simulator.Simulation(net, c, seed=0)
        best = float("inf")
        hits = []
        for _ in range(args.repeat):
            t0 = time.perf_counter()
            out = sim.forward(x)
            best = min(best, time.perf_counter() - t0)
            hits.append((out.argmax(axis=1) == y).mean())
        times[mode], accs[mode] = best, float(np.mean(hits))
    print(f"\nread noise on digits_cnn (configs/digits_noisy.toml: alpha_noise = {cfg.alpha_noise:g}, "
          f"{cfg.alpha_error:g} proportional programming error, 8-bit ADC/DAC), one forward over {len(y)} images:")
    print(f"{'read_noise_mode':<18} {'ms / image':>11} {'ratio to output':>16} {'accuracy %':>11}")
    for mode in ("output", "exact"):
        print(f"{mode:<18} {1e3 * times[mode] / len(y):>11.3f} {times[mode] / times['output']:>16.1f} "
              f"{100 * accs[mode]:>11.2f}")
    print(f"speed-up of output-equivalent over exact read noise: {times['exact'] / times['output']:.1f}x")


if __name__ == "__main__":
    main()
