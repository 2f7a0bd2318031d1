"""Accuracy of the example digits configs and the speed ratio of digits_balanced_8bit.

    python benchmarks/example_configs.py

Prints, per config in configs/digits_*.toml, the simulated accuracy (mean +- std
over Nruns) and the ideal accuracy on the 540-image digits test split; then the
forward time of digits_balanced_8bit relative to our floating-point forward pass,
both measured in this process on the same batch (best of 5).
"""
from __future__ import annotations

import time
from pathlib import Path

import simulator
from simulator.io.digits import load_digits_split

CONFIGS = Path(__file__).resolve().parents[1] / "configs"


def best_of(fn, n=5):
    times = []
    for _ in range(n):
        t = time.perf_counter()
        fn()
        times.append(time.perf_counter() - t)
    return min(times)


def main() -> None:
    print(f"{'config':<28} {'accuracy (%)':>18} {'ideal (%)':>10}")
    for name in ["digits_ideal", "digits_balanced_8bit", "digits_offset", "digits_noisy", "digits_bitsliced"]:
        r = simulator.run(CONFIGS / f"{name}.toml")
        print(f"{name:<28} {100 * r.mean:>10.2f} +- {100 * r.std:4.2f} {100 * r.ideal_accuracy:>10.2f}")
    net = simulator.load_model("digits_cnn")
    x, _ = load_digits_split("test")
    sim = simulator.Simulation(net, simulator.load_config(CONFIGS / "digits_balanced_8bit.toml"), seed=0)
    t_sim = best_of(lambda: sim.forward(x))
    t_ideal = best_of(lambda: sim.ideal_forward(x))
    print(f"digits_balanced_8bit: {1e3 * t_sim / len(x):.3f} ms/image simulated, {1e3 * t_ideal / len(x):.3f} ms/image "
          f"floating point -> ratio {t_sim / t_ideal:.2f}")


if __name__ == "__main__":
    main()
