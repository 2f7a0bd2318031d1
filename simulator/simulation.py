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

import copy
import difflib
import logging
import math
from typing import Any, Callable

import numpy as np

from devices.stack import make_device_stack
from simulator import ops, tensor_ops
from simulator.backend import get_backend
from simulator.config import Config, load_config
from simulator.cores.neural import NeuralCore
from simulator.cores.numeric import ArrayOptions
from simulator.errors import ConfigError, DataError
from simulator.network import Layer, Network
from simulator.tensor_ops import TENSOR_OPS

log = logging.getLogger("xbarsim.simulation")

_FOLDABLE = {"Conv2D", "Dense", "DepthwiseConv2D"}
_WITIN_ONLY = {"MatMul", "Hypot", "InvSqrt", "ClnBn2d"}


def fold_batchnorm(layers: list[Layer], outputs: list[str]) -> list[Layer]:
    """Fold BatchNormalization into the preceding linear conv/dense layer (manual eq. 6.1, 6.2).

    A BN is folded when its only input is a Conv2D/Dense/DepthwiseConv2D with
    a linear activation whose only consumer is that BN. The BN layer is then
    removed and its consumers read the conv directly.

    A witin CIM layer (``attrs["witin"]``) and a WitinBatchNorm2d
    (``attrs["witin_digital"]``) are never folded: the chip quantizes the
    layer's weights, bias and output with scales derived from its recorded
    io_max, and witin_nn computes the batch norm after that (digitally), so a
    folded layer would no longer be bit exact. Such batch norms stay separate
    layers (logged once per layer).
    """
    by_name = {l.name: l for l in layers}
    consumers: dict[str, list[str]] = {l.name: [] for l in layers}
    for l in layers:
        for src in l.inputs:
            consumers[src].append(l.name)
    rename: dict[str, str] = {}
    kept = []
    for l in layers:
        l.inputs = [rename.get(s, s) for s in l.inputs]
        if l.type == "BatchNormalization" and len(l.inputs) == 1:
            src = by_name[l.inputs[0]]
            if src.attrs.get("witin") or l.attrs.get("witin_digital") is not None:
                log.info("batch norm %r is not folded into %r: witin layers keep their chip scales "
                         "(the batch norm runs after the layer, as in witin_nn)", l.name, src.name)
            elif (
                src.type in _FOLDABLE
                and src.config.get("activation", "linear") in (None, "linear")
                and consumers[src.name] == [l.name]
                and src.name not in outputs
            ):
                eps = float(l.config.get("epsilon", 1e-3))
                f64 = lambda a: None if a is None else np.asarray(a, dtype=np.float64)  # noqa: E731 - fold exactly
                gamma = f64(l.weights.get("gamma"))
                beta = f64(l.weights.get("beta"))
                mean, var = f64(l.weights["moving_mean"]), f64(l.weights["moving_variance"])
                scale = (gamma if gamma is not None else 1.0) / np.sqrt(var + eps)
                shift = (beta if beta is not None else 0.0) - mean * scale
                key = "depthwise_kernel" if src.type == "DepthwiseConv2D" else "kernel"
                k = src.weights[key].astype(np.float64)
                if src.type == "DepthwiseConv2D":
                    kh, kw, cin, mult = k.shape
                    src.weights[key] = k * scale.reshape(cin, mult)
                else:
                    src.weights[key] = k * scale
                b = src.weights.get("bias")
                src.weights["bias"] = (b * scale if b is not None else 0.0) + shift
                src.config["use_bias"] = True
                rename[l.name] = src.name
                continue
        kept.append(l)
    outs = [rename.get(o, o) for o in outputs]
    return kept, outs


def drop_ignored(layers: list[Layer], outputs: list[str], ignored: set[str]):
    """Remove layers of the ignored types (Dropout, ...), wiring their input to their consumers."""
    rename: dict[str, str] = {}
    kept = []
    for l in layers:
        l.inputs = [rename.get(s, s) for s in l.inputs]
        if l.type in ignored:
            rename[l.name] = l.inputs[0]
        else:
            kept.append(l)
    return kept, [rename.get(o, o) for o in outputs]


class Simulation:
    """One programmed chip: a network mapped onto arrays with one seed.

    A torch model (:class:`~simulator.torch_host.TorchNetwork`) gives a
    :class:`~simulator.torch_host.simulation.TorchSimulation`: the same cores,
    with torch running every operation that is not an analog MVM.
    """

    def __new__(cls, network=None, *args, **kwargs):
        if cls is Simulation and getattr(network, "is_torch", False):
            from simulator.torch_host.simulation import TorchSimulation

            return super().__new__(TorchSimulation)
        return super().__new__(cls)

    def __init__(self, network: Network, config: Config | dict | str | None = None, seed: int | None = None,
                 *, calibration=None, cores: bool = True) -> None:
        """``cores = False`` programs no arrays: only :meth:`ideal_forward` and :meth:`trace` can run."""
        self.network = network
        self.config = cfg = load_config(config)
        self.backend = get_backend(cfg.useGPU, cfg.gpu_num)
        xp = self.xp = self.backend.xp
        if seed is None:
            seed = cfg.seed if cfg.seed is not None else int(np.random.SeedSequence().entropy % (2**31))
        self.seed = int(seed)
        #: keyed random streams of this chip (see the module notes); ``rng`` is the same object
        self.rng = self.streams = self.backend.streams(self.seed)
        self._images_seen = 0  # image index of the next forward() without image_offset
        self._offset = 0  # global index of the first image of the batch being run
        self.dtype = self._resolve_dtype()
        self._check_layer_overrides()
        from simulator.validation import config_notes

        config_notes(cfg, network)  # parameters without effect on this model: error or warning line
        self.calibration = calibration if calibration is not None else self._load_calibration()
        #: device stacks of the layers (layers with equal device settings share one), see make_device_stack
        self._device_stacks: dict = {}
        self.devices = make_device_stack(cfg, cfg, self._device_stacks)  # the chip-wide defaults
        #: the NeuralCores of every analog layer (for set_drift_time)
        self.analog_cores: list[NeuralCore] = []
        self.t_drift = cfg.drift_times[0]
        layers = [copy.deepcopy(l) for l in network.layers]
        outputs = list(network.outputs)
        layers, outputs = drop_ignored(layers, outputs, set(cfg.ignoredLayerTypes) - {"Input"})
        if cfg.fold_batchnorm:
            layers, outputs = fold_batchnorm(layers, outputs)
        self.layers, self.outputs = layers, outputs
        self._last_use = self._compute_last_use()
        self.cores: dict[str, Any] = {}
        for layer in layers:
            if layer.is_mvm and cores:
                self._build_layer(layer)
        if cfg.export_conductances:
            self.export_conductances(cfg.conductances_dir)

    def export_conductances(self, folder) -> list[str]:
        """Write the programmed conductances of every array to ``folder/seed<seed>/`` as .npy files.

        One file per device plane: ``<layer>__part<p>[c<q>]__slice<s>__pos.npy`` (``__neg`` for the
        negative plane of BALANCED cells), normalized units (G_max = 1) after programming error and drift at
        the current ``t_drift`` (CrossSim 3 export_conductances). Returns the paths written.
        """
        from pathlib import Path

        from simulator.cores.neural import NeuralCore

        out = Path(folder) / f"seed{self.seed}"
        try:
            out.mkdir(parents=True, exist_ok=True)
        except OSError as exc:
            raise ConfigError(f"conductances_dir = {str(folder)!r}: cannot create {out} ({exc.strerror})") from None
        written = []
        for core in self.cores.values():
            for c in core if isinstance(core, (tuple, list)) else (core,):
                c = getattr(c, "core", c)
                if not isinstance(c, NeuralCore):
                    continue
                for wrapper in c.wrappers:
                    for array in wrapper.cores:
                        stem = array.name.replace("/", "__")
                        for plane, G in (("pos", array.G_pos), ("neg", array.G_neg)):
                            if G is None:
                                continue
                            path = out / f"{stem}__{plane}.npy"
                            np.save(path, self.backend.asnumpy(G))
                            written.append(str(path))
        return written

    # ------------------------------------------------------------ set-up
    def _resolve_dtype(self):
        cfg = self.config
        if cfg.precision != "auto":
            return self.xp.dtype(cfg.precision)
        bits = [cfg.adc_bits] + [o.adc_bits for o in cfg.layers.values() if o.adc_bits is not None]
        return self.xp.dtype("float32" if all(0 < b <= 16 for b in bits) else "float64")

    def _check_layer_overrides(self) -> None:
        names = [l.name for l in self.network.layers if l.is_mvm or l.attrs.get("witin")]
        for key in self.config.layers:
            if key not in names:
                match = difflib.get_close_matches(key, names, n=1)
                hint = f" (did you mean {match[0]!r}?)" if match else f"; MVM layers: {', '.join(names)}"
                raise ConfigError(f"{self.config.source}: [layers.{key}] names no MVM layer of model {self.network.name!r}{hint}")

    def _load_calibration(self):
        from simulator.calibration_io import needs_adc_calibration

        cfg = self.config
        wants_adc = needs_adc_calibration(cfg)
        if not wants_adc and not cfg.dac_limits_file:
            return None
        from simulator.calibration_io import load_for_simulation

        return load_for_simulation(self.network, cfg)

    def _compute_last_use(self) -> dict[str, int]:
        last = {}
        for i, l in enumerate(self.layers):
            for s in l.inputs:
                last[s] = i
        for o in self.outputs:
            last[o] = len(self.layers)
        return last

    def _input_range(self, layer: Layer, hw, name: str | None = None) -> tuple[float, float] | None:
        if hw.dac_range is not None:
            return tuple(hw.dac_range)
        dac = self.calibration.get("dac", {}) if self.calibration is not None else {}
        for key in (name, layer.name):  # a core's own range (GRU "<layer>/ih"), else the layer's
            if key is not None and key in dac:
                return tuple(dac[key])
        if "input_range" in layer.attrs:
            return tuple(layer.attrs["input_range"])
        return None

    def _array_options(self, hw) -> ArrayOptions:
        cfg = self.config
        topology = None
        from simulator.config import wire_resistances

        rp_row, rp_col = wire_resistances(hw)
        if hw.noRowParasitics:
            rp_row = 0.0
        Rp = max(rp_row, rp_col)
        if Rp > 0:
            from simulator.circuits.parasitics import check_topology

            topology = check_topology(Rp, hw.noRowParasitics, hw.style, hw.interleaved_posneg, hw.input_bitslicing)
        return ArrayOptions(
            Gmin=0.0 if cfg.On_off_ratio == 0 else 1.0 / cfg.On_off_ratio,
            read_noise_mode=cfg.read_noise_mode, Rp=Rp, topology=topology, Verr_th=cfg.Verr_th,
            max_iter=cfg.parasitics_max_iter,
            Icol_limit=hw.Icol_max / hw.Icell_max if hw.Icol_max > 0 else 0.0,
            memory_budget=cfg.memory_budget_mb * 1e6,
            Rp_row=rp_row, Rp_col=rp_col, subtract_in_xbar=hw.subtract_current_in_xbar or hw.style != "BALANCED",
        )

    @staticmethod
    def _weight_structure(layer: Layer):
        """Mask of the MVM-matrix entries that are real weights (None: all are), for block-diagonal layers."""
        if layer.type == "DepthwiseConv2D":
            return ops.depthwise_matrix(np.ones_like(layer.weights["depthwise_kernel"]), np) != 0
        groups = int(layer.config.get("groups", 1))
        if layer.type == "Conv2D" and groups > 1:
            return ops.conv_matrix(np.ones_like(layer.weights["kernel"]), groups, np) != 0
        return None

    def _make_core(self, name: str, W, bias, layer: Layer, hw, wmax: float | None = None):
        """A NeuralCore for matrix W (rows = inputs), or an exact digital MVM when the layer is not analog."""
        xp = self.xp
        if not hw.analog:
            Wd = xp.asarray(W, dtype=self.dtype)
            bd = None if bias is None else xp.asarray(bias, dtype=self.dtype)
            return lambda X, row0=None: X @ Wd + bd if bd is not None else X @ Wd
        calib = None
        if self.calibration is not None:
            calib = self.calibration.get("adc", {}).get(name)
        lloyd = None
        if hw.weight_quantizer == "lloyd":
            from simulator.cores.mapping import lloyd_encoder

            lloyd = lloyd_encoder(hw, self.config, xp, name, structure=self._weight_structure(layer))
        core = NeuralCore(
            name, W, bias, hw, options=self._array_options(hw), devices=make_device_stack(self.config, hw, self._device_stacks),
            xp=xp, rng=self.rng, dtype=self.dtype, input_range=self._input_range(layer, hw, name), adc_calibration=calib,
            lloyd=lloyd, wmax=wmax,
        )
        self.analog_cores.append(core)
        return core

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

    def _build_layer(self, layer: Layer) -> None:
        cfg = self.config
        hw = cfg.for_layer(layer.name)
        xp = self.xp
        w = layer.weights
        if (layer.attrs.get("witin") or {}).get("padding_mode", "zeros") != "zeros" and cfg.witin_mode != "chip":
            raise ConfigError(f"layer {layer.name!r}: padding_mode {layer.attrs['witin']['padding_mode']!r} is "
                              "simulated in witin_mode = 'chip' only")
        if layer.attrs.get("witin") and cfg.witin_mode == "chip":
            from simulator.witin.chip import WitinChipLayer

            self.cores[layer.name] = WitinChipLayer(layer, hw, xp, self.rng)
            return
        if layer.attrs.get("witin") and cfg.witin_mode == "arrays":
            from simulator.witin.arrays import WithConstantInputs, witin_array_products

            cores = []
            for suffix, W, const, override, wmax, out_q in witin_array_products(layer, hw, xp, self.rng):
                hw_w = hw.model_copy(update=override)
                core = self._make_core(layer.name + suffix, W, None, layer, hw_w, wmax=wmax)
                cores.append(WithConstantInputs(core, const, xp, out_q))
            self.cores[layer.name] = tuple(cores) if layer.type == "GRUCell" else cores[0]
            return
        use_bias = layer.config.get("use_bias", True)
        if layer.type == "Dense":
            self.cores[layer.name] = self._make_core(layer.name, w["kernel"], w.get("bias") if use_bias else None, layer, hw)
        elif layer.type in ("Conv2D", "DepthwiseConv2D") and hw.grouped_conv == "per_group" and (
                layer.type == "DepthwiseConv2D" or int(layer.config.get("groups", 1)) > 1):
            self.cores[layer.name] = self._grouped_core(layer, hw, w.get("bias") if use_bias else None)
        elif layer.type == "Conv2D":
            M = ops.conv_matrix(np.asarray(w["kernel"]), int(layer.config.get("groups", 1)), np)
            self.cores[layer.name] = self._make_core(layer.name, M, w.get("bias") if use_bias else None, layer, hw)
        elif layer.type == "DepthwiseConv2D":
            M = ops.depthwise_matrix(np.asarray(w["depthwise_kernel"]), np)
            self.cores[layer.name] = self._make_core(layer.name, M, w.get("bias") if use_bias else None, layer, hw)
        elif layer.type == "Conv2DTranspose":
            k = np.asarray(w["kernel"])  # (kh, kw, cout, cin)
            flipped = k[::-1, ::-1].transpose(0, 1, 3, 2)  # (kh, kw, cin, cout)
            M = flipped.reshape(-1, flipped.shape[-1])
            self.cores[layer.name] = self._make_core(layer.name, M, w.get("bias") if use_bias else None, layer, hw)
        elif layer.type == "GRUCell":
            self.cores[layer.name] = (
                self._make_core(layer.name + "/ih", w["weight_ih"], w.get("bias_ih"), layer, hw),
                self._make_core(layer.name + "/hh", w["weight_hh"], w.get("bias_hh"), layer, hw),
            )
        else:  # pragma: no cover - MVM_LAYER_TYPES and this list agree
            raise ConfigError(f"no analog mapping for layer type {layer.type}")

    def _grouped_core(self, layer: Layer, hw, bias):
        """``grouped_conv = "per_group"``: one NeuralCore per group, sharing the layer's W_max and DAC."""
        from simulator.cores.grouped import GroupedCore, group_blocks
        from simulator.cores.mapping import weight_range

        if hw.adc_range_option == "calibrated":
            raise ConfigError(f"{self.config.source}: layer {layer.name!r}: grouped_conv = 'per_group' does not take "
                              "calibrated ADC ranges yet; use adc_range_option 'max' or 'granular', or grouped_conv = "
                              "'block_diagonal'")
        depthwise = layer.type == "DepthwiseConv2D"
        kernel = np.asarray(layer.weights["depthwise_kernel" if depthwise else "kernel"], dtype=np.float64)
        blocks = group_blocks(kernel, int(layer.config.get("groups", 1)), depthwise)
        wmax = weight_range(kernel, hw.weight_percentile, np)
        cores, cols, outs = [], [], []
        for g, (c, o, W) in enumerate(blocks):
            b = None if bias is None else np.asarray(bias)[o]
            cores.append(self._make_core(f"{layer.name}/g{g}", W, b, layer, hw, wmax=wmax))
            cols.append(c)
            outs.append(o)
        return GroupedCore(layer.name, cores, cols, outs, sum(len(o) for o in outs), self.xp)

    # ------------------------------------------------------------ running
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
        self._offset = offset
        return self._run(x, ideal=False)

    #: arithmetic of the ideal (floating-point) graph; ``ideal_forward(x, dtype="float32")`` changes it for one call
    _ideal_dtype = "float64"

    def ideal_forward(self, x, dtype: str = "float64") -> np.ndarray:
        """Exact floating-point outputs (same graph, exact MVMs in ``dtype``: float64, or float32 for timing)."""
        saved, self._ideal_dtype = self._ideal_dtype, str(np.dtype(dtype))
        try:
            return self._run(x, ideal=True)
        finally:
            self._ideal_dtype = saved

    def _ideal_cache(self) -> dict:
        """Ideal MVM functions by layer name, one dict per ideal dtype."""
        key = "_ideal" if self._ideal_dtype == "float64" else f"_ideal_{self._ideal_dtype}"
        return self.__dict__.setdefault(key, {})

    def observe(self, *, adc: bool = True, dac: bool = True, layers=None, samples: int = 0, seed: int = 0,
                post=None):
        """Context manager recording what every analog layer does while the block runs.

        ``with sim.observe(adc=True, dac=True, layers=["conv2"]) as rec: sim.forward(x)``
        gives ``rec["conv2"]``: the layer's error against its ideal output on
        the same inputs, DAC/ADC clipping and level use, Icol_max clipping, and
        a sample of ``samples`` input rows; ``post`` maps core names to a function
        applied to outputs before comparing (e.g. the ReLU that follows). See
        :mod:`simulator.observe`.
        """
        from simulator.observe import observe

        return observe(self, adc=adc, dac=dac, layers=layers, samples=samples, seed=seed, post=post)

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
            base = self._offset
            try:
                for s in range(0, n, B):
                    chunk = x[s : s + B]
                    if len(chunk) < B:
                        chunk = np.concatenate([chunk, np.zeros((B - len(chunk),) + chunk.shape[1:], chunk.dtype)])
                    rec: dict | None = {} if record is not None else None
                    self._offset = base + s  # global image index of the chunk (keys read noise)
                    out = self._run_graph(chunk, ideal, rec, keep)
                    parts.append(out if isinstance(out, list) else [out])
                    for k, v in (rec or {}).items():
                        record.setdefault(k, []).append(v)
            finally:
                self._offset = base
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
            self.dtype = xp.dtype(self._ideal_dtype)
        try:
            acts: dict[str, Any] = {}
            for i, layer in enumerate(self.layers):
                if layer.type == "Input":
                    out = self._to_internal(x)
                else:
                    ins = [acts[s] for s in layer.inputs]
                    out = self._apply(layer, ins, ideal)
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

    # ------------------------------------------------------------ layers
    def _mvm(self, name: str, layer: Layer, ideal: bool) -> Callable:
        if not ideal:
            return self.cores[name]
        cache = self._ideal_cache()
        if name not in cache:
            w = layer.weights
            t = layer.type
            if t == "Dense":
                W, b = w["kernel"], w.get("bias")
            elif t == "Conv2D":
                W, b = ops.conv_matrix(np.asarray(w["kernel"]), int(layer.config.get("groups", 1)), np), w.get("bias")
            elif t == "DepthwiseConv2D":  # (_apply computes ideal depthwise convs with ops.depthwise_conv)
                W, b = ops.depthwise_matrix(np.asarray(w["depthwise_kernel"]), np), w.get("bias")
            elif t == "Conv2DTranspose":
                k = np.asarray(w["kernel"])[::-1, ::-1].transpose(0, 1, 3, 2)
                W, b = k.reshape(-1, k.shape[-1]), w.get("bias")
            if not layer.config.get("use_bias", True):
                b = None
            Wd = self.xp.asarray(W, dtype=self._ideal_dtype)
            bd = None if b is None else self.xp.asarray(b, dtype=self._ideal_dtype)
            cache[name] = (lambda X, row0=None, Wd=Wd, bd=bd: X @ Wd + bd if bd is not None else X @ Wd)
        return cache[name]

    def _conv(self, x, layer: Layer, mvm, kh: int, kw: int, sh: int, sw: int, dh: int, dw: int, pads):
        """Run a conv as batched MVMs, chunked over images to the memory budget."""
        xp = self.xp
        run = mvm
        if getattr(mvm, "can_prequantize", False):
            # The DAC is elementwise: encode every activation once, not its kh*kw window copies.
            x = mvm.prequantize(x)
            run = lambda cols, row0: mvm(cols, prequantized=True, row0=row0)  # noqa: E731
        x = ops.pad_nhwc(x, pads, xp)
        N, H, W, C = x.shape
        Ho = ops.conv_output_size(H, kh, sh, dh)
        Wo = ops.conv_output_size(W, kw, sw, dw)
        if Ho <= 0 or Wo <= 0:
            raise DataError(f"layer {layer.name!r}: kernel {kh}x{kw} does not fit its {H}x{W} input")
        itemsize = xp.dtype(x.dtype).itemsize
        per_image = Ho * Wo * kh * kw * C * itemsize * 2
        chunk = max(1, int(self.config.memory_budget_mb * 1e6 // max(per_image, 1)))
        outs = []
        for s in range(0, N, chunk):
            cols, _ = ops.im2col(x[s : s + chunk], kh, kw, sh, sw, dh, dw, xp)
            y = run(cols, row0=(self._offset + s) * Ho * Wo)  # rows: image-major, then window oh*Wo+ow
            outs.append(y.reshape(-1, Ho, Wo, y.shape[-1]))
        return outs[0] if len(outs) == 1 else xp.concatenate(outs, axis=0)

    def _apply(self, layer: Layer, ins: list, ideal: bool):
        xp = self.xp
        c = layer.config
        t = layer.type
        x = ins[0]
        if layer.attrs.get("witin") and self.config.witin_mode == "chip" and not ideal and layer.is_mvm:
            return self.cores[layer.name].forward(*ins, image_offset=self._offset)
        if layer.attrs.get("witin_digital") is not None and (not ideal or t in _WITIN_ONLY):
            from simulator.witin.digital import run_layer

            return run_layer(layer, ins, xp, ideal)
        if t == "Dense":
            mvm = self._mvm(layer.name, layer, ideal)
            shape = x.shape
            per_image = math.prod(shape[1:-1])  # tokens per image (1 for (N, features))
            y = mvm(x.reshape(-1, shape[-1]), row0=self._offset * per_image)
            y = y.reshape(shape[:-1] + (y.shape[-1],))
            return ops.activation(y, c.get("activation"), xp)
        if t in TENSOR_OPS:
            return tensor_ops.apply(xp, layer, ins)
        if c.get("data_format") == "channels_first":  # conv / pooling in a native-layout graph
            y = self._apply_nhwc(layer, [ops.nchw_to_nhwc(x, xp)] + ins[1:], ideal)
            return ops.nhwc_to_nchw(y, xp)
        return self._apply_nhwc(layer, ins, ideal)

    def _apply_nhwc(self, layer: Layer, ins: list, ideal: bool):
        xp = self.xp
        c = layer.config
        t = layer.type
        x = ins[0]
        if t in ("Conv2D", "DepthwiseConv2D"):
            kh, kw = c["kernel_size"]
            sh, sw = c.get("strides", (1, 1))
            dh, dw = c.get("dilation_rate", (1, 1))
            pads = ops.resolve_padding(c.get("padding", "valid"), x.shape[1], x.shape[2], kh, kw, sh, sw, dh, dw)
            if ideal and t == "DepthwiseConv2D":  # exact: per-channel window sums, not the block-diagonal matrix
                y = ops.depthwise_conv(ops.pad_nhwc(x, pads, xp), layer.weights["depthwise_kernel"],
                                       layer.weights.get("bias") if c.get("use_bias", True) else None,
                                       (sh, sw), (dh, dw), xp)
                return ops.activation(y, c.get("activation"), xp)
            y = self._conv(x, layer, self._mvm(layer.name, layer, ideal), kh, kw, sh, sw, dh, dw, pads)
            return ops.activation(y, c.get("activation"), xp)
        if t == "Conv2DTranspose":
            return ops.activation(self._conv_transpose(x, layer, ideal), c.get("activation"), xp)
        if t == "GRUCell":
            return self._gru(x, ins[1] if len(ins) > 1 else None, layer, ideal)
        if t in ("MaxPooling2D", "AveragePooling2D"):
            pool = c.get("pool_size", (2, 2))
            return ops.pool2d(x, "max" if t == "MaxPooling2D" else "avg", pool, c.get("strides") or pool,
                              c.get("padding", "valid"), xp, count_include_pad=bool(c.get("count_include_pad", False)),
                              dilation=c.get("dilation_rate") or (1, 1), ceil_mode=bool(c.get("ceil_mode", False)))
        if t == "GlobalAveragePooling2D":
            return x.mean(axis=(1, 2), keepdims=bool(c.get("keepdims", False)))
        if t == "GlobalMaxPooling2D":
            return x.max(axis=(1, 2), keepdims=bool(c.get("keepdims", False)))
        if t == "Add":
            y = ins[0]
            for other in ins[1:]:
                y = y + other
            return y
        if t == "Subtract":
            return ins[0] - ins[1]
        if t == "Multiply":
            y = ins[0]
            for other in ins[1:]:
                y = y * other
            return y
        if t == "Divide":
            return ins[0] / ins[1]
        if t == "Concatenate":
            return xp.concatenate(ins, axis=int(c.get("axis", -1)))
        if t == "BatchNormalization":
            w = layer.weights
            eps = float(c.get("epsilon", 1e-3))
            scale = xp.asarray(w.get("gamma", 1.0), dtype=x.dtype) / xp.sqrt(
                xp.asarray(w["moving_variance"], dtype=x.dtype) + eps)
            shift = xp.asarray(w.get("beta", 0.0), dtype=x.dtype) - xp.asarray(w["moving_mean"], dtype=x.dtype) * scale
            axis = int(c.get("axis", -1)) % x.ndim
            if axis != x.ndim - 1:  # channels on another axis (native NCHW tensors): (C,) -> (C, 1, ..., 1)
                shape = (-1,) + (1,) * (x.ndim - 1 - axis)
                scale, shift = scale.reshape(shape), shift.reshape(shape)
            return x * scale + shift
        if t == "ZeroPadding2D":
            p = c.get("padding", ((1, 1), (1, 1)))
            pads = ops.resolve_padding(p if not isinstance(p, int) else p, 0, 0, 1, 1, 1, 1)
            return ops.pad_nhwc(x, pads, xp)
        if t == "Flatten":
            return ops.flatten(x, c.get("order", "NHWC"), xp)
        if t == "Reshape":
            if "shape" in c:  # full shape, batch axis included (0 copies the input's size of that axis)
                return x.reshape(tuple(x.shape[i] if int(v) == 0 else int(v) for i, v in enumerate(c["shape"])))
            return ops.reshape(x, c["target_shape"], c.get("order", "NHWC"), xp)
        if t == "Activation":
            return ops.activation(x, c.get("activation"), xp, c.get("alpha"))
        if t == "PReLU":
            a = xp.asarray(layer.weights["alpha"], dtype=x.dtype)
            return xp.where(x >= 0, x, a * x)
        if t == "Sqrt":
            return xp.sqrt(x)
        if t == "Mean":
            axis = c.get("axis")
            return x.mean(axis=tuple(axis) if isinstance(axis, list) else axis, keepdims=bool(c.get("keepdims", False)))
        if t in ("Dropout", "GaussianNoise"):
            return x
        raise ConfigError(f"layer {layer.name!r}: type {t} cannot be executed")  # pragma: no cover

    def _conv_transpose(self, x, layer: Layer, ideal: bool):
        """Transposed convolution = stride-1 convolution of the zero-upsampled input with the flipped kernel."""
        xp = self.xp
        c = layer.config
        kh, kw = c["kernel_size"]
        sh, sw = c.get("strides", (1, 1))
        dh, dw = c.get("dilation_rate", (1, 1))
        oph, opw = c.get("output_padding") or (0, 0)
        N, H, W, C = x.shape
        up = xp.zeros((N, (H - 1) * sh + 1, (W - 1) * sw + 1, C), dtype=x.dtype)
        up[:, ::sh, ::sw, :] = x
        pad = c.get("padding", "valid")
        if pad == "valid":
            crop = ((0, 0), (0, 0))
        elif pad == "same":
            th, tw = max(kh - sh, 0), max(kw - sw, 0)
            crop = ((th // 2, th - th // 2), (tw // 2, tw - tw // 2))
        else:
            crop = ops.resolve_padding(pad, H, W, kh, kw, sh, sw)
        eh, ew = dh * (kh - 1), dw * (kw - 1)
        (ct, cb), (cl, cr) = crop
        pads = ((eh - ct, eh - cb + oph), (ew - cl, ew - cr + opw))
        # negative pads crop
        (pt, pb), (pl, pr) = pads
        up = ops.pad_nhwc(up, ((max(pt, 0), max(pb, 0)), (max(pl, 0), max(pr, 0))), xp)
        up = up[:, max(-pt, 0) : up.shape[1] - max(-pb, 0), max(-pl, 0) : up.shape[2] - max(-pr, 0), :]
        return self._conv(up, layer, self._mvm(layer.name, layer, ideal), kh, kw, 1, 1, dh, dw, ((0, 0), (0, 0)))

    def _gru(self, x, h, layer: Layer, ideal: bool):
        """torch.nn.GRUCell semantics, gate order (r, z, n); both products are MVM layers."""
        xp = self.xp
        H = layer.weights["weight_hh"].shape[0]
        if h is None:
            h = xp.zeros((x.shape[0], H), dtype=x.dtype)
        if ideal:
            cache = self._ideal_cache()
            if layer.name not in cache:
                w = layer.weights
                f64 = lambda a: None if a is None else xp.asarray(a, dtype=self._ideal_dtype)
                Wi, Wh, bi, bh = f64(w["weight_ih"]), f64(w["weight_hh"]), f64(w.get("bias_ih")), f64(w.get("bias_hh"))
                cache[layer.name] = (
                    lambda X, row0=None: X @ Wi + bi if bi is not None else X @ Wi,
                    lambda X, row0=None: X @ Wh + bh if bh is not None else X @ Wh,
                )
            ih, hh = cache[layer.name]
        else:
            ih, hh = self.cores[layer.name]
        gi, gh = ih(x, row0=self._offset), hh(h, row0=self._offset)
        r = ops.activation(gi[:, :H] + gh[:, :H], "sigmoid", xp)
        z = ops.activation(gi[:, H : 2 * H] + gh[:, H : 2 * H], "sigmoid", xp)
        n = xp.tanh(gi[:, 2 * H :] + r * gh[:, 2 * H :])
        return (1 - z) * n + z * h
