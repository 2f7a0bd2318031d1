"""Any PyTorch model: torchvision's classification zoo and transformers' BERT / GPT-2 on the torch host.

Each architecture is built with random weights (no download); batch-norm
statistics are re-estimated on random images so activations have realistic
scales. ``simulator.from_torch`` must accept it (its import self-check
compares against torch), ``ideal_forward`` must equal the module's own
forward on a fresh input to 1e-5 relative, and an 8-bit simulation
(8-bit weights, DAC and ADC) must run and return finite outputs of the
model's shape. Small inputs keep CI fast where the architecture allows.

The reference is the module's own forward in float64 (a deep copy,
``.double()``): the simulator's ideal MVMs are float64, and torch's float32
forward is itself up to ~1e-5 away from the exact function on the deeper
networks (shufflenet: 9.4e-6), so comparing with it would test torch's
rounding, not the import.
"""
from __future__ import annotations

import copy

import numpy as np
import pytest

torch = pytest.importorskip("torch")

from simulator import Simulation, from_torch  # noqa: E402

EIGHT_BIT = {"weight_bits": 8, "adc_bits": 8, "dac_bits": 8, "dac_range": [-8.0, 8.0], "grouped_conv": "per_group"}


def relative(a, b) -> float:
    """Relative error ||a - b|| / ||b|| (2-norm over all outputs)."""
    a, b = np.asarray(a, dtype=np.float64), np.asarray(b, dtype=np.float64)
    return float(np.linalg.norm(a - b) / np.linalg.norm(b))


def recalibrate_batch_norm(model, shape, seed: int = 0) -> None:
    """Running statistics from random inputs (cumulative average over a few batches), then eval mode."""
    g = torch.Generator().manual_seed(seed)
    bns = [m for m in model.modules() if isinstance(m, torch.nn.modules.batchnorm._BatchNorm)]
    for m in bns:
        m.reset_running_stats()
        m.momentum = None
    model.train()
    with torch.no_grad():
        for _ in range(2):
            model(torch.randn((8,) + shape, generator=g))
    model.eval()


def float64_forward(model, x):
    """The module's own function in double precision (inputs: a tensor or a dict of integer ids)."""
    exact = copy.deepcopy(model).double()
    with torch.no_grad():
        if isinstance(x, dict):
            return exact(**x)
        return exact(x.double())


def count_mvm_modules(model) -> int:
    nn = torch.nn
    n = 0
    for mod in model.modules():
        if isinstance(mod, nn.MultiheadAttention):
            n += 1  # its in_proj; its out_proj is a Linear counted below
        elif isinstance(mod, (nn.Linear, nn.Conv1d, nn.Conv2d, nn.ConvTranspose2d)):
            n += 1
        elif type(mod).__name__ == "Conv1D":
            n += 1
    return n


def _zoo():
    from torchvision_compat import import_torchvision

    return import_torchvision().models


ZOO = {  # name: (builder kwargs, input size)
    "resnet18": ({}, 32),
    "mobilenet_v3_small": ({}, 32),
    "squeezenet1_1": ({}, 64),
    "shufflenet_v2_x0_5": ({}, 32),
    "efficientnet_b0": ({}, 32),
    "googlenet": ({"aux_logits": False, "init_weights": True}, 32),
    "convnext_tiny": ({}, 32),
    "vit_b_16": ({"image_size": 32}, 32),
    "alexnet": ({}, 64),
}


@pytest.mark.parametrize("name", list(ZOO))
def test_torchvision_architecture(name):
    kwargs, size = ZOO[name]
    torch.manual_seed(0)
    model = getattr(_zoo(), name)(weights=None, num_classes=10, **kwargs)
    for mod in model.modules():  # vit's head starts at zero: the output would be constant
        if isinstance(mod, torch.nn.Linear) and not bool(mod.weight.any()):
            torch.nn.init.normal_(mod.weight, std=0.05)
    recalibrate_batch_norm(model, (3, size, size))
    x = torch.randn(2, 3, size, size, generator=torch.Generator().manual_seed(1))
    net = from_torch(model, x, name=name)
    analog = sum(len(s.layers) for s in net.sites)
    assert analog == count_mvm_modules(model)
    x2 = torch.randn(3, 3, size, size, generator=torch.Generator().manual_seed(2))
    ref = float64_forward(model, x2).numpy()
    ideal = Simulation(net, {}, seed=0, cores=False).ideal_forward(x2.numpy())
    assert relative(ideal, ref) <= 1e-5
    y = Simulation(net, EIGHT_BIT, seed=0).forward(x2.numpy())
    assert y.shape == ref.shape and np.all(np.isfinite(y))
    assert not np.array_equal(y, ideal)  # the 8-bit chip is not the float model


def _transformers():
    _zoo()  # transformers imports torchvision: through the compatibility shim first
    return pytest.importorskip("transformers")


def _bert():
    transformers = _transformers()
    cfg = transformers.BertConfig(vocab_size=97, hidden_size=32, num_hidden_layers=2, num_attention_heads=4,
                                  intermediate_size=64, max_position_embeddings=32, num_labels=3)
    torch.manual_seed(0)
    return transformers.BertForSequenceClassification(cfg).eval()


def _gpt2():
    transformers = _transformers()
    cfg = transformers.GPT2Config(vocab_size=97, n_embd=32, n_layer=2, n_head=4, n_positions=32, bos_token_id=0,
                                  eos_token_id=0)
    torch.manual_seed(0)
    return transformers.GPT2LMHeadModel(cfg).eval()


def _tokens(seed: int, batch: int = 2, length: int = 12):
    g = torch.Generator().manual_seed(seed)
    ids = torch.randint(0, 97, (batch, length), generator=g)
    mask = torch.ones(batch, length, dtype=torch.long)
    mask[1, 8:] = 0  # a padded second sequence
    return {"input_ids": ids, "attention_mask": mask}


@pytest.mark.parametrize("builder, n_analog", [(_bert, 2 * 6 + 2), (_gpt2, 2 * 4 + 1)], ids=["bert", "gpt2"])
def test_transformers_language_models(builder, n_analog):
    model = builder()
    net = from_torch(model, _tokens(0))
    assert sum(len(s.layers) for s in net.sites) == n_analog
    x = _tokens(1)
    ref = float64_forward(model, x).logits.numpy()
    sim = Simulation(net, EIGHT_BIT, seed=0)
    ideal = sim.ideal_forward({k: v.numpy() for k, v in x.items()})  # integer token ids as arrays
    assert relative(ideal["logits"], ref) <= 1e-5
    out = sim.forward(x)  # tensors in -> the model's own output object
    assert isinstance(out.logits, torch.Tensor) and out.logits.shape == ref.shape
    assert bool(torch.isfinite(out.logits).all())
    import simulator.runner as runner

    assert runner.primary_output(sim.forward({k: v.numpy() for k, v in x.items()})).shape == ref.shape
