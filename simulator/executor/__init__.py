"""The graph executor's parts, used by :class:`simulator.simulation.Simulation`.

* :mod:`~simulator.executor.graph_passes` -- rewrites of the layer graph before
  it runs (batch-norm folding, dropping ignored layers, last use of every
  tensor, checks of ``[layers.<name>]`` overrides);
* :mod:`~simulator.executor.core_factory` -- the analog cores of one layer
  (NeuralCores with their array options, input ranges, calibrated ADC ranges,
  device stacks; witin chip layers; per-group convolutions);
* :mod:`~simulator.executor.dispatch` -- the table from layer type to the
  function that runs it (MVM layers on their cores, everything else as exact
  digital operations);
* :mod:`~simulator.executor.inspection` -- read-only views of the programmed
  arrays (``Simulation.arrays`` / ``Simulation.mapping``) and the conductance export;
* :mod:`~simulator.executor.hosts` -- which Simulation class runs which kind of
  network (the torch host registers itself there).

Nothing here imports :mod:`simulator.simulation`.
"""
