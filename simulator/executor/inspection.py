"""Read-only views of a programmed chip: ``Simulation.arrays`` / ``Simulation.mapping``.

Units and layout (manual ch. 6):

* conductances are **normalized**, ``G / G_max`` (``G_max = 1``; a cell at
  its lowest state holds ``G_min = 1 / On_off_ratio``, 0 when the ratio is 0),
  after programming error and drift at the simulation's current ``t_drift``;
* a layer's MVM matrix ``W`` (rows = inputs in im2col order, columns =
  outputs) is normalized to ``w = W / W_max`` and split into partitions of at
  most ``NrowsMax`` rows x ``NcolsMax`` columns (row partition major); every
  partition holds ``Nslices`` weight bit slices (slice 0 = least
  significant), each a physical array with a positive device plane and, for
  BALANCED cells, a negative one. An array's conductance fractions ``v`` in
  ``[0, 1]`` map to ``G = G_min + (1 - G_min) v``; the slices recombine as
  ``w . x = sum_s gain_s * D_s - offset * sum(x)`` with ``D_s`` the digitized
  column outputs minus ``G_min`` terms, divided by ``1 - G_min`` (see
  :mod:`simulator.cores.wrapper`);
* with an analog bias the matrix has one extra row (index ``n_in``) driven at
  full scale; OFFSET cells with ``digital_offset = false`` carry one extra
  last column (the unit column) in every array;
* ADC ranges are in raw column-output units: ``sum_i x_i G_i`` over one
  array's column with normalized inputs ``|x_i| <= 1`` (BALANCED: the
  difference of the two planes).
"""
from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path
from typing import Any, Iterator

import numpy as np

from simulator.backend import backend_of
from simulator.cores.neural import NeuralCore
from simulator.errors import ConfigError


@dataclass(frozen=True)
class ProgrammedArray:
    """One device plane of one physical array."""

    #: the NeuralCore it belongs to: the layer name, ``<layer>/ih`` | ``/hh`` (GRU), ``<layer>/g<k>`` (per group)
    core: str
    #: the array's name, ``<core>/part<p>[c<q>]/slice<s>``
    name: str
    #: index of its partition (row partitions major, then column partitions)
    partition: int
    #: rows (inputs) of the core's MVM matrix it holds (the analog bias row has index ``n_in``)
    rows: slice
    #: columns (outputs) of the core's MVM matrix it holds
    cols: slice
    #: weight bit slice, 0 = least significant
    slice: int
    #: device plane: "pos" (the positive, or OFFSET's only, device) or "neg" (BALANCED's negative device)
    plane: str
    #: programmed conductances G / G_max, shape (len(rows), len(cols) [+ 1 unit column])
    G: np.ndarray
    #: targeted conductance fractions v (before programming error), shape (len(rows), len(cols)): G_target = G_min + (1 - G_min) v
    target: np.ndarray
    #: this slice's factor in the shift-and-add recombination
    gain: float
    #: whether read noise is drawn per conductance (True) or as an equivalent output noise
    exact_noise: bool

    @property
    def shape(self) -> tuple[int, int]:
        return tuple(self.G.shape)


@dataclass(frozen=True)
class CoreMapping:
    """How one NeuralCore maps its MVM onto arrays (algorithmic units: the model's own)."""

    name: str
    n_in: int  #: inputs (rows of the MVM matrix, analog bias row excluded)
    n_out: int  #: outputs
    W_max: float  #: weight scale: w = W / W_max (algorithmic weight per unit normalized weight)
    x_scale: float  #: input full scale: normalized voltage x = X / x_scale
    G_min: float  #: lowest normalized conductance
    style: str  #: "BALANCED" or "OFFSET"
    n_slices: int  #: weight bit slices per partition
    slice_gains: tuple[float, ...]  #: shift-and-add factors of the slices (the same in every partition)
    offset: float  #: OFFSET: offset * sum(x) is subtracted after recombination (0 for BALANCED)
    weight_levels: int | None  #: distinct weight levels of the quantizer (None: continuous)
    device_levels: int | None  #: conductance steps of one slice's device, 2**bits_per_slice - 1 (None: continuous)
    levels: np.ndarray | None  #: non-uniform (Lloyd) levels of the normalized weights, None for uniform ones
    partitions: tuple[tuple[slice, slice], ...]  #: (rows, cols) of every partition
    input_range: tuple[float, float] | None  #: DAC range in algorithmic input units (None: no DAC)
    adc_ranges: tuple[tuple[float, float], ...] | None  #: (lo, hi) per slice in raw column units (None: no ADC)
    adc_steps: tuple[float, ...] | None  #: ADC level spacing per slice, raw column units (None: no ADC)
    digital_bias: np.ndarray | None  #: the bias added after the ADCs (algorithmic units, quantized); None when none or analog
    analog_bias: bool  #: the bias is an extra array row driven at full scale


def neural_cores_of(entry: Any) -> Iterator[NeuralCore]:
    """The NeuralCores inside what the executor holds for a layer (a core, a GRU tuple, a per-group core,
    a witin layer on arrays); digital MVMs and witin chip layers hold none."""
    if isinstance(entry, NeuralCore):
        yield entry
    elif isinstance(entry, (tuple, list)):
        for e in entry:
            yield from neural_cores_of(e)
    elif isinstance(getattr(entry, "core", None), NeuralCore):  # witin layers on arrays (constant inputs)
        yield entry.core
    elif isinstance(getattr(entry, "cores", None), list):  # grouped convolutions: one core per group
        yield from neural_cores_of(entry.cores)


def select_cores(cores: dict[str, Any], name: str) -> list[NeuralCore]:
    """The NeuralCores of layer ``name`` (all of them) or the one core named ``name`` (e.g. ``gru/ih``)."""
    if name in cores:
        found = list(neural_cores_of(cores[name]))
        if not found:
            raise ConfigError(f"layer {name!r} has no analog arrays (analog = false or a witin chip layer)")
        return found
    for entry in cores.values():
        for core in neural_cores_of(entry):
            if core.name == name:
                return [core]
    known = sorted({c.name for e in cores.values() for c in neural_cores_of(e)} | set(cores))
    raise ConfigError(f"{name!r} names no analog layer or core; analog layers and cores: {', '.join(known) or 'none'}")


def core_mapping(core: NeuralCore) -> CoreMapping:
    """The :class:`CoreMapping` of one NeuralCore."""
    enc = core.wrappers[0].encoding
    levels = enc.meta.get("levels") if enc.meta else None
    quantizers = core.adc_quantizers if core.hw.adc_bits > 0 else None
    return CoreMapping(
        name=core.name, n_in=int(core.n_in), n_out=int(core.n_out), W_max=float(core.Wmax),
        x_scale=float(core.x_scale), G_min=float(core.opt.Gmin), style=core.hw.style, n_slices=int(enc.n_slices),
        slice_gains=tuple(float(g) for g in enc.gains), offset=float(enc.offset), weight_levels=enc.weight_levels,
        device_levels=enc.device_levels,
        levels=None if levels is None else np.asarray(levels, dtype=np.float64),
        partitions=tuple(core.blocks), input_range=core.input_range,
        adc_ranges=None if quantizers is None else tuple((float(q.lo), float(q.hi)) for q in quantizers),
        adc_steps=None if quantizers is None else tuple(float(q.step) for q in quantizers),
        digital_bias=None if core.bias is None else _np(core.bias, core.xp), analog_bias=bool(core.analog_bias),
    )


def programmed_arrays(core: NeuralCore) -> list[ProgrammedArray]:
    """Every device plane of every array of one NeuralCore: partitions in order, then slices, then pos / neg."""
    out = []
    for p, ((rs, cs), wrapper) in enumerate(zip(core.blocks, core.wrappers)):
        enc = wrapper.encoding
        for s, array in enumerate(wrapper.cores):
            planes = (("pos", array.G_pos, enc.pos[s]), ("neg", array.G_neg, None if enc.neg is None else enc.neg[s]))
            for plane, G, target in planes:
                if G is None:
                    continue
                out.append(ProgrammedArray(
                    core=core.name, name=array.name, partition=p, rows=rs, cols=cs, slice=s, plane=plane,
                    G=_np(G, core.xp), target=_np(target, core.xp), gain=float(enc.gains[s]),
                    exact_noise=bool(array.exact_noise),
                ))
    return out


def export_conductances(cores: dict[str, Any], folder, seed: int) -> list[str]:
    """Write every device plane to ``folder/seed<seed>/<array name with / as __>__<plane>.npy``; the paths written."""
    out = Path(folder) / f"seed{seed}"
    try:
        out.mkdir(parents=True, exist_ok=True)
    except OSError as exc:
        raise ConfigError(f"conductances_dir = {str(folder)!r}: cannot create {out} ({exc.strerror})") from None
    written = []
    for entry in cores.values():
        for core in neural_cores_of(entry):
            for a in programmed_arrays(core):
                path = out / f"{a.name.replace('/', '__')}__{a.plane}.npy"
                np.save(path, a.G)
                written.append(str(path))
    return written


def _np(a, xp) -> np.ndarray:
    """A NumPy copy of backend array ``a`` (changing it leaves the core unchanged)."""
    return np.array(backend_of(xp).asnumpy(a))
