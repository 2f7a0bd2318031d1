"""Accuracy of the bundled witin model vs noise_level, and on conductance arrays.

    python benchmarks/witin_accuracy.py [--nruns 5]

Chip semantics (witin_mode = "chip") at noise_level 0..9, then the same model
on BALANCED / OFFSET arrays (witin_mode = "arrays") without device errors and
with SONOS programming error (On/Off 100). Digits test split, 540 images.
"""
from __future__ import annotations

import argparse

import simulator


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__)
    ap.add_argument("--nruns", type=int, default=5)
    args = ap.parse_args()
    base = {"model_name": "witin_digits", "task": "digits", "Nruns": args.nruns, "seed": 0}
    print(f"{'setting':<44} {'accuracy (%)':>16}")
    for level in range(10):
        r = simulator.run(dict(base, witin_mode="chip", noise_level=level))
        print(f"{'chip, noise_level ' + str(level):<44} {100 * r.mean:8.2f} +- {100 * r.std:4.2f}")
    print(f"{'floating point':<44} {100 * r.ideal_accuracy:8.2f}")
    for label, extra in [
        ("arrays BALANCED, no device errors", {"style": "BALANCED"}),
        ("arrays OFFSET, no device errors", {"style": "OFFSET"}),
        ("arrays BALANCED + SONOS error (On/Off 100)", {"style": "BALANCED", "error_model": "SONOS", "On_off_ratio": 100}),
        ("arrays BALANCED + 5 % prop. alpha error", {"style": "BALANCED", "error_model": "alpha", "alpha_error": 0.05,
                                                     "proportional_error": True}),
    ]:
        r = simulator.run(dict(base, witin_mode="arrays", **extra))
        print(f"{label:<44} {100 * r.mean:8.2f} +- {100 * r.std:4.2f}")


if __name__ == "__main__":
    main()
