"""Benchmark of the parasitic-resistance circuit solver against the ideal matmul.

Solves M MVMs (default 4096) on an N x N array (default 128 x 128) at Rp
(default 1e-4) for each topology and prints, per case, the solve time as a
multiple of the ideal ``X @ G`` measured in the same process, the iteration
count, the relaxation factor and the MVM error the parasitics cause.

    python benchmarks/parasitics_bench.py [--M 4096] [--N 128] [--Rp 1e-4]
        [--dtype float64|float32] [--topologies A,B,C] [--differential] [--gpu]
        [--methods auto,iterative]

Each topology is timed with each solver ``--methods`` allows for it ("direct",
the exact ladder solve, exists for B and C only; "auto" is the default the
simulator uses), and "vs first" gives the largest current difference to the
first method, relative to the largest current.
"""
from __future__ import annotations

import argparse
import time

import numpy

from simulator.circuits.parasitics import solve_parasitic


def _timed(fn, sync, repeat):
    best = float("inf")
    out = None
    for _ in range(repeat):
        sync()
        t0 = time.perf_counter()
        out = fn()
        sync()
        best = min(best, time.perf_counter() - t0)
    return best, out


def main(argv=None):
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--M", type=int, default=4096, help="MVMs solved at once")
    ap.add_argument("--N", type=int, default=128, help="array rows = columns")
    ap.add_argument("--Rp", type=float, default=1e-4)
    ap.add_argument("--dtype", default="float64", choices=["float64", "float32"])
    ap.add_argument("--topologies", default="A,B,C")
    ap.add_argument("--differential", action="store_true", help="use G_neg for A and B too")
    ap.add_argument("--repeat", type=int, default=3)
    ap.add_argument("--gpu", action="store_true", help="CuPy on the GPU")
    ap.add_argument("--methods", default="auto,iterative", help="solver methods to time (auto, iterative, direct)")
    args = ap.parse_args(argv)

    if args.gpu:
        import cupy as xp

        def sync():
            xp.cuda.Device().synchronize()
    else:
        xp = numpy

        def sync():
            pass

    dtype = numpy.dtype(args.dtype)
    rng = numpy.random.default_rng(0)
    N, M = args.N, args.M
    Gp = xp.asarray(rng.uniform(0.1, 1.0, (N, N)).astype(dtype))
    Gn = xp.asarray(rng.uniform(0.1, 1.0, (N, N)).astype(dtype))
    X_analog = xp.asarray(rng.uniform(0.0, 1.0, (M, N)).astype(dtype))
    # Input bits of 8-bit activations: bit 7 down to bit 0 in turn, a mix of sparse and dense rows.
    levels = rng.integers(0, 256, (M, N))
    bits = (levels >> (numpy.arange(M) % 8)[:, None]) & 1
    X_bits = xp.asarray(bits.astype(dtype))

    print(f"parasitics_bench: M = {M} MVMs on a {N}x{N} array, Rp = {args.Rp:g}, {args.dtype}, "
          f"{'cupy' if args.gpu else 'numpy'}")
    print(f"{'case':<16}{'time/ideal':>12}{'iters':>7}{'gamma':>8}{'MVM err':>10}{'vs first':>10}"
          f"{'solve ms':>10}{'ideal ms':>10}")
    for topology in args.topologies.split(","):
        topology = topology.strip().upper()
        G_neg = Gn if (topology == "C" or args.differential) else None
        X = X_analog if topology == "A" else X_bits
        Gd = Gp if G_neg is None else Gp - G_neg
        t_ideal, ideal = _timed(lambda: X @ Gd, sync, 20)
        first = None
        for method in [m.strip() for m in args.methods.split(",") if m.strip()]:
            if method == "direct" and topology == "A":
                continue
            t_solve, res = _timed(
                lambda: solve_parasitic(Gp, X, args.Rp, topology, G_neg=G_neg, xp=xp, method=method), sync,
                args.repeat,
            )
            err = float(xp.linalg.norm(res.I - ideal) / xp.linalg.norm(ideal))
            first = res.I if first is None else first
            diff = float(xp.max(xp.abs(res.I - first)) / xp.max(xp.abs(first)))
            name = topology + (" diff" if G_neg is not None and topology != "C" else "") + f" {res.method}"
            print(f"{name:<16}{t_solve / t_ideal:>12.1f}{res.iterations:>7d}{res.gamma:>8.3f}{err:>10.2e}"
                  f"{diff:>10.1e}{t_solve * 1e3:>10.1f}{t_ideal * 1e3:>10.2f}")


if __name__ == "__main__":
    main()
