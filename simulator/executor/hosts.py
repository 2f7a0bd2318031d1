"""Which simulation class runs which kind of network.

``Simulation(network, config, seed)`` returns an instance of the class
registered for ``type(network)`` (or a base class of it); unregistered
networks get :class:`~simulator.simulation.Simulation` itself. A host
registers its class when it is imported: :mod:`simulator.torch_host`
registers ``TorchSimulation`` for ``TorchNetwork``, so every TorchNetwork
(which can only be made through that package) is simulated by torch.
"""
from __future__ import annotations

_HOSTS: dict[type, type] = {}


def register_host(network_type: type, simulation_type: type) -> None:
    """Simulate networks of ``network_type`` (and its subclasses) with ``simulation_type``."""
    _HOSTS[network_type] = simulation_type


def host_for(network) -> type | None:
    """The simulation class registered for ``network``'s type (most derived match), or None."""
    for cls in type(network).__mro__:
        if cls in _HOSTS:
            return _HOSTS[cls]
    return None
