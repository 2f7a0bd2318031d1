"""Import ONNX models (optional extra: ``pip install xbarsim[onnx]``), checked against onnxruntime.

:func:`load_onnx` turns an ONNX graph into a :class:`~simulator.network.Network`
that the NumPy executor runs. MVMs with constant weights become analog layers
(``Conv`` -> Conv2D / DepthwiseConv2D, ``Gemm`` and ``MatMul`` with a constant
matrix -> Dense, a constant ``Add`` after them -> their bias); every other
node becomes a digital layer with the node's ONNX semantics
(:mod:`simulator.tensor_ops`, plus BatchNormalization, PReLU, pooling).

The graph walk is :class:`simulator.io.onnx_graph.OnnxImporter`, the
translation of each op the table :data:`simulator.io.onnx_ops.HANDLERS`.

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

from pathlib import Path
from typing import Any

from simulator.errors import ModelError
from simulator.io.onnx_graph import OnnxImporter, node_label, onnx_module
from simulator.io.onnx_ops import HANDLERS, SUPPORTED_OPS
from simulator.network import Network

__all__ = ["load_onnx", "self_check", "SUPPORTED_OPS"]


# ====================================================================== self-check
def _index_limit(model, consts: dict, name: str) -> int:
    """Largest valid index for an integer graph input: the size of the tables it looks up."""
    limits = []
    for node in model.graph.node:
        if node.op_type == "Gather" and len(node.input) > 1 and node.input[1] == name and node.input[0] in consts:
            axis = next((a.i for a in node.attribute if a.name == "axis"), 0)
            limits.append(consts[node.input[0]].shape[axis])
    return min(limits) if limits else 2


def self_check(imp: OnnxImporter, net: Network, n_samples: int = 2, seed: int = 0):
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
                order.append((node_label(node), o, imp.exact[o]))
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
    onnx = onnx_module()
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
    imp = OnnxImporter(model, source)
    net = imp.run(HANDLERS)
    if check:
        report = self_check(imp, net)
        net.metadata["self_check"] = report.line()
    return net
