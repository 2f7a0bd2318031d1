"""The torch host: any ``torch.nn.Module`` (or ``torch.export`` program) on analog cores.

Only the model's MVM modules become analog layers -- ``nn.Linear``,
``nn.Conv1d``, ``nn.Conv2d``, ``nn.ConvTranspose1d/2d``, the projections of
``nn.MultiheadAttention``, ``transformers``' ``Conv1D`` and the witin CIM
layers (with their chip semantics). Each is computed by the same
NeuralCore -> WrapperCore -> NumericCore hierarchy as the graph executor.
Every other operation (activations, normalization, attention products
between activations, reshapes, pooling, embeddings, custom Python) runs in
torch exactly as the model defines it: matmuls between two activations are
digital.

* :func:`from_torch` wraps a module and an example input as a
  :class:`TorchNetwork` (after checking that the module runs);
* :func:`load_torch_export` reads a ``torch.export.save`` file (``.pt2``; recognised by
  :mod:`simulator.io.loader` from its content);
* ``simulator.Simulation(torch_network, config, seed)`` programs the arrays
  and returns a :class:`TorchSimulation`.

torch is an optional dependency (``pip install 'xbarsim[torch]'``).
"""
from simulator.torch_host.importer import from_torch, load_state_dict_model
from simulator.torch_host.network import TorchNetwork
from simulator.torch_host.export_program import load_torch_export
from simulator.torch_host.simulation import TorchSimulation  # registers the host: every TorchNetwork runs in torch

__all__ = ["TorchNetwork", "TorchSimulation", "from_torch", "load_torch_export", "load_state_dict_model"]
