"""Test helper: a torch module computing the same function as one of our (Keras-convention) Networks.

Written from Keras' documented semantics, independently of the simulator's
executor, so that the graph-executor route (the Network) and the torch-host
route (this module through ``simulator.from_torch``) can be compared on the
same weights. Covers the layer types of the bundled digits CNN and the
CrossSim CIFAR ResNets: Conv2D, BatchNormalization, Activation, Add,
MaxPooling2D, AveragePooling2D, Flatten, Dense.

The module takes NCHW input (torch's convention).
"""
from __future__ import annotations

import math

import numpy as np
import torch
import torch.nn.functional as F
from torch import nn


def _keras_same(size: int, k: int, s: int) -> tuple[int, int]:
    out = math.ceil(size / s)
    total = max((out - 1) * s + k - size, 0)
    return total // 2, total - total // 2


class KerasGraph(nn.Module):
    def __init__(self, net) -> None:
        super().__init__()
        self.graph = [(l.name, l.type, list(l.inputs), dict(l.config)) for l in net.layers]
        self.outputs = list(net.outputs)
        self.mods = nn.ModuleDict()
        for l in net.layers:
            key = l.name.replace(".", "_")
            w = {k: torch.from_numpy(np.asarray(v, dtype=np.float32)) for k, v in l.weights.items()}
            if l.type == "Conv2D":
                k = w["kernel"].permute(3, 2, 0, 1)  # (kh, kw, cin, cout) -> (cout, cin, kh, kw)
                conv = nn.Conv2d(k.shape[1], k.shape[0], tuple(k.shape[2:]), stride=tuple(l.config.get("strides", (1, 1))),
                                 bias="bias" in w)
                conv.weight.data.copy_(k)
                if "bias" in w:
                    conv.bias.data.copy_(w["bias"])
                self.mods[key] = conv
            elif l.type == "Dense":
                lin = nn.Linear(*w["kernel"].shape, bias="bias" in w)
                lin.weight.data.copy_(w["kernel"].T)
                if "bias" in w:
                    lin.bias.data.copy_(w["bias"])
                self.mods[key] = lin
            elif l.type == "BatchNormalization":
                bn = nn.BatchNorm2d(w["moving_mean"].shape[0], eps=float(l.config.get("epsilon", 1e-3)))
                bn.running_mean.copy_(w["moving_mean"])
                bn.running_var.copy_(w["moving_variance"])
                bn.weight.data.copy_(w.get("gamma", torch.ones_like(w["moving_mean"])))
                bn.bias.data.copy_(w.get("beta", torch.zeros_like(w["moving_mean"])))
                self.mods[key] = bn
        self.eval()

    @staticmethod
    def _act(y, name):
        if name in (None, "linear"):
            return y
        if name == "relu":
            return F.relu(y)
        if name == "softmax":
            return F.softmax(y, dim=-1)
        raise NotImplementedError(name)

    def forward(self, x):
        acts = {}
        for name, typ, ins, cfg in self.graph:
            key = name.replace(".", "_")
            a = [acts[i] for i in ins]
            if typ == "Input":
                y = x
            elif typ == "Conv2D":
                kh, kw = cfg["kernel_size"]
                sh, sw = cfg.get("strides", (1, 1))
                p = cfg.get("padding", "valid")
                if p == "same":
                    (t, b), (l_, r) = _keras_same(a[0].shape[2], kh, sh), _keras_same(a[0].shape[3], kw, sw)
                elif p == "valid":
                    t = b = l_ = r = 0
                else:
                    (t, b), (l_, r) = p
                y = self._act(self.mods[key](F.pad(a[0], (l_, r, t, b))), cfg.get("activation"))
            elif typ == "BatchNormalization":
                y = self.mods[key](a[0])
            elif typ == "Activation":
                y = self._act(a[0], cfg["activation"])
            elif typ == "Add":
                y = a[0]
                for o in a[1:]:
                    y = y + o
            elif typ == "MaxPooling2D":
                y = F.max_pool2d(a[0], tuple(cfg["pool_size"]), tuple(cfg.get("strides") or cfg["pool_size"]))
            elif typ == "AveragePooling2D":
                y = F.avg_pool2d(a[0], tuple(cfg["pool_size"]), tuple(cfg.get("strides") or cfg["pool_size"]))
            elif typ == "Flatten":  # Keras flattens channels-last
                y = a[0].permute(0, 2, 3, 1).flatten(1) if a[0].dim() == 4 else a[0]
            elif typ == "Dense":
                y = self._act(self.mods[key](a[0]), cfg.get("activation"))
            else:
                raise NotImplementedError(typ)
            acts[name] = y
        return acts[self.outputs[0]]
