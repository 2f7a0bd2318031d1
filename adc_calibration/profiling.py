"""Profiling runs: collect ADC inputs and input activations on the calibration set (manual 9.4, 9.6).

:func:`profile` runs the hardware of a config on the calibration split with

* the ADC as identity (``adc_bits = 0``) -- *ADC profiling*: every array's
  column outputs are recorded right before the ADC (one stream per layer,
  weight bit slice and, with ``ADC_per_ibit``, input bit; matrix partitions
  share their slice's stream since they share its ADC range, 9.3);
* activations unquantized (``dac_bits = 0``, no input bit slicing) -- *DAC
  profiling*: every MVM layer's raw input activations are recorded;

and streams each batch (handed over by ``Simulation.observe(sink=...)``, the
public observation API) into :class:`~adc_calibration.collectors.StreamingHistogram`
objects, so memory does not grow with the size of the calibration set. Raw
values go to disk only when ``raw_dir`` is given.

Units. ADC inputs of unsliced layers are recorded in algorithmic units (raw
column output times :meth:`NeuralCore.algorithmic_gain`), the units of a
calibrated ``(lo, hi)`` range; bit-sliced layers keep raw array units, since
their ranges are exponents ``C_i`` relative to :meth:`NeuralCore.y_max`.

ReLU-aware profiling (``profile_adc_biased = true`` or ``relu_aware=True``):
for a layer whose output goes straight into a ReLU (a fused ``relu``
activation, or a sole consumer that is an ``Activation`` relu layer), ADC
inputs ``y`` with ``y + b < 0`` are not recorded -- the ReLU zeroes them
whatever the ADC does. ``b`` is the column's digital bias in algorithmic
units (an analog bias row is already inside ``y``). It is turned off, with a
log line, for a layer that is partitioned, bit-sliced, uses an ADC per input
bit, uses offset subtraction (style OFFSET), has another operation before the
ReLU, or has no ReLU (manual 9.4).
"""
from __future__ import annotations

import logging
import os
from dataclasses import dataclass, field
from typing import Any, Mapping, Optional

from adc_calibration.profile_store import ProfileStore
from simulator.errors import CalibrationError

log = logging.getLogger("xbarsim.calibration")

__all__ = ["profile", "LayerInfo", "relu_follows", "profiling_config", "PROFILE_BATCH"]

#: images per batch when the config's ntest_batch is 0 (keeps profiling memory bounded)
PROFILE_BATCH = 100

_RELUS = ("relu", "relu6")


@dataclass
class LayerInfo:
    """What the range optimizers need to know about one analog MVM core."""

    name: str  # core name ("<layer>" or "<layer>/ih", "<layer>/hh" for GRU cells)
    layer: str  # graph layer name
    n_slices: int
    n_partitions: int
    signed: bool  # ADC inputs can be negative (output_signed)
    y_max: float  # raw units, largest possible array output
    gain: float  # raw -> algorithmic units (unsliced layers)
    per_bit: bool  # ADC after every input bit
    style: str
    relu: bool  # a ReLU follows directly (graph only)
    relu_aware: bool = False  # ADC inputs profiled ReLU-aware
    relu_note: str = ""  # why ReLU-aware profiling is off for this layer
    input_after_relu: Optional[bool] = None
    extra: dict = field(default_factory=dict)

    @property
    def sliced(self) -> bool:
        return self.n_slices > 1


# ---------------------------------------------------------------------------
# graph and hardware eligibility
# ---------------------------------------------------------------------------
def relu_follows(layers, outputs, name: str) -> tuple[bool, str]:
    """Whether layer ``name``'s MVM output goes straight (after its bias) into a ReLU; else why not."""
    by_name = {l.name: l for l in layers}
    layer = by_name[name]
    if layer.type == "GRUCell":
        return False, "its outputs go through the GRU gates (sums, sigmoid, tanh), not a ReLU"
    act = layer.config.get("activation")
    if act in _RELUS:
        return True, ""
    if act not in (None, "linear"):
        return False, f"its activation is {act!r}, not a ReLU"
    if name in outputs:
        return False, "its output is a network output (no ReLU)"
    consumers = [l for l in layers if name in l.inputs]
    if len(consumers) != 1:
        return False, f"its output feeds {len(consumers)} layers, so a ReLU does not directly follow"
    c = consumers[0]
    if c.type == "Activation" and c.config.get("activation") in _RELUS:
        return True, ""
    if c.type == "Activation":
        return False, f"its activation ({c.name!r}) is {c.config.get('activation')!r}, not a ReLU"
    return False, f"another operation ({c.type} {c.name!r}) comes between the ADC and any ReLU"


def _hardware_note(core) -> str:
    """Why ReLU-aware profiling cannot be used on this core's hardware ('' if it can)."""
    n_rows = len(getattr(core, "row_slices", core.wrappers))  # column partitions (NcolsMax) keep whole dot products
    if n_rows > 1:
        return (f"its weight matrix is split into {n_rows} row partitions (NrowsMax = {core.hw.NrowsMax}); "
                "the other partitions' results are unknown at each ADC")
    if not getattr(core.hw, "subtract_current_in_xbar", True) and core.hw.style == "BALANCED":
        return "subtract_current_in_xbar = false: each ADC sees one device plane's current, not the dot product"
    if core.n_slices > 1:
        return f"weight bit slicing (Nslices = {core.n_slices}); the other slices' results are unknown at each ADC"
    if core.slicing.enabled and core.slicing.adc_per_bit:
        return "an ADC after every input bit (ADC_per_ibit); the other bits' results are unknown at each ADC"
    if core.hw.style == "OFFSET":
        return "offset subtraction (style = 'OFFSET') comes between the ADC and the ReLU"
    return ""


def _input_after_relu(layers, name: str) -> Optional[bool]:
    """Whether the layer's input comes from a ReLU (through shape-only/max ops); None if unknown."""
    by_name = {l.name: l for l in layers}
    layer = by_name.get(name)
    seen = 0
    while layer is not None and layer.inputs and seen < 64:
        seen += 1
        src = by_name.get(layer.inputs[0])
        if src is None:
            return None
        if src.type == "Input":
            return False
        if src.config.get("activation") in _RELUS or (src.type == "Activation" and src.config.get("activation") in _RELUS):
            return True
        if src.type in ("Flatten", "Reshape", "MaxPooling2D", "ZeroPadding2D", "GlobalMaxPooling2D") and len(src.inputs) == 1:
            layer = src
            continue
        return False
    return None


# ---------------------------------------------------------------------------
# configs of the profiling passes
# ---------------------------------------------------------------------------
def profiling_config(cfg, what: str):
    """The config of one profiling pass: ADC disabled; for ``what="dac"`` activations unquantized too."""
    data = cfg.to_dict()
    data["adc_bits"] = 0
    data["adc_range_option"] = "max"  # no calibration file is read while profiling
    data["adc_range"] = None
    data["adc_exponents"] = None
    layer_keys = {"adc_bits": 0, "adc_range_option": "max", "adc_range": None, "adc_exponents": None}
    if what == "dac":
        data.update(dac_bits=0, input_bitslicing=False, ADC_per_ibit=False, dac_range=None)
        layer_keys.update(dac_bits=0, input_bitslicing=False, ADC_per_ibit=False, dac_range=None)
    for ov in data.get("layers", {}).values():
        for k, v in layer_keys.items():
            if k in ov:
                if v is None:
                    del ov[k]
                else:
                    ov[k] = v
    data = {k: v for k, v in data.items() if v is not None}
    from simulator.config import load_config

    return load_config(data, name=cfg.source)


def _calibration_dataset(cfg, ntest: Optional[int]):
    from simulator.io.datasets import load_dataset

    d = cfg.model_dump()
    if ntest is not None:
        if int(ntest) < 1:
            raise CalibrationError(f"ntest must be >= 1 calibration images, got {ntest}")
        d["calibration_ntest"] = int(ntest)
    d["ntest_batch"] = cfg.ntest_batch or PROFILE_BATCH
    return load_dataset(d, split="calibration")


# ---------------------------------------------------------------------------
# what Simulation.observe(sink=...) hands over (raw inputs and ADC inputs)
# ---------------------------------------------------------------------------
def _neural_cores(sim):
    from simulator.cores.neural import NeuralCore

    for layer in sim.layers:
        cores = sim.cores.get(layer.name)
        if cores is None:
            continue
        for core in cores if isinstance(cores, tuple) else (cores,):
            if isinstance(core, NeuralCore):
                yield layer, core


class _ActivationSink:
    """DAC pass: records every core's raw input activations (before the DAC)."""

    def __init__(self, store: ProfileStore) -> None:
        self.store = store

    def inputs(self, core: str, X) -> None:
        self.store.add_activation(core, X)


class _AdcSink:
    """ADC pass: records every weight slice's ADC inputs (in algorithmic units when unsliced; ReLU-aware if
    asked, with ``biases[core]`` the (1, n_out) digital bias or None)."""

    def __init__(self, store: ProfileStore, info: dict, biases: dict) -> None:
        self.store, self.info, self.biases = store, info, biases

    def inputs(self, core: str, X) -> None:
        pass

    def adc_inputs(self, core: str, s: int, columns, values, input_bit) -> None:
        li = self.info[core]
        v = values if li.sliced else values * li.gain
        if li.relu_aware:
            bias = self.biases.get(core)
            if bias is not None and columns is not None:
                bias = bias[:, columns]  # this array's outputs
            v = v[v + bias >= 0 if bias is not None else v >= 0]
        self.store.add_adc(li.name, v, slice=s, input_bit=input_bit)


def _run_pass(sim, data, store: ProfileStore, bar) -> int:
    n = 0
    for x, y in data.iter_batches(layout=sim.network.input_layout):  # NCHW models get NCHW batches
        sim.forward(x, image_offset=n)
        n += len(y)
        if bar is not None:
            bar.update(len(y))
    return n


def profile(
    config: Any,
    network: Any = None,
    *,
    what: str = "adc",
    ntest: Optional[int] = None,
    raw_dir: Optional[os.PathLike | str] = None,
    progress: bool = False,
    relu_aware: Optional[bool] = None,
    dac_ranges: Optional[Mapping[str, Any]] = None,
    nbins: int = 4096,
    store: Optional[ProfileStore] = None,
    seed: Optional[int] = None,
) -> ProfileStore:
    """Profile ADC inputs (``what="adc"``), input activations (``"dac"``) or both on the calibration split.

    Parameters
    ----------
    config:
        The hardware config (path, dict or Config); profiling runs it with
        the ADC disabled (and, for activations, the DAC disabled).
    network:
        A loaded Network (default: ``config.model_name``).
    ntest:
        Calibration images (default: ``calibration_ntest``, else ``ntest``,
        else the whole calibration split). Batches hold ``ntest_batch``
        images (100 when it is 0).
    raw_dir:
        Also write every profiled value to this folder (float32 dumps plus
        ``index.json``; see :class:`ProfileStore`).
    relu_aware:
        ReLU-aware ADC profiling; default: the config's ``profile_adc_biased``.
    dac_ranges:
        Input-activation ranges ``{core name: (lo, hi)}`` the ADC pass uses
        (e.g. freshly calibrated ones); default: what the config would use
        (with ``what="both"``, cores that have no range get the (min, max) of
        their activations profiled in the first pass).
    seed:
        Seed of the profiled chip (default: the config's seed, else 0).

    Returns the :class:`ProfileStore`; its ``layer_info`` attribute maps core
    names to :class:`LayerInfo`, ``n_images`` holds the images profiled.
    """
    from simulator.config import load_config
    from simulator.model_files import load_model_for

    if what not in ("adc", "dac", "both"):
        raise CalibrationError(f"what must be 'adc', 'dac' or 'both', got {what!r}")
    cfg = load_config(config)
    net = network if network is not None else load_model_for(cfg)
    relu = cfg.profile_adc_biased if relu_aware is None else bool(relu_aware)
    if store is None:
        store = ProfileStore(nbins=nbins, raw_dir=raw_dir)
    store.layer_info = getattr(store, "layer_info", {})
    store.n_images = getattr(store, "n_images", 0)
    seed = (cfg.seed if cfg.seed is not None else 0) if seed is None else int(seed)
    data = _calibration_dataset(cfg, ntest)
    passes = ["dac", "adc"] if what == "both" else [what]
    bar = None
    if progress:
        from tqdm.auto import tqdm

        bar = tqdm(total=len(passes) * data.n, unit="img", dynamic_ncols=True, leave=False, desc="profiling")
    try:
        for p in passes:
            _profile_pass(p, cfg, net, data, store, seed=seed, relu=relu, dac_ranges=dac_ranges,
                          fill_dac=what == "both", bar=bar)
    finally:
        if bar is not None:
            bar.close()
    return store


def _profile_pass(p: str, cfg, net, data, store: ProfileStore, *, seed: int, relu: bool, dac_ranges, fill_dac: bool,
                  bar) -> None:
    """One profiling pass (``p`` = "dac" or "adc") of the calibration images into ``store``."""
    from simulator.simulation import Simulation

    pcfg = profiling_config(cfg, p)
    calib = None
    if p == "adc" and dac_ranges:
        calib = {"adc": {}, "dac": {k: tuple(float(v) for v in r) for k, r in dac_ranges.items()}}
    elif p == "adc" and fill_dac:
        calib = _fill_missing_dac_ranges(net, pcfg, store)
    sim = Simulation(net, pcfg, seed=seed, calibration=calib)
    info: dict[str, LayerInfo] = store.layer_info
    biases: dict = {}
    names = []
    for layer, core in _neural_cores(sim):
        names.append(core.name)
        if p == "dac":
            li = info.get(core.name)
            after = _input_after_relu(sim.layers, layer.name)
            if li is not None:
                li.input_after_relu = after
            else:
                info[core.name] = _layer_info(sim, layer, core, relu=False, input_after_relu=after)
            continue
        li = _layer_info(sim, layer, core, relu=relu)
        if core.name in info:
            li.input_after_relu = info[core.name].input_after_relu
        info[core.name] = li
        if li.relu_aware and core.bias is not None:
            biases[core.name] = core.bias[None, :]
    sink = _ActivationSink(store) if p == "dac" else _AdcSink(store, info, biases)
    with sim.observe(adc=False, dac=False, errors=False, layers=names, sink=sink):
        n = _run_pass(sim, data, store, bar)
    store.n_images = max(store.n_images, n)
    log.info("profiled %s on %d calibration images", "ADC inputs" if p == "adc" else "activations", n)


def _fill_missing_dac_ranges(net, pcfg, store: ProfileStore):
    """For the ADC pass of ``what="both"``: the config's activation ranges, and for cores that have
    none (dac_bits > 0 but no dac_range, calibrated or recorded range) the profiled (min, max)."""
    from simulator.calibration_io import calibration_for, core_names

    calib = calibration_for(net, pcfg) or {"adc": {}, "dac": {}}
    by_name = {l.name: l for l in net.layers}
    for name in core_names(net, pcfg):
        layer = name.split("/")[0]
        hw = pcfg.for_layer(layer)
        if hw.dac_bits == 0 or hw.dac_range is not None or name in calib["dac"] or layer in calib["dac"]:
            continue
        if "input_range" in by_name[layer].attrs:
            continue
        h = store.activations.get(name)
        if h is None or h.empty:
            continue
        lo, hi = float(h.min), float(h.max)
        if not hi > lo:
            hi = lo + (abs(lo) or 1.0)
        calib["dac"][name] = (lo, hi)
        log.info("layer %r has no activation range; the ADC pass uses its profiled range (%.4g, %.4g)", name, lo, hi)
    return calib


def _layer_info(sim, layer, core, *, relu: bool, input_after_relu: Optional[bool] = None) -> LayerInfo:
    follows, note = relu_follows(sim.layers, sim.outputs, layer.name)
    if core.name != layer.name:  # GRU cores
        follows, note = False, "its outputs go through the GRU gates (sums, sigmoid, tanh), not a ReLU"
    li = LayerInfo(
        name=core.name, layer=layer.name, n_slices=core.n_slices, n_partitions=len(core.wrappers),
        signed=core.output_signed, y_max=float(core.y_max()),
        gain=float(core.algorithmic_gain()) if core.n_slices == 1 else float("nan"),
        per_bit=bool(core.slicing.enabled and core.slicing.adc_per_bit), style=core.hw.style,
        relu=follows, input_after_relu=input_after_relu,
    )
    if relu:
        if not follows:
            li.relu_note = note
        else:
            li.relu_note = _hardware_note(core)
        li.relu_aware = not li.relu_note
        if li.relu_note:
            log.info("ReLU-aware profiling off for layer %r: %s", core.name, li.relu_note)
    return li
