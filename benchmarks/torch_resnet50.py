"""ResNet-50 (224x224) through the torch host, against the physical limit of this machine.

The limit: the model's multiply-accumulate count (conv and linear layers,
counted from the traced shapes) divided by this machine's float32 GEMM rate,
measured in the same run with a large NumPy matmul. An analog simulation
has to do at least those MACs once, so ``time per image / limit`` says how
close the simulator is to the cheapest possible implementation on this CPU.
The torch float32 forward pass of the same model is timed too.

    python benchmarks/torch_resnet50.py --batch 8 --repeats 2
    python benchmarks/torch_resnet50.py --threads 1 --batch 4   # CPU time, one thread: robust on a busy machine

With ``--threads 1`` every timing is the process's CPU time on one thread
(BLAS, OpenMP and torch limited to one thread before they load), which a
busy machine does not distort the way it distorts wall-clock time.

Settings: 8-bit weights (BALANCED one-sided, On/Off 100), 8-bit DAC over
[-8, 8] and 8-bit ADC ("max" range); then the same with generic read noise
alpha 0.02. Peak memory of the simulation process is bounded by
``memory_budget_mb`` (printed), not by the batch.
"""
from __future__ import annotations

import argparse
import os
import resource
import sys
import time
from pathlib import Path

if __name__ == "__main__" and "--threads" in sys.argv:  # before NumPy/torch load their thread pools
    _n = sys.argv[sys.argv.index("--threads") + 1]
    for _v in ("OMP_NUM_THREADS", "OPENBLAS_NUM_THREADS", "MKL_NUM_THREADS"):
        os.environ[_v] = _n

import numpy as np

sys.path.insert(0, str(Path(__file__).resolve().parents[1] / "tests"))


CLOCK = time.perf_counter


def gemm_macs_per_second(n: int = 2048, repeats: int = 3) -> float:
    a = np.random.default_rng(0).standard_normal((n, n), dtype=np.float32)
    b = np.random.default_rng(1).standard_normal((n, n), dtype=np.float32)
    a @ b
    best = float("inf")
    for _ in range(repeats):
        t = CLOCK()
        a @ b
        best = min(best, CLOCK() - t)
    return n**3 / best


def mvm_shapes(net) -> list[tuple[int, int, int]]:
    """(windows per image, rows, cols) of every analog layer's MVM, from the traced shapes."""
    from simulator.cli.commands.inspect import mvm_matrices

    shapes = []
    for site in net.sites:
        out = site.output_shape
        windows = int(np.prod(out[2:])) if len(out) > 2 else 1
        for layer in site.layers:
            for _, (rows, cols) in mvm_matrices(layer):
                shapes.append((windows, rows, cols))
    return shapes


def model_macs(net) -> int:
    """MACs per image of every analog layer (windows x matrix size), from the traced shapes."""
    return sum(w * r * c for w, r, c in mvm_shapes(net))


def shaped_gemm_seconds(net, batch: int, repeats: int) -> float:
    """Seconds per image of float32 NumPy GEMMs of exactly the model's MVM shapes at this batch.

    What any float32 implementation of the analog layers spends on the
    products alone (awkward shapes such as 64 output columns run below the
    square-GEMM rate); the simulator's own time beyond it is the rest.
    """
    rng = np.random.default_rng(2)
    cache: dict[tuple[int, int, int], float] = {}
    total = 0.0
    for w, r, c in mvm_shapes(net):
        key = (batch * w, r, c)
        if key not in cache:
            a = rng.standard_normal((batch * w, r), dtype=np.float32)
            b = rng.standard_normal((r, c), dtype=np.float32)
            cache[key] = timed(lambda: a @ b, repeats)
        total += cache[key]
    return total / batch


def timed(fn, repeats: int) -> float:
    fn()
    best = float("inf")
    for _ in range(repeats):
        t = CLOCK()
        fn()
        best = min(best, CLOCK() - t)
    return best


def int8_macs_per_second(n: int = 2048) -> float | None:
    """torch's CPU int8 GEMM rate (the route of integer DAC codes times integer weight codes), None without it."""
    from simulator.backend import int8_matmul

    a = np.random.default_rng(0).integers(-127, 128, (n, n), dtype=np.int8)
    b = np.random.default_rng(1).integers(-127, 128, (n, n), dtype=np.int8)
    if int8_matmul(a, b) is None:
        return None
    return n**3 / timed(lambda: int8_matmul(a, b), 3)


def interleaved(fn, rate_fn, repeats: int) -> tuple[float, float]:
    """(best seconds of ``fn``, best GEMM rate) over ``repeats`` rounds of one rate measurement then one ``fn``.

    The two alternate, so a machine that slows down or speeds up during the
    run (shared cores) moves both; each is the best of its rounds.
    """
    fn()
    best_t, best_rate = float("inf"), 0.0
    for _ in range(repeats):
        best_rate = max(best_rate, rate_fn())
        t = CLOCK()
        fn()
        best_t = min(best_t, CLOCK() - t)
    return best_t, best_rate


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--batch", type=int, default=8)
    ap.add_argument("--repeats", type=int, default=2)
    ap.add_argument("--size", type=int, default=224)
    ap.add_argument("--budget", type=float, default=512.0, help="memory_budget_mb")
    ap.add_argument("--threads", type=int, default=None, help="limit BLAS/OpenMP/torch threads; 1: time = CPU time")
    args = ap.parse_args()
    global CLOCK
    import torch

    if args.threads:
        torch.set_num_threads(args.threads)
        if args.threads == 1:
            CLOCK = time.process_time

    from simulator import Simulation, from_torch
    from torchvision_compat import import_torchvision

    torch.manual_seed(0)
    model = import_torchvision().models.resnet50(weights=None).eval()
    x = torch.randn(args.batch, 3, args.size, args.size)
    net = from_torch(model, x[:2], check=False)
    macs = model_macs(net)
    with torch.no_grad():
        t_torch, rate = interleaved(lambda: model(x), gemm_macs_per_second, args.repeats)
    t_torch /= args.batch
    limit = macs / rate
    t_gemm = shaped_gemm_seconds(net, args.batch, args.repeats)
    r8 = int8_macs_per_second()
    print(f"ResNet-50 {args.size}x{args.size}: {macs / 1e9:.2f} GMAC/image; float32 GEMM {rate / 1e9:.1f} GMAC/s "
          f"(threads: {args.threads or 'default'}, clock: {CLOCK.__name__}) -> physical limit {1e3 * limit:.1f} ms/image; "
          f"torch float32 forward {1e3 * t_torch:.1f} ms/image ({t_torch / limit:.2f}x the limit); "
          f"float32 GEMMs of the model's own MVM shapes {1e3 * t_gemm:.1f} ms/image ({t_gemm / limit:.2f}x the limit); "
          + (f"int8 GEMM {r8 / 1e9:.0f} GMAC/s ({r8 / rate:.1f}x float32)" if r8 else "no int8 GEMM (torch missing)"))
    base = {"weight_bits": 8, "dac_bits": 8, "dac_range": [-8.0, 8.0], "adc_bits": 8, "memory_budget_mb": args.budget}
    settings = {"8-bit W/DAC/ADC": base,
                "+ read noise 0.02": {**base, "noise_model": "alpha", "alpha_noise": 0.02}}
    xn = x.numpy()
    print(f"{'setting':<22} {'ms/image':>9} {'x limit':>8} {'x torch':>8} {'limit ms (GEMM rate of these rounds)':>38}")
    for name, cfg in settings.items():
        sim = Simulation(net, cfg, seed=0)
        t, rate_s = interleaved(lambda: sim.forward(xn), gemm_macs_per_second, args.repeats)
        t /= args.batch
        lim = macs / rate_s
        print(f"{name:<22} {1e3 * t:9.1f} {t / lim:8.2f} {t / t_torch:8.2f} {1e3 * lim:22.1f} ({rate_s / 1e9:.1f} GMAC/s)")
    peak = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024
    print(f"peak resident memory {peak:.0f} MB (memory_budget_mb = {args.budget:g}, batch {args.batch})")


if __name__ == "__main__":
    main()
