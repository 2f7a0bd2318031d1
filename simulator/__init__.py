"""xbarsim: accuracy simulation of neural networks on analog compute-in-memory chips.

Public API::

    net = simulator.load_model("digits_cnn")          # or a path to a model file
    cfg = simulator.load_config("configs/digits_noisy.toml")
    sim = simulator.Simulation(net, cfg, seed=0)       # maps weights onto arrays
    x, labels = simulator.load_dataset(cfg, n=100, network=net)  # test images, model's layout and scaling
    y = sim.forward(x)                                 # x in the model's native layout
    result = simulator.run(cfg)                        # whole inference run(s)
    result.to_frame()                                  # one row per run
    report = simulator.diagnose(cfg, out="diag")      # per-layer error budget, CSV/plots/HTML

Names are resolved lazily so that importing the package stays cheap.
"""
from __future__ import annotations

import importlib

__version__ = "0.1.0"

_EXPORTS = {
    "load_model": "simulator.model_files",
    "save_model": "simulator.network",
    "Network": "simulator.network",
    "Layer": "simulator.network",
    "load_config": "simulator.config",
    "Config": "simulator.config",
    "Simulation": "simulator.simulation",
    "run": "simulator.runner",
    "load_dataset": "simulator.runner",
    "diagnose": "simulator.diagnosis",
    "Result": "simulator.runner",
    "from_torch": "simulator.torch_host",
    "load_torch_export": "simulator.torch_host",
    "TorchNetwork": "simulator.torch_host",
    "load_onnx": "simulator.io.onnx_import",
    "load_keras_h5": "simulator.io.keras_h5",
}

__all__ = sorted(_EXPORTS)


def __getattr__(name: str):
    module = _EXPORTS.get(name)
    if module is None:
        raise AttributeError(f"module 'simulator' has no attribute {name!r}")
    return getattr(importlib.import_module(module), name)
