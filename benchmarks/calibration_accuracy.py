"""Accuracy with calibrated vs "max" ADC ranges on the bundled digits model, and profiling memory.

Usage (from the repository root)::

    python benchmarks/calibration_accuracy.py [--runs 5] [--fresh]

Prints a table of the mean (and std) accuracy over ``--runs`` runs (fresh
programming errors each) on the whole 540-image digits test split:

* adc_bits = dac_bits = 6 and 4, calibrated ranges (configs/digits_calibrated_{6,4}bit.toml
  with the committed files in calibration/, or freshly calibrated with ``--fresh``)
  vs the "max" ADC range (manual 9.3.2) on the same hardware;
* 8 bits with freshly calibrated ranges;
* unquantized (adc_bits = dac_bits = 0) on the same hardware, and the
  floating-point accuracy.

Then the tracemalloc peak of a profiling run at two calibration-set sizes
(the ratio should stay near 1: histograms, not stored samples).
"""
from __future__ import annotations

import argparse
import os
import sys
import tempfile
import time
import tracemalloc
from pathlib import Path

REPO = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(REPO))

from adc_calibration.calibrate import calibrate  # noqa: E402
from adc_calibration.profiling import profile  # noqa: E402
from simulator.config import load_config  # noqa: E402
from simulator.model_files import load_model  # noqa: E402
from simulator.runner import run  # noqa: E402


def _peak(fn) -> int:
    tracemalloc.start()
    try:
        fn()
        return tracemalloc.get_traced_memory()[1]
    finally:
        tracemalloc.stop()


def main(argv=None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--runs", type=int, default=5, help="runs per point (default 5)")
    ap.add_argument("--fresh", action="store_true", help="recalibrate 6 and 4 bits instead of using calibration/")
    ap.add_argument("--ntest-small", type=int, default=50)
    ap.add_argument("--ntest-large", type=int, default=300)
    args = ap.parse_args(argv)
    os.chdir(REPO)  # the configs name files relative to the repository root
    net = load_model("digits_cnn")
    tmp = Path(tempfile.mkdtemp(prefix="xbarsim_cal_"))
    rows = []

    def point(label, cfg):
        t0 = time.perf_counter()
        r = run(cfg.with_overrides({"Nruns": args.runs, "ntest": 0}), network=net)
        rows.append((label, r.mean, r.std, r.n_images, len(r.rows)))
        print(f"  {label:<38} {100 * r.mean:6.2f} % +- {100 * r.std:4.2f} %   ({time.perf_counter() - t0:.1f} s)",
              flush=True)
        return r

    print(f"digits_cnn, whole test split, {args.runs} runs per point (mean +- std)")
    ideal = None
    for bits in (6, 4):
        cfg = load_config(f"configs/digits_calibrated_{bits}bit.toml")
        if args.fresh:
            path, _ = calibrate(cfg, out=tmp / f"c{bits}.h5", network=net)
            cfg = cfg.with_overrides({"calibration_file": str(path)})
        r = point(f"{bits}-bit ADC/DAC, calibrated ranges", cfg)
        ideal = r.ideal_accuracy
        point(f"{bits}-bit ADC/DAC, max ranges", cfg.with_overrides({"adc_range_option": "max", "calibration_file": None}))
    base = load_config("configs/digits_calibrated_6bit.toml")
    c8 = base.with_overrides({"adc_bits": 8, "dac_bits": 8})
    p8, _ = calibrate(c8, out=tmp / "c8.h5", network=net)
    point("8-bit ADC/DAC, calibrated ranges", c8.with_overrides({"calibration_file": str(p8)}))
    point("8-bit ADC/DAC, max ranges", c8.with_overrides({"adc_range_option": "max"}))
    point("unquantized (adc_bits = dac_bits = 0)", base.with_overrides({"adc_bits": 0, "dac_bits": 0,
                                                                        "adc_range_option": "max"}))
    print(f"  {'floating point (ideal)':<38} {100 * ideal:6.2f} %")

    cfg = base.with_overrides({"ntest_batch": 25})
    profile(cfg, net, what="both", ntest=25)  # warm-up: imports and caches are not profiling memory
    small = _peak(lambda: profile(cfg, net, what="both", ntest=args.ntest_small))
    large = _peak(lambda: profile(cfg, net, what="both", ntest=args.ntest_large))
    print(f"profiling peak memory (tracemalloc, ADC + activation passes, batches of 25 images): "
          f"{small / 1e6:.2f} MB at ntest = {args.ntest_small}, {large / 1e6:.2f} MB at ntest = {args.ntest_large}; "
          f"ratio {large / small:.3f}")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
