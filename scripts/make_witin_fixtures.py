#!/usr/bin/env python
"""Generate the witin_nn reference fixtures under tests/fixtures/ (needs witin_nn, torch, scikit-learn).

How the stored fixtures were made (witin_nn 0.1.3, the compiled ``py311_linux``
build of the public witmem/witin-nn repository, CPU, torch 2.13.0)::

    git -C <mirror> archive HEAD py311_linux | tar -x -C /tmp/witin-nn
    pip install --target /tmp/witin-deps einops          # witin_nn's only extra dependency
    PYTHONPATH=/tmp/witin-deps python scripts/make_witin_fixtures.py /tmp/witin-nn

Nothing of witin_nn is copied; only its outputs are stored:

* ``witin_digital.npz``: for each of the 15 digital operators, ``CASES``
  random cases (``random.Random(SEED)`` for the configs, a torch Generator
  seeded with ``SEED`` for the data): bit widths (x / y / left / right 8, 10,
  12; weight 4..8), io_max ``exp(U(-2.5, 3))`` for every autoscale buffer,
  inputs ``randn * {0.3, 1, 3, 10}`` of shape (2, 3, 3, 4) (NCHW), and every
  third case with fixed scales (``use_auto_scale = False``). Keys
  ``<op>/<i>/{config,x1,x2,w_*,out}``; ``config`` is a JSON string with the
  layer_config values, io_max values and the axis.
* ``witin_fields.npz`` (``--only fields``): ``FIELD_CASES`` single CIM layers
  drawn by ``scripts/compare_witin_nn.py --fields`` (seed ``SEED``), i.e. with
  output_fp_clip, to_linear, padding_mode reflect and use_quantization =
  False among the random configs; keys ``<i>/{layer,x,out,w_*}`` with the
  imported layer (type, config, witin attrs) as JSON.
* ``witin_net_<name>.h5`` + ``witin_networks.npz``: the networks of
  ``scripts/witin_networks.py`` (float-trained for ``EPOCHS`` epochs with
  ``torch.manual_seed(0)``, rebuilt in quantization mode, io_max recorded on
  the training digits), imported with ``simulator.io.torch_import.from_torch``
  and saved in xbarsim's model format; the npz holds 32 test digits and
  witin_nn's noise-free outputs (``<name>/x``, ``<name>/out``) and, for
  ``conv_relu``, the per-element output std over ``NOISE_CALLS`` calls at
  noise levels 3 and 9 (``conv_relu/std_L``).
* ``witin_vpu_noise.npz`` (``--only vpu_noise``): ``VPU_CASES`` random
  ``hardware = VPU`` convolutions drawn like ``--fields`` (keys
  ``vpu/<i>/{layer,x,out,w_*}``, witin_nn's noise-free outputs) and, for
  each entry of ``NOISE_CASES`` (noise model, layer kind, level), one random
  layer of ``compare_witin_nn.build_case`` (output io_max x 8, as
  ``--noise-models`` does) with the mean and per-element std of
  ``NOISE_MODEL_CALLS`` witin_nn outputs, each the first call of a fresh copy
  of the layer (keys ``noise/<i>/{layer,x,mean,std,w_*}``). witin_nn 0.1.3's
  SIMPLE model compounds two of its stds with every call of a layer; the
  first call draws the model's distribution.
* ``witin_unread_fields.npz`` (``--only unread_fields``): digital cases as
  in ``witin_digital.npz`` (seed ``SEED + 5``) with the layer_config values
  of ``UNREAD_CASES``: ``x_clip`` of WitinSigmoid / WitinTanh in both modes,
  ``gelu_shift_num`` of WitinGELU, ``cln_simple`` of WitinClnBn2d (every
  third case with fixed scales).
* ``witin_g_algo.npz`` (``--only g_algo``): ``G_ALGO_CASES`` single CIM
  layers drawn as for ``witin_fields.npz`` (VPU too, seed ``SEED + 7``)
  with ``G_algo`` cycling through ``G_ALGO_VALUES`` (keys as there), and the
  ``G_ALGO_NOISE`` layers' output mean / std over ``NOISE_MODEL_CALLS``
  first calls (keys ``noise/<i>/{layer,x,mean,std,w_*}``).
* ``witin_export_float.pt2`` / ``witin_export_fixed.pt2`` (``--only export``):
  ``torch.export.export(..., strict=False)`` programs of a tiny witin model
  (WitinConv2d 1->2, 3x3 - relu - WitinLinear 32->3, input 1x1x4x4, weights
  from ``torch.manual_seed(SEED)``) in float mode and in quantization mode
  with fixed scales (scale_x = scale_y = 16, scale_weight = 64). The default
  auto-scale quantization mode cannot be exported at all (witin_nn checks its
  scale with a Python ``assert`` on a tensor, which torch.export refuses as a
  data-dependent guard); the script prints that error.
"""
from __future__ import annotations

import argparse
import json
import random
import sys
from pathlib import Path

import numpy as np

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))
sys.path.insert(0, str(ROOT / "scripts"))

import witin_networks as W  # noqa: E402

SEED = 17
VPU_CASES = 24
NOISE_MODEL_CALLS = 1000
NOISE_CASES = (("SIMPLE", "Linear", 2, "FALSE"), ("SIMPLE", "Linear", 7, "PN"), ("SIMPLE", "Linear", 4, "Shift"),
               ("SIMPLE", "Conv2d", 3, "FALSE"), ("SIMPLE", "Conv2d", 6, "PN"), ("SIMPLE", "ConvTranspose2d", 5, "FALSE"),
               ("SIMPLE", "ConvTranspose2d", 9, "PN"), ("SIMPLE", "Conv2d to_linear", 5, "FALSE"),
               ("MBS", "Linear", 3, "FALSE"), ("MBS", "Linear", 9, "PN"), ("MBS", "Linear", 6, "Shift"),
               ("MBS", "Conv2d to_linear", 4, "FALSE"))
CASES = 6
EPOCHS = 10
NOISE_CALLS = 200
FIELD_CASES = 60
G_ALGO_CASES = 45
G_ALGO_VALUES = (0.5, 2, 3)
#: (noise_model, layer, noise_level, G_algo) of the noisy cases of witin_g_algo.npz
G_ALGO_NOISE = (("NORMAL", "Linear", 5, 3), ("NORMAL", "Conv2d", 6, 0.5), ("SIMPLE", "Linear", 5, 3),
                ("SIMPLE", "Conv2d", 6, 0.5), ("SIMPLE", "ConvTranspose2d", 4, 3), ("MBS", "Linear", 6, 0.5),
                ("MBS", "Conv2d to_linear", 5, 3))
OPS = ("WitinSigmoid", "WitinTanh", "WitinGELU", "WitinPReLU", "WitinElementAdd", "WitinElementMul",
       "WitinElementDivide", "WitinSqrt", "WitinInvSqrt", "WitinHypot", "WitinMean", "WitinCat", "WitinMatMul",
       "WitinBatchNorm2d", "WitinClnBn2d")
CONFIG_FIELDS = ("use_quantization", "use_auto_scale", "x_quant_bits", "y_quant_bits", "weight_quant_bits",
                 "x_left_quant_bits", "x_right_quant_bits", "scale_x", "scale_y", "scale_weight", "scale_x_left",
                 "scale_x_right", "mean_sum_quant_bits", "sqrt_left_shift_bits", "x_clip", "gelu_shift_num",
                 "cln_simple")
#: (operator, layer_config values) of witin_unread_fields.npz: x_clip of Sigmoid / Tanh (both modes), GELU's
#: gelu_shift_num (0 acts as the default None in witin_nn 0.1.3; float mode ignores it), ClnBn2d's cln_simple
UNREAD_CASES = tuple((op, {"x_clip": c, "use_quantization": q}) for op in ("WitinTanh", "WitinSigmoid")
                     for c in (0.1, 0.5, 2.0, 7.0) for q in (True, False)) + tuple(
    ("WitinGELU", {"gelu_shift_num": k}) for k in (1, 0.5, 3, -1, 2, 0.25, 1, 4)) + (
    ("WitinGELU", {"gelu_shift_num": 2, "use_quantization": False}),) + tuple(
    ("WitinClnBn2d", {"cln_simple": True, "use_quantization": q}) for q in (True,) * 7 + (False,) * 2)


def digital_case(wn, name, i, rnd: random.Random, g, extra: dict | None = None):
    """One random case of operator ``name`` (layer_config values ``extra`` set last): (config, inputs, weights, out)."""
    import torch

    c = wn.LayerConfigFactory.get_default_config()
    c.use_quantization = True
    c.x_quant_bits, c.y_quant_bits = rnd.choice([8, 8, 10, 12]), rnd.choice([8, 8, 10, 12])
    c.x_left_quant_bits, c.x_right_quant_bits = rnd.choice([8, 8, 10, 12]), rnd.choice([8, 8, 10, 12])
    c.weight_quant_bits = rnd.choice([4, 6, 8, 8])
    if i % 3 == 2:
        c.use_auto_scale = False
        for k in ("scale_x", "scale_y", "scale_weight", "scale_x_left", "scale_x_right"):
            setattr(c, k, rnd.choice([4, 8, 16, 32, 64, 128, 12.5]))
    for k, v in (extra or {}).items():
        setattr(c, k, v)
    shape = (2, 3, 3, 4)
    x1 = torch.randn(shape, generator=g) * rnd.choice([0.3, 1, 3, 10])
    x2 = torch.randn(shape, generator=g) * rnd.choice([0.3, 1, 3, 10])
    axis, weights = None, {}
    if name == "WitinPReLU":
        m = wn.WitinPReLU(num_parameters=rnd.choice([1, 3]), layer_config=c)
        m.weight.data = torch.randn(m.weight.shape, generator=g) * 0.5
        weights["alpha"] = m.weight.detach().numpy().copy()
        ins, axis = (x1,), 1
    elif name == "WitinMean":
        axis = rnd.choice([1, 2, 3])
        m, ins = wn.WitinMean(dim=axis, keepdim=True, layer_config=c), (x1,)
    elif name == "WitinCat":
        axis = rnd.choice([1, 2, 3])
        m, ins = wn.WitinCat(dim=axis, layer_config=c), (x1, x2)
    elif name == "WitinBatchNorm2d":
        m = wn.WitinBatchNorm2d(3, layer_config=c)
        m.running_mean.data = torch.randn(3, generator=g)
        m.running_var.data = torch.rand(3, generator=g) * 2 + 0.05
        m.weight.data, m.bias.data = torch.randn(3, generator=g), torch.randn(3, generator=g)
        weights = {"moving_mean": m.running_mean.numpy().copy(), "moving_variance": m.running_var.numpy().copy(),
                   "gamma": m.weight.detach().numpy().copy(), "beta": m.bias.detach().numpy().copy()}
        ins, axis = (x1,), 1
    elif name == "WitinMatMul":
        m, ins = wn.WitinMatMul(layer_config=c), (x1, torch.randn(2, 3, 4, 3, generator=g) * 2)
    elif name in ("WitinSqrt", "WitinInvSqrt"):
        m, ins = getattr(wn, name)(layer_config=c), (x1.abs(),)
    elif name == "WitinClnBn2d":
        m, ins, axis = wn.WitinClnBn2d(layer_config=c), (x1,), [1, 3]
    elif name in ("WitinElementAdd", "WitinElementMul", "WitinElementDivide", "WitinHypot"):
        m, ins = getattr(wn, name)(layer_config=c), (x1, x2)
    else:
        m, ins = getattr(wn, name)(layer_config=c), (x1,)
    config = {k: _plain(getattr(c, k)) for k in CONFIG_FIELDS}
    config["axis"] = axis
    config["eps"] = float(getattr(m, "eps", 1e-5))
    for pname, p in m.named_parameters():
        if pname.endswith("io_max"):
            v = float(np.exp(rnd.uniform(-2.5, 3.0)))
            p.data.fill_(v)
            config["io_max_" + pname[len("autoscale_") : -len("_obj.io_max")]] = float(p.item())
    m.eval()
    with torch.no_grad():
        out = m(*ins).numpy()
    return config, [t.numpy() for t in ins], weights, out


def write_fields(wn, path: Path) -> None:
    """Single CIM layers with the extra layer_config fields, as ``compare_witin_nn.py --fields`` draws them."""
    import contextlib
    import io

    import torch

    import compare_witin_nn as C
    from simulator.io.torch_import import from_torch
    from simulator.network import _jsonable

    C.WN, C.EXTRA_FIELDS = wn, True
    rnd = random.Random(SEED)
    torch.manual_seed(SEED)
    arrays: dict[str, np.ndarray] = {}
    kinds = ("Linear", "Conv2d", "ConvTranspose2d", "Conv2d")
    n = 0
    while n < FIELD_CASES:
        kind = kinds[n % len(kinds)]
        m, x, values = C.build_case(kind, rnd)
        if not any(k in values for k in ("output_fp_clip", "to_linear", "use_quantization")) and \
                getattr(m, "padding_mode", "zeros") == "zeros":
            continue
        with torch.no_grad(), contextlib.redirect_stderr(io.StringIO()):
            ref = m(x).numpy()
        layer = from_torch(torch.nn.Sequential(m), x).layers[1]
        key = str(n)
        arrays[f"{key}/layer"] = np.array(json.dumps({"name": layer.name, "type": layer.type, "config": _jsonable(layer.config),
                                                      "attrs": _jsonable(layer.attrs)}))
        for k, a in layer.weights.items():
            arrays[f"{key}/w_{k}"] = np.asarray(a, dtype=np.float32)
        arrays[f"{key}/x"] = x.numpy()
        arrays[f"{key}/out"] = ref
        n += 1
    np.savez_compressed(path, **arrays)
    print(f"wrote {path} ({FIELD_CASES} layers)")


class TinyWitin:
    """Factory of the tiny witin model of the export fixtures (a torch module class made on first use)."""

    @staticmethod
    def build(wn, quant: bool, auto: bool):
        import torch

        c = wn.LayerConfigFactory.get_default_config()
        c.use_quantization, c.use_auto_scale = quant, auto
        if quant and not auto:
            c.scale_x, c.scale_y, c.scale_weight = 16, 16, 64

        class TinyWitinNet(torch.nn.Module):
            def __init__(s):
                super().__init__()
                s.conv = wn.WitinConv2d(1, 2, 3, padding=1, layer_config=c)
                s.fc = wn.WitinLinear(32, 3, layer_config=c)

            def forward(s, x):
                return s.fc(torch.flatten(torch.relu(s.conv(x)), 1))

        torch.manual_seed(SEED)
        return TinyWitinNet().eval()


def write_export(wn, out: Path) -> None:
    """``torch.export`` programs of a tiny witin model (float mode, fixed-scale quantization mode)."""
    import torch

    x = torch.randn(1, 1, 4, 4, generator=torch.Generator().manual_seed(SEED))
    for tag, quant, auto in (("float", False, True), ("fixed", True, False), ("auto", True, True)):
        m = TinyWitin.build(wn, quant, auto)
        try:
            ep = torch.export.export(m, (x,), strict=False)
        except Exception as exc:  # noqa: BLE001 - witin_nn's auto-scale layers cannot be exported
            print(f"export of the {tag} model fails: {exc.__class__.__name__}: {str(exc).splitlines()[0]}")
            continue
        torch.export.save(ep, out / f"witin_export_{tag}.pt2")
        print(f"wrote {out / f'witin_export_{tag}.pt2'}")


def _store_layer_case(arrays: dict, key: str, m, x) -> None:
    """witin_nn's output of module ``m`` on ``x`` and its imported layer, under ``key/{layer,w_*,x,out}``."""
    import contextlib
    import io

    import torch

    from simulator.io.torch_import import from_torch

    with torch.no_grad(), contextlib.redirect_stderr(io.StringIO()):
        ref = m(x).numpy()
    layer = from_torch(torch.nn.Sequential(m), x).layers[1]
    arrays[f"{key}/layer"] = _layer_json(layer)
    for k, a in layer.weights.items():
        arrays[f"{key}/w_{k}"] = np.asarray(a, dtype=np.float32)
    arrays[f"{key}/x"], arrays[f"{key}/out"] = x.numpy(), ref


def _store_noise_case(arrays: dict, key: str, wn, rnd, model: str, kind: str, level: int, extra: dict) -> float:
    """A random noisy layer (``compare_witin_nn.build_case``, output io_max x8) and the mean / std of
    ``NOISE_MODEL_CALLS`` witin_nn first calls under ``key/{layer,w_*,x,mean,std}``; returns the mean std."""
    import contextlib
    import copy
    import io

    import torch

    import compare_witin_nn as C
    from simulator.io.torch_import import from_torch

    extra = {"noise_model": getattr(wn.NoiseModel, model), **extra}
    if kind.endswith("to_linear"):
        kind, extra["to_linear"] = "Conv2d", True
    m, x, _ = C.build_case(kind, rnd, noise_level=level, extra=extra)
    with torch.no_grad():
        m.autoscale_y_obj.io_max.fill_(m.autoscale_y_obj.io_max.item() * 8)
        pristine = copy.deepcopy(m)  # before any call: the import below runs the layer (SIMPLE keeps state)
        layer = from_torch(torch.nn.Sequential(m), x).layers[1]
    with torch.no_grad(), contextlib.redirect_stderr(io.StringIO()):
        outs = np.stack([C.first_call(pristine, x) for _ in range(NOISE_MODEL_CALLS)])
    arrays[f"{key}/layer"] = _layer_json(layer)
    for k, a in layer.weights.items():
        arrays[f"{key}/w_{k}"] = np.asarray(a, dtype=np.float32)
    arrays[f"{key}/x"] = x.numpy()
    arrays[f"{key}/mean"], arrays[f"{key}/std"] = outs.mean(axis=0), outs.std(axis=0)
    return float(outs.std(axis=0).mean())


def _layer_json(layer):
    from simulator.network import _jsonable

    return np.array(json.dumps({"name": layer.name, "type": layer.type, "config": _jsonable(layer.config),
                                "attrs": _jsonable(layer.attrs)}))


def write_vpu_noise(wn, path: Path) -> None:
    """hardware = VPU convolutions (bit exact) and SIMPLE / MBS noise statistics of single layers."""
    import torch

    import compare_witin_nn as C

    C.WN, C.EXTRA_FIELDS = wn, True
    rnd = random.Random(SEED + 3)
    torch.manual_seed(SEED + 3)
    arrays: dict[str, np.ndarray] = {}
    n = 0
    while n < VPU_CASES:
        kind = ("Conv2d", "ConvTranspose2d")[n % 2]
        m, x, values = C.build_case(kind, rnd, extra={"hardware": wn.HardwareType.VPU})
        if values.get("use_quantization", True) is False:
            continue
        _store_layer_case(arrays, f"vpu/{n}", m, x)
        n += 1
    C.EXTRA_FIELDS = False
    for i, (model, kind, level, neg) in enumerate(NOISE_CASES):
        std = _store_noise_case(arrays, f"noise/{i}", wn, rnd, model, kind, level,
                                {"handle_neg_in": getattr(wn.HandleNegInType, neg)})
        print(f"noise case {i}: {model} {kind} level {level} {neg}: mean std {std:.4g}", flush=True)
    np.savez_compressed(path, **arrays)
    print(f"wrote {path} ({VPU_CASES} VPU layers, {len(NOISE_CASES)} noise cases)")


def write_g_algo(wn, path: Path) -> None:
    """Single CIM layers (``compare_witin_nn.py --fields`` draws, VPU included) with G_algo = 0.5 / 2 / 3, and
    the output std of the ``G_ALGO_NOISE`` noisy layers over ``NOISE_MODEL_CALLS`` first calls."""
    import torch

    import compare_witin_nn as C

    C.WN, C.EXTRA_FIELDS, C.DRAW_VPU = wn, True, True
    rnd = random.Random(SEED + 7)
    torch.manual_seed(SEED + 7)
    arrays: dict[str, np.ndarray] = {}
    for n in range(G_ALGO_CASES):
        kind = ("Linear", "Conv2d", "ConvTranspose2d")[(n // 3) % 3]
        m, x, _ = C.build_case(kind, rnd, extra={"G_algo": G_ALGO_VALUES[n % 3]})
        _store_layer_case(arrays, str(n), m, x)
    C.EXTRA_FIELDS = C.DRAW_VPU = False
    for i, (model, kind, level, g_algo) in enumerate(G_ALGO_NOISE):
        _store_noise_case(arrays, f"noise/{i}", wn, rnd, model, kind, level, {"G_algo": g_algo})
    np.savez_compressed(path, **arrays)
    print(f"wrote {path} ({G_ALGO_CASES} layers, {len(G_ALGO_NOISE)} noise cases)")


def write_unread_fields(wn, path: Path) -> None:
    """Digital operators with x_clip / gelu_shift_num (``UNREAD_CASES``), keyed like witin_digital.npz."""
    import torch

    rnd, g = random.Random(SEED + 5), torch.Generator().manual_seed(SEED + 5)
    arrays: dict[str, np.ndarray] = {}
    for i, (name, extra) in enumerate(UNREAD_CASES):
        config, ins, _, out = digital_case(wn, name, i, rnd, g, extra)
        arrays[f"{name}/{i}/config"] = np.array(json.dumps(config))
        for j, a in enumerate(ins):
            arrays[f"{name}/{i}/x{j + 1}"] = a.astype(np.float32)
        arrays[f"{name}/{i}/out"] = out.astype(np.float32)
    np.savez_compressed(path, **arrays)
    print(f"wrote {path} ({len(UNREAD_CASES)} cases)")


def _plain(v):
    return v.item() if hasattr(v, "item") else v


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("checkout", type=Path, help="witmem/witin-nn checkout (with py311_linux/witin_nn)")
    ap.add_argument("--out", type=Path, default=ROOT / "tests" / "fixtures")
    ap.add_argument("--skip-networks", action="store_true")
    ap.add_argument("--only", choices=("digital", "fields", "networks", "export", "vpu_noise", "unread_fields", "g_algo"), default=None,
                    help="write only this fixture file (default: all)")
    args = ap.parse_args()
    wn = W.load_witin(args.checkout)
    import torch

    from simulator.io.torch_import import from_torch
    from simulator.network import save_model

    args.out.mkdir(parents=True, exist_ok=True)
    single = {  # --only NAME writes that fixture alone; no --only writes each of them, then the networks
        "export": lambda: write_export(wn, args.out),
        "g_algo": lambda: write_g_algo(wn, args.out / "witin_g_algo.npz"),
        "unread_fields": lambda: write_unread_fields(wn, args.out / "witin_unread_fields.npz"),
        "vpu_noise": lambda: write_vpu_noise(wn, args.out / "witin_vpu_noise.npz"),
        "fields": lambda: write_fields(wn, args.out / "witin_fields.npz"),
    }
    for name, write in single.items():
        if args.only in (None, name):
            write()
        if args.only == name:
            return
    if args.only == "networks":
        args.skip_digital = True
    rnd, g = random.Random(SEED), torch.Generator().manual_seed(SEED)
    arrays: dict[str, np.ndarray] = {}
    for name in OPS if not getattr(args, "skip_digital", False) else ():
        for i in range(CASES):
            config, ins, weights, out = digital_case(wn, name, i, rnd, g)
            key = f"{name}/{i}"
            arrays[f"{key}/config"] = np.array(json.dumps(config))
            for j, a in enumerate(ins):
                arrays[f"{key}/x{j + 1}"] = a.astype(np.float32)
            for k, a in weights.items():
                arrays[f"{key}/w_{k}"] = np.asarray(a, dtype=np.float32)
            arrays[f"{key}/out"] = out.astype(np.float32)
    if arrays:
        np.savez_compressed(args.out / "witin_digital.npz", **arrays)
        print(f"wrote {args.out / 'witin_digital.npz'} ({len(OPS)} ops x {CASES} cases)")
    if args.skip_networks or args.only == "digital":
        return
    _, _, xte, _ = W.digits()
    x = xte[:32]
    nets: dict[str, np.ndarray] = {}
    for name in W.NAMES:
        state = W.train_float(wn, name, seed=0, epochs=EPOCHS)
        net = W.quantized(wn, name, state)
        with torch.no_grad():
            nets[f"{name}/out"] = net(x).numpy()
        nets[f"{name}/x"] = x.numpy()
        save_model(from_torch(net, x, name=name), args.out / f"witin_net_{name}.h5")
        if name == "conv_relu":
            for level in (3, 9):
                noisy = W.quantized(wn, name, state, noise_level=level, io_from=net)
                torch.manual_seed(level)
                with torch.no_grad():
                    outs = np.stack([noisy(x[:8]).numpy() for _ in range(NOISE_CALLS)])
                nets[f"{name}/std_{level}"] = outs.std(axis=0)
        print(f"network {name}: done", flush=True)
    np.savez_compressed(args.out / "witin_networks.npz", **nets)
    print(f"wrote {args.out / 'witin_networks.npz'}")


if __name__ == "__main__":
    main()
