"""Parasitic (interconnect) resistance in an analog MVM array: a fast circuit solver.

The wires of a crossbar have resistance. The cell currents flowing through them
cause IR drops, so each memory cell sees a voltage smaller than the one the
driver applies and the column currents differ from the ideal ``x @ G``
(CrossSim Inference manual, section 8.3). This module computes the column
currents of the linear resistor networks below for many MVMs at once.

Units
-----
Everything is normalized: conductances to ``Gmax = 1`` (so ``Rmin = 1``),
voltages to the read voltage ``V_D = 1`` and currents to ``Gmax * V_D``, so a
cell current is ``G * V``. ``Rp`` is the resistance of one wire segment
between adjacent cells, in units of ``Rmin`` (e.g. ``Rmin = 100 kOhm`` and
``Rp = 1e-5`` means 1 Ohm per segment).

Array layout
------------
A conductance array ``G`` of shape ``(R, C)`` has ``R`` rows (inputs, index
``i``) and ``C`` columns (outputs, index ``j``); cell ``(i, j)`` sits where row
``i`` crosses column ``j``. Input ``x_i`` drives row ``i``. Rows run from their
driver at the left (``j = 0``) to an open end at the right (``j = C - 1``).
Columns run from an open end at the top (``i = 0``) to a sense amplifier at
the bottom (below ``i = R - 1``) whose input is a virtual ground (0 V); the
output of column ``j`` is the current flowing into that sense node.

Topology A (manual Fig. 8.3(a)/(d); rows and columns both resistive)
    Every cell has a row node ``r[i, j]`` and a column node ``c[i, j]``.

    * row ``i``: driver (ideal source at ``x_i``) --Rp-- ``r[i,0]`` --Rp--
      ``r[i,1]`` --Rp-- ... --Rp-- ``r[i,C-1]`` (open end): ``C`` segments;
    * column ``j``: (open end) ``c[0,j]`` --Rp-- ``c[1,j]`` --Rp-- ... --Rp--
      ``c[R-1,j]`` --Rp-- sense node (0 V): ``R`` segments;
    * cell ``(i, j)``: conductance ``G[i, j]`` between ``r[i,j]`` and
      ``c[i,j]`` (the select transistor is an ideal short).

    Any input values (DAC-driven rows or input bits). A cell with ``x_i = 0``
    is still connected and can carry current.

Topology B (Fig. 8.3(b)/(e); only the columns are resistive)
    The input bit drives the gate of the select transistor, so the rows carry
    no current and have no IR drop; the supply network is ideal.

    * column ``j``: exactly as in topology A (``R`` segments, sense node at the
      bottom);
    * cell ``(i, j)``: if ``x_i != 0``, conductance ``G[i, j]`` between an
      ideal supply at voltage ``x_i`` (``+V_D`` for a 1 bit, ``-V_D`` for a -1
      bit of a signed slice) and ``c[i,j]``; if ``x_i == 0`` the cell is
      disconnected and draws no current. (Values other than -1, 0, 1 are
      accepted and used as the supply voltage; they are not checked.)

Topology C (Fig. 8.3(c)/(f); differential cells interleaved on one column)
    Like B, but each position ``(i, j)`` holds a positive cell ``G_pos[i, j]``
    tied to a supply at ``+x_i`` and a negative cell ``G_neg[i, j]`` tied to a
    supply at ``-x_i``; both connect (when ``x_i != 0``) to the same column
    node ``c[i,j]``, so their currents share the column wire and partly
    cancel. The output is the net current of that single column.

Differential cells without interleaving (A or B with ``G_neg``) are two
separate arrays, ``G_pos`` and ``G_neg``, each with its own rows and columns
and the same inputs; the result is ``I_pos - I_neg`` (the subtraction happens
after the sense amplifiers), as CrossSim does.

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
operations and two (B, C) or four (A) cumulative sums over ``(..., M, R, C)``
arrays, O(M R C) work with no Python loop over MVMs, rows or columns. The
working arrays are stored column-major (``[..., m, j, i]``) because NumPy's
cumulative sum is about three times faster along the contiguous axis.
"""
from __future__ import annotations

import math
from dataclasses import dataclass
from typing import Any

import numpy

from simulator.errors import ConfigError, ConvergenceError

__all__ = ["parasitic_mvm", "solve_parasitic", "ParasiticResult", "check_topology", "TOPOLOGIES"]

TOPOLOGIES = ("A", "B", "C")

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


def check_topology(Rp, noRowParasitics, style, interleaved_posneg, input_bitslicing) -> str:
    """Electrical topology "A", "B" or "C" for these settings (manual Table 8.1).

    ``style`` is "BALANCED" or "OFFSET" (case-insensitive). Raises ConfigError
    naming the parameters when the combination is not a row of Table 8.1.
    ``Rp`` is only reported in the message; the table applies for any Rp > 0.
    """
    style_name = str(getattr(style, "name", style)).strip().upper()
    if style_name not in ("BALANCED", "OFFSET"):
        raise ConfigError(f"style = {style!r} is not valid for the parasitic-resistance model: expected 'BALANCED' or 'OFFSET'")
    settings = (
        f"Rp = {Rp}, noRowParasitics = {bool(noRowParasitics)}, style = {style_name}, "
        f"interleaved_posneg = {bool(interleaved_posneg)}, input_bitslicing = {bool(input_bitslicing)}"
    )
    if not noRowParasitics:
        # Row A: interleaved_posneg ignored, input_bitslicing either way.
        return "A"
    if not input_bitslicing:
        raise ConfigError(
            f"{settings}: noRowParasitics = True (topologies B and C, inputs switch the select transistors) "
            "requires input_bitslicing = True (manual Table 8.1)"
        )
    if not interleaved_posneg:
        return "B"
    if style_name != "BALANCED":
        raise ConfigError(
            f"{settings}: interleaved_posneg = True (topology C) requires style = BALANCED; "
            "OFFSET has no negative cells to interleave (manual Table 8.1)"
        )
    return "C"


def parasitic_mvm(G_pos, X, Rp, topology, *, G_neg=None, Verr_th=2e-4, max_iter=100, xp=numpy, gamma=None):
    """Column currents ``(..., M, C)`` of the array(s) ``G_pos`` (and ``G_neg``) driven by ``X``.

    See the module docstring for the circuits. ``G_pos``/``G_neg``: ``(..., R, C)``
    conductances (Gmax = 1); ``X``: ``(..., M, R)`` inputs (V_D = 1), leading
    dims broadcast against the conductances'; ``Rp``: wire segment resistance
    (units of Rmin); ``topology``: "A", "B" or "C" (C needs ``G_neg``).
    Returns ``I_pos - I_neg`` for A/B with ``G_neg``, the shared column's
    current for C. Rp == 0 returns exactly ``X @ (G_pos - G_neg)``. Raises
    ConvergenceError when ``max_iter`` iterations do not bring the node
    voltage change below ``Verr_th * max|X|``.
    """
    return solve_parasitic(
        G_pos, X, Rp, topology, G_neg=G_neg, Verr_th=Verr_th, max_iter=max_iter, xp=xp, gamma=gamma
    ).I


def _ideal(G_pos, G_neg, X):
    return X @ (G_pos if G_neg is None else G_pos - G_neg)


def solve_parasitic(G_pos, X, Rp, topology, *, G_neg=None, Verr_th=2e-4, max_iter=100, xp=numpy, gamma=None):
    """:func:`parasitic_mvm` that also reports iteration counts: returns a :class:`ParasiticResult`."""
    topology = str(topology).upper()
    if topology not in TOPOLOGIES:
        raise ConfigError(f"parasitic topology = {topology!r}: expected one of 'A', 'B', 'C'")
    if topology == "C" and G_neg is None:
        raise ConfigError("parasitic topology 'C' (interleaved_posneg) needs differential cells: G_neg is missing")
    Rp = float(Rp)
    if not (Rp >= 0.0 and math.isfinite(Rp)):
        raise ConfigError(f"Rp = {Rp}: the parasitic resistance must be a finite number >= 0")
    if G_pos.ndim < 2 or X.ndim < 2:
        raise ValueError(f"parasitic_mvm: G must be (..., R, C) and X (..., M, R); got {G_pos.shape} and {X.shape}")
    if G_neg is not None and G_neg.shape != G_pos.shape:
        raise ValueError(f"parasitic_mvm: G_neg shape {G_neg.shape} differs from G_pos shape {G_pos.shape}")
    R, C = G_pos.shape[-2:]
    if X.shape[-1] != R:
        raise ValueError(f"parasitic_mvm: X has {X.shape[-1]} inputs per MVM but the array has {R} rows")

    if Rp == 0.0:
        return ParasiticResult(_ideal(G_pos, G_neg, X), 0, 0.0, 0.0, 0)

    dtype = xp.result_type(G_pos.dtype, X.dtype, *(() if G_neg is None else (G_neg.dtype,)))
    if numpy.dtype(dtype).kind != "f":
        dtype = numpy.dtype(numpy.float64)
    G_pos = xp.asarray(G_pos, dtype=dtype)
    X = xp.asarray(X, dtype=dtype)
    if G_neg is not None:
        G_neg = xp.asarray(G_neg, dtype=dtype)

    V_D = float(xp.max(xp.abs(X))) if X.size else 0.0
    if V_D == 0.0 or G_pos.size == 0:
        return ParasiticResult(_ideal(G_pos, G_neg, X), 0, 0.0, 0.0, 0)

    # Arrays to solve: a stack axis in front when pos/neg are separate arrays.
    split = G_neg is not None and topology != "C"
    if split:
        G = xp.stack([G_pos, G_neg])  # (2, ..., R, C)
        Xs = X[None]
    else:
        G = G_pos
        Xs = X

    solver = _Solver(G, G_neg if topology == "C" else None, Xs, Rp, topology, xp)
    tol = Verr_th * V_D
    g = None if gamma is None else float(gamma)
    iterations = 0
    restarts = 0
    while True:
        gam = solver.auto_gamma() if g is None else xp.asarray(g, dtype=dtype)
        status, n, err, I = solver.run(gam, tol, max_iter - iterations)
        iterations += n
        if status == "converged":
            break
        gmax = float(xp.max(gam))
        if status == "diverged" and gmax * 0.5 >= _GAMMA_MIN and iterations < max_iter:
            g = gmax * 0.5 if g is None else g * 0.5
            restarts += 1
            continue
        arrays = f"{R}x{C}" + (f" (batch {tuple(solver.batch_shape)})" if solver.batch_shape else "")
        raise ConvergenceError(
            f"parasitic circuit solver (topology {topology}) did not converge for Rp = {Rp:g} on a {arrays} array: "
            f"{iterations} iterations, last residual {err / V_D:.3g} V_D > Verr_th = {Verr_th:g} "
            f"(gamma = {gmax:.3g}, {restarts} restarts); lower Rp or raise max_iter/Verr_th"
        )
    if split:
        I = I[0] - I[1]
    return ParasiticResult(I, iterations, err / V_D, float(xp.max(gam)), restarts)


class _Solver:
    """One relaxation solve of the stacked arrays ``G`` (..., R, C) with inputs ``X`` (..., M, R)."""

    def __init__(self, G, G_neg, X, Rp, topology, xp):
        self.xp = xp
        self.topology = topology
        self.Rp = Rp
        R, C = G.shape[-2:]
        self.batch_shape = tuple(numpy.broadcast_shapes(G.shape[:-2], X.shape[:-2]))
        # Working arrays are (..., M, C, R): cell (i, j) of MVM m at [..., m, j, i].
        self.work_shape = self.batch_shape + (X.shape[-2], C, R)
        self.Xc = X[..., :, None, :]  # (..., M, 1, R)

        def cells(a):  # (..., R, C) -> (..., 1, C, R)
            return xp.ascontiguousarray(xp.swapaxes(a, -1, -2))[..., None, :, :]

        if topology == "C":
            # Net driven conductance and total conductance loading the column node.
            self.Gd = cells(G - G_neg)
            self.Gs = cells(G + G_neg)
        else:
            self.Gd = self.Gs = cells(G)
        # Rows gated off (input bit 0) in B and C: the cells draw no current.
        self.active = None if topology == "A" else (self.Xc != 0).astype(G.dtype)
        # C: the current driven into the column with P = 0, (Gp - Gn) x.
        self.Q = self.Gd * self.Xc if topology == "C" else None

    # -- the wire operator A (without the factor Rp) ----------------------------
    # Column j: the segment below cell i carries S_i = sum_{l<=i} I_l and the
    # column node of cell i sits at sum_{k>=i} S_k = sum_l (R - max(i, l)) I_l.
    # Row i: the segment left of cell j carries T_j = sum_{l>=j} I_l and the
    # drop from the driver to cell j is sum_{k<=j} T_k = sum_l (min(l, j) + 1) I_l.
    def _rev_cumsum(self, a, axis, out):
        """sum_{k>=i} a_k along ``axis`` into ``out`` (contiguous buffers only, no flips)."""
        xp = self.xp
        xp.cumsum(a, axis=axis, out=out)
        total = xp.sum(a, axis=axis, keepdims=True)
        xp.subtract(total, out, out=out)
        out += a
        return out

    def _wires(self, I, out, tmp, tmp2):
        """Parasitic voltage lost by every cell, divided by Rp, for cell currents ``I``.

        Arrays are stored column-major, ``[..., m, j, i]``: the column wires run
        along the last (contiguous) axis, where cumulative sums are fastest.
        """
        xp = self.xp
        xp.cumsum(I, axis=-1, out=tmp)  # column segment currents S
        self._rev_cumsum(tmp, -1, out)  # column node voltages
        if self.topology == "A":
            self._rev_cumsum(I, -2, tmp)  # row segment currents T
            xp.cumsum(tmp, axis=-2, out=tmp2)  # row drops
            out += tmp2
        return out

    # -- relaxation factor ----------------------------------------------------
    def auto_gamma(self):
        """Per-array optimal gamma ``2 / (2 + lam)`` from an upper bound on lam = rho(Rp A D)."""
        xp = self.xp
        D = self.Gs[..., 0, :, :]  # (..., C, R); inputs gated off only shrink rho
        v = xp.ones(D.shape, dtype=D.dtype)
        out, tmp, tmp2 = (xp.empty_like(v) for _ in range(3))
        axes = (-2, -1)
        for _ in range(_POWER_STEPS):
            w = self._wires(D * v, out, tmp, tmp2)
            wmax = xp.max(w, axis=axes, keepdims=True)
            wmax = xp.where(wmax > 0, wmax, 1)
            # Keep v strictly positive so the Collatz-Wielandt bound below holds.
            v = w / wmax + 1e-3
        w = self._wires(D * v, out, tmp, tmp2)
        lam = self.Rp * xp.max(w / v, axis=axes)  # >= spectral radius of Rp A D
        gam = 2.0 / (2.0 + lam)
        return gam[..., None, None, None].astype(D.dtype)  # broadcast over (M, R, C)

    # -- the iteration ----------------------------------------------------------
    def _cell_currents(self, P, out):
        """Net current each cell position injects into its column node (times 1)."""
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

        Returns (status, iterations, last residual, column currents or None)
        with status "converged", "diverged" or "max_iter".
        """
        xp = self.xp
        dtype = self.Gd.dtype
        P = xp.zeros(self.work_shape, dtype=dtype)
        I = xp.empty(self.work_shape, dtype=dtype)
        F = xp.empty(self.work_shape, dtype=dtype)
        tmp = xp.empty(self.work_shape, dtype=dtype)
        tmp2 = xp.empty(self.work_shape, dtype=dtype) if self.topology == "A" else None
        rp = xp.asarray(self.Rp, dtype=dtype)
        best = math.inf
        err = math.inf
        n = 0
        while True:
            self._cell_currents(P, I)
            self._wires(I, F, tmp, tmp2)
            F *= rp
            F -= P  # residual F(P) - P
            err = max(float(xp.max(F)), -float(xp.min(F)))  # max |F|, no temporary
            if err < tol:
                return "converged", n, err, xp.sum(I, axis=-1)
            if not math.isfinite(err) or err > _DIVERGENCE_FACTOR * best:
                return "diverged", n, err, None
            if n >= budget:
                return "max_iter", n, err, None
            best = min(best, err)
            F *= gam
            P += F
            n += 1
