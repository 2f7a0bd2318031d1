"""Top-1 agreement of simulated CIFAR-10 ResNets with their floating-point predictions.

    python benchmarks/resnet_calibrated_agreement.py [--n 1000] [--models ResNet14,ResNet20,ResNet56]

Uses the Keras models in ../shared/models/crosssim_cifar10 with weight_bits 8,
dac_bits 8, adc_bits 8, BALANCED, NrowsMax 1152, and the shipped calibrated
input limits (dac_limits_file) and ADC limits (calibration_file, CrossSim 3's
normalized units). The CIFAR images are not available here, so the inputs are
random-but-fixed 32x32 crops of scikit-learn's two bundled photographs
(random position, size and flip, seed 0), scaled to [0, 1] with the per-pixel
mean subtracted -- the preprocessing these Keras ResNets were trained with.
Their statistics are not CIFAR's, so the agreement is a fidelity check of
the import and the limits, not a CIFAR accuracy.
"""
from __future__ import annotations

import argparse
import time
from pathlib import Path

import numpy as np

import simulator

MODELS = Path(__file__).resolve().parents[1].parent / "shared" / "models" / "crosssim_cifar10"
FILES = {"ResNet14": "resnet14v1_cifar10.h5", "ResNet20": "resnet20v1_cifar10.h5", "ResNet56": "resnet56v1_cifar10.h5"}


def natural_crops(n: int, seed: int = 0) -> np.ndarray:
    """n random 32x32 RGB crops in [0, 1] of sklearn's sample photographs (NHWC float32)."""
    from sklearn.datasets import load_sample_images

    images = load_sample_images().images
    rng = np.random.default_rng(seed)
    out = np.empty((n, 32, 32, 3), dtype=np.float32)
    for i in range(n):
        im = images[rng.integers(len(images))]
        size = int(rng.integers(48, 200))
        r0 = int(rng.integers(0, im.shape[0] - size))
        c0 = int(rng.integers(0, im.shape[1] - size))
        idx = (np.arange(32) * size / 32).astype(int)
        crop = im[r0 : r0 + size, c0 : c0 + size][idx][:, idx].astype(np.float32) / 255
        out[i] = crop[:, ::-1] if rng.random() < 0.5 else crop
    return out


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__)
    ap.add_argument("--n", type=int, default=1000)
    ap.add_argument("--models", default="ResNet14,ResNet20,ResNet56")
    args = ap.parse_args()
    x = natural_crops(args.n)
    x = x - x.mean(axis=0)
    print(f"{'model':<10} {'no ADC':>8} {'max ADC':>8} {'calibrated ADC':>15} {'ms/image':>9}   (top-1 agreement with floating point)")
    for name in args.models.split(","):
        net = simulator.load_model(MODELS / FILES[name])
        base = {"weight_bits": 8, "dac_bits": 8, "adc_bits": 8, "style": "BALANCED", "NrowsMax": 1152,
                "dac_limits_file": str(MODELS / f"input_limits_{name}.npy")}
        ref = simulator.Simulation(net, base, seed=0).ideal_forward(x).argmax(1)
        agree = {}
        for option in ("none", "max", "calibrated"):
            cfg = dict(base, adc_range_option=option) if option != "none" else dict(base, adc_bits=0)
            if option == "calibrated":
                cfg["calibration_file"] = str(MODELS / f"adc_limits_{name}_balanced.npy")
            sim = simulator.Simulation(net, cfg, seed=0)
            t = time.perf_counter()
            pred = sim.forward(x).argmax(1)
            dt = (time.perf_counter() - t) / len(x)
            agree[option] = (pred == ref).mean()
        print(f"{name:<10} {100 * agree['none']:>7.1f}% {100 * agree['max']:>7.1f}% {100 * agree['calibrated']:>14.1f}% {1e3 * dt:>9.2f}")


if __name__ == "__main__":
    main()
