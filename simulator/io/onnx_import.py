"""Import ONNX models (optional extra: ``pip install xbarsim[onnx]``), checked against onnxruntime.

:func:`load_onnx` turns an ONNX graph into a :class:`~simulator.network.Network`
that the NumPy executor runs. MVMs with constant weights become analog layers
(``Conv`` -> Conv2D / DepthwiseConv2D, ``Gemm`` and ``MatMul`` with a constant
matrix -> Dense, a constant ``Add`` after them -> their bias); every other
node becomes a digital layer with the node's ONNX semantics
(:mod:`simulator.tensor_ops`, plus BatchNormalization, PReLU, pooling).

Layout
------
The Network keeps every tensor in the ONNX layout (``internal_layout =
"native"``): Transpose / Reshape / Gather / Softmax / LayerNormalization on
any axis of tensors of any rank mean exactly what the file says, so a graph
is correct whatever its rank or axis order. Only the layers that compute on
channels-last sliding windows (Conv2D, DepthwiseConv2D, MaxPooling2D,
AveragePooling2D) carry ``data_format = "channels_first"`` and transpose
their own input and output. Weights are stored in our Keras layouts
(Conv ``W (O, I/g, kh, kw)`` -> ``kernel (kh, kw, I/g, O)``; depthwise
(``group == I``) -> ``depthwise_kernel (kh, kw, I, O/I)``; Dense ``(in, out)``).

Shapes and the batch axis
-------------------------
The graph is specialised to the batch size of its input (1 when the batch
dimension is symbolic): ONNX shape inference gives every tensor's concrete
shape, and every node whose inputs are constants, ``Shape`` or ``Size``
outputs is evaluated at import (onnx's reference evaluator), so shape
arithmetic, masks and position tables become constants. Axis 0 of the input
is the batch axis. As long as no node mixes it with other axes, the Network
runs any number of images (``Reshape`` keeps it with a 0 entry, constants
with a leading 1 broadcast over it). A node that moves or merges it (e.g.
the (S, B*heads, d) reshape of torch's MultiheadAttention) makes the Network
fixed-batch (``Network.batch_size``); the executor then feeds it exactly
that many images at a time.

Self-check
----------
With ``check=True`` (default) the model is run by onnxruntime on seeded
random inputs with every intermediate output exposed, and our graph by
:meth:`~simulator.Simulation.trace`; the first node whose output differs
beyond float tolerance refuses the model (:mod:`simulator.io.selfcheck`).
The samples are run as one batch on our side and in the file's own batch
size on onnxruntime's, which also proves the batch handling above.
"""
from __future__ import annotations

import re
from pathlib import Path
from typing import Any, Callable

import numpy as np

from simulator.errors import ModelError
from simulator.network import Layer, Network

#: onnx element type -> name used by the Cast layer
_CAST = {1: "float", 10: "float", 11: "float", 16: "float", 2: "int64", 3: "int64", 4: "int64", 5: "int64",
         6: "int64", 7: "int64", 12: "int64", 13: "int64", 9: "bool"}


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
        out[a.name] = v.decode() if isinstance(v, bytes) else v
    return out


def _label(node) -> str:
    return f"node {node.name or node.output[0]!r} ({node.op_type})"


class _Importer:
    """One pass over the nodes in file order (ONNX graphs are topologically sorted)."""

    def __init__(self, model, source: str):
        onnx = _onnx()
        self.source = source
        self.model = model
        self.graph = model.graph
        self.opset = next((int(i.version) for i in model.opset_import if i.domain in ("", "ai.onnx")), 13)
        self.consts: dict[str, np.ndarray] = {i.name: onnx.numpy_helper.to_array(i) for i in self.graph.initializer}
        inputs = [i for i in self.graph.input if i.name not in self.consts]
        if len(inputs) != 1:
            names = ", ".join(repr(i.name) for i in inputs)
            raise ModelError(f"{source}: the ONNX graph has {len(inputs)} inputs ({names}); only single-input models "
                             "are supported (export with one input tensor)")
        self.input = inputs[0]
        self.in_dims = self._input_dims()
        self.batch = self.in_dims[0]
        self.shapes, self.elem = self._infer_shapes()
        self._ran_ort = False
        self._session = None
        self.layers: list[Layer] = []
        self.names: set[str] = set()
        self.prod: dict[str, str] = {}  # onnx tensor -> our layer computing it
        self.exact: dict[str, str] = {}  # onnx tensor -> our layer whose output equals it (for the self-check)
        self.batched: dict[str, bool] = {}  # axis 0 of the tensor is the batch axis, rows independent
        self.fixed_by: str | None = None  # first node that mixes the batch axis with others
        self.consumers: dict[str, int] = {}
        for node in self.graph.node:
            for i in node.input:
                if i:
                    self.consumers[i] = self.consumers.get(i, 0) + 1
        self.graph_outputs = {o.name for o in self.graph.output}

    # ------------------------------------------------------------ set-up
    def _input_dims(self) -> list[int]:
        t = self.input.type.tensor_type
        if not t.HasField("shape") or not t.shape.dim:
            raise ModelError(f"{self.source}: graph input {self.input.name!r} has no shape")
        dims = []
        for i, d in enumerate(t.shape.dim):
            if d.HasField("dim_value") and d.dim_value > 0:
                dims.append(int(d.dim_value))
            elif i == 0:
                dims.append(1)  # a symbolic batch: specialise to 1
            else:
                raise ModelError(f"{self.source}: graph input {self.input.name!r} axis {i} has no fixed size "
                                 f"({d.dim_param or '?'}); export the model with a fixed input size")
        return dims

    def _infer_shapes(self):
        """Concrete shapes and element types of every tensor, with the input's batch fixed."""
        onnx = _onnx()
        m = onnx.ModelProto()
        m.CopyFrom(self.model)
        # large initializers become typed graph inputs: inference needs their shapes, not their values
        small = [i for i in m.graph.initializer if int(np.prod(i.dims)) <= 64]
        for init in m.graph.initializer:
            if int(np.prod(init.dims)) > 64:
                m.graph.input.append(onnx.helper.make_tensor_value_info(init.name, init.data_type, list(init.dims)))
        del m.graph.initializer[:]
        m.graph.initializer.extend(small)
        for inp in m.graph.input:
            if inp.name == self.input.name:
                inp.type.tensor_type.shape.dim[0].ClearField("dim_param")
                inp.type.tensor_type.shape.dim[0].dim_value = self.batch
        try:
            m = onnx.shape_inference.infer_shapes(m, data_prop=True)
        except Exception:  # shape inference is a help; missing shapes are reported where needed
            pass
        shapes, elem = {}, {}
        for vi in list(m.graph.input) + list(m.graph.value_info) + list(m.graph.output):
            t = vi.type.tensor_type
            elem[vi.name] = t.elem_type
            if t.HasField("shape"):
                dims = [d.dim_value if d.HasField("dim_value") else None for d in t.shape.dim]
                if all(d is not None for d in dims):
                    shapes[vi.name] = dims
        return shapes, elem

    # ------------------------------------------------------------ helpers
    def err(self, node, msg: str) -> ModelError:
        return ModelError(f"{self.source}: {_label(node)}: {msg}")

    def unique(self, base: str) -> str:
        name = re.sub(r"[/\\]+", ".", base).strip(".") or "layer"
        cand, k = name, 2
        while cand in self.names:
            cand = f"{name}_{k}"
            k += 1
        self.names.add(cand)
        return cand

    def shape(self, node, tensor: str) -> list[int]:
        if tensor in self.consts:
            return list(self.consts[tensor].shape)
        s = self.shapes.get(tensor)
        if s is None and not self._ran_ort:
            self._ort_shapes()
            s = self.shapes.get(tensor)
        if s is None:
            raise self.err(node, f"the shape of {tensor!r} is unknown (ONNX shape inference could not derive it)")
        return s

    def _ort_shapes(self) -> None:
        """Fill shapes ONNX inference missed by running the graph once in onnxruntime (zeros, import batch)."""
        self._ran_ort = True
        try:
            import onnxruntime  # noqa: F401
        except ImportError:
            return
        from onnx import helper

        dtype = helper.tensor_dtype_to_np_dtype(self.input.type.tensor_type.elem_type)
        try:
            got = self.ort_run([{self.input.name: np.zeros(self.in_dims, dtype=dtype)}])
        except Exception:  # the caller reports the missing shape
            return
        for name, value in got.items():
            self.shapes.setdefault(name, list(np.shape(value)))

    def const(self, name: str) -> np.ndarray | None:
        return self.consts.get(name) if name else None

    def need_const(self, node, name: str, what: str) -> np.ndarray:
        v = self.const(name)
        if v is None:
            raise self.err(node, f"{what} ({name!r}) must be a constant (an initializer or computed from shapes); "
                           "dynamic values are not supported here")
        return v

    def dyn(self, node, name: str) -> str:
        if name not in self.prod:
            if name in self.consts:
                raise self.err(node, f"input {name!r} is a constant where an activation was expected")
            raise self.err(node, f"input {name!r} is not produced by any node")
        return name

    def ort_run(self, feeds: list[dict]) -> dict[str, np.ndarray]:
        """Every node output of the original model computed by onnxruntime, the runs of ``feeds`` stacked on axis 0.

        One session for the whole import (no graph optimizations: the file's nodes as written).
        """
        if self._session is None:
            import onnxruntime as ort
            from onnx import helper

            m = type(self.model)()
            m.CopyFrom(self.model)
            have = {o.name for o in m.graph.output}
            names = [o for node in self.graph.node for o in node.output if o and o not in have]
            m.graph.output.extend([helper.make_empty_tensor_value_info(t) for t in dict.fromkeys(names)])
            opts = ort.SessionOptions()
            opts.graph_optimization_level = ort.GraphOptimizationLevel.ORT_DISABLE_ALL
            opts.log_severity_level = 3
            sess = ort.InferenceSession(m.SerializeToString(), opts, providers=["CPUExecutionProvider"])
            self._session = (sess, [o.name for o in sess.get_outputs()])
        sess, out = self._session
        runs = [sess.run(out, f) for f in feeds]
        return {nm: np.concatenate([np.atleast_1d(r[i]) for r in runs]) if len(runs) > 1 else r0
                for i, (nm, r0) in enumerate(zip(out, runs[0]))}

    def fix_batch(self, node, why: str) -> None:
        """Record that the graph mixes the batch axis with others (the Network becomes fixed-batch)."""
        if self.fixed_by is None:
            self.fixed_by = f"{_label(node)}: {why}"

    @staticmethod
    def f32(a: np.ndarray) -> np.ndarray:
        a = np.asarray(a)
        return a.astype(np.float32) if a.dtype.kind == "f" and a.dtype != np.float64 else a

    def add(self, node, ltype: str, inputs: list[str], config: dict, weights: dict | None = None,
            out: str | None = None, batched: bool | None = None, suffix: str = "") -> Layer:
        base = (node.name or node.output[0] or f"{node.op_type}_{len(self.layers)}") + suffix
        layer = Layer(name=self.unique(base), type=ltype, inputs=[self.prod[t] for t in inputs],
                      config=config, weights=weights or {})
        self.layers.append(layer)
        out = node.output[0] if out is None else out
        self.prod[out] = self.exact[out] = layer.name
        self.batched[out] = all(self.batched[t] for t in inputs) if batched is None else batched
        return layer

    def alias(self, node, src: str, out: str | None = None) -> None:
        out = node.output[0] if out is None else out
        self.prod[out] = self.prod[src]
        if src in self.exact:
            self.exact[out] = self.exact[src]
        self.batched[out] = self.batched[src]

    def operands(self, node, names: list[str], broadcast: bool = True) -> tuple[list[str], list, dict[str, np.ndarray]]:
        """(activation inputs, operand spec, constant weights) for a node mixing activations and constants.

        ``broadcast``: the op broadcasts constants against activations (a constant whose leading axis has
        more than one entry at the activations' rank then spans the batch: the graph becomes fixed-batch).
        """
        acts: list[str] = []
        spec: list = []
        weights: dict[str, np.ndarray] = {}
        for i, n in enumerate(names):
            c = self.const(n)
            if c is None:
                self.dyn(node, n)
                if n not in acts:
                    acts.append(n)
                spec.append(acts.index(n))
            else:
                key = f"c{i}"
                weights[key] = self.f32(c)
                spec.append(key)
        rank = max(len(self.shape(node, a)) for a in acts)
        for n in names:
            c = self.const(n)
            if broadcast and c is not None and c.ndim == rank and c.shape[0] > 1 and any(self.batched[a] for a in acts):
                self.fix_batch(node, f"constant operand {n!r} spans the batch axis")
        return acts, spec, weights

    # ------------------------------------------------------------ main loop
    def run(self) -> Network:
        in_layer = Layer(name=self.unique(self.input.name), type="Input")
        self.layers.append(in_layer)
        self.prod[self.input.name] = in_layer.name
        self.batched[self.input.name] = True
        for node in self.graph.node:
            if node.domain not in ("", "ai.onnx"):
                raise self.err(node, f"custom domain {node.domain!r} is not supported")
            if self._fold(node):
                continue
            handler = _HANDLERS.get(node.op_type)
            if handler is None:
                raise ModelError(f"{self.source}: {_label(node)} has unsupported ONNX op {node.op_type!r}; "
                                 f"supported: {', '.join(sorted(_HANDLERS))}")
            handler(self, node, _attrs(node))
        outputs = []
        for o in self.graph.output:
            if o.name not in self.prod or self.prod[o.name] == in_layer.name:
                raise ModelError(f"{self.source}: graph output {o.name!r} is not computed by any layer "
                                 "(a constant or the input itself)")
            outputs.append(self.prod[o.name])
        producer = f"{self.model.producer_name} {self.model.producer_version}".strip()
        meta = {"source_format": "onnx", "opset": self.opset, "producer": producer}
        if self.fixed_by:
            meta["fixed_batch_reason"] = self.fixed_by
        return Network(
            name=self.graph.name or Path(self.source).stem, layers=self.layers, outputs=outputs,
            input_layout="NCHW" if len(self.in_dims) == 4 else "NHWC", input_shape=tuple(self.in_dims[1:]),
            internal_layout="native", batch_size=self.batch if self.fixed_by else None,
            metadata=meta, source=self.source,
        )

    def _fold(self, node) -> bool:
        """Evaluate ``node`` now when its inputs are constants (or it reads only a tensor's shape)."""
        op = node.op_type
        if op in ("Shape", "Size") and node.input[0] not in self.consts:
            shp = np.array(self.shape(node, node.input[0]), dtype=np.int64)
            if op == "Size":
                self.consts[node.output[0]] = np.array(int(np.prod(shp)), dtype=np.int64)
                return True
            a = _attrs(node)
            start, end = a.get("start", 0), a.get("end")
            self.consts[node.output[0]] = shp[start:end]
            return True
        if op != "Constant" and not all((not i) or i in self.consts for i in node.input):
            return False
        feeds = {i: self.consts[i] for i in node.input if i}
        try:
            values = _evaluate(node, feeds, self.opset)
        except Exception as exc:
            raise self.err(node, f"cannot evaluate this constant expression ({exc.__class__.__name__}: "
                           f"{(str(exc).splitlines() or [''])[0]})") from None
        for name, v in zip(node.output, values):
            if name:
                self.consts[name] = np.asarray(v)
        return True


def _evaluate(node, feeds: dict[str, np.ndarray], opset: int) -> list:
    """Outputs of one node on constant inputs: onnx's reference evaluator, onnxruntime where it fails."""
    from onnx.reference import ReferenceEvaluator

    try:
        return ReferenceEvaluator(node, opsets={"": opset}).run(None, feeds)
    except Exception:
        pass
    import onnxruntime as ort
    from onnx import helper

    ins = [helper.make_tensor_value_info(k, helper.np_dtype_to_tensor_dtype(v.dtype), list(v.shape))
           for k, v in feeds.items()]
    outs = [helper.make_empty_tensor_value_info(o) for o in node.output if o]
    graph = helper.make_graph([node], "fold", ins, outs)
    model = helper.make_model(graph, opset_imports=[helper.make_opsetid("", opset)])
    sess = ort.InferenceSession(model.SerializeToString(), providers=["CPUExecutionProvider"])
    values = dict(zip([o.name for o in outs], sess.run(None, feeds)))
    return [values.get(o) for o in node.output]


# ====================================================================== handlers
def _conv_padding(imp: _Importer, node, a: dict, x: str, k: list[int], s: list[int], d: list[int]):
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


def _conv(imp: _Importer, node, a):
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
        weights["depthwise_kernel"] = imp.f32(W.reshape(C, mult, kh, kw).transpose(2, 3, 0, 1))
        cfg, ltype = {**common, "depth_multiplier": mult}, "DepthwiseConv2D"
    else:
        weights["kernel"] = imp.f32(W.transpose(2, 3, 1, 0))
        cfg, ltype = {"filters": int(O), **common}, "Conv2D"
        if group > 1:
            cfg["groups"] = group
    if b is not None:
        weights["bias"] = imp.f32(b.reshape(-1))
    imp.add(node, ltype, [x], cfg, weights)


def _dense(imp: _Importer, node, x: str, W: np.ndarray, bias: np.ndarray | None, out: str | None = None,
           suffix: str = "") -> None:
    weights = {"kernel": imp.f32(W)}
    if bias is not None:
        weights["bias"] = imp.f32(bias)
    imp.add(node, "Dense", [x], {"units": int(W.shape[1]), "use_bias": bias is not None, "activation": "linear"},
            weights, out=out, suffix=suffix)


def _gemm(imp: _Importer, node, a):
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


def _matmul(imp: _Importer, node, a):
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


def _batchnorm(imp: _Importer, node, a):
    x = imp.dyn(node, node.input[0])
    if int(a.get("training_mode", 0)):
        raise imp.err(node, "training_mode BatchNormalization is not supported")
    vals = [imp.need_const(node, n, w) for n, w in zip(node.input[1:5], ("scale", "B", "mean", "var"))]
    weights = {k: imp.f32(v.reshape(-1)) for k, v in zip(("gamma", "beta", "moving_mean", "moving_variance"), vals)}
    imp.add(node, "BatchNormalization", [x], {"epsilon": float(a.get("epsilon", 1e-5)), "axis": 1}, weights)


def _unary(imp: _Importer, node, a):
    x = imp.dyn(node, node.input[0])
    cfg: dict[str, Any] = {"op": node.op_type}
    for key in ("alpha", "beta", "gamma"):
        if key in a:
            cfg[key] = float(a[key])
    if node.op_type == "Gelu":
        cfg["approximate"] = a.get("approximate", "none")
    imp.add(node, "Unary", [x], cfg)


def _prelu(imp: _Importer, node, a):
    x = imp.dyn(node, node.input[0])
    slope = imp.need_const(node, node.input[1], "slope")
    imp.add(node, "PReLU", [x], {}, {"alpha": imp.f32(slope)})


def _fuse_bias(imp: _Importer, node, x: str, c: np.ndarray) -> bool:
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


def _binary(imp: _Importer, node, a):
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


def _where(imp: _Importer, node, a):
    acts, spec, weights = imp.operands(node, list(node.input))
    imp.add(node, "Where", acts, {"operands": spec}, weights)


def _clip(imp: _Importer, node, a):
    x = imp.dyn(node, node.input[0])
    lo, hi = a.get("min"), a.get("max")
    if len(node.input) > 1 and node.input[1]:
        lo = float(imp.need_const(node, node.input[1], "min"))
    if len(node.input) > 2 and node.input[2]:
        hi = float(imp.need_const(node, node.input[2], "max"))
    cfg = {k: float(v) for k, v in (("min", lo), ("max", hi)) if v is not None}
    imp.add(node, "Clip", [x], cfg)


def _cast(imp: _Importer, node, a):
    x = imp.dyn(node, node.input[0])
    to = _CAST.get(int(a["to"]))
    if to is None:
        raise imp.err(node, f"cast to ONNX element type {a['to']} is not supported")
    imp.add(node, "Cast", [x], {"to": to})


def _axis(imp: _Importer, node, x: str, axis: int, what: str) -> int:
    r = len(imp.shape(node, x))
    axis = int(axis) % r
    if axis == 0 and imp.batched[x]:
        imp.fix_batch(node, f"{what} along the batch axis")
    return axis


def _softmax(imp: _Importer, node, a):
    x = imp.dyn(node, node.input[0])
    default = -1 if imp.opset >= 13 else 1
    axis = _axis(imp, node, x, a.get("axis", default), "softmax")
    cfg: dict[str, Any] = {"axis": axis}
    if node.op_type == "LogSoftmax":
        cfg["log"] = True
    if imp.opset < 13:
        cfg["flatten"] = True
    imp.add(node, "Softmax", [x], cfg)


def _layernorm(imp: _Importer, node, a):
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


def _reduce(imp: _Importer, node, a):
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


def _transpose(imp: _Importer, node, a):
    x = imp.dyn(node, node.input[0])
    r = len(imp.shape(node, x))
    perm = [int(p) for p in a.get("perm", list(range(r))[::-1])]
    batched = imp.batched[x] and perm[0] == 0
    if imp.batched[x] and not batched:
        imp.fix_batch(node, f"perm {perm} moves the batch axis")
    imp.add(node, "Transpose", [x], {"perm": perm}, batched=batched)


def _reshape_to(imp: _Importer, node, x: str, out_shape: list[int]) -> None:
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


def _reshape(imp: _Importer, node, a):
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


def _expand(imp: _Importer, node, a):
    x = imp.dyn(node, node.input[0])
    shape = [int(v) for v in imp.need_const(node, node.input[1], "shape")]
    in_shape = imp.shape(node, x)
    batched = imp.batched[x] and len(shape) == len(in_shape) and shape[0] in (1, in_shape[0])
    if batched:
        shape[0] = 1  # broadcasting keeps the runtime batch
    elif imp.batched[x]:
        imp.fix_batch(node, f"expansion of {in_shape} to {shape} changes the batch axis")
    imp.add(node, "Expand", [x], {"shape": shape}, batched=batched)


def _slice_cfg(imp: _Importer, node, a, x: str) -> dict | None:
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


def _slice(imp: _Importer, node, a):
    x = imp.dyn(node, node.input[0])
    cfg = _slice_cfg(imp, node, a, x)
    if cfg is None:
        return imp.alias(node, x)
    batched = imp.batched[x] and 0 not in cfg["axes"]
    if imp.batched[x] and not batched:
        imp.fix_batch(node, "slice of the batch axis")
    imp.add(node, "Slice", [x], cfg, batched=batched)
    return None


def _split(imp: _Importer, node, a):
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


def _gather(imp: _Importer, node, a):
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


def _concat(imp: _Importer, node, a):
    names = [n for n in node.input if n]
    acts, spec, weights = imp.operands(node, names)
    axis = int(a["axis"]) % len(imp.shape(node, acts[0]))
    batched = all(imp.batched[t] for t in acts) and axis != 0
    if not batched:
        imp.fix_batch(node, "concatenation along the batch axis")
    imp.add(node, "Concat", acts, {"axis": axis, "operands": spec}, weights, batched=batched)


def _pad(imp: _Importer, node, a):
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


def _pool(imp: _Importer, node, a):
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


def _identity(imp: _Importer, node, a):
    if node.op_type == "Dropout" and len(node.output) > 1 and node.output[1] and imp.consumers.get(node.output[1]):
        raise imp.err(node, "the Dropout mask output is not supported")
    imp.alias(node, imp.dyn(node, node.input[0]))


Handler = Callable[[_Importer, Any, dict], Any]
_HANDLERS: dict[str, Handler] = {
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
SUPPORTED_OPS = tuple(sorted(_HANDLERS))


# ====================================================================== self-check
def _index_limit(model, consts: dict, name: str) -> int:
    """Largest valid index for an integer graph input: the size of the tables it looks up."""
    limits = []
    for node in model.graph.node:
        if node.op_type == "Gather" and len(node.input) > 1 and node.input[1] == name and node.input[0] in consts:
            axis = next((a.i for a in node.attribute if a.name == "axis"), 0)
            limits.append(consts[node.input[0]].shape[axis])
    return min(limits) if limits else 2


def self_check(imp: _Importer, net: Network, n_samples: int = 2, seed: int = 0):
    """Compare ``net`` with onnxruntime node by node on seeded random inputs (raises ModelError on a mismatch)."""
    try:
        import onnxruntime as ort
    except ImportError:
        raise ModelError(f"{imp.source}: the ONNX import self-check needs onnxruntime (pip install 'xbarsim[onnx]'); "
                         "set check = false (or --no-check) to skip it") from None
    from onnx import helper

    from simulator.io.selfcheck import compare_traces, random_inputs
    from simulator.simulation import Simulation

    elem = imp.input.type.tensor_type.elem_type
    dtype = helper.tensor_dtype_to_np_dtype(elem)
    B = imp.batch
    n = B * -(-n_samples // B)
    x = random_inputs(imp.in_dims[1:], n, seed, dtype=str(dtype), high=_index_limit(imp.model, imp.consts, imp.input.name))
    order, seen = [], set()
    for node in imp.graph.node:
        for o in node.output:
            if o and o in imp.exact and o not in seen:
                seen.add(o)
                order.append((_label(node), o, imp.exact[o]))
    try:
        reference = imp.ort_run([{imp.input.name: x[s : s + B]} for s in range(0, n, B)])
    except Exception as exc:
        raise ModelError(f"{imp.source}: onnxruntime cannot run this model for the import self-check "
                         f"({exc.__class__.__name__}: {(str(exc).splitlines() or [''])[0]})") from None
    # exact MVMs (no arrays programmed), the graph as imported: batch norms unfolded so every node has its output
    cfg = {"analog": False, "ignoredLayerTypes": [], "fold_batchnorm": False}
    traced = Simulation(net, cfg, seed=0, cores=False).trace(x)
    report = compare_traces(reference, traced, order, source=imp.source, runtime="onnxruntime", n_inputs=n)
    return report


# ====================================================================== entry points
def _read(path_or_model) -> tuple[Any, str]:
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
    if not model.graph.node or not model.graph.output:
        raise ModelError(f"{source}: the ONNX graph has no nodes or no outputs (not an ONNX model, or truncated?)")
    return model, source


def load_onnx(path_or_model: "str | Path | Any", *, check: bool = True) -> Network:
    """Read an ONNX model (a file path or an ``onnx.ModelProto``) into a Network.

    ``check`` (default True) proves the import against onnxruntime on seeded
    random inputs (module notes). Raises :class:`ModelError` with one line for a
    missing package, an unreadable file, an unsupported node or a failed check.
    """
    model, source = _read(path_or_model)
    imp = _Importer(model, source)
    net = imp.run()
    if check:
        report = self_check(imp, net)
        net.metadata["self_check"] = report.line()
    return net
