"""Solvers of the parasitic-resistance circuits of :mod:`simulator.circuits.parasitics`.

Units and the circuits (topologies A, B, C) are described there; this module
computes their column currents.

Method (manual 8.3.3)
---------------------
Let ``P`` be the parasitic voltage lost by each cell: ``P = (drop along the
row up to the cell) + (voltage of the column node)``, so the cell voltage is
``x_i - P[i, j]`` (``-x_i - P`` for the negative cell of topology C). Given
cell currents ``I``, the current in column segment below cell ``i`` is
``cumsum_i I`` and the column node voltage is ``Rp`` times the reverse
cumulative sum of those segment currents; the current in the row segment left
of cell ``j`` is the reverse cumulative sum of ``I`` along the row and the row
drop is ``Rp`` times its cumulative sum. Starting from ``P = 0`` (the currents
without wire resistance) each iteration computes the cell currents from ``P``,
the new drops ``F(P)`` from those currents, and relaxes
``P <- P + gamma * (F(P) - P)``. It stops when the worst-case change of a
node voltage ``max |F(P) - P|`` is below ``Verr_th * V_D`` with ``V_D =
max |x|``; the returned currents are the ones consistent with that ``P``.

``F`` is linear, ``F(P) = F(0) - K P`` with ``K = A D`` (``A`` the symmetric
positive definite resistance matrix of the wires, ``D >= 0`` the diagonal of
cell conductances), so ``K`` has real eigenvalues in ``[0, lam]`` and the
relaxation converges for ``0 < gamma < 2 / (1 + lam)``; the best choice is
``gamma = 2 / (2 + lam)``, which gives the error reduction ``lam / (2 + lam)``
per iteration. With ``gamma=None`` the solver bounds ``lam`` from above for
every array in the batch (Collatz-Wielandt bound after a few power steps on
the ``(R, C)`` arrays, no ``M`` dimension) and uses that optimum. Should the
residual nevertheless grow (or a user-given ``gamma`` be too large) the solve
restarts with ``gamma`` halved. Each iteration is a handful of elementwise
operations and two (B, C) or four (A) cumulative sums over the cells, O(M R C)
work. The cumulative sums are loops of vectorized adds over slabs of a
``(R, C, ..., M)`` layout (MVMs contiguous): NumPy's own cumsum is some 30
times slower than an add. MVMs are solved in cache-sized blocks, and each
block stops when its own worst node change is below the threshold (every MVM
is a separate circuit; the criterion is the manual's, per block).

Direct solve (B and C)
----------------------
Without row wires the columns are independent ladders whose nodal equations
are tridiagonal, so the fixed point of the relaxation can be computed exactly
in one sweep down each column (the forward elimination of the Thomas
algorithm, written as Norton equivalents; see ``_ladder``): O(M R C) work with
no iterations. ``method="auto"`` (the default) uses it for B and C and the
relaxation for A; ``method="iterative"`` runs the relaxation for any
topology. Both solve the same circuit: the relaxation stops within
``Verr_th * V_D`` of the direct answer (tests/test_parasitics.py checks both
against nodal analysis and against each other). The direct solve reports 0
iterations and never raises ConvergenceError.
"""
from __future__ import annotations

import math
from dataclasses import dataclass
from typing import Any

import numpy

from simulator.errors import ConvergenceError

__all__ = ["ParasiticResult", "solve_arrays"]

# Power steps used to bound the largest eigenvalue of K for the automatic gamma.
_POWER_STEPS = 8
# The residual may exceed its best value so far by this factor before the
# iteration counts as diverging (max-norm residuals need not fall monotonically).
_DIVERGENCE_FACTOR = 4.0
_GAMMA_MIN = 1e-3


@dataclass
class ParasiticResult:
    """Outcome of :func:`solve_parasitic`."""

    I: Any  # column currents (..., M, C)
    iterations: int  # relaxation iterations, all restarts included (0 when Rp == 0)
    residual: float  # final max |F(P) - P| in units of V_D (0.0 when Rp == 0)
    gamma: float  # largest relaxation factor used in the final (successful) pass
    restarts: int  # times gamma was halved after divergence
    method: str = "iterative"  # "iterative" or "direct" (the solver that ran)


def solve_arrays(Gd, Gs, X, bshape, Rp, topology, method, xp, tol, V_D, max_iter, gamma, fracs=(1.0, 1.0)):
    """Column currents ``(*bshape, M, C)`` of the arrays: driven conductances ``Gd``, loading ``Gs``.

    ``Gd``/``Gs``: ``(..., R, C)`` (the same array except for topology C: ``G_pos -
    G_neg`` and ``G_pos + G_neg``), ``X``: ``(..., M, R)`` inputs broadcast to
    ``bshape``; ``Rp``: the larger wire resistance (units of Rmin) and ``fracs``
    the (row, column) wires' fractions of it; ``tol``: node-voltage tolerance
    (``Verr_th * V_D``). ``method``: "direct" (B and C) or "iterative".
    """
    Xl = _input_layout(X, bshape, xp)  # (R, 1, *b, M)
    if method == "direct":  # B, C: only the column wires (fracs[1] == 1)
        I = _ladder(_cell_layout(Gd, bshape, xp), None if Gs is Gd else _cell_layout(Gs, bshape, xp), Xl, Rp, xp)
        return ParasiticResult(_output_layout(I, xp), 0, 0.0, 0.0, 0, "direct")
    return _iterate(Gd, Gs, Xl, bshape, Rp, topology, xp, tol, V_D, max_iter, gamma, fracs)


# -- layouts ---------------------------------------------------------------------
# Both solvers work on arrays laid out as (R, C, *batch, M): cell (i, j) of MVM m
# of batch entry b at [i, j, *b, m]. The MVMs are the contiguous axis, so that
# a cumulative sum along a wire (rows i or columns j) is a Python loop of
# vectorized adds over (C, *b, M) or (R, *b, M) slabs -- NumPy's own cumsum
# (add.accumulate) runs at about 2.5 ns per element, some 30 times slower than
# an add, and dominated the cost of the solver.
def _cell_layout(G, bshape, xp):
    """(..., R, C) conductances -> (R, C, *bshape, 1)."""
    G = xp.broadcast_to(G, bshape + G.shape[-2:])
    nb = len(bshape)
    G = xp.transpose(G, (nb, nb + 1) + tuple(range(nb)))
    return xp.ascontiguousarray(G)[..., None]


def _input_layout(X, bshape, xp):
    """(..., M, R) inputs -> (R, 1, *bshape, M)."""
    X = xp.broadcast_to(X, bshape + X.shape[-2:])
    nb = len(bshape)
    X = xp.transpose(X, (nb + 1,) + tuple(range(nb)) + (nb,))
    return xp.ascontiguousarray(X)[:, None]


def _output_layout(I, xp):
    """(C, *b, M) column currents -> (*b, M, C)."""
    return xp.moveaxis(I, 0, -1)


def _m_blocks(M, per_m, target):
    """Slices of the M axis whose working arrays hold about ``target`` elements (``per_m`` per MVM)."""
    mb = max(1, min(M, int(target // max(per_m, 1))))
    n = -(-M // mb)
    mb = -(-M // n)  # even blocks
    return [slice(s, min(M, s + mb)) for s in range(0, M, mb)]


# Elements of one (C, *b, M) ladder state array per block: small enough for the
# L2 cache, large enough that the per-row Python overhead does not dominate.
_LADDER_BLOCK = 1 << 16
# Elements of one (R, C, *b, M) working array per block of the iterative solver
# (its four working arrays then stay mostly in the last-level cache), and the
# least number of elements of one slab added per step of the wire sums.
_ITER_BLOCK = 1 << 20
_MIN_SLAB = 8192


# -- direct solve of the column ladders (B, C) --------------------------------------
def _ladder(Gd, Gs, X, Rp, xp):
    """Exact column currents of topologies B and C, one sweep down each column.

    ``Gd`` (R, C, *b, 1): conductance driven by the input (G for B, Gp - Gn for C);
    ``Gs``: conductance loading the column node (G + Gn for C; None: same as Gd);
    ``X`` (R, 1, *b, M). Returns (C, *b, M).

    Each column is a ladder: node c[i] connects through the active cells to
    ideal sources and through Rp to c[i+1]; nothing else couples the nodes. The
    part of the column above and including node i, seen from that node, is a
    Norton source: current J_i (into the node at 0 V) in parallel with
    conductance Y_i. Adding the wire segment below it gives J / (1 + Rp Y) and
    Y / (1 + Rp Y) (Thevenin source J/Y behind 1/Y + Rp); adding the cells of
    row i adds ``a_i Gs`` to Y and ``x_i Gd`` to J (a_i = 1 where x_i != 0). The
    last segment ends on the virtual ground, so the column current is
    J_{R-1} / (1 + Rp Y_{R-1}). This is Gaussian elimination of the tridiagonal
    nodal equations from the top (the forward sweep of the Thomas algorithm);
    only the currents are needed, so there is no back substitution. All terms
    are positive (Y) or positive combinations of the sources (J): no
    cancellation. Scaled by Rp (Z = Rp Y, W = Rp J) to save a multiply; k
    segments in a row without active cells in between act as one of k Rp.
    """
    R = X.shape[0]
    C = Gd.shape[1]
    dtype = Gd.dtype
    bshape = X.shape[2:-1]
    M = X.shape[-1]
    binary = Gs is None and bool(xp.all((X == 0) | (X == 1)))  # B with 0/1 bits: J == Y throughout
    Gd = Gd * dtype.type(Rp)
    Gs = Gd if Gs is None else Gs * dtype.type(Rp)
    out = xp.empty((C,) + bshape + (M,), dtype=dtype)
    nb = int(numpy.prod(bshape, dtype=numpy.int64))
    for blk in _m_blocks(M, C * nb, _LADDER_BLOCK):
        Xb = X[..., blk]
        A = None if binary else (Xb != 0).astype(dtype)
        rows = xp.any(Xb != 0, axis=tuple(range(1, Xb.ndim)))
        rows = rows.get() if hasattr(rows, "get") else rows  # one transfer per block on a GPU
        shape = (C,) + Xb.shape[2:]
        Z = xp.zeros(shape, dtype=dtype)
        W = Z if binary else xp.zeros(shape, dtype=dtype)
        den = xp.empty(shape, dtype=dtype)
        tmp = xp.empty(shape, dtype=dtype)
        k = 0  # wire segments crossed since the last active row
        started = False
        for i in range(R):
            if i:
                k += 1
            if not rows[i]:
                continue
            if started:
                _series(Z, W, k, den, xp)
            started, k = True, 0
            if binary:
                xp.multiply(Xb[i], Gd[i], out=tmp)
                Z += tmp
            else:
                xp.multiply(A[i], Gs[i], out=tmp)
                Z += tmp
                xp.multiply(Xb[i], Gd[i], out=tmp)
                W += tmp
        if not started:
            out[..., blk] = 0
            continue
        _series(Z, W, k + 1, den, xp)  # down to the sense node
        xp.multiply(W, dtype.type(1.0 / Rp), out=out[..., blk])
    return out


def _series(Z, W, k, den, xp):
    """Norton source (W, Z) behind k wire segments: divide both by 1 + k Z, in place."""
    if k == 1:
        xp.add(Z, 1, out=den)
    else:
        xp.multiply(Z, k, out=den)
        den += 1
    if W is not Z:
        xp.divide(W, den, out=W)
    xp.divide(Z, den, out=Z)


# -- the iterative relaxation (manual 8.3.3) ----------------------------------------
def _iterate(Gd, Gs, Xl, bshape, Rp, topology, xp, tol, V_D, max_iter, gamma, fracs=(1.0, 1.0)):
    """Relaxation solve in blocks of MVMs; each block stops when its own worst node change is below tol."""
    R, C = Gd.shape[-2:]
    dtype = Gd.dtype
    M = Xl.shape[-1]
    nb = int(numpy.prod(bshape, dtype=numpy.int64))
    lay_d = _cell_layout(Gd, bshape, xp)
    lay_s = lay_d if Gs is Gd else _cell_layout(Gs, bshape, xp)
    gam_auto = None
    iterations = residual = gam_used = restarts = 0
    out = xp.empty((C,) + bshape + (M,), dtype=dtype)
    # Blocks of about _ITER_BLOCK elements, but slabs of at least _MIN_SLAB for the wire loops.
    per_m = R * C * nb
    target = max(_ITER_BLOCK, per_m * -(-_MIN_SLAB // (min(R, C) * nb)))
    for blk in _m_blocks(M, per_m, target):
        solver = _Solver(lay_d, lay_s, Xl[..., blk], Rp, topology, xp, fracs)
        g = None if gamma is None else float(gamma)
        its = n_restarts = 0
        while True:
            if g is None:
                if gam_auto is None:
                    gam_auto = _auto_gamma(Gs, bshape, Rp, topology, xp, fracs)
                gam = gam_auto
            else:
                gam = xp.asarray(g, dtype=dtype)
            status, n, err, I = solver.run(gam, tol, max_iter - its)
            its += n
            if status == "converged":
                break
            gmax = float(xp.max(gam))
            if status == "diverged" and gmax * 0.5 >= _GAMMA_MIN and its < max_iter:
                g = gmax * 0.5 if g is None else g * 0.5
                n_restarts += 1
                continue
            arrays = f"{R}x{C}" + (f" (batch {bshape})" if bshape else "")
            raise ConvergenceError(
                f"parasitic circuit solver (topology {topology}) did not converge for Rp = {Rp:g} on a {arrays} "
                f"array: {its} iterations, last residual {err / V_D:.3g} V_D > Verr_th = {tol / V_D:g} "
                f"(gamma = {gmax:.3g}, {n_restarts} restarts); lower Rp or raise max_iter/Verr_th"
            )
        out[..., blk] = I
        iterations = max(iterations, its)
        residual = max(residual, err / V_D)
        gam_used = max(gam_used, float(xp.max(gam)))
        restarts = max(restarts, n_restarts)
    return ParasiticResult(_output_layout(out, xp), iterations, residual, gam_used, restarts, "iterative")


def _auto_gamma(Gs, bshape, Rp, topology, xp, fracs=(1.0, 1.0)):
    """Per-array optimal gamma ``2 / (2 + lam)`` from an upper bound on lam = rho(Rp A D), in the (R, C, *b, 1) layout.

    Power steps on the (..., R, C) arrays themselves (no M dimension; inputs
    gated off only shrink rho), with NumPy/CuPy cumsums.
    """
    D = Gs
    v = xp.ones(D.shape, dtype=D.dtype)
    axes = (-2, -1)
    for _ in range(_POWER_STEPS):
        w = _wires_small(D * v, topology, xp, fracs)
        wmax = xp.max(w, axis=axes, keepdims=True)
        wmax = xp.where(wmax > 0, wmax, 1)
        # Keep v strictly positive so the Collatz-Wielandt bound below holds.
        v = w / wmax + 1e-3
    w = _wires_small(D * v, topology, xp, fracs)
    lam = Rp * xp.max(w / v, axis=axes)  # >= spectral radius of Rp A D, shape D.shape[:-2]
    gam = (2.0 / (2.0 + lam)).astype(D.dtype)
    gam = xp.broadcast_to(gam, bshape)
    return gam.reshape((1, 1) + bshape + (1,))


def _rev_cumsum(a, axis, xp):
    return xp.flip(xp.cumsum(xp.flip(a, axis), axis=axis), axis)


def _wires_small(I, topology, xp, fracs=(1.0, 1.0)):
    """The wire operator A (without Rp) on (..., R, C) cell currents, written plainly with cumsums.

    Column j: the segment below cell i carries S_i = sum_{l<=i} I_l and the
    column node of cell i sits at sum_{k>=i} S_k = sum_l (R - max(i, l)) I_l.
    Row i: the segment left of cell j carries T_j = sum_{l>=j} I_l and the
    drop from the driver to cell j is sum_{k<=j} T_k = sum_l (min(l, j) + 1) I_l.
    """
    out = _rev_cumsum(xp.cumsum(I, axis=-2), -2, xp) * fracs[1]
    if topology == "A":
        out = out + xp.cumsum(_rev_cumsum(I, -1, xp), axis=-1) * fracs[0]
    return out


class _Solver:
    """One relaxation solve of the (R, C, *b, M) layout: one block of MVMs."""

    def __init__(self, Gd, Gs, X, Rp, topology, xp, fracs=(1.0, 1.0)):
        self.xp = xp
        self.fr, self.fc = (float(f) for f in fracs)  # row / column wire resistance as fractions of Rp
        self.topology = topology
        self.Rp = Rp
        dtype = Gd.dtype
        self.work_shape = Gd.shape[:2] + X.shape[2:]
        rp = dtype.type(Rp)
        # Cell currents are computed times Rp: the wire sums then give the drops directly.
        self.Xc = X
        if topology == "C":
            self.Gs = Gs * rp
            self.Q = (Gd * rp) * X  # Rp (Gp - Gn) x: the current with P = 0
        else:
            self.Gd = Gd * rp
        # Rows gated off (input bit 0) in B and C: the cells draw no current.
        self.active = None if topology == "A" else (X != 0).astype(dtype)
        self.numpy = xp is numpy

    # -- the wire operator A, times Rp already in I -------------------------------
    def _cumsum(self, a, axis, out, reverse=False):
        """Cumulative sum along axis 0 or 1 of the layout, into ``out`` (which may be ``a``)."""
        xp = self.xp
        if not self.numpy:  # one kernel on a GPU
            if reverse:
                xp.cumsum(xp.flip(a, axis), axis=axis, out=xp.flip(out, axis))
            else:
                xp.cumsum(a, axis=axis, out=out)
            return out
        n = a.shape[axis]
        sl = (lambda k: (k,)) if axis == 0 else (lambda k: (slice(None), k))
        order = range(n - 1, -1, -1) if reverse else range(n)
        prev = None
        for k in order:
            if prev is None:
                if out is not a:
                    out[sl(k)] = a[sl(k)]
            else:
                xp.add(out[sl(prev)], a[sl(k)], out=out[sl(k)])
            prev = k
        return out

    def _wires(self, I, out, tmp):
        """Parasitic voltage lost by every cell for cell currents ``I`` (already times Rp), into ``out``."""
        self._cumsum(I, 0, tmp)  # column segment currents S
        self._cumsum(tmp, 0, out, reverse=True)  # column node voltages
        if self.fc != 1.0:
            out *= self.fc
        if self.topology == "A" and self.fr > 0:
            self._cumsum(I, 1, tmp, reverse=True)  # row segment currents T
            self._cumsum(tmp, 1, tmp)  # row drops
            if self.fr != 1.0:
                tmp *= self.fr
            out += tmp
        return out

    def _cell_currents(self, P, out):
        """Net current each cell position injects into its column node, times Rp."""
        xp = self.xp
        if self.active is None:  # A: I = G (x - P)
            xp.subtract(self.Xc, P, out=out)
            out *= self.Gd
        elif self.topology == "B":  # B: I = G (x - P) on active rows only (x = 0 elsewhere)
            xp.multiply(P, self.active, out=out)
            xp.subtract(self.Xc, out, out=out)
            out *= self.Gd
        else:  # C: I = Gp (x - P) + Gn (-x - P) = (Gp - Gn) x - (Gp + Gn) P on active rows
            xp.multiply(P, self.active, out=out)
            out *= self.Gs
            xp.subtract(self.Q, out, out=out)
        return out

    def run(self, gam, tol, budget):
        """Relax from P = 0 for at most ``budget`` iterations.

        Returns (status, iterations, last residual, column currents (C, *b, M) or None)
        with status "converged", "diverged" or "max_iter".
        """
        xp = self.xp
        dtype = self.Xc.dtype
        P = xp.zeros(self.work_shape, dtype=dtype)
        I = xp.empty(self.work_shape, dtype=dtype)
        F = xp.empty(self.work_shape, dtype=dtype)
        tmp = xp.empty(self.work_shape, dtype=dtype)
        best = math.inf
        err = math.inf
        n = 0
        while True:
            self._cell_currents(P, I)
            self._wires(I, F, tmp)
            F -= P  # residual F(P) - P
            err = max(float(xp.max(F)), -float(xp.min(F)))  # max |F|, no temporary
            if err < tol:
                return "converged", n, err, xp.sum(I, axis=0) * dtype.type(1.0 / self.Rp)
            if not math.isfinite(err) or err > _DIVERGENCE_FACTOR * best:
                return "diverged", n, err, None
            if n >= budget:
                return "max_iter", n, err, None
            best = min(best, err)
            F *= gam
            P += F
            n += 1
