"""witin networks against stored witin_nn 0.1.3 outputs (tests/fixtures, made by scripts/make_witin_fixtures.py).

CI has no witin_nn: the fixtures hold witin_nn's own outputs for random
digital-operator cases and for whole trained networks; these tests run the
simulator through its public API on the same inputs and compare.
"""
from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import pytest

from simulator.model_files import load_model
from simulator.simulation import Simulation
from simulator.witin.digital import DigitalOp

FIX = Path(__file__).parent / "fixtures"
DIGITAL = np.load(FIX / "witin_digital.npz")
NETS = np.load(FIX / "witin_networks.npz")
CASES = sorted({k.rsplit("/", 1)[0] for k in DIGITAL.files})
NETWORKS = sorted({k.split("/")[0] for k in NETS.files})


def test_fixture_covers_every_operator():
    ops = {c.split("/")[0] for c in CASES}
    assert ops == {"WitinSigmoid", "WitinTanh", "WitinGELU", "WitinPReLU", "WitinElementAdd", "WitinElementMul",
                   "WitinElementDivide", "WitinSqrt", "WitinInvSqrt", "WitinHypot", "WitinMean", "WitinCat",
                   "WitinMatMul", "WitinBatchNorm2d", "WitinClnBn2d"}
    assert set(NETWORKS) == {"conv_relu", "pn_shift10", "pn_shift12", "decoder", "batchnorm", "elementwise"}


@pytest.mark.parametrize("case", CASES)
def test_digital_op_bit_exact(case):
    cfg = json.loads(str(DIGITAL[f"{case}/config"]))
    name = case.split("/")[0]
    ins = [DIGITAL[f"{case}/x{j}"] for j in (1, 2) if f"{case}/x{j}" in DIGITAL.files]
    weights = {k.rsplit("/w_", 1)[1]: DIGITAL[k] for k in DIGITAL.files if k.startswith(f"{case}/w_")}
    ref = DIGITAL[f"{case}/out"]
    axis = cfg["axis"]
    out = DigitalOp(name, cfg, case)(ins, weights=weights, axis=tuple(axis) if isinstance(axis, list) else axis,
                                     eps=cfg["eps"])
    assert out.shape == ref.shape
    diff = int((out != ref).sum())
    assert diff == 0, f"{diff} of {ref.size} elements differ from witin_nn"


def test_digital_op_float_mode_is_plain_float():
    """use_quantization = False: witin_nn's digital ops are the plain float operators."""
    x = np.linspace(-3, 3, 13, dtype=np.float32)
    op = DigitalOp("WitinTanh", {"use_quantization": False})
    np.testing.assert_array_equal(op([x]), np.tanh(x))
    q = DigitalOp("WitinTanh", {"use_quantization": True, "io_max_x": 4.0, "io_max_y": 1.0})
    assert not np.array_equal(q([x]), np.tanh(x))  # 8-bit grid of 1/128 and an input grid of 1/32


@pytest.mark.parametrize("name", NETWORKS)
def test_network_bit_exact_at_noise_level_0(name):
    model = load_model(FIX / f"witin_net_{name}.h5")
    x, ref = NETS[f"{name}/x"], NETS[f"{name}/out"]
    out = Simulation(model, {"seed": 0}, seed=0).forward(x)
    assert out.shape == ref.shape
    assert int((out != ref).sum()) == 0, f"{int((out != ref).sum())} of {ref.size} outputs differ"


@pytest.mark.parametrize("level", [3, 9])
def test_network_noise_std_matches_witin(level):
    """Whole-network output noise (default noise_mode: one perturbation per call) within 10 % of witin_nn's."""
    model = load_model(FIX / "witin_net_conv_relu.h5")
    x = NETS["conv_relu/x"][:8]
    ref = NETS[f"conv_relu/std_{level}"]
    sim = Simulation(model, {"seed": 1, "noise_level": level}, seed=1)
    outs = np.stack([sim.forward(x) for _ in range(200)])
    ratio = outs.std(axis=0).mean() / ref.mean()
    assert abs(ratio - 1) < 0.10, ratio


# ------------------------------------------------------- state_dict import
torch = pytest.importorskip("torch")

_MODEL_SRC = '''
import torch
from torch import nn


class _Cfg:
    def __init__(self, **kw):
        self.__dict__.update(kw)


class _AutoScale(nn.Module):
    def __init__(self, v):
        super().__init__()
        self.io_max = nn.Parameter(torch.tensor(float(v)), requires_grad=False)


class WitinTanh(nn.Module):
    """Stand-in with witin_nn's attribute layout (class name, layer_config, autoscale_*_obj.io_max)."""

    def __init__(self, io_x=8.0, io_y=8.0):
        super().__init__()
        self.layer_config = _Cfg(use_quantization=True, use_auto_scale=True, x_quant_bits=8, y_quant_bits=8)
        self.autoscale_x_obj, self.autoscale_y_obj = _AutoScale(io_x), _AutoScale(io_y)

    def forward(self, x):
        return torch.tanh(x)


class Net(nn.Module):
    def __init__(self, width=6):
        super().__init__()
        self.fc = nn.Linear(4, width)
        self.act = WitinTanh()

    def forward(self, x):
        return self.act(self.fc(x))
'''


@pytest.fixture()
def model_module(tmp_path, monkeypatch):
    (tmp_path / "xbs_witin_model.py").write_text(_MODEL_SRC)
    monkeypatch.syspath_prepend(str(tmp_path))
    import importlib

    mod = importlib.import_module("xbs_witin_model")
    return importlib.reload(mod)


def test_state_dict_import_and_unrecorded_io_max_warning(model_module, tmp_path):
    from simulator.io.torch_import import from_state_dict

    torch.manual_seed(0)
    net = model_module.Net(width=5)
    path = tmp_path / "state.pt"
    torch.save(net.state_dict(), path)
    with pytest.warns(UserWarning, match="initial io_max"):
        model = from_state_dict(path, "xbs_witin_model:Net", (1, 4), {"width": 5})
    assert model.metadata["witin_unrecorded_io_max"] == ["act"]
    # recorded io_max: no warning, and the quantized tanh of the fc output
    net.act.autoscale_x_obj.io_max.data.fill_(3.0)
    net.act.autoscale_y_obj.io_max.data.fill_(1.0)
    torch.save(net.state_dict(), path)
    import warnings

    with warnings.catch_warnings():
        warnings.simplefilter("error")
        model = from_state_dict(path, "xbs_witin_model:Net", (1, 4), {"width": 5})
    x = np.linspace(-1, 1, 8, dtype=np.float32).reshape(2, 4)
    out = Simulation(model, {"seed": 0}).forward(x)
    with torch.no_grad():
        pre = net.fc(torch.from_numpy(x)).numpy()
    sx, sy = 128 / 4, 128 / 1  # 2**7 / 2**ceil(log2(io_max))
    expect = np.clip(np.round(np.tanh(np.clip(np.round(pre * sx), -128, 127) / sx) * sy), -128, 127) / sy
    np.testing.assert_allclose(out, expect, atol=1e-6)


def test_convert_state_dict_cli(model_module, tmp_path):
    from click.testing import CliRunner

    from simulator.cli import cli

    net = model_module.Net()
    net.act.autoscale_x_obj.io_max.data.fill_(3.0)
    path = tmp_path / "state.pt"
    torch.save(net.state_dict(), path)
    out = tmp_path / "m.h5"
    r = CliRunner().invoke(cli, ["convert", str(path), str(out), "--module", "xbs_witin_model:Net",
                                 "--input-shape", "1,4", "--module-kwargs", '{"width": 6}'])
    assert r.exit_code == 0, r.output
    assert load_model(out).layers[-1].attrs["witin_op"] == "WitinTanh"
    bad = CliRunner().invoke(cli, ["convert", str(path), str(tmp_path / "n.h5"), "--module", "xbs_witin_model:Nope",
                                   "--input-shape", "1,4"])
    assert bad.exit_code == 2 and "cannot import" in bad.output
    mismatch = CliRunner().invoke(cli, ["convert", str(path), str(tmp_path / "n.h5"), "--module",
                                        "xbs_witin_model:Net", "--input-shape", "1,4", "--module-kwargs", '{"width": 3}'])
    assert mismatch.exit_code == 2 and "does not match" in mismatch.output


# ----------------------------------------------- layer_config fields of CIM layers
FIELDS = np.load(FIX / "witin_fields.npz")
FIELD_CASES = sorted({k.split("/")[0] for k in FIELDS.files}, key=int)


@pytest.mark.parametrize("case", FIELD_CASES)
def test_cim_layer_fields_match_witin(case):
    """output_fp_clip, to_linear, padding_mode reflect and float mode (use_quantization = False) as witin_nn."""
    from simulator.network import Layer
    from simulator.witin.chip import WitinChipLayer

    spec = json.loads(str(FIELDS[f"{case}/layer"]))
    weights = {k.split("/w_", 1)[1]: FIELDS[k] for k in FIELDS.files if k.startswith(f"{case}/w_")}
    layer = Layer(spec["name"], spec["type"], ["input"], spec["config"], weights, spec["attrs"])
    chip = WitinChipLayer(layer, None, np, np.random.default_rng(0))
    x, ref = FIELDS[f"{case}/x"], FIELDS[f"{case}/out"]
    xn = x.transpose(0, 2, 3, 1) if x.ndim == 4 else x
    y = np.asarray(chip.forward(xn))
    y = y.transpose(0, 3, 1, 2) if y.ndim == 4 else y
    if spec["attrs"]["witin"].get("use_quantization") is False:  # float32 sums in another order
        np.testing.assert_allclose(y, ref, rtol=0, atol=1e-5 * max(1.0, float(np.abs(ref).max())))
    else:
        assert int((y.astype(np.float32) != ref).sum()) == 0


G_ALGO = np.load(FIX / "witin_g_algo.npz")
G_ALGO_CASES = sorted({k.split("/")[0] for k in G_ALGO.files if not k.startswith("noise/")}, key=int)
G_ALGO_NOISE = sorted({k.split("/")[1] for k in G_ALGO.files if k.startswith("noise/")}, key=int)


def _g_algo_output(case, g_algo=None):
    """Our output of fixture layer ``case`` (``g_algo``: replaces the layer's G_algo), and witin_nn's."""
    from simulator.network import Layer
    from simulator.witin.chip import WitinChipLayer

    spec = json.loads(str(G_ALGO[f"{case}/layer"]))
    if g_algo is not None:
        spec["attrs"]["witin"]["G_algo"] = g_algo
    weights = {k.split("/w_", 1)[1]: G_ALGO[k] for k in G_ALGO.files if k.startswith(f"{case}/w_")}
    layer = Layer(spec["name"], spec["type"], ["input"], spec["config"], weights, spec["attrs"])
    x, ref = G_ALGO[f"{case}/x"], G_ALGO[f"{case}/out"]
    y = np.asarray(WitinChipLayer(layer, None, np, np.random.default_rng(0)).forward(
        x.transpose(0, 2, 3, 1) if x.ndim == 4 else x))
    return (y.transpose(0, 3, 1, 2) if y.ndim == 4 else y), ref, spec["attrs"]["witin"]


@pytest.mark.parametrize("case", G_ALGO_CASES)
def test_g_algo_layers_match_witin(case):
    """G_algo = 0.5 / 2 / 3 on Linear / Conv2d / ConvTranspose2d (FALSE / PN / Shift, x > 8 bits, output_fp_clip,
    to_linear, VPU, float mode) as witin_nn 0.1.3 computes them: bit exact in quantization mode."""
    y, ref, attrs = _g_algo_output(case)
    if attrs.get("use_quantization") is False:  # float32 sums in another order
        np.testing.assert_allclose(y, ref, rtol=0, atol=1e-5 * max(1.0, float(np.abs(ref).max())))
    else:
        assert int((y.astype(np.float32) != ref).sum()) == 0


def test_g_algo_fixture_needs_g_algo():
    """The fixture covers the paths, and G_algo read as 1 would miss witin_nn's outputs in most cases."""
    attrs = [_g_algo_output(c)[2] for c in G_ALGO_CASES]
    assert {a["G_algo"] for a in attrs} == {0.5, 2, 3}
    assert {a["handle_neg_in"] for a in attrs} == {"FALSE", "PN", "Shift"}
    assert any(a["x_quant_bits"] > 8 for a in attrs) and any(a.get("use_quantization") is False for a in attrs)
    assert any(a.get("hardware") == "VPU" for a in attrs)
    off = 0
    for c in G_ALGO_CASES:
        y, ref, _ = _g_algo_output(c, g_algo=1)
        off += bool(np.abs(y - ref).max() > 1e-3 * max(1.0, float(np.abs(ref).max())))
    vpu = sum(a.get("hardware") == "VPU" and a.get("use_quantization") is not False for a in attrs)
    assert off >= len(G_ALGO_CASES) - vpu - 3  # the VPU ignores G_algo (measured)


@pytest.mark.parametrize("case", G_ALGO_NOISE)
def test_g_algo_noise_std_matches_witin(case):
    """NORMAL / SIMPLE / MBS noise with G_algo 0.5 / 3: output std over 400 calls within 8 % of witin_nn's over
    1000 first calls (SIMPLE / MBS add their output noise in NPU_y steps, so it does not shrink with G_algo)."""
    chip, x = _chip_case(G_ALGO, f"noise/{case}")
    assert chip.spec.g_algo != 1 and chip.spec.noise_level > 0
    ys = np.stack([_nchw(chip.forward(x)) for _ in range(400)])
    ref_std, ref_mean = G_ALGO[f"noise/{case}/std"], G_ALGO[f"noise/{case}/mean"]
    if not ref_std.any():  # case 0: witin's noise stays below half an output step (so does ours)
        np.testing.assert_array_equal(ys, np.broadcast_to(ref_mean, ys.shape))
        return
    ratio = float(np.sqrt(ys.var(axis=0).mean() / (ref_std**2).mean()))
    assert abs(ratio - 1) < 0.08, ratio  # measured 0.986-1.042 over the noisy cases
    assert float(np.abs(ys.mean(axis=0) - ref_mean).mean()) < 0.2 * float(ref_std.mean())


def test_g_algo_zero_refused():
    """G_algo = 0 (witin_nn: inf / NaN) is refused at import and at simulation."""
    from simulator.errors import ModelError
    from simulator.io.torch_import import from_torch
    from simulator.network import Layer
    from simulator.witin.chip import WitinChipLayer

    with pytest.raises(ModelError, match=r"layer '0' \(WitinLinear\): layer_config.G_algo = 0 is not simulated"):
        from_torch(nn.Sequential(_fake_witin("WitinLinear", built={"G_algo": 0})), torch.randn(2, 4))
    spec = json.loads(str(G_ALGO["0/layer"]))
    weights = {k.split("/w_", 1)[1]: G_ALGO[k] for k in G_ALGO.files if k.startswith("0/w_")}
    for g, params, what in ((0, None, "G_algo > 0"),):
        spec["attrs"]["witin"]["G_algo"] = g
        layer = Layer(spec["name"], spec["type"], ["input"], spec["config"], weights, spec["attrs"])
        with pytest.raises(ModelError, match=what) as err:
            WitinChipLayer(layer, params, np, np.random.default_rng(0))
        assert "\n" not in str(err.value)


def _chip_case(data, key, seed=0):
    from simulator.network import Layer
    from simulator.witin.chip import WitinChipLayer

    spec = json.loads(str(data[f"{key}/layer"]))
    weights = {k.split("/w_", 1)[1]: data[k] for k in data.files if k.startswith(f"{key}/w_")}
    layer = Layer(spec["name"], spec["type"], ["input"], spec["config"], weights, spec["attrs"])
    x = data[f"{key}/x"]
    return WitinChipLayer(layer, None, np, np.random.default_rng(seed)), (x.transpose(0, 2, 3, 1) if x.ndim == 4 else x)


def _nchw(y):
    y = np.asarray(y)
    return y.transpose(0, 3, 1, 2) if y.ndim == 4 else y


VPU_NOISE = np.load(FIX / "witin_vpu_noise.npz")
VPU_CASES = sorted({k.split("/")[1] for k in VPU_NOISE.files if k.startswith("vpu/")}, key=int)
NOISE_CASES = sorted({k.split("/")[1] for k in VPU_NOISE.files if k.startswith("noise/")}, key=int)


@pytest.mark.parametrize("case", VPU_CASES)
def test_vpu_convolutions_bit_exact(case):
    """hardware = VPU convolutions (signed inputs, unstepped bias, one clip) as witin_nn computes them."""
    chip, x = _chip_case(VPU_NOISE, f"vpu/{case}")
    assert chip.layer.attrs["witin"]["hardware"] == "VPU"
    ref = VPU_NOISE[f"vpu/{case}/out"]
    assert int((_nchw(chip.forward(x)).astype(np.float32) != ref).sum()) == 0


def test_vpu_convolution_draws_no_noise():
    from simulator.network import Layer
    from simulator.witin.chip import WitinChipLayer

    spec = json.loads(str(VPU_NOISE["vpu/0/layer"]))
    spec["attrs"]["witin"]["noise_level"] = 7
    weights = {k.split("/w_", 1)[1]: VPU_NOISE[k] for k in VPU_NOISE.files if k.startswith("vpu/0/w_")}
    layer = Layer(spec["name"], spec["type"], ["input"], spec["config"], weights, spec["attrs"])
    chip = WitinChipLayer(layer, None, np, np.random.default_rng(0))
    x = VPU_NOISE["vpu/0/x"].transpose(0, 2, 3, 1)
    np.testing.assert_array_equal(_nchw(chip.forward(x)), VPU_NOISE["vpu/0/out"])


@pytest.mark.parametrize("case", NOISE_CASES)
def test_noise_model_std_matches_witin(case):
    """SIMPLE / MBS: per-element output std over 400 calls (seed 0) within 6 % of witin_nn's over 1000 calls
    (element-averaged variances; the noise-free parts are bit exact, so the means agree too)."""
    chip, x = _chip_case(VPU_NOISE, f"noise/{case}")
    assert chip.spec.noise_model in ("SIMPLE", "MBS") and chip.spec.noise_level > 0
    ys = np.stack([_nchw(chip.forward(x)) for _ in range(400)])
    ref_std, ref_mean = VPU_NOISE[f"noise/{case}/std"], VPU_NOISE[f"noise/{case}/mean"]
    ratio = float(np.sqrt(ys.var(axis=0).mean() / (ref_std**2).mean()))
    assert abs(ratio - 1) < 0.06, ratio  # measured 0.969-1.012 over the 12 cases
    assert float(np.abs(ys.mean(axis=0) - ref_mean).mean()) < 0.2 * float(ref_std.mean())


def test_unsupported_noise_fields_are_refused_by_name():
    from simulator.errors import ModelError
    from simulator.network import Layer
    from simulator.witin.chip import WitinChipLayer

    base = {"io_max_x": 1.0, "io_max_weight": 1.0, "io_max_y": 1.0, "use_auto_scale": True}
    k = np.ones((4, 2), np.float32) * 0.1
    conv = np.ones((3, 3, 1, 2), np.float32) * 0.1
    cases = ((("Dense", {"units": 2}, k), {"noise_model": "ARRMDL", "noise_level": 3},
              "noise_model = ARRMDL is not simulated .witin_nn 0.1.3's ARRMDL layers raise AttributeError"),
             (("Conv2D", {"filters": 2, "kernel_size": [3, 3]}, conv), {"noise_model": "MBS", "noise_level": 2},
              "MBS exists for WitinLinear and to_linear"),
             (("Dense", {"units": 2}, k), {"noise_model": "SIMPLE", "noise_level": 1, "noise_mode": "output"},
              "noise_mode = 'output' is defined for noise_model NORMAL only"))
    for (ltype, config, kernel), attrs, word in cases:
        layer = Layer("l", ltype, ["input"], config, {"kernel": kernel}, {"witin": {**base, **attrs}})
        with pytest.raises(ModelError, match=word):
            WitinChipLayer(layer, {"noise_mode": attrs.get("noise_mode")}, np, np.random.default_rng(0))
    ok = Layer("fc", "Dense", ["input"], {"units": 2}, {"kernel": k}, {"witin": {**base, "noise_model": "ARRMDL"}})
    WitinChipLayer(ok, None, np, np.random.default_rng(0))  # noise level 0: the noise model plays no part


# ----------------------------------------------- torch.export programs of witin models
@pytest.mark.parametrize("mode", ["float", "fixed"])
def test_witin_export_program_is_refused_naming_layers_and_route(mode, tmp_path):
    """A .pt2 of a witin_nn model (made by make_witin_fixtures.py --only export) holds the witin layers only as
    ATen ops; importing it would silently simulate float conv/linear layers (float mode) or fail on a computed
    weight (quantization mode), so it is refused with the layers' names and the state_dict route."""
    from click.testing import CliRunner

    from simulator.cli import cli
    from simulator.errors import ModelError

    path = FIX / f"witin_export_{mode}.pt2"
    with pytest.raises(ModelError) as err:
        load_model(path)
    msg = str(err.value)
    assert "\n" not in msg and str(path) in msg
    assert "conv (WitinConv2d), fc (WitinLinear) are witin_nn layers" in msg
    assert "state_dict" in msg and "--module package.module:TinyWitinNet" in msg
    r = CliRunner().invoke(cli, ["inspect", str(path)])
    assert r.exit_code == 2 and "witin_nn layers" in r.output and "Traceback" not in r.output


def test_witin_export_refusal_without_module_metadata():
    """Programs whose nodes lost their module metadata are still recognised by the witin auto-scale parameters."""
    from simulator.errors import ModelError
    from simulator.torch_host.export_program import refuse_witin

    ep = torch.export.load(str(FIX / "witin_export_fixed.pt2"))
    for node in ep.graph.nodes:
        node.meta.pop("nn_module_stack", None)
    with pytest.raises(ModelError, match=r"conv \(witin layer\), fc \(witin layer\) are witin_nn layers"):
        refuse_witin(ep, "prog.pt2")


# ------------------------------------- layer_config fields xbarsim does not simulate (witin_nn 0.1.3 defaults)
nn = torch.nn


class _Built:
    """witin_nn's build-time copy of a layer's config (``forward__func``): the fields it holds."""

    def __init__(self, **kw):
        self.__dict__.update(kw)


def _fake_witin(cls_name, built=None, live=None):
    """A stand-in with witin_nn's attribute layout: class name, ``layer_config``, ``forward__func``, io_max."""
    base = nn.Linear if cls_name == "WitinLinear" else nn.Tanh
    mod = type(cls_name, (base,), {})(4, 3) if base is nn.Linear else type(cls_name, (base,), {})()
    defaults = {"use_quantization": True, "use_auto_scale": True, "x_quant_bits": 8, "y_quant_bits": 8,
                "weight_quant_bits": 8, "conv2d_split_N": 1000000, "debug_mode": False, "G_algo": 1}
    mod.forward__func = _Built(**{**defaults, "x_clip": None, "gelu_shift_num": None, **(built or {})})
    mod.layer_config = _Built(**{**defaults, "x_clip": None, "gelu_shift_num": None, "cln_simple": False,
                                 "target_platform": "ANKE", **(live or {})})
    for part in ("x", "weight", "y") if base is nn.Linear else ("x", "y"):
        obj = nn.Module()
        obj.io_max = nn.Parameter(torch.tensor(2.0), requires_grad=False)
        setattr(mod, f"autoscale_{part}_obj", obj)
    return mod


# (class, field, non-default value on the build-time copy or on layer_config, the default that is simulated)
_UNSIMULATED = [
    ("WitinLinear", "conv2d_split_N", {"built": {"conv2d_split_N": 2}}, "1000000"),
]


@pytest.mark.parametrize("cls_name, field, values, default", _UNSIMULATED)
def test_unsimulated_layer_config_value_is_refused(cls_name, field, values, default):
    """witin_nn's outputs change with these values (docs/witin.md): one line naming layer, field, value, default."""
    from simulator.errors import ModelError
    from simulator.io.torch_import import from_torch

    mod = _fake_witin(cls_name, **values)
    x = torch.randn(2, 4) if cls_name == "WitinLinear" else torch.randn(2, 3, 3, 4)
    value = next(iter(next(iter(values.values())).values()))
    with pytest.raises(ModelError) as err:
        from_torch(nn.Sequential(mod), x)
    msg = str(err.value)
    assert "\n" not in msg
    assert f"layer '0' ({cls_name})" in msg
    assert f"layer_config.{field} = {value!r} is not simulated" in msg and f"default {field} = {default}" in msg


@pytest.mark.parametrize("cls_name, values", [
    ("WitinLinear", {}),
    ("WitinLinear", {"built": {"G_algo": 3}}),  # simulated (test_g_algo_layers_match_witin)
    ("WitinLinear", {"live": {"G_algo": 0, "debug_mode": True, "target_platform": "HE01"}}),  # edited after build
    ("WitinLinear", {"built": {"x_clip": 0.5, "gelu_shift_num": 2, "debug_mode": True}}),  # not read by CIM layers
    ("WitinTanh", {"built": {"G_algo": 0, "gelu_shift_num": 2}}),  # no effect on witin_nn's tanh
    ("WitinTanh", {"built": {"x_clip": 0.5}}),  # simulated (test_unread_field_digital_op_matches_witin)
    ("WitinClnBn2d", {"live": {"cln_simple": True}}),  # simulated; witin_nn reads it from layer_config per call
])
def test_fields_without_effect_import(cls_name, values):
    """Defaults, values witin_nn does not compute with, and fields that change none of its outputs import."""
    from simulator.io.torch_import import from_torch

    mod = _fake_witin(cls_name, **values)
    x = {"WitinLinear": torch.randn(2, 4), "WitinClnBn2d": torch.randn(2, 3, 3, 4)}.get(cls_name, torch.randn(2, 3, 4))
    net = from_torch(nn.Sequential(mod), x)
    layer = net.layers[-1]
    attrs = layer.attrs["witin" if cls_name == "WitinLinear" else "witin_digital"]
    if cls_name == "WitinTanh":
        assert attrs["x_clip"] == values.get("built", {}).get("x_clip")  # read from witin's build-time copy
    if cls_name == "WitinClnBn2d":
        assert attrs["cln_simple"] is True


UNREAD = np.load(FIX / "witin_unread_fields.npz")
UNREAD_CASES = sorted({k.rsplit("/", 1)[0] for k in UNREAD.files})


def test_unread_fields_fixture_covers_both_fields():
    cfgs = [json.loads(str(UNREAD[f"{c}/config"])) for c in UNREAD_CASES]
    assert {c.split("/")[0] for c in UNREAD_CASES} == {"WitinTanh", "WitinSigmoid", "WitinGELU", "WitinClnBn2d"}
    assert {c["x_clip"] for c in cfgs if c["x_clip"] is not None} == {0.1, 0.5, 2.0, 7.0}
    assert sum(c["gelu_shift_num"] is not None for c in cfgs) == 9
    assert sum(c["cln_simple"] is True for c in cfgs) == 9


@pytest.mark.parametrize("case", UNREAD_CASES)
def test_unread_field_digital_op_matches_witin(case):
    """x_clip (Sigmoid / Tanh), gelu_shift_num (GELU) and cln_simple (ClnBn2d) as witin_nn 0.1.3 computes them:
    bit exact in quantization mode; float mode within float32 rounding (witin's torch kernels)."""
    cfg = json.loads(str(UNREAD[f"{case}/config"]))
    name = case.split("/")[0]
    x, ref = UNREAD[f"{case}/x1"], UNREAD[f"{case}/out"]
    axis = tuple(cfg["axis"]) if isinstance(cfg["axis"], list) else cfg["axis"]
    out = DigitalOp(name, cfg, case)([x], axis=axis, eps=cfg["eps"])
    assert out.shape == ref.shape
    if cfg["use_quantization"]:
        assert int((out != ref).sum()) == 0, f"{int((out != ref).sum())} of {ref.size} elements differ"
    else:
        np.testing.assert_allclose(out, ref, rtol=1e-6, atol=1e-6)


def test_unread_fields_change_witin_outputs():
    """Without x_clip / gelu_shift_num / cln_simple, 27 of the 34 fixture cases are off by more than 0.01 (the
    others clip beyond the input range, or are GELU in float mode, where witin_nn ignores the shift)."""
    off = 0
    for case in UNREAD_CASES:
        cfg = json.loads(str(UNREAD[f"{case}/config"]))
        axis = tuple(cfg["axis"]) if isinstance(cfg["axis"], list) else cfg["axis"]
        plain = DigitalOp(case.split("/")[0], {**cfg, "x_clip": None, "gelu_shift_num": None, "cln_simple": False})
        out = plain([UNREAD[f"{case}/x1"]], axis=axis, eps=cfg["eps"])
        off += int(np.abs(out - UNREAD[f"{case}/out"]).max() > 1e-2)
    assert off == 27
