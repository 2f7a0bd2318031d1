"""Observing a simulation layer by layer: :class:`Recorder` and ``Simulation.observe()``.

::

    with sim.observe(adc=True, dac=True, layers=["conv2"]) as rec:
        sim.forward(x)
    rec["conv2"].relative_rms_error, rec["conv2"].adc.clipped_high_fraction

While a recorder is attached, every observed :class:`~simulator.cores.neural.NeuralCore`
reports each batch of its MVMs to a :class:`CoreObservation`:

* its inputs ``X`` (before the DAC) and outputs ``Y`` (algorithmic units,
  bias included, before the activation); the ideal output ``X @ W + b`` for
  the same inputs (:meth:`NeuralCore.ideal`) is computed here, so the running
  sums give the layer's own error whatever happened upstream. ``post``
  maps core names to an elementwise function applied to both before they are
  compared (e.g. the ReLU that follows the layer: what the next layer sees;
  ReLU-aware ADC ranges clip outputs the ReLU zeroes anyway);
* the DAC codes of ``X`` (``dac=True``): clipping low/high and a histogram
  of the levels;
* through its NumericCores, every ADC conversion (``adc=True``) and every
  column current clipped at ``Icol_max``.

Memory stays bounded: counters, fixed-size histograms and a reservoir sample
of at most ``samples`` input rows per core (kept in float32), never all raw
values. Sampling uses its own generator (``seed``), not the simulation's
random streams, so observing does not change the simulated numbers.

Conventions: a value is *clipped* when the quantizer's nearest level index
``rint(v / step)`` (``rint((v - lo) / step)`` for unsigned ranges) lies
outside its levels ``kmin..kmax`` -- the output differs from the input by
more than half a step. *Levels used* counts the distinct output levels that
occurred; *effective bits* is ``log2`` of the span of output levels that
occurred (``log2(kmax_used - kmin_used + 1)``): the resolution of an ADC
that would cover exactly the codes this one produced.
"""
from __future__ import annotations

import contextlib
import math
from dataclasses import dataclass, field
from typing import Any, Iterable, Iterator, Optional

import numpy as np

__all__ = ["Recorder", "CoreObservation", "QuantizerUse", "observe", "neural_cores"]

#: exact per-level counts up to this many levels (else only clipping and the coarse histogram)
MAX_EXACT_LEVELS = 2**20
#: bins of the coarse histogram inside the quantizer range (it extends half a range beyond each end)
RANGE_BINS = 128


def _np(a, xp) -> np.ndarray:
    """A NumPy copy of backend array ``a``."""
    get = getattr(a, "get", None)
    return np.asarray(get() if get is not None and xp is not np else a)


class QuantizerUse:
    """How the samples that went through one quantizer (ADC or DAC) used its levels."""

    def __init__(self, quantizer) -> None:
        self.bits = int(quantizer.bits)
        self.lo, self.hi, self.step = float(quantizer.lo), float(quantizer.hi), float(quantizer.step)
        self.signed = bool(quantizer.signed)
        self.kmin, self.kmax = (int(k) for k in quantizer.k_range)
        self.n_levels = self.kmax - self.kmin + 1
        self.n = 0
        self.clipped_low = 0
        self.clipped_high = 0
        self.level_counts = np.zeros(self.n_levels, dtype=np.int64) if self.n_levels <= MAX_EXACT_LEVELS else None
        span = self.kmax - self.kmin
        nb = max(1, min(RANGE_BINS, self.n_levels))
        # histogram of the unrounded level index over [kmin - span/2, kmax + span/2]
        self.edges = np.linspace(self.kmin - 0.5 - span / 2, self.kmax + 0.5 + span / 2, 2 * nb + 1)
        self.hist = np.zeros(2 * nb, dtype=np.int64)
        self.under = 0
        self.over = 0

    def matches(self, quantizer) -> bool:
        return (int(quantizer.bits), float(quantizer.lo), float(quantizer.hi)) == (self.bits, self.lo, self.hi)

    def add(self, values, xp) -> None:
        """Count the quantizer inputs ``values`` (any shape, backend array), in their own float type."""
        v = values.reshape(-1)
        t = v / self.step if self.signed else (v - self.lo) / self.step  # level index (unsigned: kmin = 0 at lo)
        k = xp.rint(t)
        self.n += int(k.size)
        self.clipped_low += int(xp.count_nonzero(k < self.kmin))
        self.clipped_high += int(xp.count_nonzero(k > self.kmax))
        if self.level_counts is not None:
            xp.clip(k, self.kmin, self.kmax, out=k)
            k -= self.kmin
            self.level_counts += _np(xp.bincount(k.astype(xp.int64), minlength=self.n_levels), xp)[: self.n_levels]
        del k
        # coarse histogram: bin b of width w from edges[0]; b = -1 / nb collect under- and overflow
        nb = len(self.hist)
        w = float(self.edges[1] - self.edges[0])
        t -= self.edges[0]
        t *= 1.0 / w
        xp.floor(t, out=t)
        xp.clip(t, -1, nb, out=t)
        t += 1
        counts = _np(xp.bincount(t.astype(xp.int64), minlength=nb + 2), xp)
        self.under += int(counts[0])
        self.over += int(counts[nb + 1])
        self.hist += counts[1 : nb + 1]

    # ---------------------------------------------------------------- results
    @property
    def clipped_low_fraction(self) -> float:
        return self.clipped_low / self.n if self.n else float("nan")

    @property
    def clipped_high_fraction(self) -> float:
        return self.clipped_high / self.n if self.n else float("nan")

    @property
    def levels_used(self) -> Optional[int]:
        return None if self.level_counts is None else int(np.count_nonzero(self.level_counts))

    @property
    def levels_used_fraction(self) -> float:
        used = self.levels_used
        return float("nan") if used is None or not self.n else used / self.n_levels

    @property
    def effective_bits(self) -> float:
        """``log2`` of the span of output levels that occurred (see the module docstring)."""
        if self.level_counts is None or not self.n:
            return float("nan")
        nz = np.flatnonzero(self.level_counts)
        return float(math.log2(nz[-1] - nz[0] + 1))

    def merge(self, other: "QuantizerUse") -> None:
        """Add the counts of another record of the same quantizer."""
        self.n += other.n
        self.clipped_low += other.clipped_low
        self.clipped_high += other.clipped_high
        if self.level_counts is not None and other.level_counts is not None:
            self.level_counts += other.level_counts
        self.hist += other.hist
        self.under += other.under
        self.over += other.over

    def summary(self) -> dict[str, Any]:
        return dict(bits=self.bits, lo=self.lo, hi=self.hi, n=self.n, clipped_low=self.clipped_low_fraction,
                    clipped_high=self.clipped_high_fraction, levels_used=self.levels_used,
                    levels=self.n_levels, levels_used_fraction=self.levels_used_fraction,
                    effective_bits=self.effective_bits)


class ADCUse:
    """ADC use of one layer: one :class:`QuantizerUse` per distinct ADC (weight slices may differ)."""

    def __init__(self) -> None:
        self.per_adc: list[tuple[str, QuantizerUse]] = []  # (label, use)

    def add(self, label: str, quantizer, values, xp) -> None:
        for lab, use in self.per_adc:
            if lab == label and use.matches(quantizer):
                use.add(values, xp)
                return
        use = QuantizerUse(quantizer)
        use.add(values, xp)
        self.per_adc.append((label, use))

    @property
    def n(self) -> int:
        return sum(u.n for _, u in self.per_adc)

    def _frac(self, attr: str) -> float:
        n = self.n
        return sum(getattr(u, attr) for _, u in self.per_adc) / n if n else float("nan")

    @property
    def clipped_low_fraction(self) -> float:
        return self._frac("clipped_low")

    @property
    def clipped_high_fraction(self) -> float:
        return self._frac("clipped_high")

    @property
    def main(self) -> Optional[QuantizerUse]:
        """The ADC that converted the most samples (the only one for unsliced layers)."""
        return max((u for _, u in self.per_adc), key=lambda u: u.n, default=None)

    @property
    def levels_used_fraction(self) -> float:
        """Mean over the layer's ADCs (weighted by conversions) of the fraction of levels used."""
        n = self.n
        if not n:
            return float("nan")
        return sum(u.levels_used_fraction * u.n for _, u in self.per_adc) / n

    @property
    def effective_bits(self) -> float:
        n = self.n
        if not n:
            return float("nan")
        return sum(u.effective_bits * u.n for _, u in self.per_adc) / n


@dataclass
class CoreObservation:
    """What one NeuralCore reported while observed."""

    name: str
    n_in: int
    n_out: int
    dtype: str
    rows: int = 0  # MVMs (input vectors) compared with the ideal outputs (none with errors = False)
    sum_err2: float = 0.0  # sum over rows and outputs of (Y - Y_ideal)**2
    sum_ref2: float = 0.0  # sum of Y_ideal**2
    dac: Optional[QuantizerUse] = None
    adc: ADCUse = field(default_factory=ADCUse)
    icol_n: int = 0  # column currents checked against Icol_max
    icol_clipped: int = 0
    samples: Optional[np.ndarray] = None  # (k, n_in) float32 input rows, a uniform sample of all rows
    _keys: Optional[np.ndarray] = None

    @property
    def mse(self) -> float:
        n = self.rows * self.n_out
        return self.sum_err2 / n if n else float("nan")

    @property
    def relative_rms_error(self) -> float:
        """``sqrt(sum (Y - Y_ideal)**2 / sum Y_ideal**2)`` over every output of every MVM."""
        if not self.rows:
            return float("nan")
        if self.sum_ref2 == 0:
            return 0.0 if self.sum_err2 == 0 else float("inf")
        return math.sqrt(self.sum_err2 / self.sum_ref2)

    @property
    def snr_db(self) -> float:
        """``10 log10(sum Y_ideal**2 / sum (Y - Y_ideal)**2)``; inf when the output is exact."""
        r = self.relative_rms_error
        if r != r:
            return float("nan")
        return float("inf") if r == 0 else -20.0 * math.log10(r) if math.isfinite(r) else float("-inf")

    @property
    def icol_clipped_fraction(self) -> float:
        return self.icol_clipped / self.icol_n if self.icol_n else float("nan")


class _ArrayTap:
    """What one NumericCore reports to (its layer's observation, its weight slice)."""

    __slots__ = ("tap", "label", "slice", "columns")

    def __init__(self, tap: "_CoreTap", s: int, columns=None) -> None:
        self.tap, self.label, self.slice, self.columns = tap, f"slice{s}", s, columns

    def adc(self, values, quantizer, input_bit=None) -> None:
        """ADC inputs ``values`` (raw column units) about to be converted by ``quantizer`` (``input_bit``:
        None for all input bits together, else the bit / input slice)."""
        if self.tap.rec.adc and quantizer.enabled:
            self.tap.obs.adc.add(self.label, quantizer, values, self.tap.xp)
        sink = self.tap.rec.sink
        if sink is not None:
            sink.adc_inputs(self.tap.obs.name, self.slice, self.columns, values, input_bit)

    def current_limit(self, currents, limit: float) -> None:
        """Column currents about to be clipped at ``+-limit``."""
        xp = self.tap.xp
        self.tap.obs.icol_n += int(currents.size)
        self.tap.obs.icol_clipped += int(xp.count_nonzero(xp.abs(currents) > limit))


class _CoreTap:
    """What one NeuralCore reports to."""

    def __init__(self, rec: "Recorder", core, name: str) -> None:
        self.rec, self.core, self.xp = rec, core, core.xp
        self.obs = CoreObservation(name=name, n_in=int(core.n_in), n_out=int(core.n_out), dtype=str(core.dtype))
        q = core.input_quantizer if rec.dac else None
        if q is not None:
            self.obs.dac = QuantizerUse(q)

    def array(self, s: int, columns=None) -> Optional[_ArrayTap]:
        """The tap of one NumericCore of weight slice ``s`` holding outputs ``columns`` (partitions of a slice
        share its ADC); None (the array reports nothing) when only raw inputs are wanted: ``adc`` and
        ``errors`` off and a sink without ``adc_inputs``."""
        rec = self.rec
        if not rec.adc and not rec.errors and not hasattr(rec.sink, "adc_inputs"):
            return None
        return _ArrayTap(self, s, columns)

    def layer(self, X, Y) -> None:
        """One batch of MVMs: inputs ``X`` (M, n_in) before the DAC, outputs ``Y`` (M, n_out)."""
        xp, obs = self.xp, self.obs
        if self.rec.errors:
            ref = self.core.ideal(X)
            Y = Y.astype(xp.float64)
            post = self.rec.post.get(obs.name)
            if post is not None:
                ref, Y = post(ref, xp), post(Y, xp)
            d = Y - ref
            obs.sum_err2 += float(xp.sum(d * d))
            obs.sum_ref2 += float(xp.sum(ref * ref))
            obs.rows += int(X.shape[0])
        if self.rec.sink is not None:
            self.rec.sink.inputs(obs.name, X)
        if obs.dac is not None:
            obs.dac.add(X, xp)
        if self.rec.samples > 0:
            self._sample(X)

    def _sample(self, X) -> None:
        """Reservoir sample of input rows: keep the rows with the smallest random keys."""
        obs, k = self.obs, self.rec.samples
        M = int(X.shape[0])
        keys = self.rec.rng.random(M)
        if obs._keys is not None and len(obs._keys) >= k:
            cand = np.flatnonzero(keys < obs._keys.max())
        else:
            cand = np.arange(M)
        if len(cand) > k:
            cand = cand[np.argpartition(keys[cand], k - 1)[:k]]
        if len(cand) == 0:
            return
        rows = _np(X[self.xp.asarray(cand)], self.xp).astype(np.float32)
        if obs.samples is None:
            obs.samples, obs._keys = rows, keys[cand]
        else:
            obs.samples = np.concatenate([obs.samples, rows])
            obs._keys = np.concatenate([obs._keys, keys[cand]])
        if len(obs._keys) > k:
            keep = np.argpartition(obs._keys, k - 1)[:k]
            obs.samples, obs._keys = obs.samples[keep], obs._keys[keep]


def neural_cores(sim) -> Iterator[tuple[str, str, Any]]:
    """``(layer name, core name, NeuralCore)`` for every analog NeuralCore of a simulation, in ``sim.cores`` order.

    Works for any host whose ``cores`` maps layer names to a NeuralCore or a
    tuple of them (GRU cells), also when a wrapper holds it as ``.core`` (witin
    layers on arrays); digital layers and witin chip layers are skipped.
    """
    from simulator.cores.neural import NeuralCore

    for layer_name, cores in sim.cores.items():
        for core in cores if isinstance(cores, tuple) else (cores,):
            core = core if isinstance(core, NeuralCore) else getattr(core, "core", None)
            if isinstance(core, NeuralCore):
                yield layer_name, core.name, core


class Recorder:
    """Collects :class:`CoreObservation` objects while attached to a simulation's cores.

    ``adc``/``dac``: record ADC conversions / DAC codes; ``layers``: layer or
    core names to observe (None = every analog core); ``samples``: input rows
    kept per core (0 = none); ``seed``: of the sampling generator; ``post``:
    ``{core name: f}``, an elementwise function (``f(y, xp)``) applied to the
    outputs and the ideal outputs before they are compared; ``errors``: compare
    with the ideal outputs at all (False: no error statistics, one matmul per
    batch less); ``sink``: an object that also gets every raw value, e.g. for
    streaming histograms (profiling) -- ``sink.inputs(core, X)`` per MVM batch
    (inputs before the DAC, algorithmic units, shape (M, n_in)) and
    ``sink.adc_inputs(core, s, columns, values, input_bit)`` before every ADC
    conversion (raw column units, shape (M, len(columns)); ``s``: weight slice,
    ``columns``: the core's outputs that array holds, ``input_bit``: None or
    the input bit / slice), also when the ADC is off (``adc_bits = 0``). With
    ``adc`` and ``errors`` off and a sink without ``adc_inputs`` the arrays
    report nothing (no ADC or Icol_max counts): only the raw inputs are taken.
    """

    def __init__(self, *, adc: bool = True, dac: bool = True, layers: Optional[Iterable[str]] = None,
                 samples: int = 0, seed: int = 0, post: Optional[dict] = None, errors: bool = True,
                 sink: Any = None) -> None:
        self.adc, self.dac = bool(adc), bool(dac)
        self.errors, self.sink = bool(errors), sink
        self.post = dict(post or {})
        self.layers = None if layers is None else list(layers)
        self.samples = int(samples)
        self.rng = np.random.default_rng(seed)
        self.observations: dict[str, CoreObservation] = {}
        self._attached: list = []

    def __getitem__(self, name: str) -> CoreObservation:
        return self.observations[name]

    def __iter__(self):
        return iter(self.observations)

    def items(self):
        return self.observations.items()

    def attach(self, sim) -> "Recorder":
        """Attach to every selected NeuralCore of ``sim`` (see :func:`neural_cores`)."""
        from simulator.errors import ConfigError

        chosen = []
        for layer_name, core_name, core in neural_cores(sim):
            if self.layers is None or layer_name in self.layers or core_name in self.layers:
                chosen.append((core_name, core))
        if self.layers is not None:
            known = {n for l, c, _ in neural_cores(sim) for n in (l, c)}
            missing = [n for n in self.layers if n not in known]
            if missing:
                raise ConfigError(f"observe(layers=...): {', '.join(map(repr, missing))} names no analog layer; "
                                  f"analog layers: {', '.join(sorted(known)) or 'none'}")
        for core_name, core in chosen:
            tap = _CoreTap(self, core, core_name)
            self.observations[core_name] = tap.obs
            core.set_observer(tap)
            self._attached.append(core)
        return self

    def detach(self) -> None:
        for core in self._attached:
            core.set_observer(None)
        self._attached = []


@contextlib.contextmanager
def observe(sim, **kwargs) -> Iterator[Recorder]:
    """Context manager: a :class:`Recorder` attached to ``sim`` for the duration of the block."""
    rec = Recorder(**kwargs).attach(sim)
    try:
        yield rec
    finally:
        rec.detach()
