"""Keras .h5 import: the CrossSim CIFAR-10 ResNets and small Keras files written here with h5py.

The NumPy reference forward below (``reference_forward``) is written
independently of the executor: gather-based im2col, Keras 'same' padding,
and one branch per layer type. test_onnx_import.py reuses it.
"""
from __future__ import annotations

import json
import math
from pathlib import Path

import h5py
import numpy as np
import pytest

from simulator.errors import CalibrationError, ModelError
from simulator.io.crosssim_limits import load_crosssim_limits
from simulator.io.keras_h5 import load_keras_h5
from simulator.model_files import load_model
from simulator.network import save_model

MODELS = Path(__file__).resolve().parents[1] / ".." / "shared" / "models" / "crosssim_cifar10"
RESNETS = {"ResNet14": "resnet14v1_cifar10.h5", "ResNet20": "resnet20v1_cifar10.h5", "ResNet56": "resnet56v1_cifar10.h5"}
MVM_COUNTS = {"ResNet14": 16, "ResNet20": 22, "ResNet56": 58}

def _resnet_path(name: str) -> Path:
    path = MODELS / RESNETS[name]
    if not path.exists():
        pytest.skip(f"reference model {path} not available (shared models folder absent)")
    return path


# =============================================================== NumPy reference
def _same_pads(size: int, k: int, s: int, d: int = 1) -> tuple[int, int]:
    eff = (k - 1) * d + 1
    total = max((math.ceil(size / s) - 1) * s + eff - size, 0)
    return total // 2, total - total // 2


def _pads(padding, H, W, kh, kw, sh, sw, dh=1, dw=1):
    if padding == "valid":
        return (0, 0), (0, 0)
    if padding == "same":
        return _same_pads(H, kh, sh, dh), _same_pads(W, kw, sw, dw)
    (t, b), (l, r) = padding
    return (t, b), (l, r)


def _patches(x, kh, kw, sh, sw, dh=1, dw=1):
    """(N, Ho, Wo, kh, kw, C) by fancy indexing (x already padded)."""
    N, H, W, C = x.shape
    Ho = (H - (kh - 1) * dh - 1) // sh + 1
    Wo = (W - (kw - 1) * dw - 1) // sw + 1
    rows = (np.arange(Ho) * sh)[:, None] + np.arange(kh) * dh  # (Ho, kh)
    cols = (np.arange(Wo) * sw)[:, None] + np.arange(kw) * dw  # (Wo, kw)
    p = x[:, rows[:, None, :, None], cols[None, :, None, :], :]  # (N, Ho, Wo, kh, kw, C)
    return p


def _pad(x, pads, value=0.0):
    (t, b), (l, r) = pads
    return np.pad(x, ((0, 0), (t, b), (l, r), (0, 0)), constant_values=value)


def _act(x, name, alpha=None):
    if name in (None, "linear"):
        return x
    if name == "relu":
        return np.maximum(x, 0)
    if name == "relu6":
        return np.minimum(np.maximum(x, 0), 6)
    if name == "sigmoid":
        return 1 / (1 + np.exp(-x))
    if name == "tanh":
        return np.tanh(x)
    if name == "leaky_relu":
        return np.where(x > 0, x, (0.3 if alpha is None else alpha) * x)
    if name == "softmax":
        e = np.exp(x - x.max(-1, keepdims=True))
        return e / e.sum(-1, keepdims=True)
    raise NotImplementedError(name)


def _conv(x, kernel, bias, cfg, depthwise=False):
    kh, kw = cfg["kernel_size"]
    sh, sw = cfg.get("strides", [1, 1])
    dh, dw = cfg.get("dilation_rate", [1, 1])
    x = _pad(x, _pads(cfg.get("padding", "valid"), x.shape[1], x.shape[2], kh, kw, sh, sw, dh, dw))
    p = _patches(x, kh, kw, sh, sw, dh, dw)
    N, Ho, Wo = p.shape[:3]
    C = x.shape[3]
    if depthwise:
        mult = kernel.shape[3]
        y = np.einsum("nhwijc,ijcm->nhwcm", p, kernel).reshape(N, Ho, Wo, C * mult)
    else:
        groups = int(cfg.get("groups", 1))
        cin_g, cout = kernel.shape[2], kernel.shape[3]
        outs = []
        for g in range(groups):
            cols = p[..., g * cin_g:(g + 1) * cin_g].reshape(N * Ho * Wo, -1)
            k = kernel[..., g * (cout // groups):(g + 1) * (cout // groups)].reshape(-1, cout // groups)
            outs.append((cols @ k).reshape(N, Ho, Wo, -1))
        y = np.concatenate(outs, axis=-1)
    if bias is not None and cfg.get("use_bias", True):
        y = y + bias
    return _act(y, cfg.get("activation"))


def _pool(x, kind, cfg):
    kh, kw = cfg["pool_size"]
    sh, sw = cfg.get("strides") or cfg["pool_size"]
    pads = _pads(cfg.get("padding", "valid"), x.shape[1], x.shape[2], kh, kw, sh, sw)
    if kind == "max":
        return _patches(_pad(x, pads, -np.inf), kh, kw, sh, sw).max(axis=(3, 4))
    s = _patches(_pad(x, pads), kh, kw, sh, sw).sum(axis=(3, 4))
    if cfg.get("count_include_pad", False):
        return s / (kh * kw)
    ones = _pad(np.ones((1,) + x.shape[1:3] + (1,)), pads)
    return s / _patches(ones, kh, kw, sh, sw).sum(axis=(3, 4))


def reference_forward(net, x):
    """Float64 forward of a Network, layer by layer, in plain NumPy (native layout in and out)."""
    acts = {}
    for layer in net.layers:
        c, w, t = layer.config, layer.weights, layer.type
        ins = [acts[s] for s in layer.inputs]
        if t == "Input":
            y = np.asarray(x, dtype=np.float64)
            if net.input_layout == "NCHW" and y.ndim == 4:
                y = y.transpose(0, 2, 3, 1)
        elif t == "Conv2D":
            y = _conv(ins[0], w["kernel"].astype(np.float64), w.get("bias"), c)
        elif t == "DepthwiseConv2D":
            y = _conv(ins[0], w["depthwise_kernel"].astype(np.float64), w.get("bias"), c, depthwise=True)
        elif t == "Dense":
            y = ins[0] @ w["kernel"].astype(np.float64)
            if c.get("use_bias", True):
                y = y + w["bias"]
            y = _act(y, c.get("activation"))
        elif t == "BatchNormalization":
            y = (ins[0] - w["moving_mean"]) / np.sqrt(w["moving_variance"].astype(np.float64) + c["epsilon"]) * w["gamma"] + w["beta"]
        elif t == "Activation":
            y = _act(ins[0], c["activation"], c.get("alpha"))
        elif t == "Add":
            y = sum(ins[1:], ins[0])
        elif t == "Concatenate":
            y = np.concatenate(ins, axis=c.get("axis", -1))
        elif t == "ZeroPadding2D":
            y = _pad(ins[0], c["padding"])
        elif t in ("MaxPooling2D", "AveragePooling2D"):
            y = _pool(ins[0], "max" if t == "MaxPooling2D" else "avg", c)
        elif t == "GlobalAveragePooling2D":
            y = ins[0].mean(axis=(1, 2), keepdims=c.get("keepdims", False))
        elif t == "GlobalMaxPooling2D":
            y = ins[0].max(axis=(1, 2), keepdims=c.get("keepdims", False))
        elif t == "Flatten":
            a = ins[0]
            if a.ndim == 4 and c.get("order") == "NCHW":
                a = a.transpose(0, 3, 1, 2)
            y = a.reshape(len(a), -1)
        elif t == "PReLU":
            y = np.where(ins[0] > 0, ins[0], w["alpha"] * ins[0])
        elif t in ("Dropout", "GaussianNoise"):
            y = ins[0]
        else:
            raise NotImplementedError(t)
        acts[layer.name] = y
    outs = []
    for name in net.outputs:
        y = acts[name]
        if net.input_layout == "NCHW" and y.ndim == 4:
            y = y.transpose(0, 3, 1, 2)
        outs.append(y)
    return outs[0] if len(outs) == 1 else outs


def ideal_config():
    return {"task": "digits", "seed": 0}


def executor_forward(net, x):
    import simulator

    sim = simulator.Simulation(net, simulator.load_config(ideal_config()), seed=0)
    return sim.ideal_forward(x)


# ====================================================== CrossSim CIFAR-10 ResNets
@pytest.mark.parametrize("name", sorted(RESNETS))
def test_resnet_loads(name):
    net = load_model(_resnet_path(name))  # routed to the Keras importer
    assert net.input_layout == "NHWC"
    assert tuple(net.input_shape) == (32, 32, 3)
    assert len(net.mvm_layers) == MVM_COUNTS[name]
    assert net.outputs == ["dense_1"]
    types = {l.type for l in net.layers}
    assert types == {"Input", "Conv2D", "BatchNormalization", "Activation", "Add", "AveragePooling2D", "Flatten", "Dense"}
    first = net["conv2d_1"]
    assert first.config["padding"] == "same" and first.config["kernel_size"] == [3, 3] and first.config["strides"] == [1, 1]
    assert first.weights["kernel"].shape == (3, 3, 3, 16)
    assert net["flatten_1"].config == {"order": "NHWC"}
    assert net["dense_1"].config["activation"] == "softmax"
    bn = net["batch_normalization_1"]
    assert set(bn.weights) == {"gamma", "beta", "moving_mean", "moving_variance"}
    # skip connections: every Add has two inputs
    adds = [l for l in net.layers if l.type == "Add"]
    assert adds and all(len(l.inputs) == 2 for l in adds)
    # MVM layers keep the Keras order (conv2d_1, conv2d_2, ...)
    keras_order = [l.name for l in net.mvm_layers]
    assert keras_order[0] == "conv2d_1" and keras_order[-1] == "dense_1"
    assert keras_order[:-1] == [f"conv2d_{i}" for i in range(1, len(keras_order))]


def _cifar_like(n=2, seed=0):
    rng = np.random.default_rng(seed)
    return (rng.random((n, 32, 32, 3)) - 0.5).astype(np.float32)


def test_reference_forward_matches_torch():
    """Cross-check the NumPy reference itself against torch on ResNet-20 (two independent implementations)."""
    torch = pytest.importorskip("torch", reason="torch not installed")
    F = torch.nn.functional
    net = load_keras_h5(_resnet_path("ResNet20"))
    x = _cifar_like()
    acts = {}
    with torch.no_grad():
        for layer in net.layers:
            c, w = layer.config, layer.weights
            ins = [acts[s] for s in layer.inputs]
            if layer.type == "Input":
                y = torch.tensor(x, dtype=torch.float64).permute(0, 3, 1, 2)
            elif layer.type == "Conv2D":
                kh, kw = c["kernel_size"]
                sh, sw = c["strides"]
                (t, b), (l, r) = _pads(c["padding"], ins[0].shape[2], ins[0].shape[3], kh, kw, sh, sw)
                k = torch.tensor(w["kernel"], dtype=torch.float64).permute(3, 2, 0, 1)
                y = F.conv2d(F.pad(ins[0], (l, r, t, b)), k, torch.tensor(w["bias"], dtype=torch.float64), stride=(sh, sw))
            elif layer.type == "BatchNormalization":
                y = F.batch_norm(ins[0], *(torch.tensor(w[k], dtype=torch.float64) for k in ("moving_mean", "moving_variance", "gamma", "beta")),
                                 training=False, eps=c["epsilon"])
            elif layer.type == "Activation":
                y = torch.relu(ins[0])
            elif layer.type == "Add":
                y = ins[0] + ins[1]
            elif layer.type == "AveragePooling2D":
                y = F.avg_pool2d(ins[0], c["pool_size"], c["strides"])
            elif layer.type == "Flatten":
                y = ins[0].permute(0, 2, 3, 1).reshape(len(x), -1)
            elif layer.type == "Dense":
                y = torch.softmax(ins[0] @ torch.tensor(w["kernel"], dtype=torch.float64) + torch.tensor(w["bias"], dtype=torch.float64), -1)
            acts[layer.name] = y
    ref = reference_forward(net, x)
    np.testing.assert_allclose(ref, acts["dense_1"].numpy(), rtol=1e-9, atol=1e-12)
    np.testing.assert_allclose(ref.sum(-1), 1.0, rtol=1e-9)
    # load_model recognises the Keras file by content; our executor against torch directly
    via_loader = load_model(_resnet_path("ResNet20"))
    assert via_loader.metadata["source_format"] == "keras_h5" and via_loader.layer_names == net.layer_names
    np.testing.assert_allclose(executor_forward(via_loader, x), acts["dense_1"].numpy(), rtol=1e-6, atol=1e-9)


@pytest.mark.parametrize("name", sorted(RESNETS))
def test_resnet_ideal_forward_matches_reference(name):
    net = load_keras_h5(_resnet_path(name))
    x = _cifar_like()
    ref = reference_forward(net, x)
    got = executor_forward(net, x)
    np.testing.assert_allclose(got, ref, rtol=1e-5, atol=1e-5)


def test_resnet_roundtrip_through_our_format(tmp_path):
    net = load_keras_h5(_resnet_path("ResNet14"))
    out = save_model(net, tmp_path / "r14.h5")
    back = load_model(out)
    assert back.layer_names == net.layer_names
    assert back.outputs == net.outputs and tuple(back.input_shape) == (32, 32, 3)
    for a, b in zip(net.layers, back.layers):
        assert a.type == b.type and a.inputs == b.inputs and a.config == b.config
        for k in a.weights:
            np.testing.assert_array_equal(a.weights[k], b.weights[k])


@pytest.mark.parametrize("name", sorted(RESNETS))
def test_crosssim_limits_map_to_mvm_layers(name):
    path = _resnet_path(name)
    net = load_keras_h5(path)
    inp = MODELS / f"input_limits_{name}.npy"
    adc = MODELS / f"adc_limits_{name}_balanced.npy"
    limits = load_crosssim_limits(inp, adc, net)
    assert list(limits) == [l.name for l in net.mvm_layers]
    first = limits["conv2d_1"]
    raw_in, raw_adc = np.load(inp), np.load(adc)
    assert first["input_range"] == tuple(raw_in[0]) and first["adc_range"] == tuple(raw_adc[0])
    assert limits["dense_1"]["input_range"] == tuple(raw_in[-1])
    # layers after a ReLU see non-negative inputs; the first layer sees signed pixels
    assert first["input_range"][0] < 0
    assert all(v["input_range"][0] >= 0 for k, v in limits.items() if k != "conv2d_1")
    # without a network: keys are MVM-layer indices
    assert list(load_crosssim_limits(inp, None)) == list(range(len(raw_in)))


def test_crosssim_limits_mismatch(tmp_path):
    net = load_keras_h5(_resnet_path("ResNet14"))
    np.save(tmp_path / "bad.npy", np.zeros((3, 2)))
    with pytest.raises(CalibrationError, match="3 rows.*16 MVM layers"):
        load_crosssim_limits(tmp_path / "bad.npy", None, net)
    np.save(tmp_path / "shape.npy", np.zeros((16, 3)))
    with pytest.raises(CalibrationError, match=r"shape \(layers, 2\)"):
        load_crosssim_limits(tmp_path / "shape.npy", None, net)
    with pytest.raises(CalibrationError, match="not found"):
        load_crosssim_limits(tmp_path / "missing.npy", None, net)


# ============================================== small Keras files written here
def _layer(cls, name, inbound=None, **config):
    entry = {"class_name": cls, "config": {"name": name, "trainable": True, "dtype": "float32", **config}, "name": name}
    if inbound is not None:
        entry["inbound_nodes"] = [[[src, 0, 0, {}] for src in inbound]] if inbound else []
    return entry


def write_keras_h5(path, model_config, weights, *, weights_at_root=False, with_config=True):
    """A Keras-2.4-style HDF5 file: model_config + model_weights/<layer>/<layer>/<w>:0 with weight_names."""
    with h5py.File(path, "w") as f:
        if with_config:
            f.attrs["model_config"] = json.dumps(model_config)
        f.attrs["keras_version"] = "2.4.0"
        f.attrs["backend"] = "tensorflow"
        root = f if weights_at_root else f.create_group("model_weights")
        names = [l["config"]["name"] for l in (model_config["config"]["layers"])]
        root.attrs["layer_names"] = np.array([n.encode() for n in names])
        for n in names:
            g = root.create_group(n)
            ws = weights.get(n, [])
            g.attrs["weight_names"] = np.array([f"{n}/{k}:0".encode() for k, _ in ws])
            for k, arr in ws:
                g.create_dataset(f"{n}/{k}:0", data=arr)
    return path


def _rnd(rng, *shape, scale=0.5):
    return (rng.standard_normal(shape) * scale).astype(np.float32)


def sequential_model(rng):
    layers = [
        _layer("Conv2D", "conv_a", batch_input_shape=[None, 9, 9, 2], filters=4, kernel_size=[3, 3], strides=[2, 2],
               padding="same", data_format="channels_last", dilation_rate=[1, 1], groups=1, activation="relu", use_bias=True),
        _layer("BatchNormalization", "bn", axis=[3], epsilon=0.001, center=False, scale=True),
        _layer("ZeroPadding2D", "zp", padding=[[1, 0], [2, 1]], data_format="channels_last"),
        _layer("DepthwiseConv2D", "dw", kernel_size=[3, 3], strides=[1, 1], padding="valid", depth_multiplier=2,
               data_format="channels_last", dilation_rate=[1, 1], activation="linear", use_bias=True),
        _layer("Dropout", "drop", rate=0.5),
        _layer("MaxPooling2D", "pool", pool_size=[2, 2], strides=[2, 2], padding="same", data_format="channels_last"),
        _layer("Flatten", "flat", data_format="channels_last"),
        _layer("Dense", "fc", units=5, activation="softmax", use_bias=True),
    ]
    config = {"class_name": "Sequential", "config": {"name": "seq", "layers": layers}}
    # shapes: 9x9x2 -conv s2 same-> 5x5x4 -pad-> 6x8x4 -dw valid-> 4x6x8 -pool same-> 2x3x8 -> 48
    weights = {
        "conv_a": [("kernel", _rnd(rng, 3, 3, 2, 4)), ("bias", _rnd(rng, 4))],
        "bn": [("gamma", _rnd(rng, 4) + 1), ("moving_mean", _rnd(rng, 4)), ("moving_variance", np.abs(_rnd(rng, 4)) + 0.5)],
        "dw": [("depthwise_kernel", _rnd(rng, 3, 3, 4, 2)), ("bias", _rnd(rng, 8))],
        "fc": [("kernel", _rnd(rng, 48, 5)), ("bias", _rnd(rng, 5))],
    }
    return config, weights


def functional_model(rng):
    conv = dict(kernel_size=[3, 3], strides=[1, 1], padding="same", data_format="channels_last",
                dilation_rate=[1, 1], groups=1, use_bias=True)
    layers = [
        _layer("InputLayer", "in", inbound=[], batch_input_shape=[None, 8, 8, 3]),
        _layer("Conv2D", "c1", inbound=["in"], filters=6, activation="linear", **conv),
        _layer("ReLU", "r1", inbound=["c1"], max_value=None, negative_slope=0.0, threshold=0.0),
        # listed before its input c2 on purpose: the importer must order the graph
        _layer("Add", "add", inbound=["r1", "noise"]),
        _layer("Conv2D", "c2", inbound=["r1"], filters=6, activation="relu", **{**conv, "kernel_size": [1, 1]}),
        _layer("GaussianNoise", "noise", inbound=["c2"], stddev=0.1),
        _layer("AveragePooling2D", "avg", inbound=["add"], pool_size=[3, 3], strides=[2, 2], padding="same",
               data_format="channels_last"),
        _layer("MaxPooling2D", "mx", inbound=["add"], pool_size=[2, 2], strides=None, padding="valid",
               data_format="channels_last"),
        _layer("Concatenate", "cat", inbound=["avg", "mx"], axis=-1),
        _layer("GlobalAveragePooling2D", "gap", inbound=["cat"], data_format="channels_last"),
        _layer("Dense", "fc", inbound=["gap"], units=4, activation="linear", use_bias=False),
        _layer("Activation", "sm", inbound=["fc"], activation="softmax"),
    ]
    config = {"class_name": "Functional", "config": {"name": "func", "layers": layers,
                                                      "input_layers": [["in", 0, 0]], "output_layers": [["sm", 0, 0]]}}
    weights = {
        "c1": [("kernel", _rnd(rng, 3, 3, 3, 6)), ("bias", _rnd(rng, 6))],
        "c2": [("kernel", _rnd(rng, 1, 1, 6, 6)), ("bias", _rnd(rng, 6))],
        "fc": [("kernel", _rnd(rng, 12, 4))],
    }
    return config, weights


def test_small_sequential(tmp_path):
    rng = np.random.default_rng(1)
    config, weights = sequential_model(rng)
    path = write_keras_h5(tmp_path / "seq.h5", config, weights)
    net = load_model(path)
    assert [l.type for l in net.layers] == ["Input", "Conv2D", "BatchNormalization", "ZeroPadding2D",
                                             "DepthwiseConv2D", "MaxPooling2D", "Flatten", "Dense"]
    assert tuple(net.input_shape) == (9, 9, 2)
    assert net["conv_a"].config == {"filters": 4, "kernel_size": [3, 3], "strides": [2, 2], "padding": "same",
                                    "dilation_rate": [1, 1], "use_bias": True, "activation": "relu"}
    assert net["zp"].config["padding"] == [[1, 0], [2, 1]]
    assert net["dw"].config["depth_multiplier"] == 2
    assert net["pool"].inputs == ["dw"]  # Dropout removed
    bn = net["bn"].weights
    np.testing.assert_array_equal(bn["beta"], np.zeros(4, np.float32))  # center=False -> beta 0
    assert net.outputs == ["fc"]
    x = rng.random((3, 9, 9, 2)).astype(np.float32)
    ref = reference_forward(net, x)
    assert ref.shape == (3, 5)
    np.testing.assert_allclose(executor_forward(net, x), ref, rtol=1e-5, atol=1e-6)
    # keeping Dropout when it is not ignored
    kept = load_keras_h5(path, ignored_layer_types=())
    assert kept["drop"].type == "Dropout" and kept["pool"].inputs == ["drop"]


def test_small_functional_with_skip(tmp_path):
    rng = np.random.default_rng(2)
    config, weights = functional_model(rng)
    path = write_keras_h5(tmp_path / "func.h5", config, weights)
    net = load_keras_h5(path)
    names = net.layer_names
    assert names.index("c2") < names.index("add")  # reordered topologically
    assert net["add"].inputs == ["r1", "c2"]  # GaussianNoise removed
    assert net["r1"].config == {"activation": "relu"}
    assert net["avg"].config == {"pool_size": [3, 3], "strides": [2, 2], "padding": "same", "count_include_pad": False}
    assert net["mx"].config["strides"] == [2, 2]  # strides None -> pool_size
    assert net["fc"].config["use_bias"] is False and set(net["fc"].weights) == {"kernel"}
    x = rng.random((2, 8, 8, 3)).astype(np.float32)
    ref = reference_forward(net, x)
    assert ref.shape == (2, 4)
    np.testing.assert_allclose(ref.sum(-1), 1.0)
    np.testing.assert_allclose(executor_forward(net, x), ref, rtol=1e-5, atol=1e-6)


def test_weights_only_file_with_separate_architecture(tmp_path):
    rng = np.random.default_rng(3)
    config, weights = functional_model(rng)
    path = write_keras_h5(tmp_path / "w.h5", config, weights, weights_at_root=True, with_config=False)
    with pytest.raises(ModelError, match="weights-only"):
        load_keras_h5(path)
    (tmp_path / "arch.json").write_text(json.dumps(config))
    net = load_keras_h5(path, model_config=tmp_path / "arch.json")
    np.testing.assert_array_equal(net["c1"].weights["kernel"], weights["c1"][0][1])
    # architecture in the file, weight groups at the root
    path2 = write_keras_h5(tmp_path / "w2.h5", config, weights, weights_at_root=True)
    assert load_keras_h5(path2).layer_names == net.layer_names


def _one_line(exc) -> str:
    msg = str(exc.value)
    assert "\n" not in msg
    return msg


def test_non_keras_hdf5(tmp_path):
    path = tmp_path / "other.h5"
    with h5py.File(path, "w") as f:
        f.create_dataset("data", data=np.arange(4))
    with pytest.raises(ModelError) as exc:
        load_keras_h5(path)
    msg = _one_line(exc)
    assert str(path) in msg and "not a Keras model file" in msg
    with pytest.raises(ModelError) as exc:
        load_model(path)
    _one_line(exc)


def test_not_hdf5_at_all(tmp_path):
    path = tmp_path / "text.h5"
    path.write_text("hello")
    with pytest.raises(ModelError) as exc:
        load_keras_h5(path)
    assert str(path) in _one_line(exc)


def test_unknown_layer_type(tmp_path):
    rng = np.random.default_rng(4)
    config, weights = sequential_model(rng)
    config["config"]["layers"].insert(6, _layer("LSTM", "lstm_7", units=3))
    path = write_keras_h5(tmp_path / "lstm.h5", config, weights)
    with pytest.raises(ModelError) as exc:
        load_keras_h5(path)
    msg = _one_line(exc)
    assert "'LSTM'" in msg and "'lstm_7'" in msg and str(path) in msg


def test_unsupported_activation_and_missing_weights(tmp_path):
    rng = np.random.default_rng(5)
    config, weights = sequential_model(rng)
    config["config"]["layers"][-1]["config"]["activation"] = "selu"
    path = write_keras_h5(tmp_path / "selu.h5", config, weights)
    with pytest.raises(ModelError, match="'fc'.*selu"):
        load_keras_h5(path)
    config, weights = sequential_model(rng)
    del weights["dw"]
    path = write_keras_h5(tmp_path / "now.h5", config, weights)
    with pytest.raises(ModelError, match="'dw'.*no weights"):
        load_keras_h5(path)
    config, weights = sequential_model(rng)
    weights["fc"][0] = ("kernel", _rnd(rng, 47, 5))
    path = write_keras_h5(tmp_path / "shape.h5", config, weights)
    net = load_keras_h5(path)  # 47 != 48 is only detectable when running; units still match
    assert net["fc"].weights["kernel"].shape == (47, 5)
    weights["fc"][0] = ("kernel", _rnd(rng, 48, 6))
    path = write_keras_h5(tmp_path / "shape2.h5", config, weights)
    with pytest.raises(ModelError, match="'fc'.*units=5"):
        load_keras_h5(path)


@pytest.mark.parametrize("fraction", [0.3, 0.9])
def test_truncated_file(tmp_path, fraction):
    rng = np.random.default_rng(6)
    config, weights = sequential_model(rng)
    # a larger weight so that truncation can cut through data
    weights["fc"][0] = ("kernel", _rnd(rng, 48, 5))
    path = write_keras_h5(tmp_path / "full.h5", config, weights)
    data = path.read_bytes()
    cut = tmp_path / "cut.h5"
    cut.write_bytes(data[: int(len(data) * fraction)])
    with pytest.raises(ModelError) as exc:
        load_keras_h5(cut)
    assert str(cut) in _one_line(exc)
    with pytest.raises(ModelError) as exc:
        load_model(cut)
    _one_line(exc)


def test_missing_file(tmp_path):
    with pytest.raises(ModelError, match="not found"):
        load_keras_h5(tmp_path / "nope.h5")


# ======================================================== xbarsim convert (Keras)
def test_convert_command_keras(tmp_path):
    from click.testing import CliRunner

    from simulator.cli import cli

    rng = np.random.default_rng(7)
    config, weights = functional_model(rng)
    src = write_keras_h5(tmp_path / "func.h5", config, weights)
    out = tmp_path / "ours.h5"
    runner = CliRunner()
    res = runner.invoke(cli, ["convert", str(src), str(out)])
    assert res.exit_code == 0, res.output
    assert "wrote" in res.output and "(3 MVM)" in res.output
    net = load_model(out)
    with h5py.File(out, "r") as f:
        assert f.attrs["format"] == "xbarsim-model"
    x = rng.random((2, 8, 8, 3)).astype(np.float32)
    np.testing.assert_allclose(reference_forward(net, x), reference_forward(load_keras_h5(src), x))
    # OUT exists -> one-line error, exit 2; --force overwrites
    res = runner.invoke(cli, ["convert", str(src), str(out)])
    assert res.exit_code == 2 and "--force" in res.output and len(res.output.strip().splitlines()) == 1
    assert runner.invoke(cli, ["convert", str(src), str(out), "--force"]).exit_code == 0
    # keeping training-only layers
    res = runner.invoke(cli, ["convert", str(src), str(tmp_path / "keep.h5"), "--keep-training-layers"])
    assert res.exit_code == 0 and load_model(tmp_path / "keep.h5")["noise"].type == "GaussianNoise"
    # a non-model HDF5 file and an unknown layer type: exit 2, one line
    other = tmp_path / "other.h5"
    with h5py.File(other, "w") as f:
        f.create_dataset("data", data=np.arange(3))
    res = runner.invoke(cli, ["convert", str(other), str(tmp_path / "o.h5")])
    assert res.exit_code == 2 and len(res.output.strip().splitlines()) == 1 and "neither" in res.output
    config["config"]["layers"].append(_layer("LSTM", "lstm_9", inbound=["sm"], units=2))
    bad = write_keras_h5(tmp_path / "bad.h5", config, weights)
    res = runner.invoke(cli, ["convert", str(bad), str(tmp_path / "b.h5")])
    assert res.exit_code == 2 and "'LSTM'" in res.output and "'lstm_9'" in res.output


def test_convert_command_resnet(tmp_path):
    from click.testing import CliRunner

    from simulator.cli import cli

    src = _resnet_path("ResNet20")
    res = CliRunner().invoke(cli, ["convert", str(src), str(tmp_path / "r20.h5")])
    assert res.exit_code == 0, res.output
    assert len(load_model(tmp_path / "r20.h5").mvm_layers) == 22


def test_keras3_style_inbound_nodes(tmp_path):
    """Keras 3 legacy-h5 configs describe inbound tensors as dicts with keras_history."""
    rng = np.random.default_rng(8)
    config, weights = functional_model(rng)
    for layer in config["config"]["layers"]:
        nodes = layer.get("inbound_nodes")
        if nodes:
            tensors = [{"class_name": "__keras_tensor__", "config": {"shape": [None], "dtype": "float32",
                                                                     "keras_history": [src, 0, 0]}}
                       for src, *_ in nodes[0]]
            layer["inbound_nodes"] = [{"args": [tensors] if len(tensors) > 1 else tensors, "kwargs": {}}]
        if layer["class_name"] == "InputLayer":
            layer["config"]["batch_shape"] = layer["config"].pop("batch_input_shape")
    path = write_keras_h5(tmp_path / "k3.h5", config, weights)
    net = load_keras_h5(path)
    ref = load_keras_h5(write_keras_h5(tmp_path / "k2.h5", *functional_model(np.random.default_rng(8))))
    assert [(l.name, l.inputs) for l in net.layers] == [(l.name, l.inputs) for l in ref.layers]
