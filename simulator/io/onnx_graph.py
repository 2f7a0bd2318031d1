"""The ONNX graph walker: one pass over the nodes of a model, building our layers.

:class:`OnnxImporter` holds what the translation of each node needs -- the
constants (initializers and folded expressions), the concrete shape of every
tensor (ONNX shape inference with the input's batch fixed, onnxruntime where
inference gives up), which of our layers computes each ONNX tensor and
whether axis 0 is still the batch axis -- and the helpers the op handlers use
(:meth:`~OnnxImporter.add`, :meth:`~OnnxImporter.alias`,
:meth:`~OnnxImporter.operands`, ...). The handlers themselves, one per ONNX
op, are the table in :mod:`simulator.io.onnx_ops`; :mod:`simulator.io.onnx_import`
puts the two together (and explains layout and batch conventions).
"""
from __future__ import annotations

import re
from pathlib import Path
from typing import Any, Callable, Mapping

import numpy as np

from simulator.errors import ModelError
from simulator.network import Layer, Network

#: an op handler: (importer, node, attributes) -> None; it adds layers or aliases to the importer
Handler = Callable[["OnnxImporter", Any, dict], Any]


def onnx_module():
    """The ``onnx`` package (ModelError when the optional extra is missing)."""
    try:
        import onnx
        from onnx import numpy_helper  # noqa: F401
    except ImportError:
        raise ModelError("ONNX import needs the optional 'onnx' package: pip install 'xbarsim[onnx]'") from None
    return onnx


def node_attributes(node) -> dict[str, Any]:
    """The node's attributes as Python values (strings decoded)."""
    from onnx import helper

    out = {}
    for a in node.attribute:
        v = helper.get_attribute_value(a)
        out[a.name] = v.decode() if isinstance(v, bytes) else v
    return out


def node_label(node) -> str:
    """How messages name a node: ``node 'name' (OpType)``."""
    return f"node {node.name or node.output[0]!r} ({node.op_type})"

class OnnxImporter:
    """One pass over the nodes in file order (ONNX graphs are topologically sorted)."""

    def __init__(self, model, source: str):
        onnx = onnx_module()
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
        onnx = onnx_module()
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
        return ModelError(f"{self.source}: {node_label(node)}: {msg}")

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
            self.fixed_by = f"{node_label(node)}: {why}"

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
    def run(self, handlers: Mapping[str, Handler]) -> Network:
        """Translate every node with ``handlers`` (op type -> handler) into the Network."""
        in_layer = Layer(name=self.unique(self.input.name), type="Input")
        self.layers.append(in_layer)
        self.prod[self.input.name] = in_layer.name
        self.batched[self.input.name] = True
        for node in self.graph.node:
            if node.domain not in ("", "ai.onnx"):
                raise self.err(node, f"custom domain {node.domain!r} is not supported")
            if self._fold(node):
                continue
            handler = handlers.get(node.op_type)
            if handler is None:
                raise ModelError(f"{self.source}: {node_label(node)} has unsupported ONNX op {node.op_type!r}; "
                                 f"supported: {', '.join(sorted(handlers))}")
            handler(self, node, node_attributes(node))
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
            a = node_attributes(node)
            start, end = a.get("start", 0), a.get("end")
            self.consts[node.output[0]] = shp[start:end]
            return True
        if op != "Constant" and not all((not i) or i in self.consts for i in node.input):
            return False
        feeds = {i: self.consts[i] for i in node.input if i}
        try:
            values = evaluate_node(node, feeds, self.opset)
        except Exception as exc:
            raise self.err(node, f"cannot evaluate this constant expression ({exc.__class__.__name__}: "
                           f"{(str(exc).splitlines() or [''])[0]})") from None
        for name, v in zip(node.output, values):
            if name:
                self.consts[name] = np.asarray(v)
        return True

def evaluate_node(node, feeds: dict[str, np.ndarray], opset: int) -> list:
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
