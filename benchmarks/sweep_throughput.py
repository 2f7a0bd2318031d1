"""Sweep throughput: a 20-point sweep on 2 local worker processes vs 1 (in-process).

    python benchmarks/sweep_throughput.py [--points 20] [--ntest 200] [--nruns 1]

Prints the wall time of both and their ratio (1 worker / 2 workers; the ideal
is 2.0 on a machine with 2 free cores). Uses the real ``simulator.run`` on the
bundled digits CNN; while the runner is not available it falls back to a
synthetic NumPy workload of similar size and says so.
"""
from __future__ import annotations

import argparse
import os
import sys
import tempfile
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))


class _SyntheticResult:
    def __init__(self, rows):
        self.rows, self.ideal_accuracy, self.seconds_per_image = rows, 1.0, 0.0

    def to_frame(self):
        import pandas as pd

        return pd.DataFrame(self.rows)


def synthetic_runner(config, *, runs=None, progress=False):
    """~0.5 s of single-threaded matrix products per run, deterministic in (alpha_error, seed)."""
    import numpy as np

    rows = []
    for i in runs:
        rng = np.random.default_rng([config.seed + i, int(config.alpha_error * 1e6)])
        a = rng.standard_normal((256, 256))
        for _ in range(400):
            a = np.tanh(a @ a / 16)
        rows.append({"run": i, "seed": config.seed + i, "accuracy": float(abs(a).mean())})
    return _SyntheticResult(rows)


def _real_runner_works() -> str | None:
    try:
        import simulator.runner as r

        r.run({"model_name": "digits_cnn", "task": "digits", "ntest": 5, "Nruns": 1, "seed": 0}, runs=[0])
    except ImportError as exc:
        return str(exc)
    return None


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--points", type=int, default=20)
    ap.add_argument("--ntest", type=int, default=200)
    ap.add_argument("--nruns", type=int, default=1)
    ap.add_argument("--workers", type=int, default=2)
    args = ap.parse_args()

    from simulator.sweep import run_sweep

    why = _real_runner_works()
    runner = None
    if why is not None:
        print(f"real runner not available ({why}); using a synthetic NumPy workload")
        runner = synthetic_runner
    base = {
        "model_name": "digits_cnn", "task": "digits", "ntest": args.ntest, "Nruns": args.nruns,
        "weight_bits": 8, "error_model": "alpha", "proportional_error": True, "adc_bits": 8, "dac_bits": 8,
    }
    param = f"alpha_error=0:{0.01 * (args.points - 1):g}:lin:{args.points}"
    print(f"sweep {param}: {args.points} points x {args.nruns} run(s), ntest = {args.ntest}, {os.cpu_count()} CPUs")
    from simulator.sweep.executors import InProcessExecutor, LocalPoolExecutor

    # the reference is a pool of ONE worker process (one BLAS thread, like each
    # of the N workers), so that the ratio measures the parallel speed-up alone;
    # the in-process time (BLAS threads as configured) is shown for information
    cases = [
        ("in-process (--workers 1)", InProcessExecutor()),
        ("1 worker process", LocalPoolExecutor(1)),
        (f"{args.workers} worker processes", LocalPoolExecutor(args.workers)),
    ]
    times, results = [], []
    with tempfile.TemporaryDirectory() as tmp:
        for i, (label, executor) in enumerate(cases):
            t0 = time.perf_counter()
            res = run_sweep(base, [param], executor=executor, out=tmp, name=f"case{i}", runner=runner, plot=False)
            times.append(time.perf_counter() - t0)
            results.append(res.results.drop(columns=["seconds_per_image"]))
            print(f"  {label:<26} {times[-1]:7.2f} s")
    same = all(r.equals(results[0]) for r in results[1:])
    print(f"identical results: {same}")
    print(f"throughput ratio ({args.workers} workers vs 1 worker): {times[1] / times[2]:.2f}x")


if __name__ == "__main__":
    main()
