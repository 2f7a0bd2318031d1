"""The ONNX op translation table: one handler per ONNX op type, :data:`HANDLERS`.

Each handler ``handler(imp, node, attrs)`` translates one node for the
:class:`~simulator.io.onnx_graph.OnnxImporter` ``imp``: MVMs with constant
weights become analog layers (``Conv`` -> Conv2D / DepthwiseConv2D,
``Gemm`` / ``MatMul`` with a constant matrix -> Dense, a constant ``Add``
after them -> their bias), every other op a digital layer with the op's
ONNX semantics (:mod:`simulator.tensor_ops`), and ops that change nothing an
alias of their input. Handlers record where the batch axis stops being
independent (``imp.fix_batch``). Conventions: :mod:`simulator.io.onnx_import`.
"""
from __future__ import annotations

from typing import Any

import numpy as np

from simulator.io.kernels import conv_kernel, depthwise_kernel
from simulator.io.onnx_graph import Handler, OnnxImporter

#: onnx element type -> name used by the Cast layer
_CAST = {1: "float", 10: "float", 11: "float", 16: "float", 2: "int64", 3: "int64", 4: "int64", 5: "int64",
         6: "int64", 7: "int64", 12: "int64", 13: "int64", 9: "bool"}


def _conv_padding(imp: OnnxImporter, node, a: dict, x: str, k: list[int], s: list[int], d: list[int]):
    auto = a.get("auto_pad", "NOTSET")
    if auto == "VALID":
        return "valid"
    if auto == "SAME_UPPER":
        return "same"
    if auto == "SAME_LOWER":
        H, W = imp.shape(node, x)[2:4]
        pads = []
        for size, kk, ss, dd in ((H, k[0], s[0], d[0]), (W, k[1], s[1], d[1])):
            total = max((-(-size // ss) - 1) * ss + (kk - 1) * dd + 1 - size, 0)
            pads.append([total - total // 2, total // 2])
        return pads
    p = [int(v) for v in a.get("pads", [0, 0, 0, 0])]
    if len(p) != 4:
        raise imp.err(node, f"pads {p} are not 2-D")
    if any(v < 0 for v in p):
        raise imp.err(node, f"negative pads {p} are not supported")
    return "valid" if not any(p) else [[p[0], p[2]], [p[1], p[3]]]


def _conv(imp: OnnxImporter, node, a):
    x = imp.dyn(node, node.input[0])
    W = imp.need_const(node, node.input[1], "the weight W")
    b = imp.need_const(node, node.input[2], "the bias B") if len(node.input) > 2 and node.input[2] else None
    if W.ndim != 4 or len(imp.shape(node, x)) != 4:
        raise imp.err(node, f"only 2-D convolutions of (N, C, H, W) tensors are supported (weight rank {W.ndim})")
    O, Ig, kh, kw = W.shape
    k = [int(v) for v in a.get("kernel_shape", [kh, kw])]
    if k != [kh, kw]:
        raise imp.err(node, f"kernel_shape {k} disagrees with the weight shape {list(W.shape)}")
    s = [int(v) for v in a.get("strides", [1, 1])]
    d = [int(v) for v in a.get("dilations", [1, 1])]
    group = int(a.get("group", 1))
    common = {"kernel_size": k, "strides": s, "padding": _conv_padding(imp, node, a, x, k, s, d), "dilation_rate": d,
              "use_bias": b is not None, "activation": "linear", "data_format": "channels_first"}
    C = Ig * group
    weights: dict[str, np.ndarray] = {}
    if group > 1 and Ig == 1:  # depthwise: out channel o = c * mult + m
        mult = O // C
        weights["depthwise_kernel"] = imp.f32(depthwise_kernel(W, C))
        cfg, ltype = {**common, "depth_multiplier": mult}, "DepthwiseConv2D"
    else:
        weights["kernel"] = imp.f32(conv_kernel(W))
        cfg, ltype = {"filters": int(O), **common}, "Conv2D"
        if group > 1:
            cfg["groups"] = group
    if b is not None:
        weights["bias"] = imp.f32(b.reshape(-1))
    imp.add(node, ltype, [x], cfg, weights)


def _dense(imp: OnnxImporter, node, x: str, W: np.ndarray, bias: np.ndarray | None, out: str | None = None,
           suffix: str = "") -> None:
    weights = {"kernel": imp.f32(W)}
    if bias is not None:
        weights["bias"] = imp.f32(bias)
    imp.add(node, "Dense", [x], {"units": int(W.shape[1]), "use_bias": bias is not None, "activation": "linear"},
            weights, out=out, suffix=suffix)


def _gemm(imp: OnnxImporter, node, a):
    x = imp.dyn(node, node.input[0])
    B = imp.need_const(node, node.input[1], "B")
    if int(a.get("transA", 0)):
        t = node.output[0] + "/transA"
        imp.add(node, "Transpose", [x], {"perm": [1, 0]}, out=t, batched=False, suffix="/transA")
        imp.exact.pop(t)
        imp.fix_batch(node, "transA moves the batch axis")
        x = t
    W = (B.T if int(a.get("transB", 0)) else B).astype(np.float64) * float(a.get("alpha", 1.0))
    units = W.shape[1]
    C = imp.need_const(node, node.input[2], "C") if len(node.input) > 2 and node.input[2] else None
    bias = None
    if C is not None:
        Cb = C.astype(np.float64) * float(a.get("beta", 1.0))
        if Cb.size not in (1, units) or (Cb.ndim == 2 and Cb.shape[0] != 1):
            raise imp.err(node, f"bias C of shape {list(C.shape)} does not broadcast to ({units},)")
        bias = np.broadcast_to(Cb.reshape(-1), (units,)).copy()
    _dense(imp, node, x, W, bias)


def _matmul(imp: OnnxImporter, node, a):
    A, B = node.input[0], node.input[1]
    ca, cb = imp.const(A), imp.const(B)
    if cb is not None and (cb.ndim == 2 or (cb.ndim > 2 and all(v == 1 for v in cb.shape[:-2]))):
        return _dense(imp, node, imp.dyn(node, A), cb.reshape(cb.shape[-2:]), None)
    if ca is not None and ca.ndim == 2 and len(imp.shape(node, B)) >= 2:
        # W @ x == (x^T W^T)^T: an analog Dense between two transposes of the last two axes
        x = imp.dyn(node, B)
        r = len(imp.shape(node, x))
        perm = list(range(r - 2)) + [r - 1, r - 2]
        t1, t2 = node.output[0] + "/xT", node.output[0] + "/yT"
        imp.add(node, "Transpose", [x], {"perm": perm}, out=t1, batched=imp.batched[x] and r > 2, suffix="/xT")
        _dense(imp, node, t1, ca.T, None, out=t2, suffix="/dense")
        imp.add(node, "Transpose", [t2], {"perm": perm}, batched=imp.batched[x] and r > 2, suffix="/yT")
        for t in (t1, t2):
            imp.exact.pop(t)
        if r == 2:
            imp.fix_batch(node, "a constant matrix times a 2-D activation mixes the batch axis")
        return None
    acts, spec, weights = imp.operands(node, [A, B])
    ranks = [len(imp.shape(node, t)) for t in (A, B)]
    batched = all(imp.batched.get(t, True) for t in acts) and min(ranks) > 2
    if not batched:
        imp.fix_batch(node, "a product of 2-D activations mixes the batch axis")
    imp.add(node, "MatMul", acts, {"operands": spec}, weights, batched=batched)
    return None


def _batchnorm(imp: OnnxImporter, node, a):
    x = imp.dyn(node, node.input[0])
    if int(a.get("training_mode", 0)):
        raise imp.err(node, "training_mode BatchNormalization is not supported")
    vals = [imp.need_const(node, n, w) for n, w in zip(node.input[1:5], ("scale", "B", "mean", "var"))]
    weights = {k: imp.f32(v.reshape(-1)) for k, v in zip(("gamma", "beta", "moving_mean", "moving_variance"), vals)}
    imp.add(node, "BatchNormalization", [x], {"epsilon": float(a.get("epsilon", 1e-5)), "axis": 1}, weights)


def _unary(imp: OnnxImporter, node, a):
    x = imp.dyn(node, node.input[0])
    cfg: dict[str, Any] = {"op": node.op_type}
    for key in ("alpha", "beta", "gamma"):
        if key in a:
            cfg[key] = float(a[key])
    if node.op_type == "Gelu":
        cfg["approximate"] = a.get("approximate", "none")
    imp.add(node, "Unary", [x], cfg)


def _prelu(imp: OnnxImporter, node, a):
    x = imp.dyn(node, node.input[0])
    slope = imp.need_const(node, node.input[1], "slope")
    imp.add(node, "PReLU", [x], {}, {"alpha": imp.f32(slope)})


def _fuse_bias(imp: OnnxImporter, node, x: str, c: np.ndarray) -> bool:
    """Put a constant Add into the bias of the MVM layer producing ``x`` when nothing else reads ``x``."""
    layer = next(l for l in imp.layers if l.name == imp.prod[x])
    if layer.type not in ("Dense", "Conv2D", "DepthwiseConv2D") or layer.config.get("use_bias"):
        return False
    if imp.consumers.get(x, 0) != 1 or x in imp.graph_outputs or imp.exact.get(x) != layer.name:
        return False
    w = layer.weights
    n = w["kernel"].shape[-1] if "kernel" in w else int(np.prod(w["depthwise_kernel"].shape[2:]))
    c = np.asarray(c)
    if layer.type == "Dense":
        ok = c.size == n and c.shape[-1] == n or c.size == 1
    else:  # per channel of an (N, C, H, W) output: (C, 1, 1) or (1, C, 1, 1)
        ok = c.size == 1 or (c.size == n and c.ndim >= 3 and c.shape[-2:] == (1, 1) and c.shape[-3] == n)
    if not ok:
        return False
    w["bias"] = imp.f32(np.broadcast_to(c.reshape(-1), (n,)).copy())
    layer.config["use_bias"] = True
    imp.exact.pop(x)
    imp.alias(node, x)
    imp.exact[node.output[0]] = layer.name
    return True


_PLAIN = {"Add": "Add", "Sub": "Subtract", "Mul": "Multiply", "Div": "Divide"}


def _binary(imp: OnnxImporter, node, a):
    op = "Add" if node.op_type == "Sum" else node.op_type
    names = list(node.input)
    if len(names) == 1:
        return imp.alias(node, imp.dyn(node, names[0]))
    consts = [imp.const(n) for n in names]
    if op == "Add" and len(names) == 2 and sum(c is not None for c in consts) == 1:
        i = 0 if consts[0] is not None else 1
        if _fuse_bias(imp, node, imp.dyn(node, names[1 - i]), consts[i]):
            return None
    acts, spec, weights = imp.operands(node, names)
    if op in _PLAIN and not weights and len(acts) == len(names):
        return imp.add(node, _PLAIN[op], acts, {})
    cfg: dict[str, Any] = {"op": op, "operands": spec}
    if op == "Mod" and int(a.get("fmod", 0)):
        cfg["fmod"] = True
    imp.add(node, "Binary", acts, cfg, weights)
    return None


def _where(imp: OnnxImporter, node, a):
    acts, spec, weights = imp.operands(node, list(node.input))
    imp.add(node, "Where", acts, {"operands": spec}, weights)


def _clip(imp: OnnxImporter, node, a):
    x = imp.dyn(node, node.input[0])
    lo, hi = a.get("min"), a.get("max")
    if len(node.input) > 1 and node.input[1]:
        lo = float(imp.need_const(node, node.input[1], "min"))
    if len(node.input) > 2 and node.input[2]:
        hi = float(imp.need_const(node, node.input[2], "max"))
    cfg = {k: float(v) for k, v in (("min", lo), ("max", hi)) if v is not None}
    imp.add(node, "Clip", [x], cfg)


def _cast(imp: OnnxImporter, node, a):
    x = imp.dyn(node, node.input[0])
    to = _CAST.get(int(a["to"]))
    if to is None:
        raise imp.err(node, f"cast to ONNX element type {a['to']} is not supported")
    imp.add(node, "Cast", [x], {"to": to})


def _axis(imp: OnnxImporter, node, x: str, axis: int, what: str) -> int:
    r = len(imp.shape(node, x))
    axis = int(axis) % r
    if axis == 0 and imp.batched[x]:
        imp.fix_batch(node, f"{what} along the batch axis")
    return axis


def _softmax(imp: OnnxImporter, node, a):
    x = imp.dyn(node, node.input[0])
    default = -1 if imp.opset >= 13 else 1
    axis = _axis(imp, node, x, a.get("axis", default), "softmax")
    cfg: dict[str, Any] = {"axis": axis}
    if node.op_type == "LogSoftmax":
        cfg["log"] = True
    if imp.opset < 13:
        cfg["flatten"] = True
    imp.add(node, "Softmax", [x], cfg)


def _layernorm(imp: OnnxImporter, node, a):
    x = imp.dyn(node, node.input[0])
    axis = _axis(imp, node, x, a.get("axis", -1), "normalization")
    weights = {"scale": imp.f32(imp.need_const(node, node.input[1], "scale"))}
    spec: list = [0, "scale"]
    if len(node.input) > 2 and node.input[2]:
        weights["bias"] = imp.f32(imp.need_const(node, node.input[2], "bias"))
        spec.append("bias")
    if len([o for o in node.output if o]) > 1 and any(imp.consumers.get(o) for o in node.output[1:] if o):
        raise imp.err(node, "the Mean / InvStdDev outputs are not supported")
    imp.add(node, "LayerNormalization", [x], {"axis": axis, "epsilon": float(a.get("epsilon", 1e-5)),
                                              "operands": spec}, weights)


def _reduce(imp: OnnxImporter, node, a):
    x = imp.dyn(node, node.input[0])
    r = len(imp.shape(node, x))
    op = node.op_type
    if op in ("GlobalAveragePool", "GlobalMaxPool"):
        axes, keep, op = list(range(2, r)), True, "ReduceMean" if op == "GlobalAveragePool" else "ReduceMax"
    else:
        axes = a.get("axes")
        if axes is None and len(node.input) > 1 and node.input[1]:
            axes = [int(v) for v in imp.need_const(node, node.input[1], "axes")]
        if not axes:
            axes = None if not int(a.get("noop_with_empty_axes", 0)) else []
        keep = bool(int(a.get("keepdims", 1)))
    if axes == []:
        return imp.alias(node, x)
    axes = list(range(r)) if axes is None else sorted(int(v) % r for v in axes)
    batched = imp.batched[x] and 0 not in axes
    if imp.batched[x] and not batched:
        imp.fix_batch(node, "reduction over the batch axis")
    imp.add(node, "Reduce", [x], {"op": op, "axes": axes, "keepdims": keep}, batched=batched)
    return None


def _transpose(imp: OnnxImporter, node, a):
    x = imp.dyn(node, node.input[0])
    r = len(imp.shape(node, x))
    perm = [int(p) for p in a.get("perm", list(range(r))[::-1])]
    batched = imp.batched[x] and perm[0] == 0
    if imp.batched[x] and not batched:
        imp.fix_batch(node, f"perm {perm} moves the batch axis")
    imp.add(node, "Transpose", [x], {"perm": perm}, batched=batched)


def _reshape_to(imp: OnnxImporter, node, x: str, out_shape: list[int]) -> None:
    """A Reshape layer to ``out_shape`` (concrete); axis 0 stays the batch when it keeps its size."""
    in_shape = imp.shape(node, x)
    if int(np.prod(out_shape)) != int(np.prod(in_shape)):
        raise imp.err(node, f"cannot reshape {in_shape} to {out_shape}")
    shape = [int(v) for v in out_shape]
    batched = imp.batched[x] and bool(shape) and shape[0] == in_shape[0]
    if batched:
        shape[0] = 0  # copy the runtime batch size
    elif imp.batched[x]:
        imp.fix_batch(node, f"reshape {in_shape} -> {out_shape} merges or splits the batch axis")
    imp.add(node, "Reshape", [x], {"shape": shape}, batched=batched)


def _reshape(imp: OnnxImporter, node, a):
    x = imp.dyn(node, node.input[0])
    in_shape = imp.shape(node, x)
    op = node.op_type
    if op == "Reshape":
        target = [int(v) for v in imp.need_const(node, node.input[1], "shape")]
        if not int(a.get("allowzero", 0)):
            target = [in_shape[i] if v == 0 else v for i, v in enumerate(target)]
        out = list(np.empty(in_shape, dtype=np.bool_).reshape(target).shape)
    elif op == "Flatten":
        axis = int(a.get("axis", 1)) % (len(in_shape) + 1)
        out = [int(np.prod(in_shape[:axis])), int(np.prod(in_shape[axis:]))]
    else:
        axes = a.get("axes")
        if axes is None and len(node.input) > 1 and node.input[1]:
            axes = [int(v) for v in imp.need_const(node, node.input[1], "axes")]
        if op == "Squeeze":
            r = len(in_shape)
            drop = {int(v) % r for v in axes} if axes is not None else {i for i, v in enumerate(in_shape) if v == 1}
            out = [v for i, v in enumerate(in_shape) if i not in drop]
        else:  # Unsqueeze
            r = len(in_shape) + len(axes)
            ins = sorted(int(v) % r for v in axes)
            out = list(in_shape)
            for ax in ins:
                out.insert(ax, 1)
    _reshape_to(imp, node, x, out)


def _expand(imp: OnnxImporter, node, a):
    x = imp.dyn(node, node.input[0])
    shape = [int(v) for v in imp.need_const(node, node.input[1], "shape")]
    in_shape = imp.shape(node, x)
    batched = imp.batched[x] and len(shape) == len(in_shape) and shape[0] in (1, in_shape[0])
    if batched:
        shape[0] = 1  # broadcasting keeps the runtime batch
    elif imp.batched[x]:
        imp.fix_batch(node, f"expansion of {in_shape} to {shape} changes the batch axis")
    imp.add(node, "Expand", [x], {"shape": shape}, batched=batched)


def _slice_cfg(imp: OnnxImporter, node, a, x: str) -> dict | None:
    if imp.opset < 10:
        starts, ends = list(a["starts"]), list(a["ends"])
        axes, steps = a.get("axes"), None
    else:
        get = lambda i: [int(v) for v in imp.need_const(node, node.input[i], "slice parameter")] \
            if len(node.input) > i and node.input[i] else None  # noqa: E731
        starts, ends, axes, steps = get(1), get(2), get(3), get(4)
    shape = imp.shape(node, x)
    r = len(shape)
    axes = list(range(len(starts))) if axes is None else [int(v) % r for v in axes]
    steps = [1] * len(starts) if steps is None else steps
    keep = []
    for s, e, ax, st in zip(starts, ends, axes, steps):
        if ax == 0 and imp.batched[x] and slice(s, e, st).indices(shape[0]) == (0, shape[0], 1):
            continue  # the whole batch
        keep.append((int(s), int(max(min(e, 2**62), -(2**62))), ax, int(st)))
    if not keep:
        return None
    return {"starts": [k[0] for k in keep], "ends": [k[1] for k in keep], "axes": [k[2] for k in keep],
            "steps": [k[3] for k in keep]}


def _slice(imp: OnnxImporter, node, a):
    x = imp.dyn(node, node.input[0])
    cfg = _slice_cfg(imp, node, a, x)
    if cfg is None:
        return imp.alias(node, x)
    batched = imp.batched[x] and 0 not in cfg["axes"]
    if imp.batched[x] and not batched:
        imp.fix_batch(node, "slice of the batch axis")
    imp.add(node, "Slice", [x], cfg, batched=batched)
    return None


def _split(imp: OnnxImporter, node, a):
    x = imp.dyn(node, node.input[0])
    shape = imp.shape(node, x)
    axis = _axis(imp, node, x, a.get("axis", 0), "split")
    outs = [o for o in node.output]
    if len(node.input) > 1 and node.input[1]:
        sizes = [int(v) for v in imp.need_const(node, node.input[1], "split")]
    elif "split" in a:
        sizes = [int(v) for v in a["split"]]
    else:
        n = len(outs)
        step = -(-shape[axis] // n)
        sizes = [min(step, shape[axis] - i * step) for i in range(n)]
    start = 0
    for i, (o, size) in enumerate(zip(outs, sizes)):
        if o:
            imp.add(node, "Slice", [x], {"starts": [start], "ends": [start + size], "axes": [axis], "steps": [1]},
                    out=o, batched=imp.batched[x] and axis != 0, suffix=f"/{i}")
        start += size


def _gather(imp: OnnxImporter, node, a):
    data, idx = node.input[0], node.input[1]
    acts, spec, weights = imp.operands(node, [data, idx], broadcast=False)
    r = len(imp.shape(node, data))
    axis = int(a.get("axis", 0)) % r
    if data in acts:  # gathering from an activation
        batched = imp.batched[data] and axis != 0 and idx not in acts
        if imp.batched[data] and not batched:
            imp.fix_batch(node, "gather along the batch axis")
    else:  # a constant table looked up by activations (embeddings)
        batched = imp.batched[idx] and axis == 0
    imp.add(node, "Gather", acts, {"axis": axis, "operands": spec}, weights, batched=batched)


def _concat(imp: OnnxImporter, node, a):
    names = [n for n in node.input if n]
    acts, spec, weights = imp.operands(node, names)
    axis = int(a["axis"]) % len(imp.shape(node, acts[0]))
    batched = all(imp.batched[t] for t in acts) and axis != 0
    if not batched:
        imp.fix_batch(node, "concatenation along the batch axis")
    imp.add(node, "Concat", acts, {"axis": axis, "operands": spec}, weights, batched=batched)


def _pad(imp: OnnxImporter, node, a):
    x = imp.dyn(node, node.input[0])
    r = len(imp.shape(node, x))
    mode = a.get("mode", "constant")
    if "pads" in a:
        pads, value = [int(v) for v in a["pads"]], float(a.get("value", 0.0))
    else:
        pads = [int(v) for v in imp.need_const(node, node.input[1], "pads")]
        cv = imp.need_const(node, node.input[2], "constant_value") if len(node.input) > 2 and node.input[2] else None
        value = 0.0 if cv is None or cv.size == 0 else float(cv.reshape(-1)[0])
        if len(node.input) > 3 and node.input[3]:
            axes = [int(v) % r for v in imp.need_const(node, node.input[3], "axes")]
            full = [0] * (2 * r)
            for i, ax in enumerate(axes):
                full[ax], full[r + ax] = pads[i], pads[len(axes) + i]
            pads = full
    if mode not in ("constant", "reflect", "edge", "wrap"):
        raise imp.err(node, f"pad mode {mode!r} is not supported")
    if (pads[0] or pads[r]) and imp.batched[x]:
        imp.fix_batch(node, "padding of the batch axis")
    imp.add(node, "Pad", [x], {"pads": pads, "mode": mode, "value": value})


def _pool(imp: OnnxImporter, node, a):
    x = imp.dyn(node, node.input[0])
    if len(node.output) > 1 and node.output[1] and imp.consumers.get(node.output[1]):
        raise imp.err(node, "the Indices output is not supported")
    if len(imp.shape(node, x)) != 4:
        raise imp.err(node, "only 2-D pooling of (N, C, H, W) tensors is supported")
    k = [int(v) for v in a["kernel_shape"]]
    s = [int(v) for v in a.get("strides", [1, 1])]
    d = [int(v) for v in a.get("dilations", [1, 1])]
    cfg: dict[str, Any] = {"pool_size": k, "strides": s, "padding": _conv_padding(imp, node, a, x, k, s, d),
                           "dilation_rate": d, "ceil_mode": bool(int(a.get("ceil_mode", 0))),
                           "data_format": "channels_first"}
    if node.op_type == "AveragePool":
        cfg["count_include_pad"] = bool(int(a.get("count_include_pad", 0)))
        if cfg["ceil_mode"] and cfg["padding"] == "same":
            raise imp.err(node, "ceil_mode with auto_pad is not supported")
    imp.add(node, "MaxPooling2D" if node.op_type == "MaxPool" else "AveragePooling2D", [x], cfg)


def _identity(imp: OnnxImporter, node, a):
    if node.op_type == "Dropout" and len(node.output) > 1 and node.output[1] and imp.consumers.get(node.output[1]):
        raise imp.err(node, "the Dropout mask output is not supported")
    imp.alias(node, imp.dyn(node, node.input[0]))


#: ONNX op type -> its handler
HANDLERS: dict[str, Handler] = {
    "Conv": _conv, "Gemm": _gemm, "MatMul": _matmul, "BatchNormalization": _batchnorm, "PRelu": _prelu,
    "Where": _where, "Clip": _clip, "Cast": _cast, "Softmax": _softmax, "LogSoftmax": _softmax,
    "LayerNormalization": _layernorm, "Transpose": _transpose, "Expand": _expand, "Slice": _slice, "Split": _split,
    "Gather": _gather, "Concat": _concat, "Pad": _pad, "MaxPool": _pool, "AveragePool": _pool,
    "Dropout": _identity, "Identity": _identity,
    **{op: _reshape for op in ("Reshape", "Flatten", "Squeeze", "Unsqueeze")},
    **{op: _reduce for op in ("ReduceMean", "ReduceSum", "ReduceMax", "ReduceMin", "ReduceProd", "ReduceL2",
                              "ReduceSumSquare", "GlobalAveragePool", "GlobalMaxPool")},
    **{op: _binary for op in ("Add", "Sub", "Mul", "Div", "Pow", "Max", "Min", "Mod", "Sum", "Equal", "Less",
                              "LessOrEqual", "Greater", "GreaterOrEqual", "And", "Or", "Xor")},
    **{op: _unary for op in ("Relu", "Sigmoid", "Tanh", "Erf", "Gelu", "HardSwish", "HardSigmoid", "LeakyRelu",
                             "Elu", "Selu", "Softplus", "Softsign", "Mish", "Abs", "Neg", "Exp", "Log", "Sqrt",
                             "Reciprocal", "Floor", "Ceil", "Round", "Sign", "Not")},
}

#: ONNX ops the importer translates (every other op is refused, naming the node)
SUPPORTED_OPS = tuple(sorted(HANDLERS))
