"""Reading a torch model's graph: ``torch.fx`` tracing, and forward hooks where fx cannot trace.

:func:`from_fx` walks a traced :class:`torch.fx.GraphModule` (witin_nn
layers and standard layers are leaves; shapes propagated from the example
input): module calls go through :meth:`GraphBuilder.module
<simulator.io.torch_modules.GraphBuilder.module>`, functions and tensor
methods through the table :data:`FX_FUNCTIONS`. :func:`from_hooks` rebuilds
the graph from which tensor each leaf module received during one forward
pass; it sees module calls only, so functional operations between modules
are then an error.
"""
from __future__ import annotations

from typing import Any, Callable

from simulator.io.torch_modules import GraphBuilder
from simulator.io.torch_tensors import pair
from simulator.io.witin_params import WITIN_CLASSES


def _is_leaf_factory(torch):
    base = torch.fx.Tracer.is_leaf_module

    def is_leaf(self, m, qualname):
        if type(m).__name__ in WITIN_CLASSES:
            return True
        return base(self, m, qualname)

    return is_leaf


def shape_of(node):
    """The propagated shape of an fx node's output, None when it is not a tensor."""
    meta = node.meta.get("tensor_meta")
    shape = getattr(meta, "shape", None)
    if shape is None:
        return None
    return tuple(int(d) for d in shape)


def trace(module, example_input, torch):
    """``module`` traced by fx with our leaves, shapes propagated from ``example_input``."""
    tracer_cls = type("XbarsimTracer", (torch.fx.Tracer,), {"is_leaf_module": _is_leaf_factory(torch)})
    tracer = tracer_cls()
    graph = tracer.trace(module)
    gm = torch.fx.GraphModule(module, graph)
    from torch.fx.passes.shape_prop import ShapeProp

    inputs = example_input if isinstance(example_input, (tuple, list)) else (example_input,)
    ShapeProp(gm).propagate(*inputs)
    return gm


def _fn_name(target) -> str:
    if isinstance(target, str):
        return target
    return getattr(target, "__name__", str(target))


class _Call:
    """One fx function / method call being translated."""

    def __init__(self, b: GraphBuilder, node, ins: list[str], in_rank, shape, torch):
        self.b, self.node, self.ins, self.in_rank, self.shape = b, node, ins, in_rank, shape
        self.rank = len(shape) if shape is not None else None
        self.name = _fn_name(node.target)
        self.kind = f"{node.op} {self.name}"
        self.scalars = [a for a in node.args[1:] if not isinstance(a, torch.fx.Node)] if node.args else []

    def arg(self, key: str, pos: int, default=None):
        """Argument ``key`` given by keyword or at position ``pos``."""
        return self.node.kwargs.get(key, self.node.args[pos] if len(self.node.args) > pos else default)

    def err(self, why: str):
        return self.b.err(self.node.name, self.kind, why)

    def add(self, type_: str, config=None, rank: Any = "same") -> str:
        return self.b.add(self.node.name, type_, self.ins, config, rank=self.rank if rank == "same" else rank)


_ELEMENTWISE = {"add": "Add", "iadd": "Add", "__add__": "Add", "sub": "Subtract", "__sub__": "Subtract",
                "mul": "Multiply", "__mul__": "Multiply", "imul": "Multiply", "truediv": "Divide", "div": "Divide",
                "__truediv__": "Divide"}
_FN_ACT = {
    "relu": "relu", "sigmoid": "sigmoid", "tanh": "tanh", "gelu": "gelu", "relu6": "relu6", "silu": "swish",
    "hardsigmoid": "hard_sigmoid", "elu": "elu", "leaky_relu": "leaky_relu",
}


def _elementwise(c: _Call) -> str:
    if len(c.ins) != 2 or c.scalars:
        raise c.err("only element-wise operations between two tensors are supported (no scalar operands)")
    return c.add(_ELEMENTWISE[c.name])


def _concat(c: _Call) -> str:
    return c.add("Concatenate", {"axis": c.b.axis(int(c.arg("dim", 1, 0)), c.in_rank)})


def _activation(c: _Call) -> str:
    cfg: dict[str, Any] = {"activation": _FN_ACT[c.name]}
    if c.name == "leaky_relu":
        cfg["alpha"] = float(c.arg("negative_slope", 1, 0.01))
    if c.name == "gelu" and c.node.kwargs.get("approximate", "none") != "none":
        raise c.err("GELU approximate='tanh' is not supported")
    return c.add("Activation", cfg)


def _softmax(c: _Call) -> str:
    if c.in_rank != 2 or int(c.arg("dim", 1, -1)) % 2 != 1:
        raise c.err("softmax is supported over the last dim of a 2-D tensor only")
    return c.add("Activation", {"activation": "softmax"})


def _reshape(c: _Call) -> str:
    shape = c.shape
    if shape is None:
        raise c.err("unknown output shape")
    if c.in_rank == 2 and len(shape) == 2:
        return c.ins[0]
    if len(shape) == 2 and c.in_rank == 4:
        return c.add("Flatten", {"order": "NCHW"}, rank=2)
    return c.add("Reshape", {"target_shape": list(shape[1:]), "order": "NCHW"}, rank=len(shape))


def _mean(c: _Call) -> str:
    keep = bool(c.arg("keepdim", 2, False))
    return c.b.mean(c.node.name, c.ins, c.arg("dim", 1), keep, c.in_rank or 0)


def _adaptive_pool(c: _Call) -> str:
    if pair(c.arg("output_size", 1)) != [1, 1]:
        raise c.err("only output_size 1 is supported")
    return c.add("GlobalAveragePooling2D" if c.name.startswith("adaptive_avg") else "GlobalMaxPooling2D",
                 {"keepdims": True}, rank=4)


def _pool(c: _Call) -> str:
    args, kw = list(c.node.args[1:]), c.node.kwargs
    ks = kw.get("kernel_size", args[0] if args else None)
    st = kw.get("stride", args[1] if len(args) > 1 else None) or ks
    pd = kw.get("padding", args[2] if len(args) > 2 else 0)
    if kw.get("ceil_mode", False):
        raise c.err("ceil_mode=True is not supported")
    ph, pw = pair(pd)
    cfg = {"pool_size": pair(ks), "strides": pair(st), "padding": [[ph, ph], [pw, pw]]}
    if c.name == "avg_pool2d":
        cfg["count_include_pad"] = bool(kw.get("count_include_pad", True))
    return c.add("MaxPooling2D" if c.name == "max_pool2d" else "AveragePooling2D", cfg, rank=4)


#: fx function / method name -> its translation (returns the output's layer name)
FX_FUNCTIONS: dict[str, Callable[[_Call], str]] = {
    **dict.fromkeys(_ELEMENTWISE, _elementwise),
    **dict.fromkeys(("cat", "concat", "concatenate"), _concat),
    **dict.fromkeys(_FN_ACT, _activation),
    "softmax": _softmax,
    "sqrt": lambda c: c.add("Sqrt"),
    **dict.fromkeys(("flatten", "view", "reshape"), _reshape),
    **dict.fromkeys(("dropout", "contiguous", "clone", "detach"), lambda c: c.ins[0]),
    "mean": _mean,
    **dict.fromkeys(("adaptive_avg_pool2d", "adaptive_max_pool2d"), _adaptive_pool),
    **dict.fromkeys(("max_pool2d", "avg_pool2d"), _pool),
}


def _graph_outputs(b: GraphBuilder, node) -> list[str]:
    args = node.args[0]
    args = args if isinstance(args, (tuple, list)) else (args,)
    for a in args:
        if a not in b.value:
            raise b.err(str(a), "output", "the model output is not a tensor computed by supported layers")
    return [b.value[a] for a in args]


def _call(gm_modules: dict, node, b: GraphBuilder, torch) -> str | None:
    """The layer computing a call node (None for calls on non-tensors: shape arithmetic)."""
    shape = shape_of(node)
    flat = list(node.args)
    if flat and isinstance(flat[0], (tuple, list)):
        flat = list(flat[0]) + flat[1:]
    tensor_args = [a for a in flat if isinstance(a, torch.fx.Node) and shape_of(a) is not None]
    if shape is None and node.op in ("call_function", "call_method"):
        return None  # not a tensor: shape arithmetic feeding view/reshape arguments
    ins = [b.value[a] for a in tensor_args if a in b.value]
    in_rank = b.rank.get(ins[0], None) if ins else None
    if in_rank is None and tensor_args:
        s = shape_of(tensor_args[0])
        in_rank = len(s) if s is not None else None
    if node.op == "call_module":
        mod = gm_modules[node.target]
        if len(ins) != len(tensor_args):
            raise b.err(node.target, type(mod).__name__, "takes a tensor that is not computed by supported layers")
        return b.module(node.target, mod, ins, in_rank or 0, len(shape) if shape is not None else 0)
    c = _Call(b, node, ins, in_rank, shape, torch)
    if len(ins) != len(tensor_args) or not ins:
        raise c.err("operates on a value that is not a tensor of the traced graph (constants and shape math are "
                    "not supported)")
    translate = FX_FUNCTIONS.get(c.name)
    if translate is None:
        raise c.err("unsupported operation")
    return translate(c)


def from_fx(gm, b: GraphBuilder, torch) -> list[str]:
    """Add the layers of the traced graph ``gm`` to ``b`` (its placeholder already has a value); the outputs."""
    modules = dict(gm.named_modules())
    outputs: list[str] = []
    for node in gm.graph.nodes:
        if node.op == "placeholder":
            if node not in b.value:
                raise b.err(node.name, "input", "only one input tensor is supported")
        elif node.op == "output":
            outputs += _graph_outputs(b, node)
        elif node.op == "get_attr":
            raise b.err(node.target, "constant tensor", "constants used outside a layer are not supported")
        else:
            value = _call(modules, node, b, torch)
            if value is not None:
                b.value[node] = value
    return outputs


def _leaf_calls(module, example_input, torch) -> list[tuple[str, Any, list, Any]]:
    """(qualified name, module, positional args, output) of every leaf module call of one forward pass."""
    leaves = []
    for qual, m in module.named_modules():
        if qual == "":
            continue
        if type(m).__name__ in WITIN_CLASSES or not list(m.children()):
            if not any(qual.startswith(p + ".") for p, _ in leaves):
                leaves.append((qual, m))
    calls: list[tuple[str, Any, list, Any]] = []

    def hook_for(qual):
        def hook(mod, args, output):
            calls.append((qual, mod, list(args), output))
        return hook

    handles = [m.register_forward_hook(hook_for(qual)) for qual, m in leaves]
    try:
        with torch.no_grad():
            module(example_input)
    finally:
        for h in handles:
            h.remove()
    return calls


def from_hooks(module, example_input, b: GraphBuilder, torch, input_name: str) -> list[str]:
    """Add the layers of the leaf module calls of one forward pass to ``b``; the outputs."""
    produced: dict[int, str] = {id(example_input): input_name}
    last = None
    for qual, mod, args, output in _leaf_calls(module, example_input, torch):
        tensors = [a for a in args if isinstance(a, torch.Tensor)]
        ins = []
        for t in tensors:
            if id(t) not in produced:
                raise b.err(qual, type(mod).__name__, "receives a tensor computed outside modules; "
                            "torch.fx could not trace this model, so functional operations cannot be imported")
            ins.append(produced[id(t)])
        in_rank = tensors[0].dim() if tensors else 0
        out = output[0] if isinstance(output, tuple) else output
        produced[id(out)] = b.module(qual, mod, ins, in_rank, out.dim())
        last = out
    if last is None:
        raise b.err(type(module).__name__, "model", "no supported layers were called")
    return [produced[id(last)]]
