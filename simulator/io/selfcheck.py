"""Import self-check: does the imported graph compute what the model file computes?

Right after an import, the original model is run by its own runtime
(onnxruntime for ONNX, torch for torch programs) on a few seeded random
inputs, and our graph is run on the same inputs with exact floating-point
MVMs (:meth:`simulator.Simulation.trace`). Both sides report the outputs of
named nodes; :func:`compare_traces` walks them in the reference's order and
refuses the model at the first node whose output differs by more than the
float tolerance, naming that node, so a translation bug points at the op
that caused it rather than at the logits.

The API is framework-neutral:

* ``reference``: ``{node key: array}`` from the runtime (all samples stacked
  on axis 0);
* ``ours``: ``{our key: array}`` from the executor, same stacking;
* ``order``: ``[(label, node key, our key), ...]`` in execution order, where
  ``label`` is what the error message names (e.g. ``"node 'conv1' (Conv)"``).

Tolerance: a node passes when ``max|ours - ref| <= atol + rtol * max|ref|``
(the error is measured against the tensor's scale, since the runtime computes
in float32 and we in float64). Integer and boolean outputs must be equal.
"""
from __future__ import annotations

from dataclasses import dataclass, field
from typing import Mapping, Sequence

import numpy as np

from simulator.errors import ModelError

#: default tolerance relative to the largest magnitude of a node's output
RTOL = 1e-4
#: absolute floor, for outputs that are all (near) zero
ATOL = 1e-6


@dataclass
class CheckReport:
    """What a passed self-check compared."""

    runtime: str
    n_inputs: int
    n_nodes: int
    worst: tuple[str, float] = ("", 0.0)  # (label, error relative to the output's scale)
    errors: dict[str, float] = field(default_factory=dict)

    def line(self) -> str:
        return (f"self-check against {self.runtime}: {self.n_nodes} node outputs on {self.n_inputs} random inputs, "
                f"largest relative difference {self.worst[1]:.2e} ({self.worst[0] or '-'})")


def random_inputs(shape: Sequence[int], n: int, seed: int = 0, *, dtype: str = "float32",
                  high: int | None = None) -> np.ndarray:
    """``n`` seeded random samples of ``shape`` (no batch axis), stacked: N(0, 1) floats or integers in [0, high)."""
    rng = np.random.default_rng(seed)
    full = (n,) + tuple(int(s) for s in shape)
    if np.dtype(dtype).kind in "iu":
        return rng.integers(0, max(int(high or 2), 1), size=full).astype(dtype)
    if np.dtype(dtype).kind == "b":
        return rng.integers(0, 2, size=full).astype(bool)
    return rng.standard_normal(full).astype(dtype)


def node_error(ours: np.ndarray, ref: np.ndarray) -> float:
    """max|ours - ref| relative to max|ref| (inf for a shape mismatch or non-finite values where ref is finite)."""
    ours, ref = np.asarray(ours), np.asarray(ref)
    if ours.shape != ref.shape:
        return float("inf")
    if ref.dtype.kind in "biu" and ours.dtype.kind in "biuf":
        return 0.0 if np.array_equal(ours.astype(np.float64), ref.astype(np.float64)) else float("inf")
    o, r = ours.astype(np.float64), ref.astype(np.float64)
    if not np.array_equal(np.isfinite(o), np.isfinite(r)):
        return float("inf")
    fin = np.isfinite(r)
    if not fin.any():
        return 0.0 if np.array_equal(o, r) else float("inf")
    if not np.array_equal(o[~fin], r[~fin]):
        return float("inf")
    scale = float(np.abs(r[fin]).max())
    diff = float(np.abs(o[fin] - r[fin]).max())
    return diff / max(scale, ATOL / RTOL)


def compare_traces(reference: Mapping[str, np.ndarray], ours: Mapping[str, np.ndarray],
                   order: Sequence[tuple[str, str, str]], *, source: str, runtime: str, n_inputs: int,
                   rtol: float = RTOL) -> CheckReport:
    """Compare per-node outputs in ``order``; raise ModelError at the first node out of tolerance."""
    report = CheckReport(runtime=runtime, n_inputs=n_inputs, n_nodes=0)
    for label, ref_key, our_key in order:
        if ref_key not in reference or our_key not in ours:
            continue
        ref, got = np.asarray(reference[ref_key]), np.asarray(ours[our_key])
        err = node_error(got, ref)
        report.n_nodes += 1
        report.errors[label] = err
        if err > report.worst[1]:
            report.worst = (label, err)
        if not err <= rtol:
            if got.shape != ref.shape:
                what = f"has shape {list(got.shape)}, {runtime} gives {list(ref.shape)}"
            else:
                diff = np.abs(got.astype(np.float64) - ref.astype(np.float64))
                what = (f"differs from {runtime} by up to {float(np.nanmax(diff)):.3g} "
                        f"({err:.2e} of the output's scale, tolerance {rtol:g})")
            raise ModelError(
                f"{source}: import self-check failed at {label}: our output {what} on seeded random inputs; "
                "the import is wrong for this model (set check = false or pass --no-check to load it anyway)"
            )
    if report.n_nodes == 0:
        raise ModelError(f"{source}: import self-check compared no node outputs with {runtime}")
    return report
