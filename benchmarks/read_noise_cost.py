"""Cost of output-equivalent read noise: noisy forward pass / the same chip without read noise.

Runs configs/digits_noisy.toml (read_noise_mode = "output") on the digits
test split and on a wider synthetic dense layer, once with its read noise and
once with noise_model = "none", in the same process, and prints the ratio of
the best-of-``--repeat`` times. The ratio is what the keyed (split-independent)
read-noise streams cost on top of the MVMs themselves.

    python benchmarks/read_noise_cost.py [--repeat 5]
"""
from __future__ import annotations

import argparse
import os
import time

import numpy as np

import simulator
from simulator.io.digits import load_digits_split
from simulator.network import Layer, Network

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))


def best_time(sim, x, repeat: int) -> float:
    best = float("inf")
    for _ in range(repeat):
        t0 = time.perf_counter()
        sim.forward(x)
        best = min(best, time.perf_counter() - t0)
    return best


def wide_dense(n_in: int = 512, n_out: int = 256) -> Network:
    rng = np.random.default_rng(0)
    layers = [
        Layer("input", "Input"),
        Layer("fc", "Dense", ["input"], {"units": n_out, "use_bias": False},
              {"kernel": rng.standard_normal((n_in, n_out)) / np.sqrt(n_in)}, {"input_range": [-4.0, 4.0]}),
    ]
    return Network("wide_dense", layers, ["fc"], input_shape=(n_in,))


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--repeat", type=int, default=5)
    args = ap.parse_args()
    cfg = simulator.load_config(os.path.join(ROOT, "configs", "digits_noisy.toml")).with_overrides(
        {"read_noise_mode": "output"})
    quiet = cfg.with_overrides({"noise_model": "none"})
    net = simulator.load_model(cfg.model_name)
    x, _ = load_digits_split("test")
    print(f"{'case':<34} {'noisy ms':>9} {'no-noise ms':>12} {'ratio':>7}")
    cases = [("digits_cnn, %d images" % len(x), net, x)]
    xw = np.random.default_rng(1).uniform(-4, 4, (4096, 512))
    cases.append(("dense 512x256, 4096 vectors", wide_dense(), xw))
    for label, model, data in cases:
        c = cfg if model is net else cfg.with_overrides({"model_name": "digits_cnn", "NrowsMax": 0})
        q = quiet if model is net else c.with_overrides({"noise_model": "none"})
        t_noisy = best_time(simulator.Simulation(model, c, seed=0), data, args.repeat)
        t_quiet = best_time(simulator.Simulation(model, q, seed=0), data, args.repeat)
        print(f"{label:<34} {1e3 * t_noisy:>9.1f} {1e3 * t_quiet:>12.1f} {t_noisy / t_quiet:>7.2f}")


if __name__ == "__main__":
    main()
