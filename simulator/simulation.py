"""The network executor: :class:`Simulation`.

``Simulation(network, config, seed)`` maps every MVM layer's weights onto
analog arrays (NeuralCore -> WrapperCore -> NumericCore; programming errors
are sampled here, once per run) and runs the graph:

* inputs arrive in the model's native layout (``Network.input_layout``,
  NHWC or NCHW) and are converted once to the internal **NHWC** layout;
* convolutions run as batched MVMs over all images and sliding windows at
  once (im2col), chunked so one chunk fits ``memory_budget_mb``;
* all other layers (pooling, activations, add, concat, batchnorm when not
  folded, padding, flatten, witin digital ops) are exact digital operations;
* outputs return as NumPy arrays in the native layout.

``ideal_forward`` runs the same graph with exact floating-point MVMs: the
reference the analog result is compared with.

Randomness (DESIGN "Reproducibility"): every random draw comes from a stream
of :class:`~simulator.backend.RandomStreams` keyed by the simulation seed
(``seed + run`` in :func:`simulator.run`) and what it belongs to --
programming errors and drift by (layer core, partition, slice, polarity),
read noise additionally by the global image index: ``forward(x,
image_offset=i0)`` says that ``x[k]`` is image ``i0 + k`` of the test
selection (default: continue after the images of the previous call). The
executor hands every MVM core the global row of its batch (``image index *
rows per image + window``), so outputs do not depend on ``memory_budget_mb``,
``ntest_batch`` or how runs are spread over processes.
"""
from __future__ import annotations

from typing import Any

import numpy as np

from simulator import ops
from simulator.backend import get_backend
from simulator.calibration_io import calibration_for
from simulator.config import Config, load_config
from simulator.cores.neural import NeuralCore
from simulator.errors import ConfigError, DataError
from simulator.executor import inspection
from simulator.executor.core_factory import CoreFactory, resolve_dtype
from simulator.executor.dispatch import apply_layer
from simulator.executor.graph_passes import check_layer_overrides, last_use, prepare_graph
from simulator.executor.hosts import host_for
from simulator.network import Layer, Network
from simulator.observe import observe
from simulator.validation import config_notes

__all__ = ["Simulation"]


class Simulation:
    """One programmed chip: a network mapped onto arrays with one seed.

    A network type with a registered host (:func:`simulator.executor.hosts.register_host`) gets that
    host's class: a :class:`~simulator.torch_host.TorchNetwork` gives a
    :class:`~simulator.torch_host.simulation.TorchSimulation` (the same cores,
    with torch running every operation that is not an analog MVM).
    """

    #: arithmetic of the ideal (floating-point) graph; ``ideal_forward(x, dtype="float32")`` changes it for one call
    ideal_dtype = "float64"

    def __new__(cls, network=None, *args, **kwargs):
        host = host_for(network) if cls is Simulation else None
        return super().__new__(host if host is not None else cls)

    def __init__(self, network: Network, config: Config | dict | str | None = None, seed: int | None = None,
                 *, calibration=None, cores: bool = True) -> None:
        """``cores = False`` programs no arrays: only :meth:`ideal_forward` and :meth:`trace` can run."""
        self.network = network
        self.config = cfg = load_config(config)
        self.backend = get_backend(cfg.useGPU, cfg.gpu_num)
        self.xp = self.backend.xp
        if seed is None:
            seed = cfg.seed if cfg.seed is not None else int(np.random.SeedSequence().entropy % (2**31))
        self.seed = int(seed)
        #: keyed random streams of this chip (see the module notes); ``rng`` is the same object
        self.rng = self.streams = self.backend.streams(self.seed)
        self._images_seen = 0  # image index of the next forward() without image_offset
        #: global index of the first image of the batch being run (keys read noise)
        self.batch_offset = 0
        self.dtype = resolve_dtype(cfg, self.xp)
        check_layer_overrides(cfg, network)
        config_notes(cfg, network)  # parameters without effect on this model: error or warning line
        self.calibration = calibration if calibration is not None else calibration_for(network, cfg)
        factory = CoreFactory(cfg, self.xp, self.rng, self.dtype, self.calibration)
        self.devices = factory.devices  # the chip-wide device stack
        #: the NeuralCores of every analog layer (for set_drift_time)
        self.analog_cores: list[NeuralCore] = factory.analog_cores
        self.t_drift = cfg.drift_times[0]
        self.layers, self.outputs = prepare_graph(network, cfg)
        self._last_use = last_use(self.layers, self.outputs)
        #: exact MVMs of ideal passes by (dtype, layer name), see :func:`simulator.executor.dispatch.layer_mvm`
        self.ideal_cache: dict = {}
        #: what runs every MVM layer, by layer name (see :class:`~simulator.executor.core_factory.CoreFactory`)
        self.cores: dict[str, Any] = {}
        if cores:
            for layer in self.layers:
                if layer.is_mvm:
                    self.cores[layer.name] = factory.build(layer)
        if cfg.export_conductances:
            self.export_conductances(cfg.conductances_dir)

    # ------------------------------------------------------------ inspecting the arrays
    def arrays(self, name: str) -> list[inspection.ProgrammedArray]:
        """The programmed device planes of layer ``name`` (or of the one core ``name``, e.g. ``"gru/ih"``).

        One :class:`~simulator.executor.inspection.ProgrammedArray` per device
        plane: cores in order, then partitions, weight slices, pos / neg.
        Conductances are normalized (``G / G_max``), after programming error and
        drift at the current ``t_drift``; see :mod:`simulator.executor.inspection`.
        """
        return [a for core in inspection.select_cores(self.cores, name) for a in inspection.programmed_arrays(core)]

    def mapping(self, name: str) -> inspection.CoreMapping:
        """How core ``name`` maps its MVM onto arrays: W_max, input scale, slice gains, ADC ranges, partitions.

        ``name`` is a layer with one analog core or a core name (``"gru/ih"``, ``"conv/g0"``).
        """
        cores = inspection.select_cores(self.cores, name)
        if len(cores) > 1:
            raise ConfigError(f"layer {name!r} has {len(cores)} analog cores ({', '.join(c.name for c in cores)}): "
                              "name one of them")
        return inspection.core_mapping(cores[0])

    def export_conductances(self, folder) -> list[str]:
        """Write the programmed conductances of every array to ``folder/seed<seed>/`` as .npy files.

        One file per device plane: ``<layer>__part<p>[c<q>]__slice<s>__pos.npy`` (``__neg`` for the
        negative plane of BALANCED cells), normalized units (G_max = 1) after programming error and drift at
        the current ``t_drift`` (CrossSim 3 export_conductances). Returns the paths written.
        """
        return inspection.export_conductances(self.cores, folder, self.seed)

    def set_drift_time(self, t_days: float) -> None:
        """Read every analog array ``t_days`` days after programming (one of the config's ``t_drift`` times).

        Drift is applied from the same programmed state each time (nothing is
        re-programmed); drift compensation re-reads its reference.
        """
        times = self.config.drift_times
        if not any(abs(t_days - t) <= 1e-12 * max(1.0, t) for t in times):
            raise ConfigError(f"t_drift = {t_days:g} days is not one of the config's times {times}")
        for core in self.analog_cores:
            core.set_time(float(t_days))
        self.t_drift = float(t_days)

    # ------------------------------------------------------------ running
    def apply_layer(self, layer: Layer, ins: list, ideal: bool):
        """Output of one layer on its inputs (internal layout, backend arrays), through the op table
        (:func:`simulator.executor.dispatch.apply_layer`); ``ideal``: exact MVMs. Hosts call it per layer."""
        return apply_layer(self, layer, ins, ideal)

    def _to_internal(self, x):
        net = self.network
        x = np.asarray(x)
        if net.input_shape and tuple(x.shape[1:]) != tuple(net.input_shape):
            raise DataError(
                f"input batch has shape {tuple(x.shape)}, expected (N, {', '.join(map(str, net.input_shape))}) "
                f"for model {net.name!r} ({net.input_layout})"
            )
        x = self.backend.asarray(x, dtype=self.dtype)
        if net.input_layout == "NCHW" and net.internal_layout == "NHWC":
            x = ops.nchw_to_nhwc(x, self.xp)
        return x

    def _to_native(self, y):
        y = self.backend.asnumpy(y)
        if self.network.input_layout == "NCHW" and self.network.internal_layout == "NHWC" and y.ndim == 4:
            y = np.ascontiguousarray(y.transpose(0, 3, 1, 2))
        return y

    def forward(self, x, image_offset: int | None = None) -> np.ndarray:
        """Simulated outputs for a batch ``x`` in the model's native layout.

        ``image_offset``: global index of image ``x[0]`` (it keys the read
        noise); None continues after the previous call's images.
        """
        offset = self._images_seen if image_offset is None else int(image_offset)
        if offset < 0:
            raise ValueError(f"image_offset must be >= 0, got {offset}")
        self._images_seen = offset + len(x)
        self.batch_offset = offset
        return self._run(x, ideal=False)

    def ideal_forward(self, x, dtype: str = "float64") -> np.ndarray:
        """Exact floating-point outputs (same graph, exact MVMs in ``dtype``: float64, or float32 for timing)."""
        saved, self.ideal_dtype = self.ideal_dtype, str(np.dtype(dtype))
        try:
            return self._run(x, ideal=True)
        finally:
            self.ideal_dtype = saved

    def observe(self, *, adc: bool = True, dac: bool = True, layers=None, samples: int = 0, seed: int = 0,
                post=None, errors: bool = True, sink=None):
        """Context manager recording what every analog layer does while the block runs.

        ``with sim.observe(adc=True, dac=True, layers=["conv2"]) as rec: sim.forward(x)``
        gives ``rec["conv2"]``: the layer's error against its ideal output on
        the same inputs, DAC/ADC clipping and level use, Icol_max clipping, and
        a sample of ``samples`` input rows; ``post`` maps core names to a function
        applied to outputs before comparing (e.g. the ReLU that follows);
        ``errors = False`` skips the comparison; ``sink`` also gets every raw input
        and ADC input (profiling). See :class:`simulator.observe.Recorder`.
        """
        return observe(self, adc=adc, dac=dac, layers=layers, samples=samples, seed=seed, post=post, errors=errors,
                       sink=sink)

    def output_shapes(self) -> dict[str, tuple[int, ...]]:
        """Internal output shape of every layer (NHWC or native, see ``Network.internal_layout``), no batch axis."""
        shapes: dict[str, tuple[int, ...]] = {}
        x = np.zeros((self.network.batch_size or 1,) + tuple(self.network.input_shape), dtype=np.float64)
        self._run(x, ideal=True, record=shapes)
        return {k: v[1:] for k, v in shapes.items()}

    def trace(self, x) -> dict[str, np.ndarray]:
        """Ideal (float64) output of every layer for batch ``x``, as NumPy arrays in the native layout.

        The import self-check compares these with the model's own runtime node by node.
        """
        arrays: dict[str, Any] = {}
        self._run(x, ideal=True, record=arrays, keep=True)
        return arrays

    def _run(self, x, ideal: bool, record: dict | None = None, keep: bool = False):
        """Run the graph; ``record`` receives every layer's output shape (or the array, ``keep``)."""
        B = self.network.batch_size
        n = len(x)
        if B is not None and n != B:  # a graph with a fixed batch: B images at a time, the last chunk padded
            x = np.asarray(x)
            parts = []
            base = self.batch_offset
            try:
                for s in range(0, n, B):
                    chunk = x[s : s + B]
                    if len(chunk) < B:
                        chunk = np.concatenate([chunk, np.zeros((B - len(chunk),) + chunk.shape[1:], chunk.dtype)])
                    rec: dict | None = {} if record is not None else None
                    self.batch_offset = base + s  # global image index of the chunk (keys read noise)
                    out = self._run_graph(chunk, ideal, rec, keep)
                    parts.append(out if isinstance(out, list) else [out])
                    for k, v in (rec or {}).items():
                        record.setdefault(k, []).append(v)
            finally:
                self.batch_offset = base
            if record is not None:
                for k, v in record.items():
                    # tensors whose batch moved off axis 0 stack chunk by chunk (exact when B divides n)
                    record[k] = np.concatenate(v)[: (n if n % B else None)] if keep else (n,) + tuple(v[0][1:])
            res = [np.concatenate(p)[:n] for p in zip(*parts)]
            return res[0] if len(res) == 1 else res
        return self._run_graph(x, ideal, record, keep)

    def _run_graph(self, x, ideal: bool, record: dict | None, keep: bool):
        xp = self.xp
        saved_dtype = self.dtype
        if ideal:
            self.dtype = xp.dtype(self.ideal_dtype)
        try:
            acts: dict[str, Any] = {}
            for i, layer in enumerate(self.layers):
                if layer.type == "Input":
                    out = self._to_internal(x)
                else:
                    ins = [acts[s] for s in layer.inputs]
                    out = self.apply_layer(layer, ins, ideal)
                acts[layer.name] = out
                if record is not None:
                    record[layer.name] = self._to_native(out) if keep else tuple(out.shape)
                for s in layer.inputs:
                    if self._last_use.get(s) == i:
                        del acts[s]
            results = [self._to_native(acts[o]) for o in self.outputs]
        finally:
            self.dtype = saved_dtype
        return results[0] if len(results) == 1 else results
