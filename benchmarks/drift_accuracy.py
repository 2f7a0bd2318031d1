"""Accuracy versus time after programming: the digits CNN on PCM_Nandakumar arrays, with and without drift compensation.

Each run programs the chip once (PCM_Nandakumar programming noise) and reads
it at every time from 1 s to 1 year (drift and accumulated 1/f read noise of
the same programmed state); ``--runs`` runs (seeds 0..runs-1) on the digits
test split. Curves: no compensation, ``drift_compensation = "global"`` (and
``"column"``). Array settings: BALANCED one-sided, On/Off 100, ``--adc-bits``
(0 = ideal ADC) with ``adc_range_option = "max"``. Prints accuracy mean +- std
(sample std over runs) per time and compensation, the extra cost of the
compensation as a ratio of whole-run times measured here, and writes the plot.

    python benchmarks/drift_accuracy.py [--runs 5] [--adc-bits 0] [--plot drift_accuracy.png]
"""
from __future__ import annotations

import argparse
import os
import sys
import time

sys.path.insert(0, os.path.dirname(os.path.dirname(os.path.abspath(__file__))))

from simulator.runner import format_days, plot_accuracy_vs_time, run  # noqa: E402

DAY = 86400.0
#: 1 s, 1 min, 1 h, 1 day, 1 week, 1 month, 1 year (in days)
TIMES = [1 / DAY, 60 / DAY, 3600 / DAY, 1.0, 7.0, 30.0, 365.0]


def reference_read_cost(cfg: dict, n_images: int) -> str:
    """Extra MVMs of the compensation (one-hot reads: sum of the layers' input sizes, per time and once at
    programming) against the MVMs of one pass over the test images (windows per image summed over layers)."""
    from simulator.model_files import load_model
    from simulator.simulation import Simulation

    sim = Simulation(load_model(cfg["model_name"]), {**cfg, "t_drift": 0.0, "Nruns": 1})
    shapes = sim.output_shapes()
    per_image = 0
    for core in sim.analog_cores:
        shape = shapes[core.name]
        per_image += int(shape[0] * shape[1]) if len(shape) == 3 else 1
    reads = sum(core.n_in for core in sim.analog_cores)
    return (f"reference reads: {reads} one-hot MVMs per time and {reads} at programming, vs "
            f"{per_image * n_images} MVMs per pass over the {n_images} test images "
            f"({100 * reads / (per_image * n_images):.2f} % extra per time)")


def main(argv=None) -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--runs", type=int, default=5)
    ap.add_argument("--ntest", type=int, default=0, help="test images (0 = the whole split)")
    ap.add_argument("--adc-bits", type=int, default=0)
    ap.add_argument("--modes", default="none,global,column", help="drift_compensation values to compare")
    ap.add_argument("--plot", default="drift_accuracy.png")
    args = ap.parse_args(argv)

    base = {"model_name": "digits_cnn", "error_model": "PCM_Nandakumar", "drift_model": "PCM_Nandakumar",
            "On_off_ratio": 100, "t_drift": TIMES, "Nruns": args.runs, "seed": 0, "ntest": args.ntest,
            "adc_bits": args.adc_bits, "adc_range_option": "max"}
    curves, seconds, ideal = {}, {}, None
    for mode in args.modes.split(","):
        t0 = time.perf_counter()
        r = run({**base, "drift_compensation": mode})
        seconds[mode] = time.perf_counter() - t0
        curves[f"compensation {mode}"] = r.accuracy_vs_time()
        ideal = r.ideal_accuracy
        n_images = r.n_images
    adc = f"{args.adc_bits}-bit ADC (max range)" if args.adc_bits else "ideal ADC"
    print(f"digits_cnn, PCM_Nandakumar, On/Off 100, {adc}, {args.runs} runs x {n_images} images; "
          f"floating point {100 * ideal:.2f} %")
    labels = list(curves)
    print(f"{'time after programming':<24}" + "".join(f"{lab:>24}" for lab in labels))
    for k, t in enumerate(TIMES):
        cells = "".join(f"{100 * curves[lab][k][1]:>15.2f} +- {100 * curves[lab][k][2]:4.2f}" for lab in labels)
        print(f"{format_days(t):<24}{cells}")
    ref = seconds.get("none")
    if ref:
        print("whole-run time relative to no compensation (shared machine, indicative): "
              + ", ".join(f"{m} {s / ref:.2f}x" for m, s in seconds.items() if m != "none"))
    print(reference_read_cost(base, n_images))
    plot_accuracy_vs_time(curves, args.plot, ideal=ideal,
                          title=f"digits_cnn on PCM_Nandakumar arrays ({adc}, {args.runs} runs)")
    print(f"wrote {args.plot}")


if __name__ == "__main__":
    main()
