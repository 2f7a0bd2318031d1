"""Import ONNX models (optional extra: ``pip install xbarsim[onnx]``).

:func:`load_onnx` turns an ONNX graph of a CNN / MLP into a
:class:`~simulator.network.Network`. ONNX tensors are NCHW; the Network
records ``input_layout = "NCHW"`` (inputs and 4-D outputs stay NCHW at the
boundary) while the layers work on the internal NHWC layout. Weights are
converted to our Keras-style layouts:

* ``Conv`` ``W (O, I/g, kh, kw)`` -> Conv2D ``kernel (kh, kw, I/g, O)``
  (``groups`` in the config when ``group > 1``); ``group == I`` (one input
  channel per group) -> DepthwiseConv2D ``depthwise_kernel (kh, kw, I, O/I)``.
* ``Gemm`` / ``MatMul`` (+ a following constant ``Add``) -> Dense
  ``kernel (in, out)``.
* ``BatchNormalization`` -> BatchNormalization (``axis = -1``: channels are
  last internally).
* ``Relu``/``Sigmoid``/``Tanh``/``Softmax``/``LeakyRelu``/``Elu``/``Gelu``/
  ``Clip(0, 6)`` -> Activation; ``PRelu`` -> PReLU.
* ``MaxPool``/``AveragePool`` (explicit pads, auto_pad, ceil_mode when the
  input size is known), ``GlobalAveragePool``/``GlobalMaxPool`` (keepdims),
  ``ReduceMean``/``ReduceMax`` over H, W.
* ``Add``/``Sub``/``Mul``/``Div``/``Sum`` of two activations -> Add /
  Subtract / Multiply / Divide; with a per-channel or scalar constant ->
  a BatchNormalization layer computing the same affine map (or the bias of
  the preceding MVM layer for ``Add``).
* ``Concat`` (axis mapped to NHWC), ``Flatten`` and ``Reshape`` (config
  ``order = "NCHW"``: elements come out in the ONNX order, so a following
  Dense needs no weight permutation; ``target_shape`` is the ONNX shape
  without the batch axis), ``Squeeze`` of 1x1 spatial axes -> Flatten.
* ``Pad`` (constant 0, spatial axes only) -> ZeroPadding2D.
* ``Dropout``/``Identity`` vanish; shape arithmetic on constants
  (``Shape``, ``Gather``, ``Concat``, ``Unsqueeze``, ...) is folded.

Explicit convolution / pooling pads become ``[[top, bottom], [left, right]]``;
``auto_pad = SAME_UPPER`` becomes ``"same"`` (the Keras rule).
"""
from __future__ import annotations

import re
from pathlib import Path
from typing import Any

import numpy as np

from simulator.errors import ModelError
from simulator.network import Layer, Network

SUPPORTED_OPS = (
    "Conv", "Gemm", "MatMul", "BatchNormalization", "Relu", "Sigmoid", "Tanh", "Softmax", "LeakyRelu", "Elu",
    "Gelu", "Clip", "PRelu", "HardSigmoid", "MaxPool", "AveragePool", "GlobalAveragePool", "GlobalMaxPool",
    "ReduceMean", "ReduceMax", "Add", "Sub", "Mul", "Div", "Sum", "Concat", "Flatten", "Reshape", "Squeeze",
    "Pad", "Dropout", "Identity",
)
_CONST_OPS = {"Constant", "Shape", "Gather", "Unsqueeze", "Squeeze", "Concat", "Cast", "Identity", "Mul", "Div",
              "Add", "Sub", "ReduceProd", "Slice", "Reshape", "Transpose", "ConstantOfShape"}


def _onnx():
    try:
        import onnx
        from onnx import numpy_helper  # noqa: F401
    except ImportError:
        raise ModelError("ONNX import needs the optional 'onnx' package: pip install 'xbarsim[onnx]'") from None
    return onnx


def _attrs(node) -> dict[str, Any]:
    from onnx import helper

    out = {}
    for a in node.attribute:
        v = helper.get_attribute_value(a)
        if isinstance(v, bytes):
            v = v.decode()
        out[a.name] = v
    return out


class _Importer:
    def __init__(self, model, source: str):
        onnx = _onnx()
        from onnx import numpy_helper

        self.nh = numpy_helper
        self.source = source
        try:
            model = onnx.shape_inference.infer_shapes(model)
        except Exception:  # shape inference is a help, not a requirement
            pass
        self.model = model
        self.graph = model.graph
        self.opset = 13
        for imp in model.opset_import:
            if imp.domain in ("", "ai.onnx"):
                self.opset = int(imp.version)
        self.consts: dict[str, np.ndarray] = {}
        for init in self.graph.initializer:
            self.consts[init.name] = numpy_helper.to_array(init)
        self.shapes: dict[str, list] = {}
        for vi in list(self.graph.input) + list(self.graph.value_info) + list(self.graph.output):
            t = vi.type.tensor_type
            if t.HasField("shape"):
                self.shapes[vi.name] = [d.dim_value if d.HasField("dim_value") else None for d in t.shape.dim]
        self.layers: list[Layer] = []
        self.names: set[str] = set()
        self.prod: dict[str, str] = {}  # tensor -> our layer producing it
        self.rank: dict[str, int] = {}
        self.consumers: dict[str, int] = {}
        for node in self.graph.node:
            for i in node.input:
                if i:
                    self.consumers[i] = self.consumers.get(i, 0) + 1
        self.graph_outputs = {o.name for o in self.graph.output}

    # ------------------------------------------------------------ helpers
    def err(self, node, msg: str) -> ModelError:
        label = node.name or node.op_type
        return ModelError(f"{self.source}: node {label!r} ({node.op_type}): {msg}")

    def unique(self, base: str) -> str:
        name = re.sub(r"[/\\]+", ".", base).strip(".") or "layer"
        if name in (".", ".."):
            name = "layer"
        cand, k = name, 2
        while cand in self.names:
            cand = f"{name}_{k}"
            k += 1
        self.names.add(cand)
        return cand

    def add(self, node, ltype: str, inputs: list[str], config: dict, weights: dict | None = None,
            out: str | None = None, rank: int | None = None, suffix: str = "") -> Layer:
        base = (node.name or f"{node.op_type}_{len(self.layers)}") + suffix
        layer = Layer(name=self.unique(base), type=ltype, inputs=[self.prod[t] for t in inputs],
                      config=config, weights=weights or {})
        self.layers.append(layer)
        out = node.output[0] if out is None else out
        self.prod[out] = layer.name
        self.rank[out] = self.rank[inputs[0]] if rank is None else rank
        return layer

    def const(self, name: str) -> np.ndarray | None:
        return self.consts.get(name) if name else None

    def need_const(self, node, name: str, what: str) -> np.ndarray:
        v = self.const(name)
        if v is None:
            raise self.err(node, f"{what} ({name!r}) must be a constant initializer")
        return v

    def dyn(self, node, name: str) -> str:
        if name not in self.prod:
            if name in self.consts:
                raise self.err(node, f"input {name!r} is a constant where an activation was expected")
            raise self.err(node, f"input {name!r} is not produced by any supported node")
        return name

    def spatial(self, tensor: str) -> tuple[int | None, int | None]:
        s = self.shapes.get(tensor)
        if s and len(s) == 4:
            return s[2], s[3]
        return None, None

    def channels(self, tensor: str) -> int | None:
        s = self.shapes.get(tensor)
        return s[1] if s and len(s) >= 2 else None

    @staticmethod
    def f32(a: np.ndarray) -> np.ndarray:
        a = np.asarray(a)
        return a.astype(np.float32) if a.dtype.kind == "f" and a.dtype != np.float64 else a

    # ------------------------------------------------------------ padding
    def conv_padding(self, node, a: dict, x: str, k: list[int], s: list[int], d: list[int]):
        auto = a.get("auto_pad", "NOTSET")
        if auto == "VALID":
            return "valid"
        if auto == "SAME_UPPER":
            return "same"
        if auto == "SAME_LOWER":
            H, W = self.spatial(x)
            if H is None or W is None:
                raise self.err(node, "auto_pad SAME_LOWER needs the input size, which shape inference did not give")
            pads = []
            for size, kk, ss, dd in ((H, k[0], s[0], d[0]), (W, k[1], s[1], d[1])):
                total = max((-(-size // ss) - 1) * ss + (kk - 1) * dd + 1 - size, 0)
                pads.append([total - total // 2, total // 2])
            return pads
        p = list(a.get("pads", [0, 0, 0, 0]))
        if len(p) != 4:
            raise self.err(node, f"pads {p} are not 2-D")
        if any(v < 0 for v in p):
            raise self.err(node, f"negative pads {p} are not supported")
        if not any(p):
            return "valid"
        return [[int(p[0]), int(p[2])], [int(p[1]), int(p[3])]]

    # ------------------------------------------------------------ ops
    def run(self) -> Network:
        inits = set(self.consts)
        inputs = [i for i in self.graph.input if i.name not in inits]
        if len(inputs) != 1:
            raise ModelError(f"{self.source}: the ONNX graph has {len(inputs)} inputs; only single-input models are supported")
        inp = inputs[0]
        shape = self.shapes.get(inp.name)
        if not shape:
            raise ModelError(f"{self.source}: graph input {inp.name!r} has no shape")
        in_layer = Layer(name=self.unique(inp.name), type="Input")
        self.layers.append(in_layer)
        self.prod[inp.name] = in_layer.name
        self.rank[inp.name] = len(shape)
        if len(shape) not in (2, 4):
            raise ModelError(f"{self.source}: graph input {inp.name!r} has rank {len(shape)}; expected (N, C, H, W) or (N, F)")
        for node in self.graph.node:
            if node.domain not in ("", "ai.onnx"):
                raise self.err(node, f"custom domain {node.domain!r} is not supported")
            if node.input and all((not i) or i in self.consts for i in node.input) and node.op_type in _CONST_OPS:
                self.fold(node)
                continue
            if node.op_type == "Constant":
                self.fold(node)
                continue
            if node.op_type == "Shape" and node.input[0] in self.shapes:
                self.consts[node.output[0]] = np.array(
                    [-1 if v is None else v for v in self.shapes[node.input[0]]], dtype=np.int64)
                continue
            handler = getattr(self, f"op_{node.op_type}", None)
            if handler is None:
                raise ModelError(
                    f"{self.source}: node {node.name or node.op_type!r} has unsupported ONNX op {node.op_type!r}; "
                    f"supported: {', '.join(SUPPORTED_OPS)}"
                )
            handler(node, _attrs(node))
        outputs = []
        for o in self.graph.output:
            if o.name not in self.prod or self.prod[o.name] == in_layer.name:
                raise ModelError(f"{self.source}: graph output {o.name!r} is not computed by any layer")
            outputs.append(self.prod[o.name])
        native = tuple(None if v in (None, 0) else int(v) for v in shape[1:])
        producer = f"{self.model.producer_name} {self.model.producer_version}".strip()
        return Network(
            name=self.graph.name or Path(self.source).stem,
            layers=self.layers,
            outputs=outputs,
            input_layout="NCHW",
            input_shape=native,
            metadata={"source_format": "onnx", "opset": self.opset, "producer": producer},
            source=self.source,
        )

    # constant folding ------------------------------------------------------
    def fold(self, node) -> None:
        a = _attrs(node)
        ins = [self.consts.get(i) if i else None for i in node.input]
        op = node.op_type
        try:
            if op == "Constant":
                if "value" in a:
                    v = self.nh.to_array(a["value"])
                elif "value_float" in a:
                    v = np.array(a["value_float"], dtype=np.float32)
                elif "value_floats" in a:
                    v = np.array(a["value_floats"], dtype=np.float32)
                elif "value_int" in a:
                    v = np.array(a["value_int"], dtype=np.int64)
                elif "value_ints" in a:
                    v = np.array(a["value_ints"], dtype=np.int64)
                else:
                    raise self.err(node, f"constant form {sorted(a)} is not supported")
            elif op == "Shape":
                v = np.array(ins[0].shape, dtype=np.int64)
            elif op == "Gather":
                v = np.take(ins[0], ins[1], axis=a.get("axis", 0))
            elif op == "Unsqueeze":
                axes = a.get("axes") if "axes" in a else [int(i) for i in ins[1]]
                v = ins[0]
                for ax in sorted(int(x) % (v.ndim + len(axes)) for x in axes):
                    v = np.expand_dims(v, ax)
            elif op == "Squeeze":
                axes = a.get("axes") if "axes" in a else (None if len(ins) < 2 or ins[1] is None else [int(i) for i in ins[1]])
                v = np.squeeze(ins[0], axis=None if axes is None else tuple(axes))
            elif op == "Concat":
                v = np.concatenate([np.atleast_1d(i) for i in ins], axis=a.get("axis", 0))
            elif op == "Cast":
                from onnx import helper

                v = ins[0].astype(helper.tensor_dtype_to_np_dtype(a["to"]))
            elif op == "Identity":
                v = ins[0]
            elif op in ("Mul", "Div", "Add", "Sub"):
                fn = {"Mul": np.multiply, "Div": np.divide, "Add": np.add, "Sub": np.subtract}[op]
                v = fn(ins[0], ins[1])
                if op == "Div" and ins[0].dtype.kind in "iu":
                    v = (ins[0] // ins[1]).astype(ins[0].dtype)
            elif op == "ReduceProd":
                v = np.prod(ins[0], keepdims=bool(a.get("keepdims", 1)))
            elif op == "Slice":
                starts, ends = ins[1], ins[2]
                axes = ins[3] if len(ins) > 3 and ins[3] is not None else range(len(starts))
                steps = ins[4] if len(ins) > 4 and ins[4] is not None else [1] * len(starts)
                sl = [slice(None)] * ins[0].ndim
                for s, e, ax, st in zip(starts, ends, axes, steps):
                    sl[int(ax)] = slice(int(s), int(e), int(st))
                v = ins[0][tuple(sl)]
            elif op == "Reshape":
                v = ins[0].reshape([int(s) if s != 0 else ins[0].shape[i] for i, s in enumerate(ins[1])])
            elif op == "Transpose":
                v = np.transpose(ins[0], a.get("perm"))
            elif op == "ConstantOfShape":
                fill = self.nh.to_array(a["value"]) if "value" in a else np.zeros(1, np.float32)
                v = np.full([int(s) for s in ins[0]], fill.reshape(-1)[0], dtype=fill.dtype)
            else:  # pragma: no cover - _CONST_OPS lists the above
                raise self.err(node, "cannot fold")
        except ModelError:
            raise
        except Exception as exc:
            raise self.err(node, f"cannot evaluate constant expression ({exc.__class__.__name__}: {exc})") from None
        self.consts[node.output[0]] = np.asarray(v)

    # MVM layers --------------------------------------------------------------
    def op_Conv(self, node, a):
        x = self.dyn(node, node.input[0])
        W = self.need_const(node, node.input[1], "weight")
        if W.ndim != 4:
            raise self.err(node, f"only 2-D convolutions are supported (weight has rank {W.ndim})")
        if self.rank[x] != 4:
            raise self.err(node, f"input has rank {self.rank[x]}, expected 4 (N, C, H, W)")
        b = self.const(node.input[2]) if len(node.input) > 2 and node.input[2] else None
        if len(node.input) > 2 and node.input[2] and b is None:
            raise self.err(node, "bias must be a constant initializer")
        O, Ig, kh, kw = W.shape
        k = list(a.get("kernel_shape", [kh, kw]))
        if k != [kh, kw]:
            raise self.err(node, f"kernel_shape {k} disagrees with the weight shape {list(W.shape)}")
        s = [int(v) for v in a.get("strides", [1, 1])]
        d = [int(v) for v in a.get("dilations", [1, 1])]
        group = int(a.get("group", 1))
        pad = self.conv_padding(node, a, x, k, s, d)
        C = Ig * group
        common = {"kernel_size": k, "strides": s, "padding": pad, "dilation_rate": d,
                  "use_bias": b is not None, "activation": "linear"}
        weights: dict[str, np.ndarray] = {}
        if group > 1 and Ig == 1:  # depthwise: out channel o = c * mult + m
            mult = O // C
            weights["depthwise_kernel"] = self.f32(W.reshape(C, mult, kh, kw).transpose(2, 3, 0, 1))
            cfg = {**common, "depth_multiplier": mult}
            ltype = "DepthwiseConv2D"
        else:
            weights["kernel"] = self.f32(W.transpose(2, 3, 1, 0))
            cfg = {"filters": int(O), **common}
            if group > 1:
                cfg["groups"] = group
            ltype = "Conv2D"
        if b is not None:
            weights["bias"] = self.f32(b.reshape(-1))
        self.add(node, ltype, [x], cfg, weights, rank=4)

    def op_Gemm(self, node, a):
        x = self.dyn(node, node.input[0])
        if int(a.get("transA", 0)):
            raise self.err(node, "transA = 1 is not supported")
        if self.rank[x] != 2:
            raise self.err(node, f"input has rank {self.rank[x]}, expected 2")
        B = self.need_const(node, node.input[1], "B")
        W = (B.T if int(a.get("transB", 0)) else B) * float(a.get("alpha", 1.0))
        units = W.shape[1]
        weights = {"kernel": self.f32(W)}
        C = self.const(node.input[2]) if len(node.input) > 2 and node.input[2] else None
        if len(node.input) > 2 and node.input[2] and C is None:
            raise self.err(node, "C must be a constant initializer")
        if C is not None:
            if C.size not in (1, units):
                raise self.err(node, f"bias C of shape {C.shape} does not broadcast to ({units},)")
            weights["bias"] = self.f32(np.broadcast_to(C.reshape(-1) * float(a.get("beta", 1.0)), (units,)).copy())
        self.add(node, "Dense", [x], {"units": int(units), "use_bias": C is not None, "activation": "linear"},
                 weights, rank=2)

    def op_MatMul(self, node, a):
        x = self.dyn(node, node.input[0])
        W = self.const(node.input[1])
        if W is None or W.ndim != 2:
            raise self.err(node, "only activation @ constant 2-D matrix is supported")
        if self.rank[x] == 4:
            raise self.err(node, "MatMul on a 4-D activation is not supported")
        self.add(node, "Dense", [x], {"units": int(W.shape[1]), "use_bias": False, "activation": "linear"},
                 {"kernel": self.f32(W)})

    # normalization / activations ---------------------------------------------
    def op_BatchNormalization(self, node, a):
        x = self.dyn(node, node.input[0])
        if int(a.get("training_mode", 0)):
            raise self.err(node, "training_mode BatchNormalization is not supported")
        if self.rank[x] not in (2, 4):
            raise self.err(node, f"input rank {self.rank[x]} is not supported (2 or 4)")
        vals = [self.need_const(node, n, w) for n, w in zip(node.input[1:5], ("scale", "B", "mean", "var"))]
        weights = {k: self.f32(v.reshape(-1)) for k, v in zip(("gamma", "beta", "moving_mean", "moving_variance"), vals)}
        self.add(node, "BatchNormalization", [x], {"epsilon": float(a.get("epsilon", 1e-5)), "axis": -1}, weights)

    def _act(self, node, name: str, alpha: float | None = None):
        x = self.dyn(node, node.input[0])
        cfg: dict[str, Any] = {"activation": name}
        if alpha is not None:
            cfg["alpha"] = float(alpha)
        self.add(node, "Activation", [x], cfg)

    def op_Relu(self, node, a):
        self._act(node, "relu")

    def op_Sigmoid(self, node, a):
        self._act(node, "sigmoid")

    def op_Tanh(self, node, a):
        self._act(node, "tanh")

    def op_LeakyRelu(self, node, a):
        self._act(node, "leaky_relu", a.get("alpha", 0.01))

    def op_Elu(self, node, a):
        self._act(node, "elu", a.get("alpha", 1.0))

    def op_Gelu(self, node, a):
        if a.get("approximate", "none") != "none":
            raise self.err(node, "only the exact (erf) Gelu is supported")
        self._act(node, "gelu")

    def op_HardSigmoid(self, node, a):
        if abs(a.get("alpha", 0.2) - 0.2) > 1e-7 or abs(a.get("beta", 0.5) - 0.5) > 1e-7:
            raise self.err(node, "only HardSigmoid with alpha 0.2, beta 0.5 is supported")
        self._act(node, "hard_sigmoid")

    def op_Clip(self, node, a):
        lo = a.get("min")
        hi = a.get("max")
        if len(node.input) > 1 and node.input[1]:
            lo = float(self.need_const(node, node.input[1], "min"))
        if len(node.input) > 2 and node.input[2]:
            hi = float(self.need_const(node, node.input[2], "max"))
        if lo == 0 and hi is None:
            return self._act(node, "relu")
        if lo == 0 and hi == 6:
            return self._act(node, "relu6")
        raise self.err(node, f"Clip({lo}, {hi}) is not supported (only Clip(0) and Clip(0, 6))")

    def op_Softmax(self, node, a):
        x = self.dyn(node, node.input[0])
        r = self.rank[x]
        axis = int(a.get("axis", -1 if self.opset >= 13 else 1)) % r
        if not ((r == 2 and axis == 1) or (r == 4 and axis == 1 and self.opset >= 13)):
            raise self.err(node, f"softmax over axis {axis} of a rank-{r} tensor is not supported")
        self._act(node, "softmax")

    def op_PRelu(self, node, a):
        x = self.dyn(node, node.input[0])
        slope = self.need_const(node, node.input[1], "slope")
        if self.rank[x] == 4 and slope.ndim >= 3:  # (C, 1, 1) -> (1, 1, C)
            slope = np.moveaxis(slope.reshape(slope.shape[-3:]), 0, -1)
        self.add(node, "PReLU", [x], {}, {"alpha": self.f32(slope)})

    # pooling -----------------------------------------------------------------
    def _pool(self, node, a, ltype: str):
        x = self.dyn(node, node.input[0])
        if len(node.output) > 1 and node.output[1] and self.consumers.get(node.output[1]):
            raise self.err(node, "the Indices output is not supported")
        if self.rank[x] != 4:
            raise self.err(node, "only 2-D pooling is supported")
        k = [int(v) for v in a["kernel_shape"]]
        s = [int(v) for v in a.get("strides", [1, 1])]
        if any(int(v) != 1 for v in a.get("dilations", [1, 1])):
            raise self.err(node, "dilated pooling is not supported")
        pad = self.conv_padding(node, a, x, k, s, [1, 1])
        cip = bool(int(a.get("count_include_pad", 0)))
        if int(a.get("ceil_mode", 0)):
            H, W = self.spatial(x)
            if H is None or W is None:
                raise self.err(node, "ceil_mode needs the input size, which shape inference did not give")
            if pad == "same":
                raise self.err(node, "ceil_mode with auto_pad is not supported")
            pads = [[0, 0], [0, 0]] if pad == "valid" else [list(p) for p in pad]
            for i, size in enumerate((H, W)):
                lo, hi = pads[i]
                span = size + lo + hi
                out = -(-(span - k[i]) // s[i]) + 1
                if (out - 1) * s[i] >= size + lo:  # last window must start inside the input or left pad
                    out -= 1
                extra = max((out - 1) * s[i] + k[i] - span, 0)
                if extra and ltype == "AveragePooling2D" and cip:
                    raise self.err(node, "ceil_mode with count_include_pad is not supported")
                pads[i][1] += extra
            pad = "valid" if not any(sum(pads, [])) else pads
        cfg: dict[str, Any] = {"pool_size": k, "strides": s, "padding": pad}
        if ltype == "AveragePooling2D":
            cfg["count_include_pad"] = cip
        self.add(node, ltype, [x], cfg)

    def op_MaxPool(self, node, a):
        self._pool(node, a, "MaxPooling2D")

    def op_AveragePool(self, node, a):
        self._pool(node, a, "AveragePooling2D")

    def op_GlobalAveragePool(self, node, a):
        x = self.dyn(node, node.input[0])
        if self.rank[x] != 4:
            raise self.err(node, "only 4-D inputs are supported")
        self.add(node, "GlobalAveragePooling2D", [x], {"keepdims": True})

    def op_GlobalMaxPool(self, node, a):
        x = self.dyn(node, node.input[0])
        if self.rank[x] != 4:
            raise self.err(node, "only 4-D inputs are supported")
        self.add(node, "GlobalMaxPooling2D", [x], {"keepdims": True})

    def _reduce(self, node, a, ltype: str):
        x = self.dyn(node, node.input[0])
        axes = a.get("axes")
        if axes is None and len(node.input) > 1 and node.input[1]:
            axes = [int(v) for v in self.need_const(node, node.input[1], "axes")]
        r = self.rank[x]
        if r != 4 or axes is None or sorted(int(v) % r for v in axes) != [2, 3]:
            raise self.err(node, f"only reductions over the spatial axes (2, 3) of a 4-D tensor are supported, got axes {axes}")
        keep = bool(int(a.get("keepdims", 1)))
        self.add(node, ltype, [x], {"keepdims": keep}, rank=4 if keep else 2)

    def op_ReduceMean(self, node, a):
        self._reduce(node, a, "GlobalAveragePooling2D")

    def op_ReduceMax(self, node, a):
        self._reduce(node, a, "GlobalMaxPooling2D")

    # element-wise --------------------------------------------------------------
    def _affine(self, node, x: str, scale: np.ndarray | float, shift: np.ndarray | float):
        """y = x * scale + shift with per-channel/scalar constants, as a BatchNormalization layer."""
        r = self.rank[x]
        C = self.channels(x)
        arrs = [np.asarray(scale, dtype=np.float64), np.asarray(shift, dtype=np.float64)]
        vecs = []
        for v in arrs:
            if v.size == 1:
                if C is None:
                    raise self.err(node, "the channel count is unknown (shape inference failed)")
                vecs.append(np.full(C, float(v.reshape(-1)[0])))
                continue
            shape = v.shape
            # per channel: (C,), (1, C) for rank 2; (C, 1, 1), (1, C, 1, 1) for rank 4
            squeezed = [d for d in shape]
            while squeezed and squeezed[0] == 1 and len(squeezed) > (1 if r == 2 else 3):
                squeezed = squeezed[1:]
            ok = (r == 2 and len(squeezed) == 1) or (r == 4 and len(squeezed) == 3 and squeezed[1:] == [1, 1])
            if not ok:
                raise self.err(node, f"constant of shape {list(shape)} is not per-channel or scalar")
            vecs.append(v.reshape(-1))
        n = max(len(vecs[0]), len(vecs[1]))
        scale_v, shift_v = (np.broadcast_to(v, (n,)) if len(v) == 1 else v for v in vecs)
        weights = {
            "gamma": scale_v.astype(np.float32), "beta": shift_v.astype(np.float32),
            "moving_mean": np.zeros(n, np.float32), "moving_variance": np.ones(n, np.float32),
        }
        self.add(node, "BatchNormalization", [x], {"epsilon": 0.0, "axis": -1}, weights)

    def _binary(self, node, ltype: str):
        if len(node.input) != 2 and ltype != "Add":
            raise self.err(node, "expected two inputs")
        ca = [self.const(i) for i in node.input]
        if all(c is None for c in ca):
            xs = [self.dyn(node, i) for i in node.input]
            ranks = {self.rank[i] for i in xs}
            if len(ranks) != 1:
                raise self.err(node, "operands of different ranks (broadcasting) are not supported")
            self.add(node, ltype, xs, {})
            return
        if len(node.input) != 2:
            raise self.err(node, "constants in an n-ary Sum are not supported")
        op = node.op_type
        if ca[0] is not None and op in ("Sub", "Div"):
            raise self.err(node, "a constant first operand is not supported")
        x = self.dyn(node, node.input[1] if ca[0] is not None else node.input[0])
        c = ca[0] if ca[0] is not None else ca[1]
        if op in ("Add", "Sum") and self._fuse_bias(node, x, c):
            return
        if op in ("Add", "Sum"):
            self._affine(node, x, 1.0, c)
        elif op == "Sub":
            self._affine(node, x, 1.0, -np.asarray(c, dtype=np.float64))
        elif op == "Mul":
            self._affine(node, x, c, 0.0)
        else:
            self._affine(node, x, 1.0 / np.asarray(c, dtype=np.float64), 0.0)

    def _fuse_bias(self, node, x: str, c: np.ndarray) -> bool:
        """Put a constant Add into the bias of the MVM layer producing ``x`` when nothing else reads it."""
        layer = next(l for l in self.layers if l.name == self.prod[x])
        if layer.type not in ("Dense", "Conv2D", "DepthwiseConv2D") or layer.config.get("use_bias"):
            return False
        if self.consumers.get(x, 0) != 1 or x in self.graph_outputs:
            return False
        n = layer.weights["kernel"].shape[-1] if "kernel" in layer.weights else int(np.prod(layer.weights["depthwise_kernel"].shape[2:]))
        c = np.asarray(c)
        if c.size == 1:
            bias = np.full(n, float(c.reshape(-1)[0]))
        elif c.size == n and (c.ndim == 1 or (layer.type == "Dense" and c.shape[-1] == n)
                              or (layer.type != "Dense" and c.reshape(-1).shape == (n,) and (c.ndim < 3 or c.shape[-2:] == (1, 1)))):
            bias = c.reshape(-1)
        else:
            return False
        layer.weights["bias"] = np.asarray(bias, dtype=np.float32)
        layer.config["use_bias"] = True
        self.prod[node.output[0]] = layer.name
        self.rank[node.output[0]] = self.rank[x]
        return True

    def op_Add(self, node, a):
        self._binary(node, "Add")

    def op_Sum(self, node, a):
        if len(node.input) == 1:
            return self._alias(node)
        self._binary(node, "Add")

    def op_Sub(self, node, a):
        self._binary(node, "Subtract")

    def op_Mul(self, node, a):
        self._binary(node, "Multiply")

    def op_Div(self, node, a):
        self._binary(node, "Divide")

    # shape ops -------------------------------------------------------------------
    def op_Concat(self, node, a):
        xs = [self.dyn(node, i) for i in node.input]
        r = self.rank[xs[0]]
        axis = int(a["axis"]) % r
        if axis == 0:
            raise self.err(node, "concatenation along the batch axis is not supported")
        internal = {1: 3, 2: 1, 3: 2}[axis] if r == 4 else axis
        self.add(node, "Concatenate", xs, {"axis": internal})

    def op_Flatten(self, node, a):
        x = self.dyn(node, node.input[0])
        axis = int(a.get("axis", 1))
        if axis % self.rank[x] != 1:
            raise self.err(node, f"Flatten with axis {axis} is not supported (only axis 1)")
        self.add(node, "Flatten", [x], {"order": "NCHW"}, rank=2)

    def op_Reshape(self, node, a):
        x = self.dyn(node, node.input[0])
        target = [int(v) for v in self.need_const(node, node.input[1], "shape")]
        if not target:
            raise self.err(node, "empty target shape")
        rest = target[1:]  # the first axis is the batch
        in_shape = self.shapes.get(x)
        for i, v in enumerate(rest):
            if v == 0 and not int(a.get("allowzero", 0)):
                if not in_shape or in_shape[i + 1] is None:
                    raise self.err(node, "a 0 (copy) entry needs the input shape")
                rest[i] = int(in_shape[i + 1])
        if len(rest) == 1:
            self.add(node, "Flatten", [x], {"order": "NCHW"}, rank=2)
            return
        if len(rest) + 1 not in (3, 4):
            raise self.err(node, f"reshape to rank {len(rest) + 1} is not supported")
        self.add(node, "Reshape", [x], {"target_shape": rest, "order": "NCHW"}, rank=len(rest) + 1)

    def op_Squeeze(self, node, a):
        x = self.dyn(node, node.input[0])
        axes = a.get("axes")
        if axes is None and len(node.input) > 1 and node.input[1]:
            axes = [int(v) for v in self.need_const(node, node.input[1], "axes")]
        r = self.rank[x]
        shp = self.shapes.get(x)
        if axes is None and shp and r == 4 and shp[2] == 1 and shp[3] == 1:
            axes = [2, 3]
        if r == 4 and axes is not None and sorted(int(v) % r for v in axes) == [2, 3]:
            self.add(node, "Flatten", [x], {"order": "NCHW"}, rank=2)
            return
        raise self.err(node, f"Squeeze of axes {axes} of a rank-{r} tensor is not supported (only the 1x1 spatial axes)")

    def op_Pad(self, node, a):
        x = self.dyn(node, node.input[0])
        mode = a.get("mode", "constant")
        if mode != "constant":
            raise self.err(node, f"pad mode {mode!r} is not supported (only constant zeros)")
        r = self.rank[x]
        if "pads" in a:
            pads = [int(v) for v in a["pads"]]
            value = float(a.get("value", 0.0))
        else:
            pads = [int(v) for v in self.need_const(node, node.input[1], "pads")]
            cv = self.const(node.input[2]) if len(node.input) > 2 and node.input[2] else None
            if len(node.input) > 2 and node.input[2] and cv is None:
                raise self.err(node, "constant_value must be a constant")
            value = 0.0 if cv is None or cv.size == 0 else float(cv.reshape(-1)[0])
            if len(node.input) > 3 and node.input[3]:
                axes = [int(v) % r for v in self.need_const(node, node.input[3], "axes")]
                full = [0] * (2 * r)
                for i, ax in enumerate(axes):
                    full[ax], full[r + ax] = pads[i], pads[len(axes) + i]
                pads = full
        if value != 0.0:
            raise self.err(node, f"padding with {value} is not supported (only zeros)")
        if r != 4 or len(pads) != 8:
            raise self.err(node, "only padding of 4-D (N, C, H, W) tensors is supported")
        if any(pads[i] for i in (0, 1, 4, 5)):
            raise self.err(node, f"padding of the batch or channel axis is not supported (pads {pads})")
        if any(v < 0 for v in pads):
            raise self.err(node, f"negative pads (cropping) are not supported (pads {pads})")
        self.add(node, "ZeroPadding2D", [x], {"padding": [[pads[2], pads[6]], [pads[3], pads[7]]]})

    def _alias(self, node):
        x = self.dyn(node, node.input[0])
        self.prod[node.output[0]] = self.prod[x]
        self.rank[node.output[0]] = self.rank[x]

    def op_Dropout(self, node, a):
        if len(node.output) > 1 and node.output[1] and self.consumers.get(node.output[1]):
            raise self.err(node, "the Dropout mask output is not supported")
        self._alias(node)

    def op_Identity(self, node, a):
        self._alias(node)


def load_onnx(path_or_model: "str | Path | Any") -> Network:
    """Read an ONNX model (a file path or an ``onnx.ModelProto``) into a Network.

    Needs the optional ``onnx`` package; raises :class:`ModelError` with one
    line for a missing package, an unreadable file or an unsupported node.
    """
    onnx = _onnx()
    if isinstance(path_or_model, (str, Path)):
        path = Path(path_or_model)
        if not path.exists():
            raise ModelError(f"{path}: ONNX model file not found")
        try:
            model = onnx.load(str(path))
        except Exception as exc:
            first = (str(exc).splitlines() or [""])[0]
            raise ModelError(f"{path}: not a readable ONNX model ({exc.__class__.__name__}: {first})") from None
        source = str(path)
    elif hasattr(path_or_model, "graph"):
        model = path_or_model
        source = getattr(model.graph, "name", "") or "<onnx model>"
    else:
        raise ModelError(f"load_onnx expects a file path or an onnx.ModelProto, got {type(path_or_model).__name__}")
    if not model.graph.node:
        raise ModelError(f"{source}: the ONNX graph has no nodes (not an ONNX model?)")
    return _Importer(model, source).run()
