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

The solvers (iterative relaxation for every topology, an exact ladder sweep
for B and C) are in :mod:`simulator.circuits.parasitic_solvers`.
"""
from __future__ import annotations

import math

import numpy

from simulator.circuits.parasitic_solvers import ParasiticResult, solve_arrays
from simulator.errors import ConfigError

__all__ = ["parasitic_mvm", "solve_parasitic", "ParasiticResult", "check_topology", "resolve_method", "TOPOLOGIES", "METHODS"]

TOPOLOGIES = ("A", "B", "C")
METHODS = ("auto", "iterative", "direct")


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


def parasitic_mvm(G_pos, X, Rp, topology, *, G_neg=None, Verr_th=2e-4, max_iter=100, xp=numpy, gamma=None,
                  method="auto", Rp_row=None, Rp_col=None):
    """Column currents ``(..., M, C)`` of the array(s) ``G_pos`` (and ``G_neg``) driven by ``X``.

    See the module docstring for the circuits. ``G_pos``/``G_neg``: ``(..., R, C)``
    conductances (Gmax = 1); ``X``: ``(..., M, R)`` inputs (V_D = 1), leading
    dims broadcast against the conductances'; ``Rp``: wire segment resistance
    (units of Rmin); ``topology``: "A", "B" or "C" (C needs ``G_neg``).
    Returns ``I_pos - I_neg`` for A/B with ``G_neg``, the shared column's
    current for C. Rp == 0 returns exactly ``X @ (G_pos - G_neg)``. Raises
    ConvergenceError when ``max_iter`` iterations do not bring the node
    voltage change below ``Verr_th * max|X|``. ``method``: "iterative" (the
    relaxation of manual 8.3.3), "direct" (exact ladder solve, B and C only)
    or "auto" (direct for B and C, iterative for A); see the module docstring.
    ``Rp_row`` / ``Rp_col``: separate row and column segment resistances
    (units of Rmin; each None = ``Rp``). Rows only matter in topology A.
    """
    return solve_parasitic(
        G_pos, X, Rp, topology, G_neg=G_neg, Verr_th=Verr_th, max_iter=max_iter, xp=xp, gamma=gamma, method=method,
        Rp_row=Rp_row, Rp_col=Rp_col,
    ).I


def _ideal(G_pos, G_neg, X):
    return X @ (G_pos if G_neg is None else G_pos - G_neg)


def resolve_method(method, topology) -> str:
    """The solver ``method`` ("auto", "iterative", "direct") used for ``topology``: "iterative" or "direct"."""
    method = str(method).lower()
    topology = str(topology).upper()
    if method not in METHODS:
        raise ConfigError(f"parasitic solver method = {method!r}: expected one of {', '.join(map(repr, METHODS))}")
    if method == "auto":
        return "iterative" if topology == "A" else "direct"
    if method == "direct" and topology == "A":
        raise ConfigError("parasitic solver method = 'direct' needs a column-only ladder (topology B or C); "
                          "topology A (resistive rows and columns) is solved iteratively: use 'iterative' or 'auto'")
    return method


def solve_parasitic(G_pos, X, Rp, topology, *, G_neg=None, Verr_th=2e-4, max_iter=100, xp=numpy, gamma=None,
                    method="auto", Rp_row=None, Rp_col=None):
    """:func:`parasitic_mvm` that also reports iteration counts: returns a :class:`ParasiticResult`."""
    topology = str(topology).upper()
    if topology not in TOPOLOGIES:
        raise ConfigError(f"parasitic topology = {topology!r}: expected one of 'A', 'B', 'C'")
    if topology == "C" and G_neg is None:
        raise ConfigError("parasitic topology 'C' (interleaved_posneg) needs differential cells: G_neg is missing")
    method = resolve_method(method, topology)
    Rp = float(Rp)
    if not (Rp >= 0.0 and math.isfinite(Rp)):
        raise ConfigError(f"Rp = {Rp}: the parasitic resistance must be a finite number >= 0")
    r_row = Rp if Rp_row is None else float(Rp_row)
    r_col = Rp if Rp_col is None else float(Rp_col)
    for name, v in (("Rp_row", r_row), ("Rp_col", r_col)):
        if not (v >= 0.0 and math.isfinite(v)):
            raise ConfigError(f"{name} = {v}: the parasitic resistance must be a finite number >= 0")
    if topology != "A":
        r_row = 0.0  # rows carry no current in B and C
    # the solver works with one scale Rp and the two wires' fractions of it
    Rp = max(r_row, r_col)
    fracs = (r_row / Rp, r_col / Rp) if Rp > 0 else (1.0, 1.0)
    if G_pos.ndim < 2 or X.ndim < 2:
        raise ValueError(f"parasitic_mvm: G must be (..., R, C) and X (..., M, R); got {G_pos.shape} and {X.shape}")
    if G_neg is not None and G_neg.shape != G_pos.shape:
        raise ValueError(f"parasitic_mvm: G_neg shape {G_neg.shape} differs from G_pos shape {G_pos.shape}")
    R, C = G_pos.shape[-2:]
    if X.shape[-1] != R:
        raise ValueError(f"parasitic_mvm: X has {X.shape[-1]} inputs per MVM but the array has {R} rows")

    if Rp == 0.0:
        return ParasiticResult(_ideal(G_pos, G_neg, X), 0, 0.0, 0.0, 0, method)

    dtype = xp.result_type(G_pos.dtype, X.dtype, *(() if G_neg is None else (G_neg.dtype,)))
    if numpy.dtype(dtype).kind != "f":
        dtype = numpy.dtype(numpy.float64)
    G_pos = xp.asarray(G_pos, dtype=dtype)
    X = xp.asarray(X, dtype=dtype)
    if G_neg is not None:
        G_neg = xp.asarray(G_neg, dtype=dtype)

    V_D = float(xp.max(xp.abs(X))) if X.size else 0.0
    if V_D == 0.0 or G_pos.size == 0:
        return ParasiticResult(_ideal(G_pos, G_neg, X), 0, 0.0, 0.0, 0, method)

    # Arrays to solve: a stack axis in front when pos/neg are separate arrays.
    split = G_neg is not None and topology != "C"
    if split:
        G = xp.stack([G_pos, G_neg])  # (2, ..., R, C)
        X = X[None]
    else:
        G = G_pos
    if topology == "C":
        Gd, Gs = G_pos - G_neg, G_pos + G_neg  # net driven / total loading conductance
    else:
        Gd = Gs = G
    bshape = tuple(numpy.broadcast_shapes(G.shape[:-2], X.shape[:-2]))
    res = solve_arrays(Gd, Gs, X, bshape, Rp, topology, method, xp, Verr_th * V_D, V_D, max_iter, gamma, fracs)
    if split:
        res.I = res.I[0] - res.I[1]
    return res
