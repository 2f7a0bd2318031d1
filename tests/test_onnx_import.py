"""ONNX import: small torch CNNs exported with torch.onnx.export, and hand-built ONNX graphs.

Outputs of the imported Network (Simulation.ideal_forward) are compared with
torch, or with torch.nn.functional re-computations of hand-built graphs; every
load also passes the import self-check against onnxruntime.
"""
from __future__ import annotations

import importlib.util
import io
import sys
import warnings
from pathlib import Path

import numpy as np
import pytest

from simulator.errors import ModelError
from simulator.model_files import load_model
from simulator.network import save_model

torch = pytest.importorskip("torch", reason="torch not installed (optional extra xbarsim[torch])")
onnx = pytest.importorskip("onnx", reason="onnx not installed (optional extra xbarsim[onnx])")
from onnx import TensorProto, helper, numpy_helper  # noqa: E402

from simulator.io.onnx_import import load_onnx  # noqa: E402

F = torch.nn.functional

_spec = importlib.util.spec_from_file_location("_xbarsim_keras_ref", Path(__file__).with_name("test_keras_import.py"))
_ref = importlib.util.module_from_spec(_spec)
_spec.loader.exec_module(_ref)


def export(model, x, **kw):
    buf = io.BytesIO()
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        torch.onnx.export(model.eval(), (x,), buf, dynamo=False, **kw)
    return onnx.load_from_string(buf.getvalue())


def _randomize_bn(model):
    g = torch.Generator().manual_seed(0)
    for m in model.modules():
        if isinstance(m, (torch.nn.BatchNorm2d, torch.nn.BatchNorm1d)):
            n = m.num_features
            m.running_mean.copy_(torch.rand(n, generator=g) * 2 - 1)
            m.running_var.copy_(torch.rand(n, generator=g) + 0.5)
            m.weight.data.copy_(torch.rand(n, generator=g) + 0.5)
            m.bias.data.copy_(torch.rand(n, generator=g) - 0.5)
    return model


def check(net, model, x, tol=1e-5):
    with torch.no_grad():
        want = model(x)
    want = [w.numpy() for w in (want if isinstance(want, (tuple, list)) else [want])]
    got = ideal(net, x.numpy())
    assert len(got) == len(want)
    for g, w in zip(got, want):
        assert g.shape == w.shape
        np.testing.assert_allclose(g, w, rtol=tol, atol=tol)


def ideal(net, x):
    import simulator

    out = simulator.Simulation(net, simulator.load_config(_ref.ideal_config()), seed=0).ideal_forward(x)
    return out if isinstance(out, list) else [out]


class SmallCNN(torch.nn.Module):
    def __init__(self):
        super().__init__()
        torch.manual_seed(0)
        self.c1 = torch.nn.Conv2d(3, 8, 3, padding=1, bias=False)
        self.bn = torch.nn.BatchNorm2d(8)
        self.dw = torch.nn.Conv2d(8, 16, 3, stride=2, padding=1, groups=8)  # depthwise, multiplier 2
        self.g = torch.nn.Conv2d(16, 8, 3, padding=(1, 2), groups=2)  # grouped, asymmetric H/W pads
        self.fc = torch.nn.Linear(8 * 8 * 12, 10)
        self.w = torch.nn.Parameter(torch.randn(48, 5) * 0.3)
        self.b = torch.nn.Parameter(torch.randn(5))
        _randomize_bn(self)

    def forward(self, x):
        a = torch.relu(self.bn(self.c1(x)))
        b = F.max_pool2d(a, 3, 2, padding=1)
        c = self.dw(a)
        d = torch.cat([b, torch.sigmoid(c)], 1)
        e = F.pad(self.g(c), (1, 1, 0, 0))
        f = self.fc(torch.flatten(e, 1))
        p = F.avg_pool2d(d, 3, 2, padding=1, ceil_mode=True, count_include_pad=False)
        g = p.mean((2, 3))
        h = torch.tanh(torch.cat([g, g * 2.0 - 1.0], 1)) @ self.w + self.b
        return torch.softmax(f, 1), e.reshape(e.size(0), -1), h


class Block(torch.nn.Module):
    def __init__(self, c):
        super().__init__()
        self.c1 = torch.nn.Conv2d(c, c, 3, padding=1)
        self.b1 = torch.nn.BatchNorm2d(c)
        self.c2 = torch.nn.Conv2d(c, c, 3, padding=1)
        self.b2 = torch.nn.BatchNorm2d(c)

    def forward(self, x):
        return torch.relu(x + self.b2(self.c2(torch.relu(self.b1(self.c1(x))))))


class TinyResNet(torch.nn.Module):
    def __init__(self):
        super().__init__()
        torch.manual_seed(1)
        self.stem = torch.nn.Conv2d(1, 6, 3, padding=1)
        self.block = Block(6)
        self.pool = torch.nn.AdaptiveAvgPool2d(1)
        self.fc = torch.nn.Linear(6, 4)
        self.drop = torch.nn.Dropout(0.5)
        _randomize_bn(self)

    def forward(self, x):
        y = self.pool(self.block(F.leaky_relu(self.stem(x), 0.1)))
        return self.fc(self.drop(y.view(y.size(0), -1)))


def test_small_cnn_matches_torch():
    model = SmallCNN().eval()
    x = torch.randn(3, 3, 16, 16)
    net = load_onnx(export(model, x, do_constant_folding=False))
    assert net.input_layout == "NCHW" and tuple(net.input_shape) == (3, 16, 16)
    types = [l.type for l in net.layers]
    assert "BatchNormalization" in types and "DepthwiseConv2D" in types and "Pad" in types
    assert net.internal_layout == "native" and net.batch_size is None  # any number of images
    dw = next(l for l in net.layers if l.type == "DepthwiseConv2D")
    assert dw.weights["depthwise_kernel"].shape == (3, 3, 8, 2) and dw.config["depth_multiplier"] == 2
    grouped = next(l for l in net.layers if l.type == "Conv2D" and l.config.get("groups"))
    assert grouped.config["groups"] == 2 and grouped.config["padding"] == [[1, 1], [2, 2]]
    assert grouped.weights["kernel"].shape == (3, 3, 8, 8) and grouped.config["data_format"] == "channels_first"
    flat = [l for l in net.layers if l.type == "Reshape"]
    assert flat and all(l.config["shape"][0] == 0 for l in flat)  # the batch axis is kept, whatever its size
    pad = next(l for l in net.layers if l.type == "Pad")
    assert pad.config["pads"] == [0, 0, 0, 1, 0, 0, 0, 1] and pad.config["mode"] == "constant"
    # MatMul + Add became one Dense with a bias
    dense = [l for l in net.layers if l.type == "Dense"]
    assert len(dense) == 2 and all(l.config["use_bias"] for l in dense)
    check(net, model, x)


def test_small_cnn_constant_folded_export():
    model = SmallCNN().eval()
    x = torch.randn(2, 3, 16, 16)
    net = load_onnx(export(model, x))  # BN folded into the conv by the exporter
    check(net, model, x)


def test_tiny_resnet_with_skip_and_view(tmp_path):
    model = TinyResNet().eval()
    x = torch.randn(2, 1, 8, 8)
    path = tmp_path / "tiny.onnx"
    onnx.save(export(model, x, dynamic_axes={"input": {0: "batch"}}, input_names=["input"]), str(path))
    net = load_onnx(path)
    assert tuple(net.input_shape) == (1, 8, 8)
    adds = [l for l in net.layers if l.type == "Add"]
    assert len(adds) == 1 and len(adds[0].inputs) == 2
    assert not any(l.type == "Dropout" for l in net.layers)
    check(net, model, x)
    # our HDF5 format keeps everything (layer names from ONNX contain dots)
    back = load_model(save_model(net, tmp_path / "tiny.h5"))
    assert back.layer_names == net.layer_names and back.input_layout == "NCHW"
    assert back.internal_layout == "native"
    np.testing.assert_allclose(ideal(back, x.numpy())[0], ideal(net, x.numpy())[0])


def _graph_model(nodes, inits, in_shape, out_name, out_shape, opset=13):
    graph = helper.make_graph(
        nodes, "handmade",
        [helper.make_tensor_value_info("x", TensorProto.FLOAT, in_shape)],
        [helper.make_tensor_value_info(out_name, TensorProto.FLOAT, out_shape)],
        initializer=[numpy_helper.from_array(v.astype(np.float32) if v.dtype.kind == "f" else v, k) for k, v in inits.items()],
    )
    return helper.make_model(graph, opset_imports=[helper.make_opsetid("", opset)])


def test_handmade_graph_same_upper_prelu_clip_matmul_add():
    rng = np.random.default_rng(0)
    W = rng.standard_normal((4, 2, 3, 3)).astype(np.float32)
    slope = (rng.random((4, 1, 1)) * 0.3).astype(np.float32)
    mscale = np.array([[[2.0]], [[0.5]], [[1.0]], [[-1.0]]], np.float32)  # per-channel Mul constant
    M = rng.standard_normal((4 * 3 * 3, 3)).astype(np.float32)
    bias = rng.standard_normal(3).astype(np.float32)
    nodes = [
        helper.make_node("Conv", ["x", "W"], ["c"], name="conv", auto_pad="SAME_UPPER", strides=[2, 2]),
        helper.make_node("PRelu", ["c", "slope"], ["p"], name="prelu"),
        helper.make_node("Mul", ["p", "mscale"], ["m"], name="scale"),
        helper.make_node("Clip", ["m", "zero", "six"], ["r6"], name="clip"),
        helper.make_node("Pad", ["r6", "pads"], ["padded"], name="pad", mode="constant"),
        helper.make_node("MaxPool", ["padded"], ["mp"], name="pool", kernel_shape=[2, 2], strides=[2, 2]),
        helper.make_node("Flatten", ["mp"], ["flat"], name="flat", axis=1),
        helper.make_node("MatMul", ["flat", "M"], ["mm"], name="mm"),
        helper.make_node("Add", ["mm", "bias"], ["y"], name="addb"),
    ]
    inits = {"W": W, "slope": slope, "mscale": mscale, "M": M, "bias": bias,
             "zero": np.array(0.0, np.float32), "six": np.array(6.0, np.float32),
             "pads": np.array([0, 0, 1, 0, 0, 0, 1, 2], np.int64)}
    # x (2, 2, 8, 8) -> conv same s2 (pads 0 top, 1 bottom) -> 4x4 -> pad (1,1),(0,2) -> 6x6 -> pool 3x3 -> 36
    model = _graph_model(nodes, inits, [2, 2, 8, 8], "y", [2, 3])
    net = load_onnx(model)
    conv = net["conv"]
    assert conv.config["padding"] == "same" and conv.config["strides"] == [2, 2]
    assert net["pad"].config["pads"] == [0, 0, 1, 0, 0, 0, 1, 2]
    assert net["clip"].config == {"min": 0.0, "max": 6.0}
    assert net["scale"].type == "Binary" and net["scale"].config["op"] == "Mul"
    assert net.outputs == ["mm"] and net["mm"].config["use_bias"]  # Add fused into the Dense
    x = rng.standard_normal((2, 2, 8, 8)).astype(np.float32) * 3
    tx = torch.tensor(x)
    c = F.conv2d(F.pad(tx, (0, 1, 0, 1)), torch.tensor(W), stride=2)  # Keras/SAME_UPPER: extra at the end
    p = torch.where(c >= 0, c, torch.tensor(slope) * c) * torch.tensor(mscale)
    r6 = torch.clamp(p, 0, 6)
    mp = F.max_pool2d(F.pad(r6, (0, 2, 1, 1)), 2, 2)
    want = (mp.reshape(2, -1) @ torch.tensor(M) + torch.tensor(bias)).numpy()
    np.testing.assert_allclose(ideal(net, x)[0], want, rtol=1e-5, atol=1e-5)


def test_unsupported_op_names_op_and_node():
    nodes = [helper.make_node("Resize", ["x", "", "scales"], ["y"], name="up1", mode="nearest")]
    model = _graph_model(nodes, {"scales": np.array([1, 1, 2, 2], np.float32)}, [1, 1, 4, 4], "y", [1, 1, 8, 8])
    with pytest.raises(ModelError) as exc:
        load_onnx(model)
    msg = str(exc.value)
    assert "\n" not in msg and "'Resize'" in msg and "'up1'" in msg


def test_dynamic_conv_weights_rejected():
    nodes = [helper.make_node("Sigmoid", ["x"], ["w"], name="weights_from_x"),
             helper.make_node("Conv", ["x", "w"], ["y"], name="dynconv")]
    model = _graph_model(nodes, {}, [2, 2, 1, 1], "y", [2, 2, 1, 1])
    with pytest.raises(ModelError) as exc:
        load_onnx(model)
    msg = str(exc.value)
    assert "\n" not in msg and "'dynconv'" in msg and "must be a constant" in msg


def test_not_an_onnx_file(tmp_path):
    path = tmp_path / "junk.onnx"
    path.write_bytes(b"\x00\x01garbage" * 10)
    with pytest.raises(ModelError) as exc:
        load_onnx(path)
    assert "\n" not in str(exc.value) and str(path) in str(exc.value)
    with pytest.raises(ModelError, match="not found"):
        load_onnx(tmp_path / "missing.onnx")


def test_missing_onnx_extra(monkeypatch):
    monkeypatch.setitem(sys.modules, "onnx", None)
    with pytest.raises(ModelError, match="optional 'onnx' package"):
        load_onnx("whatever.onnx")


# ======================================================== xbarsim convert (ONNX, PyTorch)
def test_convert_command_onnx_and_torch(tmp_path):
    from click.testing import CliRunner

    from simulator.cli import cli

    model = TinyResNet().eval()
    x = torch.randn(2, 1, 8, 8)
    src = tmp_path / "tiny.onnx"
    onnx.save(export(model, x), str(src))
    runner = CliRunner()
    res = runner.invoke(cli, ["convert", str(src), str(tmp_path / "tiny.h5")])
    assert res.exit_code == 0, res.output
    net = load_model(tmp_path / "tiny.h5")
    assert net.input_layout == "NCHW"
    check(net, model, x)
    # PyTorch: a whole module saved with torch.save
    seq = torch.nn.Sequential(torch.nn.Conv2d(1, 4, 3, padding=1), torch.nn.ReLU(), torch.nn.Flatten(),
                              torch.nn.Linear(4 * 8 * 8, 3)).eval()
    pt = tmp_path / "seq.pt"
    torch.save(seq, pt)
    res = runner.invoke(cli, ["convert", str(pt), str(tmp_path / "seq.h5")])
    assert res.exit_code == 2 and "--input-shape" in res.output
    torch.save(seq.state_dict(), tmp_path / "sd.pt")
    res = runner.invoke(cli, ["convert", str(tmp_path / "sd.pt"), str(tmp_path / "sd.h5"), "--input-shape", "1,1,8,8"])
    assert res.exit_code == 2 and "state_dict" in res.output
    res = runner.invoke(cli, ["convert", str(pt), str(tmp_path / "seq.h5"), "--input-shape", "1,8,8"])
    assert res.exit_code == 0, res.output
    check(load_model(tmp_path / "seq.h5"), seq, x)
