"""Whole witin_nn networks for the comparison and fixture scripts (needs witin_nn and torch).

Used by ``scripts/compare_witin_nn.py --networks`` and
``scripts/make_witin_fixtures.py``; not part of the package. Every network is
built from witin_nn 0.1.3 modules the way a witin user writes one, trained
in float mode (``use_quantization = False``) on the bundled 8x8 digits, and
then rebuilt in quantization mode from the float model's ``state_dict``
(witin_nn copies a layer's config when the layer is built, so a model cannot
be switched to quantization mode afterwards). The io_max of every layer is
then recorded from the training images (:func:`record_io_max`), as witin_nn's
auto-scale does during quantization-aware training.

Networks (input: digits, NCHW 1x8x8):

* ``conv_relu``: conv-relu-conv-relu-maxpool-linear, 8-bit FALSE inputs;
* ``pn_shift10`` / ``pn_shift12``: conv (PN) - WitinTanh - conv (Shift) -
  avgpool - linear (PN) at 10 / 12 input and output bits;
* ``decoder``: conv stride 2 - relu - conv-transpose - WitinSigmoid (an
  autoencoder; output 1x8x8);
* ``batchnorm``: conv - nn.BatchNorm2d - relu - conv - WitinBatchNorm2d -
  WitinPReLU - adaptive avgpool - linear;
* ``elementwise``: conv - WitinGELU, then WitinElementAdd / Mul / Divide,
  WitinCat, WitinSqrt, WitinMean, WitinMatMul, WitinHypot, WitinInvSqrt,
  WitinClnBn2d on its branches - linear.
"""
from __future__ import annotations

import sys
from pathlib import Path

import numpy as np

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))


def load_witin(checkout: Path):
    """Import witin_nn from a witmem/witin-nn checkout (see ``compare_witin_nn.load_witin``)."""
    sys.path.insert(0, str(Path(__file__).resolve().parent))
    from compare_witin_nn import load_witin as load

    return load(Path(checkout))


NAMES = ("conv_relu", "pn_shift10", "pn_shift12", "decoder", "batchnorm", "elementwise")
CLASSIFIERS = ("conv_relu", "pn_shift10", "pn_shift12", "batchnorm", "elementwise")


def build(wn, name: str, quant: bool, noise_level: int = 0):
    """The network ``name`` with every witin layer in quantization mode (``quant``) or float mode."""
    import torch
    from torch import nn

    neg = wn.HandleNegInType

    def cfg(**kw):
        c = wn.LayerConfigFactory.get_default_config()
        c.use_quantization = quant
        c.noise_level = noise_level if quant else 0
        for k, v in kw.items():
            setattr(c, k, v)
        return c

    if name == "conv_relu":
        class Net(nn.Module):
            def __init__(s):
                super().__init__()
                s.c1 = wn.WitinConv2d(1, 8, 3, padding=1, layer_config=cfg())
                s.c2 = wn.WitinConv2d(8, 8, 3, padding=1, layer_config=cfg())
                s.pool = nn.MaxPool2d(2)
                s.fc = wn.WitinLinear(8 * 4 * 4, 10, layer_config=cfg())

            def forward(s, x):
                x = torch.relu(s.c1(x))
                x = s.pool(torch.relu(s.c2(x)))
                return s.fc(torch.flatten(x, 1))
    elif name in ("pn_shift10", "pn_shift12"):
        b = 10 if name.endswith("10") else 12

        class Net(nn.Module):
            def __init__(s):
                super().__init__()
                s.c1 = wn.WitinConv2d(1, 8, 3, padding=1, layer_config=cfg(x_quant_bits=b, y_quant_bits=b, handle_neg_in=neg.PN))
                s.act = wn.WitinTanh(layer_config=cfg(x_quant_bits=b, y_quant_bits=b))
                s.c2 = wn.WitinConv2d(8, 8, 3, padding=1, layer_config=cfg(x_quant_bits=b, y_quant_bits=b,
                                                                         handle_neg_in=neg.Shift, shift_num=1.0))
                s.pool = nn.AvgPool2d(2)
                s.fc = wn.WitinLinear(8 * 4 * 4, 10, layer_config=cfg(x_quant_bits=b, y_quant_bits=b, handle_neg_in=neg.PN))

            def forward(s, x):
                x = s.act(s.c1(x))
                x = s.pool(s.c2(x))
                return s.fc(torch.flatten(x, 1))
    elif name == "decoder":
        class Net(nn.Module):
            def __init__(s):
                super().__init__()
                s.enc = wn.WitinConv2d(1, 8, 3, stride=2, padding=1, layer_config=cfg())
                s.dec = wn.WitinConvTranspose2d(8, 1, 2, stride=2, layer_config=cfg(handle_neg_in=neg.PN))
                s.sig = wn.WitinSigmoid(layer_config=cfg())

            def forward(s, x):
                return s.sig(s.dec(torch.relu(s.enc(x))))
    elif name == "batchnorm":
        class Net(nn.Module):
            def __init__(s):
                super().__init__()
                s.c1 = wn.WitinConv2d(1, 8, 3, padding=1, layer_config=cfg())
                s.bn1 = nn.BatchNorm2d(8)
                s.c2 = wn.WitinConv2d(8, 8, 3, padding=1, layer_config=cfg())
                s.bn2 = wn.WitinBatchNorm2d(8, layer_config=cfg())
                s.act = wn.WitinPReLU(num_parameters=8, layer_config=cfg())
                s.gap = nn.AdaptiveAvgPool2d(1)
                s.fc = wn.WitinLinear(8, 10, layer_config=cfg(handle_neg_in=neg.PN))

            def forward(s, x):
                x = torch.relu(s.bn1(s.c1(x)))
                x = s.act(s.bn2(s.c2(x)))
                return s.fc(torch.flatten(s.gap(x), 1))
    elif name == "elementwise":
        class Net(nn.Module):
            def __init__(s):
                super().__init__()
                s.c1 = wn.WitinConv2d(1, 4, 3, padding=1, layer_config=cfg())
                s.gelu = wn.WitinGELU(layer_config=cfg())
                s.c2 = wn.WitinConv2d(4, 4, 3, padding=1, layer_config=cfg())
                s.add = wn.WitinElementAdd(layer_config=cfg())
                s.mul = wn.WitinElementMul(layer_config=cfg())
                s.div = wn.WitinElementDivide(layer_config=cfg())
                s.hyp = wn.WitinHypot(layer_config=cfg())
                s.sqrt = wn.WitinSqrt(layer_config=cfg())
                s.isq = wn.WitinInvSqrt(layer_config=cfg())
                s.cln = wn.WitinClnBn2d(layer_config=cfg())
                s.cat = wn.WitinCat(dim=1, layer_config=cfg())
                s.mean = wn.WitinMean(dim=3, keepdim=True, layer_config=cfg())
                s.mm = wn.WitinMatMul(layer_config=cfg())
                s.fc = wn.WitinLinear(16 * 8, 10, layer_config=cfg(handle_neg_in=neg.PN))

            def forward(s, x):
                a = s.gelu(s.c1(x))
                b = torch.relu(s.c2(a))
                e = s.add(a, b)
                m = s.mul(a, b)
                d = s.div(a, s.sqrt(b))
                i = s.isq(s.hyp(a, b))
                n = s.cln(s.cat(s.cat(e, m), s.cat(d, i)))  # 16 channels
                p = s.mm(n, s.mean(n))  # (N, 16, 8, 8) @ (N, 16, 8, 1)
                return s.fc(torch.flatten(p, 1))
    else:
        raise ValueError(f"unknown network {name!r}; choose from {NAMES}")
    return Net()


def digits():
    """(x_train, y_train, x_test, y_test) as NCHW float32 torch tensors (bundled digits)."""
    import torch

    from simulator.io.digits import load_digits_split

    xtr, ytr = load_digits_split("train")
    xte, yte = load_digits_split("test")
    t = lambda a: torch.from_numpy(np.ascontiguousarray(a.transpose(0, 3, 1, 2)))  # noqa: E731
    return t(xtr), torch.from_numpy(ytr), t(xte), torch.from_numpy(yte)


def train_float(wn, name: str, seed: int = 0, epochs: int = 30):
    """Float training (use_quantization = False) with Adam; returns the float model's state_dict."""
    import torch

    torch.manual_seed(seed)
    net = build(wn, name, quant=False)
    xtr, ytr, _, _ = digits()
    opt = torch.optim.Adam(net.parameters(), lr=3e-3)
    g = torch.Generator().manual_seed(seed)
    net.train()
    for _ in range(epochs):
        perm = torch.randperm(len(xtr), generator=g)
        for i in range(0, len(xtr), 64):
            xb, yb = xtr[perm[i : i + 64]], ytr[perm[i : i + 64]]
            out = net(xb)
            loss = ((out - xb) ** 2).mean() if name == "decoder" else torch.nn.functional.cross_entropy(out, yb)
            opt.zero_grad()
            loss.backward()
            opt.step()
    return {k: v for k, v in net.state_dict().items() if not k.endswith("io_max")}


def record_io_max(net, x, rounds: int = 3, bn_effective_weight: bool = False) -> None:
    """Set every witin layer's io_max to the max |value| its inputs, weights and output take on ``x``.

    Starts from io_max = 8 and repeats (each round's scales change the next
    layers' inputs slightly), like the auto-scale update of witin_nn training.
    ``bn_effective_weight``: a WitinBatchNorm2d's weight io_max is that of the
    weight it quantizes, ``gamma / sqrt(var + eps)``, instead of ``gamma``
    (the fixtures were recorded without it).
    """
    import torch

    mods = [m for m in net.modules() if any(n.endswith("io_max") for n, _ in m.named_parameters(recurse=False))
            or any(hasattr(m, f"autoscale_{p}_obj") for p in ("x", "x1"))]
    for m in mods:
        for n, p in m.named_parameters():
            if n.endswith("io_max"):
                p.data.fill_(8.0)
    net.eval()
    for _ in range(rounds):
        rec: dict[int, dict[str, float]] = {}

        def hook(mod, args, out):
            r = rec.setdefault(id(mod), {})
            names = ["x"] if len(args) == 1 else ["x1", "x2"]
            for nm, a in zip(names, args):
                r[nm] = max(r.get(nm, 0.0), float(a.detach().abs().max()))
            r["y"] = max(r.get("y", 0.0), float(out.detach().abs().max()))
            w = getattr(mod, "weight", None)
            if isinstance(w, torch.Tensor):
                if bn_effective_weight and type(mod).__name__ == "WitinBatchNorm2d":
                    w = w / torch.sqrt(mod.running_var + mod.eps)
                r["weight"] = float(w.detach().abs().max())

        hs = [m.register_forward_hook(hook) for m in mods]
        with torch.no_grad():
            net(x)
        for h in hs:
            h.remove()
        for m in mods:
            for nm, v in rec.get(id(m), {}).items():
                o = getattr(m, f"autoscale_{nm}_obj", None)
                if o is not None and v > 0:
                    o.io_max.data.fill_(v)


def quantized(wn, name: str, state: dict, noise_level: int = 0, io_from=None, record_float: bool = False):
    """The quantization-mode network with the float weights ``state`` and recorded io_max.

    ``io_from``: a quantized network whose io_max values are copied (so that
    noisy copies use the noise-free calibration); else recorded on the training
    images, on the quantized network itself (:func:`record_io_max`) or, with
    ``record_float``, once on the float network (no feedback of the
    quantization into the ranges: a 12-bit PN convolution, whose output
    witin_nn clips to int8 steps, otherwise shrinks its own io_max round after round).
    """
    net = build(wn, name, quant=True, noise_level=noise_level)
    net.load_state_dict(state, strict=False)
    if io_from is None and record_float:
        ref = build(wn, name, quant=False)
        ref.load_state_dict(state, strict=False)
        xtr, _, _, _ = digits()
        record_io_max(ref, xtr, rounds=1, bn_effective_weight=True)
        io_from = ref
    if io_from is not None:
        src = dict(io_from.named_parameters())
        for n, p in net.named_parameters():
            if n.endswith("io_max"):
                p.data.copy_(src[n].data)
    else:
        xtr, _, _, _ = digits()
        record_io_max(net, xtr)
    net.eval()
    return net
