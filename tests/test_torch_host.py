"""The torch host: analog MVM modules inside torch models, checked against torch and the graph executor.

* attention: ``nn.MultiheadAttention`` and ``nn.TransformerEncoder`` stand-ins equal torch's own modules
  (masks, head weights, batch_first both ways, separate k/v dims, unbatched inputs);
* the graph executor and the torch route give identical outputs for the same config and seed on the
  bundled digits CNN and the CrossSim CIFAR ResNet-20 (deterministic settings), and the same error
  statistics with programming errors and read noise;
* ``.pt2`` programs end to end through the CLI: ``xbarsim run`` with per-layer overrides by qualified
  name, ``xbarsim calibrate``, a calibrated run; a program exported with a static batch;
* state_dict + ``module = "package:Class"`` configs;
* bad input: a module that cannot run, files that are not programs, overrides naming no module,
  unmapped RNN modules, non-finite inputs -> one line (exit 2 from the CLI);
* the self-check refuses a deliberately broken translation, naming the layer.
"""
from __future__ import annotations

import copy
import textwrap
from pathlib import Path

import numpy as np
import pytest

torch = pytest.importorskip("torch")
nn = torch.nn

import simulator  # noqa: E402
from simulator import Simulation, from_torch  # noqa: E402
from simulator.errors import DataError, ModelError, XbarsimError  # noqa: E402

RESNET20 = Path(__file__).resolve().parents[2] / "shared" / "models" / "crosssim_cifar10" / "resnet20v1_cifar10.h5"


def rel(a, b) -> float:
    a, b = np.asarray(a, dtype=np.float64), np.asarray(b, dtype=np.float64)
    return float(np.linalg.norm(a - b) / np.linalg.norm(b))


def _t(a):
    return a.detach().numpy() if isinstance(a, torch.Tensor) else a


# ---------------------------------------------------------------- attention
class MHAModel(nn.Module):
    def __init__(self, batch_first: bool, kdim=None, need_weights=False, average=True):
        super().__init__()
        self.proj = nn.Linear(8, 16)
        self.att = nn.MultiheadAttention(16, 4, batch_first=batch_first, kdim=kdim, vdim=kdim)
        self.kv = nn.Linear(8, kdim or 16)
        self.need_weights, self.average = need_weights, average

    def forward(self, x, mask=None, attn_mask=None):
        q = self.proj(x)
        kv = self.kv(x) if self.att.kdim != 16 else q
        out, w = self.att(q, kv, kv, key_padding_mask=mask, attn_mask=attn_mask, need_weights=self.need_weights,
                          average_attn_weights=self.average)
        return out if w is None else (out, w)


@pytest.mark.parametrize("batch_first", [True, False])
@pytest.mark.parametrize("kdim", [None, 12])
@pytest.mark.parametrize("need_weights, average", [(False, True), (True, True), (True, False)])
def test_multihead_attention_equals_torch(batch_first, kdim, need_weights, average):
    torch.manual_seed(0)
    m = MHAModel(batch_first, kdim, need_weights, average).eval()
    shape = (2, 5, 8) if batch_first else (5, 2, 8)
    x = torch.randn(*shape)
    mask = torch.tensor([[False] * 5, [False, False, False, True, True]])
    attn = torch.randn(5, 5)
    net = from_torch(m, (x, mask, attn))
    names = [l.name for l in net.layers]
    assert ("att.in_proj" in names) == (kdim is None) and "att.out_proj" in names
    if kdim:
        assert {"att.q_proj", "att.k_proj", "att.v_proj"} <= set(names)
    sim = Simulation(net, {}, seed=0)
    x2 = torch.randn(*shape)
    ours = sim.ideal_forward((x2, mask, attn))
    with torch.no_grad():
        ref = m(x2, mask, attn)
    for o, r in zip(ours if isinstance(ours, tuple) else (ours,), ref if isinstance(ref, tuple) else (ref,)):
        assert rel(_t(o), _t(r)) < 1e-5


def test_transformer_encoder_fast_path_is_bypassed():
    """nn.TransformerEncoder's fused eval kernel would read the projection weights directly."""
    torch.manual_seed(0)
    layer = nn.TransformerEncoderLayer(16, 4, dim_feedforward=32, batch_first=True, dropout=0.0)
    enc = nn.TransformerEncoder(layer, num_layers=2, enable_nested_tensor=False).eval()
    x = torch.randn(2, 6, 16)
    net = from_torch(enc, x)
    assert len(net.layers) == 2 * 4  # in_proj, out_proj, linear1, linear2 per layer
    sim = Simulation(net, {"weight_bits": 4}, seed=0)
    with torch.no_grad():
        ref = enc(x)
    assert rel(sim.ideal_forward(x).numpy(), ref.numpy()) < 1e-5
    y = sim.forward(x).numpy()
    assert 1e-3 < rel(y, ref.numpy()) < 0.5  # 4-bit weights change the result: the cores ran


def test_unbatched_and_causal_attention():
    torch.manual_seed(0)
    mha = nn.MultiheadAttention(8, 2).eval()

    class Causal(nn.Module):
        def __init__(self):
            super().__init__()
            self.mha = mha

        def forward(self, x):
            L = x.shape[0]
            mask = torch.ones(L, L, dtype=torch.bool).triu(1)
            return self.mha(x, x, x, attn_mask=mask, need_weights=False)[0]

    m = Causal().eval()
    x = torch.randn(4, 8)  # unbatched (L, E)
    sim = Simulation(from_torch(m, x), {}, seed=0)
    with torch.no_grad():
        assert rel(sim.ideal_forward(x).numpy(), m(x).numpy()) < 1e-5


# ---------------------------------------------------------------- executor route == torch route
def _routes(path):
    import sys

    sys.path.insert(0, str(Path(__file__).parent))
    from keras_to_torch import KerasGraph

    net = simulator.load_model(path)
    module = KerasGraph(net)
    shape = tuple(net.input_shape)
    x = np.random.default_rng(0).uniform(0, 1, size=(6,) + shape).astype(np.float32)
    xt = np.ascontiguousarray(x.transpose(0, 3, 1, 2))
    tnet = from_torch(module, torch.from_numpy(xt[:2]))
    return net, tnet, x, xt


DETERMINISTIC = [
    {"weight_bits": 8, "adc_bits": 8, "dac_bits": 8, "dac_range": [0.0, 2.0]},
    {"weight_bits": 8, "adc_bits": 6, "style": "OFFSET", "NrowsMax": 100, "dac_bits": 6, "dac_range": [-2.0, 2.0]},
    {"weight_bits": 9, "Nslices": 3, "adc_bits": 8, "input_bitslicing": True, "dac_bits": 8, "dac_range": [-2.0, 2.0],
     "ADC_per_ibit": True},
    {"weight_bits": 8, "adc_bits": 10, "adc_range_option": "granular", "input_bitslicing": True, "ADC_per_ibit": True,
     "dac_bits": 6,
     "dac_range": [0.0, 2.0], "digital_bias": False},
]


@pytest.mark.parametrize("cfg", DETERMINISTIC, ids=["balanced", "offset_partitions", "bitsliced", "granular"])
def test_executor_and_torch_routes_identical_digits(cfg):
    net, tnet, x, xt = _routes("digits_cnn")
    assert set(tnet.folds) == {"mods.bn1"}  # folded like the executor folds bn1 into conv1
    a = Simulation(net, cfg, seed=3).forward(x)
    b = Simulation(tnet, cfg, seed=3).forward(xt)
    assert np.abs(a - b).max() <= 1e-6 * np.abs(a).max()


@pytest.mark.skipif(not RESNET20.exists(), reason="shared CIFAR ResNet-20 not present")
def test_executor_and_torch_routes_identical_resnet20():
    net, tnet, x, xt = _routes(RESNET20)
    assert len(tnet.folds) == 19
    cfg = DETERMINISTIC[0]
    a = Simulation(net, cfg, seed=0).forward(x)
    b = Simulation(tnet, cfg, seed=0).forward(xt)
    assert np.abs(a - b).max() <= 1e-6 * np.abs(a).max()


def test_executor_and_torch_routes_same_noise_statistics():
    """Programming error + read noise: per-output error std over seeds agrees within 15 % (40 seeds)."""
    net, tnet, x, xt = _routes("digits_cnn")
    cfg = {"weight_bits": 8, "error_model": "alpha", "alpha_error": 0.05, "noise_model": "alpha", "alpha_noise": 0.03}
    ideal = Simulation(net, {}, seed=0).ideal_forward(x)
    ea = np.stack([Simulation(net, cfg, seed=s).forward(x) - ideal for s in range(40)])
    eb = np.stack([Simulation(tnet, cfg, seed=100 + s).forward(xt) - ideal for s in range(40)])
    sa, sb = ea.std(axis=0).mean(), eb.std(axis=0).mean()
    assert abs(sa / sb - 1) < 0.15
    assert abs(ea.mean() - eb.mean()) < 0.2 * sa


def test_read_noise_independent_of_batching_and_across_repeated_calls():
    class Shared(nn.Module):  # one Linear called twice per forward
        def __init__(self):
            super().__init__()
            self.lin = nn.Linear(16, 8)

        def forward(self, x):
            return torch.cat([self.lin(x), self.lin(x)], dim=1)

    torch.manual_seed(0)
    m = Shared().eval()
    x = np.random.default_rng(0).normal(size=(7, 16)).astype(np.float32)
    net = from_torch(m, torch.from_numpy(x[:2]))
    cfg = {"noise_model": "alpha", "alpha_noise": 0.05, "error_model": "alpha", "alpha_error": 0.02}
    whole = Simulation(net, cfg, seed=5).forward(x)
    sim = Simulation(net, cfg, seed=5)
    parts = np.concatenate([sim.forward(x[:3]), sim.forward(x[3:])])  # image_offset continues after 3
    assert np.array_equal(whole, parts)
    assert np.array_equal(Simulation(net, cfg, seed=5).forward(x[3:], image_offset=3), whole[3:])
    first, second = whole[:, :8], whole[:, 8:]
    assert np.abs(first - second).max() > 1e-3  # the second call reads with its own noise


# ---------------------------------------------------------------- .pt2 programs and the CLI
def _resnet18_digits():
    from torchvision_compat import import_torchvision

    tv = import_torchvision()
    torch.manual_seed(0)
    m = tv.models.resnet18(weights=None, num_classes=10)
    m.conv1 = nn.Conv2d(1, 64, 3, padding=1, bias=False)
    m.maxpool = nn.Identity()
    return m.eval()


@pytest.fixture(scope="module")
def pt2_files(tmp_path_factory):
    d = tmp_path_factory.mktemp("pt2")
    m = _resnet18_digits()
    x = torch.rand(4, 1, 8, 8)
    dyn = torch.export.export(m, (x,), dynamic_shapes=({0: torch.export.Dim("batch", min=1, max=4096)},))
    torch.export.save(dyn, d / "resnet18_digits.pt2")
    torch.export.save(torch.export.export(m, (x,)), d / "resnet18_static.pt2")
    return d, m


def _cli(args, cwd):
    from click.testing import CliRunner

    from simulator.cli import cli

    import os

    old = os.getcwd()
    os.chdir(cwd)
    try:
        return CliRunner().invoke(cli, args, catch_exceptions=True)
    finally:
        os.chdir(old)


def _digits_test(n):
    from simulator.io.datasets import load_dataset

    data = load_dataset({"task": "digits", "ntest": n}, split="test")
    return next(data.iter_batches(batch_size=n, layout="NCHW"))


def test_pt2_program_equals_module_and_overrides_by_qualified_name(pt2_files):
    d, m = pt2_files
    net = simulator.load_model(d / "resnet18_digits.pt2")
    assert getattr(net, "is_torch", False)
    assert {"conv1", "layer1.0.conv1", "layer4.1.conv2", "fc"} <= {l.name for l in net.layers}
    assert net.folds["layer1.0.bn1"] == "layer1.0.conv1"  # aten.batch_norm restored and folded
    x, _ = _digits_test(16)
    with torch.no_grad():
        ref = m(torch.from_numpy(x)).numpy()
    sim = Simulation(net, {"weight_bits": 8}, seed=0)
    assert rel(sim.ideal_forward(x), ref) < 1e-5
    base = {"weight_bits": 4, "seed": 0}  # (an untrained net: ADCs at full range would leave only the fc bias)
    plain = Simulation(net, base, seed=0).forward(x)
    over = Simulation(net, {**base, "layers": {"layer1.0.conv1": {"adc_bits": 3}}}, seed=0).forward(x)
    digital = Simulation(net, {**base, "layers": {"layer1.0.conv1": {"analog": False}}}, seed=0).forward(x)
    other = Simulation(net, {**base, "layers": {"layer2.0.conv1": {"analog": False}}}, seed=0).forward(x)
    assert rel(over, plain) > 1e-3 and rel(digital, plain) > 1e-4 and rel(other, digital) > 1e-4


def test_static_batch_program_runs_any_batch(pt2_files):
    d, m = pt2_files
    net = simulator.load_model(d / "resnet18_static.pt2")
    x, _ = _digits_test(10)  # not a multiple of the exported batch 4
    with torch.no_grad():
        ref = m(torch.from_numpy(x)).numpy()
    assert rel(Simulation(net, {}, seed=0).ideal_forward(x), ref) < 1e-5


def test_pt2_cli_run_calibrate_and_calibrated_run(pt2_files, tmp_path):
    d, m = pt2_files
    cfg = tmp_path / "run.toml"
    cfg.write_text(textwrap.dedent(f"""
        model_name = "{d / 'resnet18_digits.pt2'}"
        task = "digits"
        ntest = 40
        calibration_ntest = 40
        weight_bits = 8
        adc_bits = 8
        dac_bits = 8
        seed = 0
        adc_range_option = "calibrated"
        calibration_file = "{tmp_path / 'cal.h5'}"
        [layers."layer1.0.conv1"]
        adc_bits = 6
    """))
    r = _cli(["calibrate", str(cfg)], tmp_path)
    assert r.exit_code == 0, r.output
    assert (tmp_path / "cal.h5").exists()
    assert "layer1.0.conv1" in r.output and "fc" in r.output
    r = _cli(["run", str(cfg)], tmp_path)
    assert r.exit_code == 0, r.output
    x, y = _digits_test(40)
    with torch.no_grad():
        torch_acc = float((m(torch.from_numpy(x)).argmax(1).numpy() == y).mean())
    assert f"ideal accuracy {100 * torch_acc:10.2f} %".replace(" ", "") in r.output.replace(" ", "")
    r = _cli(["inspect", str(d / "resnet18_digits.pt2"), str(cfg)], tmp_path)
    assert r.exit_code == 0, r.output
    assert "layer1.0.conv1" in r.output and "digital in torch" in r.output


def test_state_dict_with_module_class(tmp_path, monkeypatch):
    (tmp_path / "tiny_models.py").write_text(textwrap.dedent("""
        import torch
        from torch import nn

        class TinyNet(nn.Module):
            def __init__(self, hidden=16, classes=10):
                super().__init__()
                self.conv = nn.Conv2d(1, hidden, 3, padding=1)
                self.head = nn.Linear(hidden * 64, classes)

            def forward(self, x):
                return self.head(torch.relu(self.conv(x)).flatten(1))
    """))
    monkeypatch.syspath_prepend(str(tmp_path))
    import importlib

    TinyNet = importlib.import_module("tiny_models").TinyNet
    torch.manual_seed(0)
    m = TinyNet(hidden=8).eval()
    torch.save(m.state_dict(), tmp_path / "tiny.pt")
    cfg = {"model_name": str(tmp_path / "tiny.pt"), "module": "tiny_models:TinyNet", "module_kwargs": {"hidden": 8},
           "input_shape": [1, 8, 8], "task": "digits", "ntest": 50, "weight_bits": 8, "seed": 0}
    result = simulator.run(cfg)
    x, y = _digits_test(50)
    with torch.no_grad():
        acc = float((m(torch.from_numpy(x)).argmax(1).numpy() == y).mean())
    assert result.ideal_accuracy == pytest.approx(acc)
    with pytest.raises(ModelError, match="does not match tiny_models:TinyNet"):
        simulator.run({**cfg, "module_kwargs": {"hidden": 4}})
    with pytest.raises(XbarsimError, match="input_shape"):
        simulator.run({k: v for k, v in cfg.items() if k != "input_shape"})


# ---------------------------------------------------------------- bad input
def test_module_that_cannot_run_with_the_example():
    m = nn.Sequential(nn.Linear(4, 3))
    with pytest.raises(ModelError, match=r"cannot run with the example input \(\(2, 5\)\)"):
        from_torch(m, torch.zeros(2, 5))


def test_unmapped_rnn_is_refused_not_run_digitally():
    class R(nn.Module):
        def __init__(self):
            super().__init__()
            self.rnn = nn.LSTM(4, 4)

        def forward(self, x):
            return self.rnn(x)[0]

    with pytest.raises(ModelError, match="'rnn' is an nn.LSTM"):
        from_torch(R(), torch.zeros(3, 1, 4))


def test_non_finite_or_negative_variance_parameters_refused():
    m = nn.Sequential(nn.Linear(4, 3), nn.BatchNorm1d(3)).eval()
    with torch.no_grad():
        m[0].weight[1, 2] = float("inf")
    with pytest.raises(ModelError, match=r"0.weight holds 1 NaN or infinite"):
        from_torch(m, torch.zeros(2, 4))
    m = nn.Sequential(nn.Linear(4, 3), nn.BatchNorm1d(3)).eval()
    m[1].running_var[0] = -1.0
    with pytest.raises(ModelError, match="1.running_var has negative"):
        from_torch(m, torch.zeros(2, 4))


def test_non_finite_input_refused():
    net = from_torch(nn.Sequential(nn.Linear(4, 2)), torch.zeros(2, 4))
    x = np.zeros((2, 4), dtype=np.float32)
    x[0, 1] = np.nan
    with pytest.raises(DataError, match="NaN"):
        Simulation(net, {}, seed=0).forward(x)


def test_self_check_names_a_broken_translation(monkeypatch):
    import simulator.torch_host.network as host

    real = host._conv1d_layer

    def broken(name, mod):  # drops the bias: a plausible translation bug
        layer = real(name, mod)
        layer.weights.pop("bias", None)
        layer.config["use_bias"] = False
        return layer

    monkeypatch.setattr(host, "_conv1d_layer", broken)
    m = nn.Sequential(nn.Linear(6, 6), nn.Unflatten(1, (2, 3)), nn.Conv1d(2, 4, 3, padding=1), nn.Flatten(), nn.Linear(12, 2))
    with pytest.raises(ModelError, match=r"self-check failed: layer '2' \(Conv1d"):
        from_torch(m.eval(), torch.randn(2, 6))
    net = from_torch(m.eval(), torch.randn(2, 6), check=False)  # the user may skip it, knowingly
    assert len(net.sites) == 3


def _bad_files(tmp_path, pt2_files):
    d, _ = pt2_files
    garbage = tmp_path / "garbage.pt2"
    garbage.write_bytes(np.random.default_rng(0).bytes(4000))
    truncated = tmp_path / "truncated.pt2"
    truncated.write_bytes((d / "resnet18_digits.pt2").read_bytes()[:50_000])
    return garbage, truncated


def test_cli_bad_torch_inputs_exit_2(tmp_path, pt2_files):
    d, _ = pt2_files
    garbage, truncated = _bad_files(tmp_path, pt2_files)
    for f in (garbage, truncated):
        r = _cli(["inspect", str(f)], tmp_path)
        assert r.exit_code == 2, r.output
        lines = [line for line in r.output.strip().splitlines() if line.strip()]
        assert len(lines) == 1 and str(f.name) in lines[0] and "Traceback" not in r.output
    cfg = tmp_path / "bad_layer.toml"
    cfg.write_text(textwrap.dedent(f"""
        model_name = "{d / 'resnet18_digits.pt2'}"
        task = "digits"
        ntest = 10
        [layers."layer1.0.conv9"]
        adc_bits = 4
    """))
    r = _cli(["run", str(cfg)], tmp_path)
    assert r.exit_code == 2
    assert "layer1.0.conv9" in r.output and "did you mean 'layer1.0.conv" in r.output  # names the closest module


def test_copy_never_touches_the_users_module():
    m = nn.Sequential(nn.Conv2d(1, 2, 3), nn.BatchNorm2d(2), nn.Flatten(), nn.Linear(8, 2)).eval()
    before = copy.deepcopy(m.state_dict())
    net = from_torch(m, torch.randn(2, 1, 4, 4))
    Simulation(net, {"weight_bits": 4}, seed=0).forward(np.random.default_rng(0).normal(size=(2, 1, 4, 4)).astype("f4"))
    assert isinstance(m[0], nn.Conv2d) and isinstance(m[1], nn.BatchNorm2d)
    for k, v in m.state_dict().items():
        assert torch.equal(v, before[k])


def test_qualified_names_with_dots_in_overrides_and_sweeps():
    from simulator.config import load_config
    from simulator.sweep.spec import check_name, config_value

    cfg = load_config({}).with_overrides({"layers.features.3.conv.adc_bits": 4})
    assert cfg.for_layer("features.3.conv").adc_bits == 4
    assert check_name("layers.features.3.conv.adc_bits") == "layers.features.3.conv.adc_bits"
    assert config_value(cfg, "layers.features.3.conv.adc_bits") == 4
    with pytest.raises(XbarsimError, match="layers.<layer name>.<key>"):
        check_name("layers.adc_bits")


@pytest.mark.parametrize("bad, message", [
    ({"input_shape": [1, -8, 8]}, "input_shape.1 = -8"),
    ({"input_shape": [1, True, 8]}, "input_shape"),
    ({"grouped_conv": "diagonal"}, "grouped_conv = 'diagonal'"),
])
def test_torch_config_fields_bad_values_one_line(tmp_path, bad, message):
    from simulator.config import load_config

    with pytest.raises(XbarsimError, match=message):
        load_config(bad)


def test_bad_module_spec_and_per_group_calibrated_refused(tmp_path):
    m = nn.Sequential(nn.Conv2d(2, 2, 3, groups=2), nn.Flatten(), nn.Linear(8, 2)).eval()
    torch.save(m.state_dict(), tmp_path / "m.pt")
    base = {"model_name": str(tmp_path / "m.pt"), "input_shape": [2, 4, 4], "task": "digits", "ntest": 5}
    for spec, message in (("no_such_pkg:Net", "cannot import it"), ("torch.nn", "expected 'package.module:Class'")):
        with pytest.raises(ModelError, match=message):
            simulator.run({**base, "module": spec})
    net = from_torch(m, torch.randn(2, 2, 4, 4))
    with pytest.raises(XbarsimError, match="grouped_conv = 'per_group' does not take calibrated"):
        Simulation(net, {"grouped_conv": "per_group", "adc_bits": 8, "adc_range_option": "calibrated",
                         "adc_range": [-1.0, 1.0]}, seed=0)


@pytest.mark.parametrize("grouped", ["block_diagonal", "per_group"])
def test_grouped_convs_take_dac_codes_through_im2col(grouped):
    """Grouped and depthwise convolutions with padding on int8 DAC codes: the outputs of voltages, bit for bit.

    The observed run (public ``observe``) takes voltages everywhere; read noise is keyed, so both runs draw the same.
    """
    torch.manual_seed(0)
    m = nn.Sequential(nn.Conv2d(4, 8, 3, padding=1, groups=2), nn.ReLU(), nn.Conv2d(8, 8, 3, padding=2, groups=8),
                      nn.Conv2d(8, 6, 1), nn.Flatten(), nn.Linear(6 * 10 * 10, 3)).eval()
    x = torch.randn(3, 4, 8, 8)
    net = from_torch(m, x)
    for dac_range in ([-3.0, 3.0], [0.0, 3.0]):
        cfg = {"weight_bits": 8, "dac_bits": 8, "adc_bits": 0, "dac_range": dac_range, "grouped_conv": grouped,
               "noise_model": "alpha", "alpha_noise": 0.05, "precision": "float32"}  # no ADC: nothing hides a difference
        sim = Simulation(net, cfg, seed=1)
        assert all(c.takes_codes for c in sim.cores.values())
        codes = sim.forward(x.numpy(), image_offset=0)
        with sim.observe(samples=0):
            voltages = sim.forward(x.numpy(), image_offset=0)
        np.testing.assert_array_equal(codes, voltages)
        quiet = Simulation(net, {**cfg, "noise_model": "none"}, seed=1).forward(x.numpy(), image_offset=0)
        assert not np.array_equal(codes, quiet)  # the read noise is drawn
        assert np.abs(quiet - m(x).detach().numpy()).max() < 0.05 * np.abs(quiet).max() or dac_range[0] == 0


@pytest.mark.parametrize("precision", ["float32", "float64"])
def test_nan_made_inside_the_model_is_refused_by_the_next_analog_layer(precision):
    """A model op that makes NaN (log of a negative conv output) -> DataError naming the analog layer it reaches.

    Inputs and weights are checked on loading; without this check the int8 DAC codes (float32) would turn
    NaN into numbers and print an accuracy computed from them.
    """
    class LogNet(nn.Module):
        def __init__(self):
            super().__init__()
            self.c1, self.c2, self.fc = nn.Conv2d(2, 4, 3, padding=1), nn.Conv2d(4, 4, 3, padding=1), nn.Linear(64, 3)

        def forward(self, x):
            return self.fc(self.c2(torch.log(self.c1(x))).flatten(1))

    torch.manual_seed(0)
    m = LogNet().eval()
    x = torch.rand(2, 2, 4, 4) + 0.5
    assert torch.isnan(m.c1(x).log()).any()
    sim = Simulation(from_torch(m, x), {"weight_bits": 8, "dac_bits": 8, "adc_bits": 8, "dac_range": [-2, 2],
                                       "precision": precision}, seed=0)
    with pytest.raises(DataError, match=r"layer 'c2': \d+ of its 128 input values are NaN or infinite"):
        sim.forward(x.numpy())
