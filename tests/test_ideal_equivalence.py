"""Ideal hardware reproduces the floating-point network for every layer type.

The reference is an independent forward pass written with torch.nn.functional
(NCHW, Keras 'same' padding done explicitly), so both our executor
(``ideal_forward``) and the analog path (``forward`` with ideal settings) are
checked against code that shares nothing with them.
"""
import numpy as np
import pytest

import simulator
from simulator.network import Layer, Network

torch = pytest.importorskip("torch", reason="the torch extra provides the independent reference")
F = torch.nn.functional

RNG = np.random.default_rng(7)


def _w(*shape, scale=0.3):
    return (RNG.normal(size=shape) * scale).astype(np.float64)


def build_network() -> Network:
    L = Layer
    layers = [
        L("input", "Input"),
        L("c1", "Conv2D", ["input"], {"filters": 8, "kernel_size": [3, 3], "strides": [1, 1], "padding": "same", "activation": "linear"},
          {"kernel": _w(3, 3, 3, 8), "bias": _w(8)}),
        L("bn", "BatchNormalization", ["c1"], {"epsilon": 1e-3},
          {"gamma": 1 + _w(8, scale=0.1), "beta": _w(8), "moving_mean": _w(8), "moving_variance": 0.5 + np.abs(_w(8))}),
        L("a1", "Activation", ["bn"], {"activation": "relu"}),
        L("dw", "DepthwiseConv2D", ["a1"], {"kernel_size": [3, 3], "strides": [1, 1], "padding": "same", "depth_multiplier": 2},
          {"depthwise_kernel": _w(3, 3, 8, 2), "bias": _w(16)}),
        L("c2", "Conv2D", ["a1"], {"filters": 16, "kernel_size": [3, 3], "padding": "valid", "dilation_rate": [2, 2], "activation": "relu"},
          {"kernel": _w(3, 3, 8, 16), "bias": _w(16)}),
        L("zp", "ZeroPadding2D", ["c2"], {"padding": [[2, 2], [2, 2]]}),
        L("add", "Add", ["dw", "zp"]),
        L("noise", "GaussianNoise", ["add"], {"stddev": 0.1}),
        L("mp", "MaxPooling2D", ["noise"], {"pool_size": [2, 2], "strides": [2, 2], "padding": "valid"}),
        L("c3", "Conv2D", ["noise"], {"filters": 8, "kernel_size": [3, 3], "strides": [2, 2], "padding": "same", "activation": "tanh"},
          {"kernel": _w(3, 3, 16, 8), "bias": _w(8)}),
        L("cat", "Concatenate", ["mp", "c3"], {"axis": -1}),
        L("ap", "AveragePooling2D", ["cat"], {"pool_size": [2, 2], "strides": [1, 1], "padding": "valid"}),
        L("gmax", "GlobalMaxPooling2D", ["ap"]),
        L("gavg", "GlobalAveragePooling2D", ["cat"]),
        L("cat2", "Concatenate", ["gmax", "gavg"], {"axis": -1}),
        L("drop", "Dropout", ["cat2"], {"rate": 0.5}),
        L("d1", "Dense", ["drop"], {"units": 16, "activation": "sigmoid"}, {"kernel": _w(48, 16), "bias": _w(16)}),
        L("d2", "Dense", ["d1"], {"units": 10, "activation": "linear"}, {"kernel": _w(16, 10), "bias": _w(10)}),
        L("flat", "Flatten", ["ap"], {"order": "NHWC"}),
        L("d3", "Dense", ["flat"], {"units": 10, "activation": "relu"}, {"kernel": _w(384, 10, scale=0.05), "bias": _w(10)}),
        L("sum", "Add", ["d2", "d3"]),
        L("out", "Activation", ["sum"], {"activation": "softmax"}),
    ]
    return Network("alltypes", layers, ["out"], "NHWC", (10, 10, 3))


def _t(a):
    return torch.tensor(np.asarray(a), dtype=torch.float64)


def _conv(x, kernel, bias, stride, pad, dil=1, groups=1):
    (t, b), (l, r) = pad
    x = F.pad(x, (l, r, t, b))
    k = _t(kernel).permute(3, 2, 0, 1)  # (kh,kw,cin,cout) -> (cout,cin,kh,kw)
    return F.conv2d(x, k, _t(bias), stride=stride, dilation=dil, groups=groups)


def reference(net: Network, x_nhwc: np.ndarray) -> np.ndarray:
    w = {l.name: l.weights for l in net.layers}
    x = _t(x_nhwc).permute(0, 3, 1, 2)
    c1 = _conv(x, w["c1"]["kernel"], w["c1"]["bias"], 1, ((1, 1), (1, 1)))
    bn = w["bn"]
    c1 = F.batch_norm(c1, _t(bn["moving_mean"]), _t(bn["moving_variance"]), _t(bn["gamma"]), _t(bn["beta"]), eps=1e-3)
    a1 = F.relu(c1)
    dk = w["dw"]["depthwise_kernel"]  # (3,3,8,2) -> torch (16,1,3,3), out channel c*2+m
    kt = _t(dk).permute(2, 3, 0, 1).reshape(16, 1, 3, 3)
    dw = F.conv2d(F.pad(a1, (1, 1, 1, 1)), kt, _t(w["dw"]["bias"]), groups=8)
    c2 = F.relu(_conv(a1, w["c2"]["kernel"], w["c2"]["bias"], 1, ((0, 0), (0, 0)), dil=2))
    zp = F.pad(c2, (2, 2, 2, 2))
    add = dw + zp
    mp = F.max_pool2d(add, 2)
    c3 = torch.tanh(_conv(add, w["c3"]["kernel"], w["c3"]["bias"], 2, ((0, 1), (0, 1))))  # Keras same, stride 2 on 10
    cat = torch.cat([mp, c3], 1)
    ap = F.avg_pool2d(cat, 2, stride=1)
    gmax = ap.amax(dim=(2, 3))
    gavg = cat.mean(dim=(2, 3))
    cat2 = torch.cat([gmax, gavg], 1)
    d1 = torch.sigmoid(cat2 @ _t(w["d1"]["kernel"]) + _t(w["d1"]["bias"]))
    d2 = d1 @ _t(w["d2"]["kernel"]) + _t(w["d2"]["bias"])
    flat = ap.permute(0, 2, 3, 1).reshape(ap.shape[0], -1)
    d3 = F.relu(flat @ _t(w["d3"]["kernel"]) + _t(w["d3"]["bias"]))
    return torch.softmax(d2 + d3, dim=1).numpy()


NET = build_network()
X = RNG.uniform(-1, 1, size=(6, 10, 10, 3))
REF = reference(NET, X)


def rel(a, b):
    return np.abs(a - b).max() / np.abs(b).max()


def test_ideal_forward_matches_reference():
    sim = simulator.Simulation(NET, {}, seed=0)
    assert rel(sim.ideal_forward(X), REF) < 1e-10


@pytest.mark.parametrize("cfg", [
    {},
    {"style": "OFFSET"},
    {"style": "OFFSET", "digital_offset": False},
    {"balanced_style": "two_sided"},
    {"NrowsMax": 16},
    {"NrowsMax": 20, "style": "OFFSET", "digital_bias": False},
    {"digital_bias": False},
    {"fold_batchnorm": False},
    {"precision": "float32"},
], ids=lambda c: ",".join(f"{k}={v}" for k, v in c.items()) or "balanced")
def test_ideal_hardware_equals_float(cfg):
    sim = simulator.Simulation(NET, cfg, seed=0)
    tol = 1e-5 if cfg.get("precision") == "float32" else 1e-6
    assert rel(sim.forward(X), REF) < tol


def test_nchw_model_layout_converted_once():
    layers = [Layer(l.name, l.type, list(l.inputs), dict(l.config), dict(l.weights)) for l in NET.layers]
    for l in layers:
        if l.type == "Flatten":
            l.config["order"] = "NHWC"
    net = Network("alltypes_nchw", layers, ["out"], "NCHW", (3, 10, 10))
    sim = simulator.Simulation(net, {}, seed=0)
    out = sim.forward(X.transpose(0, 3, 1, 2))
    assert rel(out, REF) < 1e-6


def test_conv_transpose_matches_torch():
    k = _w(3, 3, 4, 5)  # (kh, kw, cout, cin)
    b = _w(4)
    layers = [Layer("input", "Input"),
              Layer("ct", "Conv2DTranspose", ["input"], {"filters": 4, "kernel_size": [3, 3], "strides": [2, 2],
                                                        "padding": [[1, 1], [1, 1]], "output_padding": [1, 1]},
                    {"kernel": k, "bias": b})]
    net = Network("ct", layers, ["ct"], "NCHW", (5, 6, 7))
    x = RNG.normal(size=(2, 5, 6, 7))
    ref = F.conv_transpose2d(_t(x), _t(k).permute(3, 2, 0, 1), _t(b), stride=2, padding=1, output_padding=1).numpy()
    sim = simulator.Simulation(net, {}, seed=0)
    assert rel(sim.ideal_forward(x), ref) < 1e-10
    assert rel(sim.forward(x), ref) < 1e-6


def test_gru_cell_matches_torch():
    Fin, H = 6, 5
    cell = torch.nn.GRUCell(Fin, H).double()
    w = {"weight_ih": cell.weight_ih.detach().numpy().T.copy(), "weight_hh": cell.weight_hh.detach().numpy().T.copy(),
         "bias_ih": cell.bias_ih.detach().numpy(), "bias_hh": cell.bias_hh.detach().numpy()}
    layers = [Layer("input", "Input"), Layer("gru", "GRUCell", ["input"], {"units": H}, w)]
    net = Network("gru", layers, ["gru"], "NCHW", (Fin,))
    x = RNG.normal(size=(4, Fin))
    ref = cell(_t(x)).detach().numpy()
    sim = simulator.Simulation(net, {"NrowsMax": 4}, seed=0)
    assert rel(sim.forward(x), ref) < 1e-6
