"""CrossSim 3 array options checked by hand: NcolsMax, Rp_row/Rp_col, input slices, separate subtraction."""
import numpy as np
import pytest
import scipy.sparse as sp
import scipy.sparse.linalg as spla

from simulator.circuits.parasitics import parasitic_mvm
from simulator.quantization.uniform import UniformQuantizer
from simulator.config import load_config
from simulator.cores.neural import NeuralCore
from simulator.cores.numeric import ArrayOptions


def core(W, cfg, *, options=None, input_range=(-1.0, 1.0), seed=0):
    hw = load_config(cfg).for_layer("layer")
    opt = options or ArrayOptions(Gmin=0.0, subtract_in_xbar=hw.subtract_current_in_xbar)
    return NeuralCore("layer", W, None, hw, options=opt, devices=None, xp=np, rng=np.random.default_rng(seed),
                      dtype=np.float64, input_range=input_range)


def nodal_two_wires(G, x, r_row, r_col):
    """Column currents of topology A with row segments r_row and column segments r_col (sparse nodal analysis)."""
    R, C = G.shape
    n = 2 * R * C
    rid = lambda i, j: i * C + j  # noqa: E731
    cid = lambda i, j: R * C + i * C + j  # noqa: E731
    rows, cols, vals = [], [], []
    b = np.zeros(n)

    def conn(a, c, g):
        rows.extend([a, c, a, c]), cols.extend([a, c, c, a]), vals.extend([g, g, -g, -g])

    for i in range(R):
        for j in range(C):
            conn(rid(i, j), cid(i, j), G[i, j])
            if j + 1 < C:
                conn(rid(i, j), rid(i, j + 1), 1 / r_row)
            if i + 1 < R:
                conn(cid(i, j), cid(i + 1, j), 1 / r_col)
        rows.append(rid(i, 0)), cols.append(rid(i, 0)), vals.append(1 / r_row)  # driver through one segment
        b[rid(i, 0)] += x[i] / r_row
    for j in range(C):
        rows.append(cid(R - 1, j)), cols.append(cid(R - 1, j)), vals.append(1 / r_col)  # to the sense node
    A = sp.csr_matrix((vals, (rows, cols)), shape=(n, n))
    v = spla.spsolve(A.tocsc(), b)
    return np.array([v[cid(R - 1, j)] / r_col for j in range(C)])


@pytest.mark.parametrize("r_row,r_col", [(2e-3, 5e-4), (5e-4, 3e-3), (1e-3, 1e-3)])
def test_separate_row_and_column_resistance_match_nodal_solve(r_row, r_col):
    rng = np.random.default_rng(3)
    G = rng.uniform(0.05, 1.0, (12, 9))
    X = rng.uniform(-1, 1, (4, 12))
    I = parasitic_mvm(G, X, 0.0, "A", Rp_row=r_row, Rp_col=r_col, Verr_th=1e-9, max_iter=5000)
    ref = np.stack([nodal_two_wires(G, x, r_row, r_col) for x in X])
    assert np.max(np.abs(I - ref)) / np.max(np.abs(ref)) < 1e-6
    if r_row != r_col:  # the two wires matter differently: swapping them changes the result
        swapped = np.stack([nodal_two_wires(G, x, r_col, r_row) for x in X])
        assert np.max(np.abs(swapped - ref)) > 1e-4 * np.max(np.abs(ref))


def test_ncolsmax_split_and_recombination():
    rng = np.random.default_rng(0)
    W = rng.uniform(-1, 1, (6, 10))
    X = rng.uniform(-1, 1, (5, 6))
    c = core(W, {"NcolsMax": 4})
    assert [s.stop - s.start for s in c.col_slices] == [4, 3, 3]
    assert [wr.cores[0].n_cols for wr in c.wrappers] == [4, 3, 3]
    np.testing.assert_allclose(c(X), X @ W, rtol=1e-12, atol=1e-12)  # exact recombination
    # with wire resistance every physical array is its own circuit: partition q is the sub-array solved alone
    opt = ArrayOptions(Gmin=0.0, Rp=2e-3, topology="A", Verr_th=1e-10, max_iter=5000)
    y = core(W, {"NcolsMax": 4}, options=opt)(X)
    Wmax = np.max(np.abs(W))
    w = W / Wmax
    ref = np.zeros_like(y)
    for cs in (slice(0, 4), slice(4, 7), slice(7, 10)):
        ref[:, cs] = (parasitic_mvm(np.maximum(w[:, cs], 0), X, 2e-3, "A", Verr_th=1e-10, max_iter=5000)
                      - parasitic_mvm(np.maximum(-w[:, cs], 0), X, 2e-3, "A", Verr_th=1e-10, max_iter=5000)) * Wmax
    np.testing.assert_allclose(y, ref, rtol=1e-7, atol=1e-9)
    whole = core(W, {}, options=opt)(X)
    assert np.max(np.abs(whole - y)) > 1e-5  # one 6x10 array drops more than three narrower ones


@pytest.mark.parametrize("slice_size", [2, 4])
def test_input_slices_exact_without_adc(slice_size):
    rng = np.random.default_rng(1)
    W = rng.uniform(-1, 1, (7, 5))
    X = rng.uniform(-1, 1, (9, 7))
    base = {"dac_bits": 8, "input_bitslicing": True, "ADC_per_ibit": True}  # per-slice path, identity ADC
    y1 = core(W, base)(X)
    ys = core(W, dict(base, input_slice_size=slice_size))(X)
    L = 2**7 - 1  # signed 8-bit codes
    Xq = np.rint(X * L) / L
    np.testing.assert_allclose(ys, Xq @ W, rtol=1e-12, atol=1e-12)
    np.testing.assert_allclose(ys, y1, rtol=1e-12, atol=1e-12)
    unsliced = core(W, {"dac_bits": 8})(X)  # all bits at once through the DAC
    np.testing.assert_allclose(ys, unsliced, rtol=1e-12, atol=1e-12)


def test_input_slice_digits_drive_fractional_voltages():
    """With an ADC on every 2-bit slice, each slice output is digitized on its own (hand-computed)."""
    W = np.array([[0.5], [-1.0], [0.25]])
    X = np.array([[0.6, 0.2, -0.9]])
    c = core(W, {"dac_bits": 5, "input_bitslicing": True, "ADC_per_ibit": True, "input_slice_size": 2,
                 "adc_bits": 4, "adc_range_option": "max"})
    L = 15
    codes = np.rint(X[0] * L)  # [9, 3, -13]
    mags, sign = np.abs(codes).astype(int), np.sign(codes)
    q = UniformQuantizer(4, -3.0, 3.0)  # signed BALANCED, 3 rows
    w = W[:, 0] / 1.0
    pos, neg = np.maximum(w, 0), np.maximum(-w, 0)
    total = 0.0
    for k in range(2):  # 4 magnitude bits in two 2-bit slices
        v = sign * ((mags >> (2 * k)) & 3) / 3.0
        total += float(q(np.array([v @ pos - v @ neg]), np)[0]) * 3 * 4**k / L
    assert c(X)[0, 0] == pytest.approx(total, rel=1e-12)


def test_separate_subtraction_digitizes_each_plane():
    rng = np.random.default_rng(7)
    W = rng.uniform(-1, 1, (4, 3))
    W /= np.max(np.abs(W))
    X = rng.uniform(-1, 1, (6, 4))
    cfg = {"adc_bits": 3, "adc_range_option": "max"}
    sep = core(W, dict(cfg, subtract_current_in_xbar=False))(X)
    joint = core(W, cfg)(X)
    Wmax = 1.0
    pos, neg = np.maximum(W, 0), np.maximum(-W, 0)
    q_plane = UniformQuantizer(3, -4.0, 4.0)  # one plane: up to 4 rows x G_max, signed inputs
    q_diff = UniformQuantizer(3, -4.0, 4.0)
    ref_sep = (q_plane(X @ pos, np) - q_plane(X @ neg, np)) * Wmax
    ref_joint = q_diff(X @ pos - X @ neg, np) * Wmax
    np.testing.assert_allclose(sep, ref_sep, rtol=1e-12)
    np.testing.assert_allclose(joint, ref_joint, rtol=1e-12)
    assert not np.allclose(sep, joint)


def test_export_conductances_writes_every_array(tmp_path):
    from simulator.model_files import load_model
    from simulator.simulation import Simulation

    net = load_model("digits_cnn")
    cfg = {"export_conductances": True, "conductances_dir": str(tmp_path / "G"), "NrowsMax": 64, "NcolsMax": 16,
           "error_model": "alpha", "alpha_error": 0.02}
    sim = Simulation(net, cfg, seed=4)
    files = sorted((tmp_path / "G" / "seed4").glob("*.npy"))
    planes = [a for name in sim.cores for a in sim.arrays(name)]
    assert len(files) == 2 * len({a.name for a in planes})  # BALANCED: a positive and a negative plane per array
    fc2 = [l for l in net.layers if l.name == "fc2"][0]
    W = np.asarray(fc2.weights["kernel"], dtype=np.float64)
    m = sim.mapping("fc2")
    fc2_arrays = [a for a in sim.arrays("fc2") if a.plane == "pos"]
    assert len(fc2_arrays) == len(m.partitions)
    for a, (rs, cs) in zip(fc2_arrays, m.partitions):
        assert (a.rows, a.cols) == (rs, cs)
        stem = a.name.replace("/", "__")
        G = np.load(tmp_path / "G" / "seed4" / f"{stem}__pos.npy") - np.load(tmp_path / "G" / "seed4" / f"{stem}__neg.npy")
        assert G.shape == (rs.stop - rs.start, cs.stop - cs.start) and G.shape[1] <= 16 and G.shape[0] <= 64
        err = G - W[rs, cs] / m.W_max  # programming error sigma 0.02 on each of the two devices
        assert 0.015 < np.std(err) < 0.04


def test_column_partitions_keep_relu_aware_profiling(tmp_path):
    """Columns are independent dot products: splitting them (NcolsMax) leaves the ReLU-aware ADC inputs unchanged."""
    from adc_calibration.profiling import profile
    from simulator.model_files import load_model

    net = load_model("digits_cnn")
    base = dict(model_name="digits_cnn", task="digits", seed=0, weight_bits=8, NrowsMax=0, adc_bits=6, dac_bits=6,
                On_off_ratio=100)
    whole = profile(load_config(base), net, what="adc", ntest=10, raw_dir=tmp_path / "a", relu_aware=True)
    split = profile(load_config(dict(base, NcolsMax=8)), net, what="adc", ntest=10, raw_dir=tmp_path / "b",
                    relu_aware=True)
    for layer in ("conv2", "fc1"):
        assert split.layer_info[layer].relu_aware
        a = np.sort(np.asarray(whole.load_raw((layer, 0, None))))
        b = np.sort(np.asarray(split.load_raw((layer, 0, None))))
        np.testing.assert_allclose(a, b, rtol=1e-6, atol=1e-6)


def test_inspect_counts_column_partitions_as_the_simulation_builds_them():
    from click.testing import CliRunner

    from simulator.cli import cli
    from simulator.model_files import load_model
    from simulator.simulation import Simulation

    res = CliRunner().invoke(cli, ["inspect", "digits_cnn", "--set", "NrowsMax=256", "--set", "NcolsMax=16"])
    assert res.exit_code == 0, res.output
    sim = Simulation(load_model("digits_cnn"), {"NrowsMax": 256, "NcolsMax": 16}, seed=0)
    for name in ("conv2", "fc1"):
        n = len(sim.arrays(name))  # device planes (BALANCED: two per array)
        parts = len(sim.mapping(name).partitions)
        assert n == 2 * parts
        assert f"{name}: {parts} partition(s) x 1 slice(s) x 2 polarity = {n} arrays" in res.output


def test_run_exports_one_folder_per_run(tmp_path):
    import simulator

    cfg = {"export_conductances": True, "conductances_dir": str(tmp_path / "G"), "Nruns": 2, "seed": 10,
           "ntest": 20, "error_model": "alpha", "alpha_error": 0.05}
    simulator.run(cfg)
    assert sorted(p.name for p in (tmp_path / "G").iterdir()) == ["seed10", "seed11"]
    a = np.load(tmp_path / "G" / "seed10" / "fc2__part0__slice0__pos.npy")
    b = np.load(tmp_path / "G" / "seed11" / "fc2__part0__slice0__pos.npy")
    assert a.shape == b.shape and not np.allclose(a, b)  # each run programs its own errors
