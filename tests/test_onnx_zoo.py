"""ONNX exports of torchvision's classification zoo and a small BERT, loaded with simulator.load_model.

Every model has random weights (nothing is downloaded), is exported once per
test session with torch.onnx.export, loaded through the content-based loader
(which runs the import self-check against onnxruntime) and run by our
executor; the reference is the torch module itself. The import
self-check is also shown to catch a deliberately wrong translation, and bad
files reach the CLI user as one line with exit code 2.
"""
from __future__ import annotations

import io
import warnings

import numpy as np
import pytest

torch = pytest.importorskip("torch", reason="torch not installed (optional extra xbarsim[torch])")
onnx = pytest.importorskip("onnx", reason="onnx not installed (optional extra xbarsim[onnx])")
pytest.importorskip("onnxruntime", reason="onnxruntime not installed (optional extra xbarsim[onnx])")

import simulator  # noqa: E402
from simulator.errors import ModelError  # noqa: E402
from simulator.io import loader, onnx_import, onnx_ops  # noqa: E402
from torchvision_compat import import_torchvision  # noqa: E402

REL_TOL = 1e-5  # max |ours - torch| relative to max |torch|


def _vit():
    # vit_b_16's architecture (patch 16, 12 layers, 12 heads, width 768, MLP 3072) on 32x32 images
    vit = _tv().models.VisionTransformer(image_size=32, patch_size=16, num_layers=12, num_heads=12,
                                         hidden_dim=768, mlp_dim=3072)
    torch.nn.init.normal_(vit.heads.head.weight, std=0.05)  # torchvision starts the head at zero
    return vit


def _tv():
    return import_torchvision()


#: name -> (builder, input side, opset, dynamic batch axis in the export)
ZOO = {
    "resnet18": (lambda: _tv().models.resnet18(), 32, 13, True),
    "mobilenet_v3_small": (lambda: _tv().models.mobilenet_v3_small(), 32, 17, False),
    "squeezenet1_1": (lambda: _tv().models.squeezenet1_1(), 32, 18, False),
    "shufflenet_v2_x0_5": (lambda: _tv().models.shufflenet_v2_x0_5(), 32, 13, False),
    "efficientnet_b0": (lambda: _tv().models.efficientnet_b0(), 32, 17, False),
    "googlenet": (lambda: _tv().models.googlenet(aux_logits=False, init_weights=True), 32, 17, False),
    "convnext_tiny": (lambda: _tv().models.convnext_tiny(), 32, 17, False),
    "vit_b_16": (_vit, 32, 17, False),
    "alexnet": (lambda: _tv().models.alexnet(), 224, 18, False),  # AdaptiveAvgPool(6) needs 6x6 features
}


def _export(model, example, path, opset: int, dynamic: bool, input_name: str = "x") -> None:
    kw = {"dynamic_axes": {input_name: {0: "batch"}}} if dynamic else {}
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        torch.onnx.export(model, (example,), str(path), dynamo=False, opset_version=opset, input_names=[input_name],
                          **kw)


@pytest.fixture(scope="session")
def exported(tmp_path_factory):
    """name -> (onnx path, 3 inputs, torch outputs); each export done once per session."""
    folder = tmp_path_factory.mktemp("onnx_zoo")
    cache: dict[str, tuple] = {}

    def get(name: str):
        if name not in cache:
            build, side, opset, dynamic = ZOO[name]
            torch.manual_seed(0)
            model = build().eval()
            x = torch.randn(3, 3, side, side, generator=torch.Generator().manual_seed(1))
            path = folder / f"{name}.onnx"
            _export(model, x[:1], path, opset, dynamic)  # exported for one image, run on three
            with torch.no_grad():
                want = model(x).numpy()
            cache[name] = (path, x.numpy(), want)
        return cache[name]

    return get


def _rel(got, want) -> float:
    return float(np.abs(np.asarray(got, np.float64) - want).max() / np.abs(want).max())


def _ideal(net, x):
    return simulator.Simulation(net, {"seed": 0}, seed=0, cores=False).ideal_forward(x)  # exact MVMs only


@pytest.mark.parametrize("name", sorted(ZOO))
def test_zoo_model_matches_torch(name, exported):
    path, x, want = exported(name)
    net = simulator.load_model(path)  # recognised as ONNX by content, proved against onnxruntime
    assert net.metadata["source_format"] == "onnx" and "self-check against onnxruntime" in net.metadata["self_check"]
    assert net.mvm_layers, "Conv / Gemm / MatMul with constant weights must become analog layers"
    if name == "vit_b_16":  # torch's MultiheadAttention works on (tokens, batch, width): one image at a time
        assert net.batch_size == 1 and "moves the batch axis" in net.metadata["fixed_batch_reason"]
    else:  # the batch axis is never mixed with others: any number of images at once
        assert net.batch_size is None
    got = _ideal(net, x)  # exported for one image, run on three
    assert got.shape == want.shape
    assert _rel(got, want) <= REL_TOL


class _Attention(torch.nn.Module):
    def __init__(self):
        super().__init__()
        torch.manual_seed(3)
        self.attn = torch.nn.MultiheadAttention(8, 2, batch_first=True)
        self.head = torch.nn.Linear(8, 3)

    def forward(self, x):
        y, _ = self.attn(x, x, x, need_weights=False)
        return self.head(torch.nn.functional.gelu(y).mean(1))


def test_fixed_batch_graph_pads_the_last_chunk(tmp_path):
    model = _Attention().eval()
    x = torch.randn(5, 4, 8, generator=torch.Generator().manual_seed(0))
    path = tmp_path / "attn.onnx"
    _export(model, x[:2], path, 17, False)  # batch 2 baked into the graph
    net = simulator.load_model(path)
    assert net.batch_size == 2
    with torch.no_grad():
        want = model(x).numpy()
    assert _rel(_ideal(net, x.numpy()), want) <= REL_TOL  # chunks of 2, 2 and 1 (+ one padding row)
    # on analog cores (8-bit weights, chunks of 2 images): close to the exact result, not equal to it
    analog = simulator.Simulation(net, {"weight_bits": 8, "adc_bits": 0, "dac_bits": 0}, seed=0).forward(x.numpy())
    assert 0 < _rel(analog, want) < 0.05
    back = simulator.load_model(simulator.save_model(net, tmp_path / "attn.h5"))
    assert back.batch_size == 2 and back.internal_layout == "native"
    assert _rel(_ideal(back, x.numpy()), want) <= REL_TOL


# ------------------------------------------------------------------ BERT
def _bert():
    tf = pytest.importorskip("transformers", reason="transformers not installed")
    import_torchvision()  # transformers imports torchvision, which needs the local-build workaround
    cfg = tf.BertConfig(vocab_size=99, hidden_size=32, num_hidden_layers=2, num_attention_heads=4,
                        intermediate_size=64, max_position_embeddings=32, attn_implementation="eager")
    torch.manual_seed(0)
    bert = tf.BertModel(cfg).eval()

    class Encoder(torch.nn.Module):
        def __init__(self):
            super().__init__()
            self.bert = bert

        def forward(self, ids):
            out = self.bert(input_ids=ids)
            return out.last_hidden_state, out.pooler_output

    return Encoder().eval()


@pytest.mark.parametrize("opset", [13, 17, 18])
def test_small_bert_matches_torch(opset, tmp_path):
    model = _bert()
    ids = torch.randint(0, 99, (3, 8), generator=torch.Generator().manual_seed(2))
    path = tmp_path / f"bert{opset}.onnx"
    _export(model, ids[:1], path, opset, False, input_name="input_ids")
    net = simulator.load_model(path)
    ops = {n.op_type for n in onnx.load(str(path)).graph.node}
    assert {"Gather", "Softmax", "MatMul", "Erf", "Where", "Equal"} <= ops
    assert ("LayerNormalization" in ops) == (opset >= 17) and ("Pow" in ops) == (opset < 17)
    assert net.batch_size is None  # the encoder keeps the batch axis: three sentences at once
    with torch.no_grad():
        want = [w.numpy() for w in model(ids)]
    got = _ideal(net, ids.numpy())
    for g, w in zip(got, want):
        assert _rel(g, w) <= REL_TOL
    # the attention scores between activations stay digital; projections with constant weights are analog
    assert sum(l.type == "MatMul" for l in net.layers) == 4 and sum(l.type == "Dense" for l in net.layers) == 13


# ------------------------------------------------------------------ op coverage beyond the zoo
class _Mixed(torch.nn.Module):
    """Ops the zoo does not reach: pad modes, dilated / ceil-mode pooling, split, where, gather, flip, ..."""

    def __init__(self):
        super().__init__()
        torch.manual_seed(0)
        self.conv = torch.nn.Conv2d(3, 4, 3)
        self.fc = torch.nn.Linear(3, 5)
    def forward(self, x):  # (N, 3, 9, 9)
        a = torch.nn.functional.pad(x, (1, 2, 0, 1), mode="reflect")
        b = torch.nn.functional.pad(x, (2, 0, 1, 1), mode="replicate")
        c = self.conv(a)  # (N, 4, 8, 10)
        m = torch.nn.functional.max_pool2d(c, 3, stride=2, dilation=2, ceil_mode=True)
        p = torch.nn.functional.avg_pool2d(c, 3, stride=2, padding=1, ceil_mode=True, count_include_pad=True)
        q = torch.nn.functional.avg_pool2d(b, 2, stride=2, ceil_mode=True, count_include_pad=False)
        s1, s2 = torch.split(c, [1, 3], dim=1)
        t = torch.clamp(s2, -0.5, 0.7) + s1
        tok = t.flatten(2).transpose(1, 2)  # (N, 80, 3)
        sm = torch.softmax(tok, dim=1)
        w = torch.where(tok > 0, tok, tok.pow(2))
        r = w.mean(dim=-1)  # (N, 80)
        g = tok[:, [3, 1, 2]]
        fl = torch.flip(tok, dims=[1])[:, ::3]
        e = (tok[:, :1] == tok[:, 1:2]).float() + torch.sqrt(tok.abs() + 1)
        u = self.fc(tok).unsqueeze(1).expand(-1, 2, -1, -1)
        lm = torch.nn.functional.layer_norm(tok, (3,)) * torch.nn.functional.hardswish(tok) - torch.nn.functional.hardsigmoid(tok) + torch.nn.functional.gelu(tok, approximate="tanh")
        z = torch.cat([m.flatten(1), p.flatten(1), q.flatten(1), r, sm.flatten(1), g.flatten(1), fl.flatten(1),
                       e.flatten(1), u.flatten(1), lm.flatten(1), torch.log_softmax(tok, -1).flatten(1)], dim=1)
        return z


@pytest.mark.parametrize("opset", [13, 18])
def test_mixed_ops_match_torch(opset, tmp_path):
    model = _Mixed().eval()
    x = torch.randn(3, 3, 9, 9, generator=torch.Generator().manual_seed(4))
    path = tmp_path / f"mixed{opset}.onnx"
    _export(model, x[:1], path, opset, False)
    ops = {n.op_type for n in onnx.load(str(path)).graph.node}
    assert {"Pad", "MaxPool", "AveragePool", "Split", "Where", "Gather", "Slice", "Expand", "Equal", "Cast",
            "LogSoftmax", "Clip", "Sqrt", "Pow"} <= ops
    net = simulator.load_model(path)
    pads = {l.config["mode"] for l in net.layers if l.type == "Pad"}
    assert pads == {"reflect", "edge"}
    with torch.no_grad():
        want = model(x).numpy()
    assert _rel(_ideal(net, x.numpy()), want) <= REL_TOL


# ------------------------------------------------------------------ self-check
def test_self_check_refuses_a_wrong_translation(exported, monkeypatch):
    path, x, want = exported("mobilenet_v3_small")
    first = next(n for n in onnx.load(str(path)).graph.node if n.op_type == "HardSwish")

    def wrong_hardswish(imp, node, a):  # a plausible slip: HardSigmoid's formula without the factor x
        imp.add(node, "Unary", [imp.dyn(node, node.input[0])], {"op": "HardSigmoid", "alpha": 1 / 6, "beta": 0.5})

    monkeypatch.setitem(onnx_ops.HANDLERS, "HardSwish", wrong_hardswish)
    monkeypatch.setattr(loader, "_CHECKED", set())  # forget that this file passed its check earlier in the session
    with pytest.raises(ModelError) as exc:
        simulator.load_model(path)
    msg = str(exc.value)
    assert "\n" not in msg and str(path) in msg and f"{first.name!r} (HardSwish)" in msg and "onnxruntime" in msg
    net = simulator.load_model(path, check=False)  # what the check protects users from
    assert _rel(_ideal(net, x), want) > 1e-2


def test_selfcheck_compare_traces_generic_api():
    from simulator.io.selfcheck import compare_traces, node_error

    ref = {"a": np.array([1.0, 2.0]), "b": np.array([10.0, -10.0])}
    ours = {"A": np.array([1.0, 2.0 + 1e-7]), "B": np.array([10.0, -9.0])}
    order = [("node 'a' (Relu)", "a", "A"), ("node 'b' (Mul)", "b", "B")]
    assert node_error(ours["A"], ref["a"]) == pytest.approx(5e-8)
    with pytest.raises(ModelError, match=r"m\.onnx: import self-check failed at node 'b' \(Mul\).*by up to 1"):
        compare_traces(ref, ours, order, source="m.onnx", runtime="onnxruntime", n_inputs=2)
    report = compare_traces(ref, ours, order[:1], source="m.onnx", runtime="onnxruntime", n_inputs=2)
    assert report.n_nodes == 1 and report.worst[0] == "node 'a' (Relu)"
    assert node_error(np.array([1, 2]), np.array([1, 3])) == float("inf")  # integer outputs must be equal


# ------------------------------------------------------------------ bad input through the CLI
def _cli(*args):
    from click.testing import CliRunner

    from simulator.cli import cli

    return CliRunner().invoke(cli, list(args))


def _one_line(result, *fragments):
    assert result.exit_code == 2, result.output
    err = result.stderr.strip()
    assert "Traceback" not in result.output and err.count("\n") == 0, err
    for frag in fragments:
        assert frag in err, err


def _tiny_onnx(path, nodes, inits, in_shape, out_shape):
    from onnx import TensorProto, helper, numpy_helper

    graph = helper.make_graph(nodes, "bad", [helper.make_tensor_value_info("x", TensorProto.FLOAT, in_shape)],
                              [helper.make_tensor_value_info("y", TensorProto.FLOAT, out_shape)],
                              initializer=[numpy_helper.from_array(v, k) for k, v in inits.items()])
    onnx.save(helper.make_model(graph, opset_imports=[helper.make_opsetid("", 17)]), str(path))
    return str(path)


def test_bad_model_files_give_one_line_exit_2(tmp_path, exported):
    from onnx import helper

    junk = tmp_path / "notes.bin"
    junk.write_bytes(b"hello, this is not a model\n" * 4)
    _one_line(_cli("inspect", str(junk)), "notes.bin", "not a model file", "ONNX")
    good = exported("squeezenet1_1")[0].read_bytes()
    cut = tmp_path / "cut.onnx"
    cut.write_bytes(good[: len(good) // 2])
    _one_line(_cli("inspect", str(cut)), "cut.onnx", "not a readable ONNX model")
    dyn = _tiny_onnx(tmp_path / "dyn.onnx", [helper.make_node("Sigmoid", ["x"], ["w"], name="make_w"),
                                             helper.make_node("Conv", ["x", "w"], ["y"], name="conv_dyn")],
                     {}, [2, 2, 1, 1], [2, 2, 1, 1])
    _one_line(_cli("inspect", dyn), "dyn.onnx", "'conv_dyn' (Conv)", "must be a constant")
    up = _tiny_onnx(tmp_path / "up.onnx", [helper.make_node("Resize", ["x", "", "s"], ["y"], name="up1")],
                    {"s": np.array([1, 1, 2, 2], np.float32)}, [1, 1, 4, 4], [1, 1, 8, 8])
    _one_line(_cli("convert", up, str(tmp_path / "up.h5")), "up.onnx", "'up1' (Resize)", "unsupported ONNX op 'Resize'")
    cfg = tmp_path / "cfg.toml"
    cfg.write_text(f'model_name = "{up}"\n')
    _one_line(_cli("run", str(cfg), "--no-check"), "up.onnx", "'up1' (Resize)")


def test_no_check_flag_and_config_field(tmp_path, exported, monkeypatch):
    path = exported("squeezenet1_1")[0]
    calls = []
    monkeypatch.setattr(loader, "_CHECKED", set())
    real = onnx_import.self_check
    monkeypatch.setattr(onnx_import, "self_check", lambda *a, **k: calls.append(1) or real(*a, **k))
    res = _cli("inspect", str(path), "--no-check")
    assert res.exit_code == 0, res.output
    assert not calls and "self-check" not in res.output
    res = _cli("inspect", str(path))
    assert res.exit_code == 0, res.output
    assert calls and "self-check against onnxruntime" in res.output
    assert simulator.Config().check is True and simulator.load_config({"check": False}).check is False
