#!/usr/bin/env python
"""Train the bundled witin-style digits model (simulator/data/witin_digits.h5).

A small CNN for the 8x8 digits, trained in three steps as the witin_nn guide
recommends (2.7): floating-point training, then quantization-aware training
(QAT) with witin's quantization rules, then noise-aware training (NAT) at a
low noise level. The quantization is re-implemented here with torch and a
straight-through estimator (no witin_nn needed):

* input  NPU_x = clip(round(x*scale_x), ...) with the layer type's input rule
  (WitinConv2d with handle_neg_in FALSE: signed, (xb-1) bits; WitinLinear:
  unsigned, xb bits), weights clip(round(w*scale_w), -128, 127), bias
  clip(round(b*scale_x*scale_w/128), -128N, 127N)*128, output
  clip(round(acc/g), -128, 127) / scale_y;
* scales from the recorded io_max of each layer's input, weights and output:
  ``2**(bits-1) / 2**ceil(log2(io_max))``;
* NAT: Gaussian noise on the accumulator with the NORMAL model's variance.

The CIM layers are torch modules named WitinConv2d / WitinLinear carrying a
``layer_config`` and ``autoscale_{x,weight,y}_obj.io_max`` like witin_nn's, so
``simulator.io.torch_import.from_torch`` imports the trained network with all
witin parameters; the file is written with ``simulator.network.save_model``.

Usage: python scripts/train_witin_digits.py [--out simulator/data/witin_digits.h5] [--seed 0]
"""
from __future__ import annotations

import argparse
import math
import sys
from pathlib import Path

import numpy as np
import torch
from torch import nn

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))

from simulator.io.digits import load_digits_split  # noqa: E402
from simulator.witin import quant  # noqa: E402

BIAS_ROW_N = 8
NAT_LEVEL = 2


class LayerConfig:
    """The witin_nn layer_config fields the importer reads."""

    def __init__(self, **kw):
        self.use_quantization = True
        self.noise_level = 0
        self.x_quant_bits = 8
        self.y_quant_bits = 8
        self.weight_quant_bits = 8
        self.use_auto_scale = True
        self.bias_row_N = BIAS_ROW_N
        self.handle_neg_in = "FALSE"
        self.shift_num = 1.0
        self.w_clip = None
        self.bias_d = 0.0
        self.scale_x = self.scale_y = self.scale_weight = 1
        self.__dict__.update(kw)


class AutoScale(nn.Module):
    """Running maximum |value| (witin_nn's io_max)."""

    def __init__(self):
        super().__init__()
        self.io_max = nn.Parameter(torch.tensor(0.0), requires_grad=False)

    def observe(self, t: torch.Tensor) -> None:
        with torch.no_grad():
            self.io_max.copy_(torch.maximum(self.io_max, t.detach().abs().max()))


def _ste_round(t):
    return t + (torch.round(t) - t).detach()


def _scale(io_max: float, bits: int) -> float:
    return 2.0 ** (bits - 1) / 2.0 ** math.ceil(math.log2(io_max))


class _WitinMixin:
    """Quantized forward shared by the conv and linear layers (x_quant_bits = y_quant_bits = 8)."""

    signed_input = False

    def _init_witin(self):
        self.layer_config = LayerConfig()
        self.autoscale_x_obj = AutoScale()
        self.autoscale_weight_obj = AutoScale()
        self.autoscale_y_obj = AutoScale()
        self.mode = "float"  # "observe", "float", "qat"

    def _product(self, x, w, b):  # pragma: no cover - implemented by subclasses
        raise NotImplementedError

    def forward(self, x):
        if self.mode != "qat":
            y = self._product(x, self.weight, self.bias)
            if self.mode == "observe":
                self.autoscale_x_obj.observe(x)
                self.autoscale_weight_obj.observe(self.weight)
                self.autoscale_y_obj.observe(y)
            return y
        xb = 8
        bits_x = xb if self.signed_input else xb + 1  # unsigned inputs use all bits for magnitude
        sx = _scale(float(self.autoscale_x_obj.io_max), bits_x)
        sw = _scale(float(self.autoscale_weight_obj.io_max), 8)
        sy = _scale(float(self.autoscale_y_obj.io_max), 8)
        g = sx * sw / sy
        lo, hi = (-(2 ** (xb - 1)), 2 ** (xb - 1) - 1) if self.signed_input else (0, 2**xb - 1)
        nx = torch.clamp(_ste_round(x * sx), lo, hi)
        nw = torch.clamp(_ste_round(self.weight * sw), -128, 127)
        nb = torch.clamp(_ste_round(self.bias * sx * sw / 128), -128 * BIAS_ROW_N, 127 * BIAS_ROW_N) * 128
        acc = self._product(nx, nw, nb)
        level = self.layer_config.noise_level
        if self.training and level > 0:
            k, b0 = quant.noise_coefficients(level)
            var = self._product(nx.detach() ** 2, (k * nw.detach().abs() + b0) ** 2, None)
            bias_var = BIAS_ROW_N * (128 * (k * (nb.detach() / 128 / BIAS_ROW_N).abs() + b0)) ** 2
            var = var + bias_var.reshape(self._bias_shape(acc).shape)
            acc = acc + torch.randn_like(acc) * var.sqrt()
        ny = torch.clamp(_ste_round(acc / g), -128, 127)
        return ny / sy


class WitinConv2d(_WitinMixin, nn.Conv2d):
    signed_input = True  # witin_nn's WitinConv2d with handle_neg_in FALSE

    def __init__(self, *args, **kw):
        super().__init__(*args, **kw)
        self._init_witin()

    def _product(self, x, w, b):
        return nn.functional.conv2d(x, w, b, self.stride, self.padding, self.dilation, self.groups)

    @staticmethod
    def _bias_shape(acc):
        return torch.ones(1, acc.shape[1], 1, 1)


class WitinLinear(_WitinMixin, nn.Linear):
    def __init__(self, *args, **kw):
        super().__init__(*args, **kw)
        self._init_witin()

    def _product(self, x, w, b):
        return nn.functional.linear(x, w, b)

    @staticmethod
    def _bias_shape(acc):
        return torch.ones(1, acc.shape[1])


class Net(nn.Module):
    def __init__(self):
        super().__init__()
        self.conv1 = WitinConv2d(1, 8, 3, padding=1)
        self.relu1 = nn.ReLU()
        self.pool1 = nn.MaxPool2d(2)
        self.conv2 = WitinConv2d(8, 16, 3, padding=1)
        self.relu2 = nn.ReLU()
        self.pool2 = nn.MaxPool2d(2)
        self.flatten = nn.Flatten()
        self.fc = WitinLinear(16 * 2 * 2, 10)

    def forward(self, x):
        x = self.pool1(self.relu1(self.conv1(x)))
        x = self.pool2(self.relu2(self.conv2(x)))
        return self.fc(self.flatten(x))

    def witin_layers(self):
        return [m for m in self.modules() if isinstance(m, _WitinMixin)]

    def set_mode(self, mode: str, noise_level: int = 0):
        for m in self.witin_layers():
            m.mode = mode
            m.layer_config.noise_level = noise_level


def _nchw(x: np.ndarray) -> torch.Tensor:
    return torch.from_numpy(np.ascontiguousarray(x.transpose(0, 3, 1, 2)))


def _accuracy(model, x, y) -> float:
    model.eval()
    with torch.no_grad():
        return float((model(x).argmax(1) == y).float().mean())


def _train(model, x, y, epochs, lr, seed):
    g = torch.Generator().manual_seed(seed)
    opt = torch.optim.Adam(model.parameters(), lr=lr)
    loss_fn = nn.CrossEntropyLoss()
    for _ in range(epochs):
        model.train()
        perm = torch.randperm(len(y), generator=g)
        for i in range(0, len(y), 64):
            idx = perm[i : i + 64]
            opt.zero_grad()
            loss_fn(model(x[idx]), y[idx]).backward()
            opt.step()


def _record_io_max(model, x):
    for m in model.witin_layers():
        m.autoscale_x_obj.io_max.zero_()
        m.autoscale_weight_obj.io_max.zero_()
        m.autoscale_y_obj.io_max.zero_()
    model.set_mode("observe")
    model.eval()
    with torch.no_grad():
        model(x)


def main(argv=None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--out", type=Path, default=ROOT / "simulator" / "data" / "witin_digits.h5")
    ap.add_argument("--seed", type=int, default=0)
    args = ap.parse_args(argv)
    torch.manual_seed(args.seed)
    xtr, ytr = load_digits_split("train")
    xte, yte = load_digits_split("test")
    Xtr, Ytr = _nchw(xtr), torch.from_numpy(ytr)
    Xte, Yte = _nchw(xte), torch.from_numpy(yte)

    model = Net()
    model.set_mode("float")
    _train(model, Xtr, Ytr, epochs=40, lr=3e-3, seed=args.seed)
    float_acc = _accuracy(model, Xte, Yte)
    print(f"step 1 float        test accuracy {float_acc:.4f}")

    _record_io_max(model, Xtr)
    model.set_mode("qat")
    print(f"       float model, quantized   {_accuracy(model, Xte, Yte):.4f}")
    _train(model, Xtr, Ytr, epochs=15, lr=1e-3, seed=args.seed + 1)
    _record_io_max(model, Xtr)  # weights and activations moved: re-derive the scales (auto-scale update)
    model.set_mode("qat")
    qat_acc = _accuracy(model, Xte, Yte)
    print(f"step 2 QAT          test accuracy {qat_acc:.4f}")

    model.set_mode("qat", NAT_LEVEL)
    _train(model, Xtr, Ytr, epochs=15, lr=5e-4, seed=args.seed + 2)
    _record_io_max(model, Xtr)
    model.set_mode("qat", 0)
    nat_acc = _accuracy(model, Xte, Yte)
    print(f"step 3 NAT (level {NAT_LEVEL}) test accuracy {nat_acc:.4f} (evaluated without noise)")

    # import with the witin parameters and check the chip semantics agree with the torch QAT forward
    from simulator.io.torch_import import from_torch
    from simulator.network import save_model
    from simulator.witin.chip import WitinChipLayer

    model.eval()
    net = from_torch(model, Xte[:2], name="witin_digits")
    net.name = "witin_digits"
    rng = np.random.default_rng(0)
    chips = {l.name: WitinChipLayer(l, None, np, rng) for l in net.layers if l.attrs.get("witin")}
    x = xte.astype(np.float32)  # NHWC
    acts = {"input": x}
    for layer in net.layers[1:]:
        a = acts[layer.inputs[0]]
        if layer.name in chips:
            acts[layer.name] = chips[layer.name].forward(a)
        elif layer.type == "Activation":
            acts[layer.name] = np.maximum(a, 0)
        elif layer.type == "MaxPooling2D":
            n, h, w, c = a.shape
            acts[layer.name] = a.reshape(n, h // 2, 2, w // 2, 2, c).max(axis=(2, 4))
        elif layer.type == "Flatten":
            acts[layer.name] = a.transpose(0, 3, 1, 2).reshape(len(a), -1)
        else:
            raise SystemExit(f"unexpected layer {layer.type}")
    chip_acc = float((acts[net.outputs[0]].argmax(1) == yte).mean())
    with torch.no_grad():
        torch_logits = model(Xte).numpy()
    agree = float(np.mean(np.abs(torch_logits - acts[net.outputs[0]]) < 1e-6))
    print(f"chip semantics (noise 0) test accuracy {chip_acc:.4f}; logits equal to the torch QAT forward: {agree:.4f}")

    net.metadata.update({
        "dataset": "digits",
        "task": "digits",
        "trained_by": "scripts/train_witin_digits.py",
        "float_test_accuracy": float_acc,
        "qat_test_accuracy": qat_acc,
        "test_accuracy": chip_acc,
        "witin_chip_test_accuracy": chip_acc,
        "nat_noise_level": NAT_LEVEL,
        "input_range": [0.0, 1.0],
        "witin": True,
    })
    args.out.parent.mkdir(parents=True, exist_ok=True)
    save_model(net, args.out)
    print(f"wrote {args.out} ({args.out.stat().st_size} bytes)")
    return 0


if __name__ == "__main__":
    sys.exit(main())
