"""Train the bundled digits models and save them in xbarsim's HDF5 format.

    python scripts/train_digits.py            # writes simulator/data/digits_cnn.h5 and digits_mlp.h5

Needs the ``torch`` extra. Data: scikit-learn's 8x8 digits, split by
:func:`simulator.io.digits.load_digits_split` (1257 train / 540 test).
Each MVM layer records ``input_range`` (min, max of its inputs over the
training images), the default DAC range when ``dac_bits > 0``.
"""
from __future__ import annotations

import argparse
from pathlib import Path

import numpy as np
import torch
from torch import nn

from simulator.io.digits import load_digits_split
from simulator.network import Layer, Network, save_model

OUT = Path(__file__).resolve().parents[1] / "simulator" / "data"


class DigitsCNN(nn.Module):
    """conv-BN-relu, conv-relu, maxpool, conv-relu + skip add, flatten (NHWC order), dense-relu, dense."""

    def __init__(self):
        super().__init__()
        self.conv1 = nn.Conv2d(1, 16, 3, padding=1, bias=True)
        self.bn1 = nn.BatchNorm2d(16, eps=1e-3)
        self.conv2 = nn.Conv2d(16, 32, 3, padding=1)
        self.pool = nn.MaxPool2d(2)
        self.conv3 = nn.Conv2d(32, 32, 3, padding=1)
        self.fc1 = nn.Linear(4 * 4 * 32, 64)
        self.fc2 = nn.Linear(64, 10)

    def forward(self, x, record=None):
        def rec(name, t):
            if record is not None:
                record.setdefault(name, []).append(t.detach())
        rec("conv1", x)
        x = torch.relu(self.bn1(self.conv1(x)))
        rec("conv2", x)
        x = self.pool(torch.relu(self.conv2(x)))
        rec("conv3", x)
        x = x + torch.relu(self.conv3(x))
        x = x.permute(0, 2, 3, 1).flatten(1)  # NHWC flatten order
        rec("fc1", x)
        x = torch.relu(self.fc1(x))
        rec("fc2", x)
        return self.fc2(x)


class DigitsMLP(nn.Module):
    def __init__(self):
        super().__init__()
        self.fc1 = nn.Linear(64, 64)
        self.fc2 = nn.Linear(64, 10)

    def forward(self, x, record=None):
        x = x.flatten(1)
        if record is not None:
            record.setdefault("fc1", []).append(x)
        x = torch.relu(self.fc1(x))
        if record is not None:
            record.setdefault("fc2", []).append(x.detach())
        return self.fc2(x)


def train(model: nn.Module, epochs: int, seed: int) -> tuple[float, dict]:
    torch.manual_seed(seed)
    xtr, ytr = load_digits_split("train")
    xte, yte = load_digits_split("test")
    Xtr = torch.tensor(xtr).permute(0, 3, 1, 2)
    Xte = torch.tensor(xte).permute(0, 3, 1, 2)
    Ytr = torch.tensor(ytr)
    opt = torch.optim.Adam(model.parameters(), lr=2e-3, weight_decay=1e-4)
    sched = torch.optim.lr_scheduler.CosineAnnealingLR(opt, epochs)
    for _ in range(epochs):
        model.train()
        perm = torch.randperm(len(Ytr))
        for i in range(0, len(perm), 64):
            idx = perm[i : i + 64]
            xb = Xtr[idx] + 0.02 * torch.randn_like(Xtr[idx])
            loss = nn.functional.cross_entropy(model(xb), Ytr[idx])
            opt.zero_grad()
            loss.backward()
            opt.step()
        sched.step()
    model.eval()
    record: dict = {}
    with torch.no_grad():
        model(Xtr, record=record)
        acc = (model(Xte).argmax(1).numpy() == yte).mean()
    ranges = {k: (float(torch.cat(v).min()), float(torch.cat(v).max())) for k, v in record.items()}
    return float(acc), ranges


def _np(t) -> np.ndarray:
    return t.detach().numpy().astype(np.float32)


def conv_kernel(conv: nn.Conv2d) -> np.ndarray:
    return _np(conv.weight).transpose(2, 3, 1, 0)  # (cout, cin, kh, kw) -> (kh, kw, cin, cout)


def dense_head(m: nn.Module) -> list[Layer]:
    """fc1 (relu) and fc2 (logits) reading the "flatten" layer."""
    return [
        Layer("fc1", "Dense", ["flatten"], {"units": 64, "activation": "relu", "use_bias": True},
              {"kernel": _np(m.fc1.weight).T.copy(), "bias": _np(m.fc1.bias)}),
        Layer("fc2", "Dense", ["fc1"], {"units": 10, "activation": "linear", "use_bias": True},
              {"kernel": _np(m.fc2.weight).T.copy(), "bias": _np(m.fc2.bias)}),
    ]


def finish(name: str, layers: list[Layer], acc: float, ranges: dict) -> Network:
    """The Network, with each MVM layer's training-set input range recorded as ``input_range``."""
    for l in layers:
        if l.name in ranges:
            l.attrs["input_range"] = list(ranges[l.name])
    return Network(name, layers, ["fc2"], "NHWC", (8, 8, 1),
                   {"dataset": "digits", "float_test_accuracy": acc, "trained_by": "scripts/train_digits.py"})


def export_cnn(m: DigitsCNN, acc: float, ranges: dict) -> Network:
    pad = [[1, 1], [1, 1]]
    conv = lambda f: {"filters": f, "kernel_size": [3, 3], "strides": [1, 1], "padding": pad, "use_bias": True}
    layers = [
        Layer("input", "Input"),
        Layer("conv1", "Conv2D", ["input"], {**conv(16), "activation": "linear"},
              {"kernel": conv_kernel(m.conv1), "bias": _np(m.conv1.bias)}),
        Layer("bn1", "BatchNormalization", ["conv1"], {"epsilon": m.bn1.eps},
              {"gamma": _np(m.bn1.weight), "beta": _np(m.bn1.bias),
               "moving_mean": _np(m.bn1.running_mean), "moving_variance": _np(m.bn1.running_var)}),
        Layer("relu1", "Activation", ["bn1"], {"activation": "relu"}),
        Layer("conv2", "Conv2D", ["relu1"], {**conv(32), "activation": "relu"},
              {"kernel": conv_kernel(m.conv2), "bias": _np(m.conv2.bias)}),
        Layer("pool", "MaxPooling2D", ["conv2"], {"pool_size": [2, 2], "strides": [2, 2], "padding": "valid"}),
        Layer("conv3", "Conv2D", ["pool"], {**conv(32), "activation": "relu"},
              {"kernel": conv_kernel(m.conv3), "bias": _np(m.conv3.bias)}),
        Layer("skip", "Add", ["pool", "conv3"]),
        Layer("flatten", "Flatten", ["skip"], {"order": "NHWC"}),
        *dense_head(m),
    ]
    return finish("digits_cnn", layers, acc, ranges)


def export_mlp(m: DigitsMLP, acc: float, ranges: dict) -> Network:
    layers = [
        Layer("input", "Input"),
        Layer("flatten", "Flatten", ["input"], {"order": "NHWC"}),
        *dense_head(m),
    ]
    return finish("digits_mlp", layers, acc, ranges)


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__)
    ap.add_argument("--epochs", type=int, default=40)
    ap.add_argument("--seed", type=int, default=0)
    args = ap.parse_args()
    torch.set_num_threads(2)
    cnn = DigitsCNN()
    acc, ranges = train(cnn, args.epochs, args.seed)
    save_model(export_cnn(cnn, acc, ranges), OUT / "digits_cnn.h5")
    print(f"digits_cnn: test accuracy {acc:.4f}")
    mlp = DigitsMLP()
    acc, ranges = train(mlp, args.epochs, args.seed)
    save_model(export_mlp(mlp, acc, ranges), OUT / "digits_mlp.h5")
    print(f"digits_mlp: test accuracy {acc:.4f}")


if __name__ == "__main__":
    main()
