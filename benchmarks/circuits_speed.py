"""Cost of the circuit features on the bundled digits CNN, as ratios to a baseline.

Baseline: 8-bit weights (BALANCED one-sided), 8-bit DACs, 8-bit ADCs with the
"max" range, On/Off ratio 100, no device errors. Variants (one change each):

* input bit slicing, 8 input bits applied one at a time, ADC after every bit;
* 4 weight slices (weight_bits 9, Nslices 4: full device-range use);
* parasitic resistance Rp = 1e-4, topology A (circuit solver on every array).

Prints ms per image of one forward pass over the 540-image test split (best
of ``--repeat``; programming the arrays is not timed) and the ratio to the
baseline measured in the same process, with each variant's accuracy.

    python benchmarks/circuits_speed.py [--repeat 3] [--images 540]
"""
from __future__ import annotations

import argparse
import os
import sys
import time

import numpy as np

sys.path.insert(0, os.path.dirname(os.path.dirname(os.path.abspath(__file__))))

import simulator  # noqa: E402
from simulator.io.digits import load_digits_split  # noqa: E402

BASE = {"weight_bits": 8, "dac_bits": 8, "adc_bits": 8, "adc_range_option": "max", "style": "BALANCED",
        "balanced_style": "one_sided", "On_off_ratio": 100}
VARIANTS = [
    ("baseline (W8 / DAC8 / ADC8)", {}),
    ("input bit slicing, 8 bits, ADC per bit", {"input_bitslicing": True, "ADC_per_ibit": True}),
    ("4 weight slices (weight_bits 9)", {"weight_bits": 9, "Nslices": 4}),
    ("Rp = 1e-4, topology A", {"Rp": 1e-4}),
]


def main(argv=None):
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--repeat", type=int, default=3)
    ap.add_argument("--images", type=int, default=540)
    args = ap.parse_args(argv)
    net = simulator.load_model("digits_cnn")
    x, y = load_digits_split("test")
    x, y = x[: args.images], y[: args.images]
    rows = []
    for name, over in VARIANTS:
        sim = simulator.Simulation(net, {**BASE, **over}, seed=0)
        sim.forward(x[:8])  # warm-up
        best, acc = float("inf"), None
        for _ in range(args.repeat):
            t0 = time.perf_counter()
            out = sim.forward(x)
            best = min(best, time.perf_counter() - t0)
            acc = float((out.argmax(axis=1) == y).mean())
        rows.append((name, best, acc))
    base_t = rows[0][1]
    print(f"digits_cnn, {len(y)} images, best of {args.repeat}, dtype {np.dtype(sim.dtype).name}\n")
    print(f"{'variant':<42} {'ms / image':>11} {'x baseline':>11} {'accuracy %':>11}")
    print("-" * 78)
    for name, t, acc in rows:
        print(f"{name:<42} {1e3 * t / len(y):>11.3f} {t / base_t:>11.2f} {100 * acc:>11.2f}")


if __name__ == "__main__":
    main()
