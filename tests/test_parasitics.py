"""Parasitic-resistance circuit solver: against a direct nodal solve of the full network."""
from __future__ import annotations

import zlib

import numpy as np
import pytest
import scipy.sparse as sp
import scipy.sparse.linalg as spla

from simulator.circuits.parasitics import check_topology, parasitic_mvm, solve_parasitic
from simulator.errors import ConfigError, ConvergenceError


# ---------------------------------------------------------------------------
# Reference: modified nodal analysis of the circuits in the module docstring.
# ---------------------------------------------------------------------------
class _Network:
    """Resistor network with unknown node voltages and ideal sources (known nodes)."""

    def __init__(self, n):
        self.n = n
        self.rows, self.cols, self.vals = [], [], []
        self.rhs = np.zeros(n)

    def between(self, a, b, g):
        """Conductance g between unknown nodes a and b."""
        if g == 0:
            return
        self.rows += [a, b, a, b]
        self.cols += [a, b, b, a]
        self.vals += [g, g, -g, -g]

    def to_source(self, a, g, v):
        """Conductance g between unknown node a and an ideal source at voltage v (0 = ground)."""
        if g == 0:
            return
        self.rows.append(a)
        self.cols.append(a)
        self.vals.append(g)
        self.rhs[a] += g * v

    def solve(self):
        L = sp.csr_matrix((self.vals, (self.rows, self.cols)), shape=(self.n, self.n))
        return spla.spsolve(L.tocsc(), self.rhs)


def nodal_reference(G, x, Rp, topology, G_neg=None):
    """Column currents (C,) of one array for one input vector x (R,), by a sparse nodal solve."""
    R, C = G.shape
    gp = 1.0 / Rp

    def col(i, j):  # column node of cell (i, j)
        return i * C + j

    if topology == "A":

        def row(i, j):  # row node of cell (i, j)
            return R * C + i * C + j

        net = _Network(2 * R * C)
        for i in range(R):
            net.to_source(row(i, 0), gp, x[i])  # driver --Rp-- first cell
            for j in range(C - 1):
                net.between(row(i, j), row(i, j + 1), gp)
            for j in range(C):
                net.between(row(i, j), col(i, j), G[i, j])
    else:
        net = _Network(R * C)
        for i in range(R):
            if x[i] == 0:
                continue  # select transistors off: cells disconnected
            for j in range(C):
                net.to_source(col(i, j), G[i, j], x[i])
                if topology == "C":
                    net.to_source(col(i, j), G_neg[i, j], -x[i])
    for j in range(C):
        for i in range(R - 1):
            net.between(col(i, j), col(i + 1, j), gp)
        net.to_source(col(R - 1, j), gp, 0.0)  # last cell --Rp-- virtual ground
    V = net.solve()
    return gp * V[[col(R - 1, j) for j in range(C)]]  # current into the sense node


def reference(G_pos, X, Rp, topology, G_neg=None):
    """Reference for (R, C) arrays and (M, R) inputs, with the pos/neg conventions of parasitic_mvm."""
    out = []
    for x in X:
        if topology == "C":
            out.append(nodal_reference(G_pos, x, Rp, "C", G_neg))
        elif G_neg is None:
            out.append(nodal_reference(G_pos, x, Rp, topology))
        else:
            out.append(nodal_reference(G_pos, x, Rp, topology) - nodal_reference(G_neg, x, Rp, topology))
    return np.array(out)


def _seed(*key):
    return zlib.crc32(repr(key).encode())


def _rel_err(a, b):
    return np.max(np.abs(a - b)) / np.max(np.abs(b))


RPS = [1e-3, 1e-2, 5e-2]
SIZES = [(2, 2), (3, 3), (3, 4)]


def _case(shape, M, rng, inputs):
    R, C = shape
    Gp = rng.uniform(0.1, 1.0, (R, C))
    Gn = rng.uniform(0.1, 1.0, (R, C))
    if inputs == "analog":
        X = rng.uniform(-1, 1, (M, R))
    elif inputs == "bits":
        X = rng.integers(0, 2, (M, R)).astype(float)
        X[0] = 0.0
        X[1] = 1.0
        X[2, 0] = 0.0
    else:  # signed bits
        X = rng.integers(-1, 2, (M, R)).astype(float)
        X[0] = 0.0
        X[1, 0] = -1.0
        X[2, 0] = 0.0
    return Gp, Gn, X


# ---------------------------------------------------------------------------
# Accuracy against the nodal reference
# ---------------------------------------------------------------------------
@pytest.mark.parametrize("shape", SIZES)
@pytest.mark.parametrize("Rp", RPS)
@pytest.mark.parametrize("differential", [False, True])
def test_topology_A_matches_nodal(shape, Rp, differential):
    rng = np.random.default_rng(_seed(shape, Rp, differential))
    Gp, Gn, X = _case(shape, 6, rng, "analog")
    G_neg = Gn if differential else None
    I = parasitic_mvm(Gp, X, Rp, "A", G_neg=G_neg, Verr_th=1e-10)
    assert I.shape == (6, shape[1])
    assert _rel_err(I, reference(Gp, X, Rp, "A", G_neg)) < 1e-6


@pytest.mark.parametrize("shape", SIZES)
@pytest.mark.parametrize("Rp", RPS)
@pytest.mark.parametrize("inputs", ["bits", "signed"])
@pytest.mark.parametrize("differential", [False, True])
@pytest.mark.parametrize("method", ["iterative", "direct"])
def test_topology_B_matches_nodal(shape, Rp, inputs, differential, method):
    rng = np.random.default_rng(_seed(shape, Rp, inputs, differential))
    Gp, Gn, X = _case(shape, 6, rng, inputs)
    G_neg = Gn if differential else None
    I = parasitic_mvm(Gp, X, Rp, "B", G_neg=G_neg, Verr_th=1e-10, method=method)
    ref = reference(Gp, X, Rp, "B", G_neg)
    assert _rel_err(I, ref) < 1e-6
    assert np.all(I[0] == 0)  # all input bits 0: nothing flows


@pytest.mark.parametrize("shape", SIZES)
@pytest.mark.parametrize("Rp", RPS)
@pytest.mark.parametrize("inputs", ["bits", "signed"])
@pytest.mark.parametrize("method", ["iterative", "direct"])
def test_topology_C_matches_nodal(shape, Rp, inputs, method):
    rng = np.random.default_rng(_seed(shape, Rp, inputs))
    Gp, Gn, X = _case(shape, 6, rng, inputs)
    I = parasitic_mvm(Gp, X, Rp, "C", G_neg=Gn, Verr_th=1e-10, method=method)
    assert _rel_err(I, reference(Gp, X, Rp, "C", Gn)) < 1e-6


@pytest.mark.parametrize("topology", ["A", "B", "C"])
@pytest.mark.parametrize("shape, Rp", [((16, 12), 1e-2), ((40, 40), 1e-3)])
def test_larger_arrays_match_nodal(topology, shape, Rp):
    """Larger arrays, where the automatic damping (gamma < 1) is active; B and C also by the direct solve."""
    rng = np.random.default_rng(_seed(topology, shape, Rp))
    Gp, Gn, X = _case(shape, 4, rng, "analog" if topology == "A" else "signed")
    G_neg = Gn if topology == "C" else None
    ref = reference(Gp, X, Rp, topology, G_neg)
    res = solve_parasitic(Gp, X, Rp, topology, G_neg=G_neg, Verr_th=1e-10, method="iterative")
    assert res.method == "iterative" and res.gamma < 0.99 and res.iterations < 100
    assert _rel_err(res.I, ref) < 1e-6
    if topology != "A":
        direct = solve_parasitic(Gp, X, Rp, topology, G_neg=G_neg)  # "auto"
        assert direct.method == "direct" and direct.iterations == 0
        assert _rel_err(direct.I, ref) < 1e-9


@pytest.mark.parametrize("topology, method", [("A", "iterative"), ("B", "iterative"), ("C", "iterative"),
                                              ("B", "direct"), ("C", "direct")])
def test_transposed_array_is_the_mirrored_circuit(topology, method):
    """Non-square arrays: rows and columns are not interchangeable, each matches the reference."""
    rng = np.random.default_rng(_seed("rect", topology))
    Gp, Gn, X = _case((7, 3), 5, rng, "analog" if topology == "A" else "signed")
    G_neg = Gn if topology == "C" else None
    I = parasitic_mvm(Gp, X, 3e-2, topology, G_neg=G_neg, Verr_th=1e-11, method=method)
    assert _rel_err(I, reference(Gp, X, 3e-2, topology, G_neg)) < 1e-6
    Gq, Gm, Y = _case((3, 7), 5, rng, "analog" if topology == "A" else "signed")
    J = parasitic_mvm(Gq, Y, 3e-2, topology, G_neg=Gm if topology == "C" else None, Verr_th=1e-11, method=method)
    assert _rel_err(J, reference(Gq, Y, 3e-2, topology, Gm if topology == "C" else None)) < 1e-6


def test_B_differs_from_A_for_zero_bits():
    """In A a row driven at 0 V still sinks current; in B its cells are disconnected."""
    rng = np.random.default_rng(1)
    Gp, _, X = _case((3, 3), 6, rng, "bits")
    IA = parasitic_mvm(Gp, X, 5e-2, "A", Verr_th=1e-10)
    IB = parasitic_mvm(Gp, X, 5e-2, "B", Verr_th=1e-10)
    assert np.all(IA[0] == 0) and np.all(IB[0] == 0)
    mixed = (X == 0).any(axis=1) & (X != 0).any(axis=1)
    assert np.abs(IA[mixed] - IB[mixed]).max() > 1e-4


def test_C_cancellation_helps():
    """Interleaving lets pos/neg currents cancel on the wire: less error than B at equal weights."""
    rng = np.random.default_rng(2)
    R = C = 32
    Gp = rng.uniform(0.1, 1, (R, C))
    Gn = rng.uniform(0.1, 1, (R, C))
    X = rng.integers(0, 2, (20, R)).astype(float)
    ideal = X @ (Gp - Gn)
    eB = np.linalg.norm(parasitic_mvm(Gp, X, 1e-3, "B", G_neg=Gn) - ideal)
    eC = np.linalg.norm(parasitic_mvm(Gp, X, 1e-3, "C", G_neg=Gn) - ideal)
    assert eC < eB


# ---------------------------------------------------------------------------
# Limits and trends
# ---------------------------------------------------------------------------
@pytest.mark.parametrize("topology, differential", [("A", False), ("A", True), ("B", False), ("B", True), ("C", True)])
def test_rp_zero_is_exact_matmul(topology, differential):
    rng = np.random.default_rng(3)
    Gp, Gn, X = _case((5, 4), 7, rng, "signed")
    G_neg = Gn if differential else None
    I = parasitic_mvm(Gp, X, 0.0, topology, G_neg=G_neg)
    ideal = X @ (Gp - Gn) if differential else X @ Gp
    assert np.array_equal(I, ideal)


def _mvm_error(Rp, N, topology="A", seed=4):
    rng = np.random.default_rng(seed)
    G = rng.uniform(0.1, 1, (N, N))
    X = rng.uniform(0, 1, (16, N)) if topology == "A" else rng.integers(0, 2, (16, N)).astype(float)
    ideal = X @ G
    I = parasitic_mvm(G, X, Rp, topology)
    return np.linalg.norm(I - ideal) / np.linalg.norm(ideal)


@pytest.mark.parametrize("topology", ["A", "B"])
def test_error_grows_with_rp_and_size(topology):
    errs = [_mvm_error(Rp, 32, topology) for Rp in (1e-5, 1e-4, 1e-3)]
    assert 0 < errs[0] < errs[1] < errs[2]
    assert _mvm_error(1e-4, 16, topology) < _mvm_error(1e-4, 64, topology)
    # Parasitics only ever lose voltage here: all currents shrink.
    rng = np.random.default_rng(5)
    G = rng.uniform(0.1, 1, (32, 32))
    X = rng.uniform(0, 1, (8, 32))
    assert np.all(parasitic_mvm(G, X, 1e-3, "A") < X @ G)


@pytest.mark.parametrize("method", ["auto", "iterative"])
def test_batch_dims_match_separate_solves(method):
    rng = np.random.default_rng(6)
    R, C, M = 8, 5, 4
    Gp = rng.uniform(0.1, 1, (2, 3, R, C))
    Gn = rng.uniform(0.1, 1, (2, 3, R, C))
    X = rng.integers(-1, 2, (2, 3, M, R)).astype(float)
    Xshared = rng.uniform(-1, 1, (M, R))  # broadcast over the batch
    for topology, G_neg in [("A", None), ("A", Gn), ("B", Gn), ("C", Gn)]:
        I = parasitic_mvm(Gp, X, 2e-2, topology, G_neg=G_neg, Verr_th=1e-12, method=method)
        assert I.shape == (2, 3, M, C)
        for a in range(2):
            for b in range(3):
                gn = None if G_neg is None else G_neg[a, b]
                Ia = parasitic_mvm(Gp[a, b], X[a, b], 2e-2, topology, G_neg=gn, Verr_th=1e-12, method=method)
                np.testing.assert_allclose(I[a, b], Ia, rtol=1e-9, atol=1e-12)
    I = parasitic_mvm(Gp[0, 0], X, 2e-2, "B", Verr_th=1e-12, method=method)  # shared array, batched inputs
    assert I.shape == (2, 3, M, C)
    np.testing.assert_allclose(I[1, 0], parasitic_mvm(Gp[0, 0], X[1, 0], 2e-2, "B", Verr_th=1e-12, method=method),
                               rtol=1e-9)
    I = parasitic_mvm(Gp, Xshared, 2e-2, "A", Verr_th=1e-12)
    assert I.shape == (2, 3, M, C)
    np.testing.assert_allclose(I[1, 2], parasitic_mvm(Gp[1, 2], Xshared, 2e-2, "A", Verr_th=1e-12), rtol=1e-9)


def test_float32_and_default_tolerance():
    rng = np.random.default_rng(7)
    G = rng.uniform(0.1, 1, (64, 32))
    X = rng.uniform(0, 1, (10, 64))
    ref = parasitic_mvm(G, X, 1e-3, "A", Verr_th=1e-12)
    I64 = parasitic_mvm(G, X, 1e-3, "A")
    I32 = parasitic_mvm(G.astype(np.float32), X.astype(np.float32), 1e-3, "A")
    assert I64.dtype == np.float64 and I32.dtype == np.float32
    scale = np.abs(ref).max()
    # Default Verr_th = 2e-4: node voltages within ~2e-4 V_D, currents to ~1e-3 relative.
    assert np.abs(I64 - ref).max() < 1e-3 * scale
    assert np.abs(I32 - ref).max() < 1e-3 * scale


def test_large_rp_needs_damping_and_converges():
    """At Rp*N^2 >> 1 the undamped iteration diverges; the automatic gamma handles it."""
    rng = np.random.default_rng(8)
    G = rng.uniform(0.5, 1, (48, 48))
    X = rng.uniform(0, 1, (4, 48))
    res = solve_parasitic(G, X, 5e-3, "A", Verr_th=1e-8, max_iter=500)
    assert res.gamma < 0.5
    ref = parasitic_mvm(G, X, 5e-3, "A", Verr_th=1e-12, max_iter=2000)
    np.testing.assert_allclose(res.I, ref, rtol=1e-5)
    # A user-given gamma that is too large is halved until the iteration converges.
    forced = solve_parasitic(G, X, 5e-3, "A", Verr_th=1e-8, max_iter=2000, gamma=1.0)
    assert forced.restarts > 0
    np.testing.assert_allclose(forced.I, ref, rtol=1e-5)


def test_nonconvergence_raises():
    rng = np.random.default_rng(9)
    G = rng.uniform(0.1, 1, (64, 64))
    X = rng.uniform(0, 1, (3, 64))
    with pytest.raises(ConvergenceError) as info:
        parasitic_mvm(G, X, 1e-2, "A", max_iter=3)
    msg = str(info.value)
    assert "\n" not in msg
    assert "Rp = 0.01" in msg and "64x64" in msg and "3 iterations" in msg and "residual" in msg


def test_bad_arguments():
    G = np.ones((3, 3))
    X = np.ones((2, 3))
    with pytest.raises(ConfigError, match="G_neg"):
        parasitic_mvm(G, X, 1e-3, "C")
    with pytest.raises(ConfigError, match="topology"):
        parasitic_mvm(G, X, 1e-3, "D")
    with pytest.raises(ConfigError, match="Rp"):
        parasitic_mvm(G, X, -1.0, "A")
    with pytest.raises(ValueError):
        parasitic_mvm(G, np.ones((2, 4)), 1e-3, "A")
    with pytest.raises(ConfigError, match="direct"):
        parasitic_mvm(G, X, 1e-3, "A", method="direct")
    with pytest.raises(ConfigError, match="method"):
        parasitic_mvm(G, X, 1e-3, "B", method="exact")


@pytest.mark.parametrize("method", ["iterative", "direct"])
def test_zero_inputs(method):
    G = np.ones((4, 3))
    I = parasitic_mvm(G, np.zeros((2, 4)), 1e-2, "B", method=method)
    assert I.shape == (2, 3) and np.all(I == 0)


# ---------------------------------------------------------------------------
# Table 8.1
# ---------------------------------------------------------------------------
@pytest.mark.parametrize(
    "noRow, style, interleaved, bitslicing, expected",
    [
        (False, "BALANCED", False, False, "A"),
        (False, "OFFSET", True, True, "A"),
        (False, "balanced", True, False, "A"),
        (True, "BALANCED", False, True, "B"),
        (True, "OFFSET", False, True, "B"),
        (True, "BALANCED", True, True, "C"),
    ],
)
def test_check_topology_accepts_table_rows(noRow, style, interleaved, bitslicing, expected):
    assert check_topology(1e-4, noRow, style, interleaved, bitslicing) == expected


@pytest.mark.parametrize(
    "noRow, style, interleaved, bitslicing, names",
    [
        (True, "BALANCED", False, False, ["noRowParasitics = True", "input_bitslicing = False"]),
        (True, "OFFSET", False, False, ["noRowParasitics = True", "input_bitslicing = False"]),
        (True, "BALANCED", True, False, ["noRowParasitics = True", "input_bitslicing = False"]),
        (True, "OFFSET", True, True, ["interleaved_posneg = True", "style = OFFSET"]),
        (False, "DIAGONAL", False, True, ["style"]),
    ],
)
def test_check_topology_rejects_others(noRow, style, interleaved, bitslicing, names):
    with pytest.raises(ConfigError) as info:
        check_topology(1e-4, noRow, style, interleaved, bitslicing)
    for name in names:
        assert name in str(info.value)


# ---------------------------------------------------------------------------
# Fast paths: each equals the straightforward relaxation
# ---------------------------------------------------------------------------
def _realistic(R, C, M, rng, inputs, dtype=np.float64):
    """Conductances of one-sided 8-bit weights (On/Off 100) and input bit planes of 8-bit activations."""
    G = rng.uniform(0.01, 1.0, (R, C)).astype(dtype)
    Gn = rng.uniform(0.01, 1.0, (R, C)).astype(dtype)
    levels = rng.integers(0, 256, (M, R))
    X = (levels >> (np.arange(M) % 8)[:, None]) & 1
    if inputs == "signed":
        X = X * rng.choice([-1, 1], (M, R))
    X[:, ::7] = 0  # whole rows with no active cell in any MVM
    X[3] = 0
    return G, Gn, X.astype(dtype)


def _plain_relaxation(G, X, Rp, topology, G_neg=None, Verr_th=2e-4, max_iter=500):
    """The method of manual 8.3.3 written as plainly as possible, on one (R, C) array: the oracle."""
    Gd = G if topology != "C" else G - G_neg
    Gs = G if topology != "C" else G + G_neg
    active = np.ones_like(X) if topology == "A" else (X != 0).astype(X.dtype)
    out = []
    for x, a in zip(X, active):
        P = np.zeros_like(G)
        lam = Rp * np.max(np.sum(Gs, axis=0)) * G.shape[0] * (G.shape[0] + 1) / 2
        if topology == "A":
            lam += Rp * np.max(np.sum(Gs, axis=1)) * G.shape[1] * (G.shape[1] + 1) / 2
        gam = min(1.0, 2.0 / (2.0 + lam))
        for _ in range(max_iter):
            I = (Gd * x[:, None] - Gs * P) * a[:, None] if topology != "A" else G * (x[:, None] - P)
            S = np.cumsum(I, axis=0)
            V = np.cumsum(S[::-1], axis=0)[::-1]
            if topology == "A":
                T = np.cumsum(I[:, ::-1], axis=1)[:, ::-1]
                V = V + np.cumsum(T, axis=1)
            F = Rp * V - P
            if np.abs(F).max() < Verr_th * max(np.abs(X).max(), 1e-300):
                break
            P = P + gam * F
        out.append(I.sum(axis=0))
    return np.array(out)


@pytest.mark.parametrize("topology, inputs, differential", [
    ("B", "bits", False), ("B", "signed", False), ("B", "bits", True), ("C", "bits", True), ("C", "signed", True),
])
@pytest.mark.parametrize("dtype", [np.float64, np.float32])
def test_direct_equals_relaxation(topology, inputs, differential, dtype):
    """The ladder solve is the fixed point of the relaxation: equal to it within the convergence tolerance."""
    rng = np.random.default_rng(_seed(topology, inputs, differential, np.dtype(dtype).name))
    G, Gn, X = _realistic(144, 32, 24, rng, inputs, dtype)
    G_neg = Gn if differential else None
    Rp = 1e-4
    direct = solve_parasitic(G, X, Rp, topology, G_neg=G_neg)
    assert direct.method == "direct" and direct.I.dtype == dtype
    iterative = solve_parasitic(G, X, Rp, topology, G_neg=G_neg, method="iterative")
    assert iterative.method == "iterative" and iterative.iterations > 0
    plain = np.array(_plain_relaxation(G.astype(float), X.astype(float), Rp, topology,
                                       None if G_neg is None else G_neg.astype(float)))
    if differential and topology == "B":
        plain = plain - _plain_relaxation(Gn.astype(float), X.astype(float), Rp, "B")
    scale = np.abs(plain).max()
    # Verr_th = 2e-4: node voltages within ~2e-4 V_D of the fixed point, currents to well under 1e-3.
    assert np.abs(direct.I - plain).max() < 1e-3 * scale
    assert np.abs(iterative.I - plain).max() < 1e-3 * scale
    # Tightly converged, the relaxation reaches the direct answer to rounding.
    tight = parasitic_mvm(G.astype(float), X.astype(float), Rp, topology,
                          G_neg=None if G_neg is None else G_neg.astype(float), Verr_th=1e-13, method="iterative")
    tol = 1e-10 if dtype == np.float64 else 1e-5
    assert np.abs(direct.I - tight).max() < tol * scale
    assert np.all(direct.I[3] == 0)


def test_direct_general_supply_voltages_match_nodal():
    """B with inputs other than 0/1 (used as supply voltages) and rows gated off in every MVM."""
    rng = np.random.default_rng(11)
    G = rng.uniform(0.1, 1.0, (9, 4))
    X = rng.uniform(-1, 1, (5, 9)) * (rng.random((5, 9)) < 0.6)
    X[:, [0, 4, 5, 8]] = 0.0  # leading, inner (two in a row) and trailing empty rows: merged wire segments
    I = parasitic_mvm(G, X, 2e-2, "B", method="direct")
    assert _rel_err(I, reference(G, X, 2e-2, "B")) < 1e-12


def test_blocked_solvers_equal_one_block(monkeypatch):
    """Blocks of MVMs (cache-sized) give the same currents as one block; blocks converge independently."""
    import simulator.circuits.parasitic_solvers as par

    rng = np.random.default_rng(12)
    G, Gn, X = _realistic(40, 24, 37, rng, "signed")
    XA = rng.uniform(0, 1, (37, 40))
    cases = [("A", XA, None), ("A", XA, Gn), ("B", X, None), ("B", X, Gn), ("C", X, Gn)]
    whole = {}
    for topology, x, gn in cases:
        for method in ("iterative", "auto"):
            whole[topology, gn is None, method] = solve_parasitic(G, x, 1e-3, topology, G_neg=gn, method=method,
                                                                  Verr_th=1e-12)
    monkeypatch.setattr(par, "_ITER_BLOCK", 1)
    monkeypatch.setattr(par, "_MIN_SLAB", 1)
    monkeypatch.setattr(par, "_LADDER_BLOCK", 1)
    for topology, x, gn in cases:
        for method in ("iterative", "auto"):
            ref = whole[topology, gn is None, method]
            res = solve_parasitic(G, x, 1e-3, topology, G_neg=gn, method=method, Verr_th=1e-12)
            np.testing.assert_allclose(res.I, ref.I, rtol=1e-9, atol=1e-12 * np.abs(ref.I).max())
            if res.method == "iterative":
                assert res.iterations <= ref.iterations  # the worst block needs at most the global count


@pytest.mark.parametrize("topology", ["A", "B"])
def test_loop_wire_sums_equal_cumsum_operator(topology):
    """The wire operator of the iteration (loops of slab adds) equals the plain cumsum form, and A's matrix."""
    from simulator.circuits.parasitic_solvers import _Solver, _cell_layout, _input_layout, _wires_small

    rng = np.random.default_rng(13)
    R, C, M = 6, 5, 3
    I = rng.normal(size=(M, R, C))
    plain = _wires_small(I, topology, np)
    i, l = np.meshgrid(np.arange(R), np.arange(R), indexing="ij")
    A_col = R - np.maximum(i, l)
    j, k = np.meshgrid(np.arange(C), np.arange(C), indexing="ij")
    A_row = np.minimum(j, k) + 1
    expect = np.einsum("il,mlc->mic", A_col, I)
    if topology == "A":
        expect = expect + np.einsum("jk,mrk->mrj", A_row, I)
    np.testing.assert_allclose(plain, expect, rtol=1e-12)
    G = np.ones((R, C))
    solver = _Solver(_cell_layout(G, (), np), _cell_layout(G, (), np), _input_layout(np.ones((M, R)), (), np),
                     1.0, topology, np)
    lay = np.ascontiguousarray(np.transpose(I, (1, 2, 0)))  # (R, C, M)
    out, tmp = np.empty_like(lay), np.empty_like(lay)
    solver._wires(lay, out, tmp)
    np.testing.assert_allclose(np.transpose(out, (2, 0, 1)), expect, rtol=1e-12)


def test_iterative_A_equals_plain_relaxation():
    """The blocked, loop-summed iteration for A against the plain oracle at the default tolerance."""
    rng = np.random.default_rng(14)
    G = rng.uniform(0.01, 1.0, (64, 32))
    X = rng.uniform(0, 1, (10, 64))
    res = solve_parasitic(G, X, 1e-3, "A")
    assert res.method == "iterative"
    plain = _plain_relaxation(G, X, 1e-3, "A")
    tight = parasitic_mvm(G, X, 1e-3, "A", Verr_th=1e-13)
    scale = np.abs(tight).max()
    assert np.abs(res.I - tight).max() < 1e-3 * scale
    assert np.abs(plain - tight).max() < 1e-3 * scale
