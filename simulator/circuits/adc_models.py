"""ADC models: the ideal quantizers and the circuit models of Spear et al.

Reference: M. Spear et al., "The impact of analog-to-digital converter
architecture and variability on analog neural network accuracy", IEEE J.
Exploratory Solid-State Computational Devices and Circuits 9(2), 2023 -- the
analysis CrossSim 3 implements. The equations below are written from the
circuits (charge conservation on the capacitor networks, the closed-loop gain
of an op amp with open-loop gain A and feedback factor beta), not copied code.

Every model subclasses :class:`ADCModel` and registers with
:func:`register_adc`; :mod:`simulator.circuits.converters` builds them by name.

Ideal ADCs
----------
* ``generic`` -- the manual's quantizer (:class:`UniformQuantizer`): a signed
  range has ``2**bits - 1`` levels with one at zero, an unsigned one ``2**bits``.
* ``quantizer`` -- ``2**bits`` levels from ``lo`` to ``hi`` inclusive, whatever
  the sign of ``lo`` (CrossSim's QuantizerADC/QuantizerDAC).
* ``sign_magnitude`` -- a sign bit and ``bits - 1`` magnitude bits: ``2**bits - 1``
  levels on the symmetric range ``+-max(|lo|, |hi|)`` (CrossSim's SignMagnitude*).

Circuit ADCs (``ramp``, ``sar``, ``pipeline``, ``cyclic``)
-------------------------------------------------------
Each maps its range linearly onto a reference ``[-Vref, Vref]`` (``Vref = 1``:
``u = (y - (hi + lo)/2) / ((hi - lo)/2)``, clipped) and produces one of
``2**bits`` codes ``k``, read out as the centre of bin ``k``:
``lo + (k + 1/2) (hi - lo) / 2**bits``. With ideal parts (no mismatch, no
offset, ``gain_db = inf``) every model is the mid-rise quantizer: code
``k = clip(floor((u + 1) 2**(bits-1)), 0, 2**bits - 1)``. Non-idealities
(all standard deviations relative, drawn once per converter):

* capacitor mismatch: a capacitor of nominal size ``c`` unit capacitors has
  the value ``c + sigma_capacitor * sqrt(c) * z`` (unit mismatches add in
  quadrature), ``z ~ N(0, 1)``;
* comparator offset: ``sigma_comparator`` (units of Vref) per comparator;
* finite op-amp gain ``A = 10**(gain_db / 20)``: an output that would ideally
  be ``V`` is ``V / (1 + 1 / (A beta))``.

``ramp`` -- one capacitive DAC (CDAC) for the whole array steps through the
thresholds ``T_1 < ... < T_{2^N - 1}`` (ideally ``T_k = -1 + k 2**(1-N)``);
every column has its own comparator (offset ``o_j``) and stops at the first
threshold above its input: ``k = #{k' : max(T_1..T_k') < u - o_j}``.
CDAC output for code ``k``:

* ``symmetric_cdac = true`` (two's complement): ``s = k - 2**(N-1)``, ``N - 1``
  binary capacitors ``C_i`` (nominal ``2**i``) and a feedback capacitor ``C_f``
  (nominal ``2**(N-1)``): ``T_k = sign(s) S(|s|) / C_f`` with ``S(m) = sum_i
  bit_i(m) C_i``, feedback factor ``beta = C_f / (C_f + S(|s|))``; both signs
  share the capacitors;
* ``symmetric_cdac = false`` (unsigned): ``N`` capacitors, ``C_f`` nominal
  ``2**N``: ``T_k = 2 S(k) / C_f - 1``, ``beta = C_f / (C_f + S(k))``.

``sar`` -- a binary search: ``N`` cycles, each comparing ``u - o`` with the CDAC
output for the trial code ``reg + 2**(N-1-i)`` and keeping the bit when above.
One SAR unit (CDAC + comparator) serves ``group_size`` adjacent columns. The
CDAC is the symmetric one above (``split_cdac = false``) or a split CDAC
(``split_cdac = true``): the ``N - 1`` magnitude bits are divided into an LSB
array of ``L = floor(N/2)`` capacitors plus a unit terminating capacitor and an
MSB array of ``M = N - 1 - L`` capacitors, joined by a bridge capacitor
``C_b`` (nominal ``2**L / (2**L - 1)``). Charge conservation on the two
floating nodes gives the output for LSB bits ``D_L = sum_i bit_i C^L_i`` and
MSB bits ``D_M = sum_j bit_j C^M_j``::

    V = (D_M (C_L + C_b) + C_b D_L) / ((C_L + C_b)(C_M + C_b) - C_b**2)

(``C_L``: all LSB-side capacitors, ``C_M``: the MSB capacitors), which is
``m / 2**(N-1)`` for nominal values; the output is buffered (``beta = 1``).

``pipeline`` -- ``N - 1`` stages of 1.5 bits and a final comparator. Stage
``n`` decides ``d = +1`` if ``V > 1/4 + o_hi``, ``-1`` if ``V < -1/4 + o_lo``,
else 0, and passes on the residue of its multiplying DAC (sampling capacitor
``C2``, feedback capacitor ``C1``, parasitic ``Cpar`` at the op-amp input)::

    V' = ((1 + C2/C1) V - d (C2/C1)) / (1 + 1 / (A beta)),   beta = C1 / (C1 + C2 + Cpar)

(ideally ``2 V - d``). The last comparator gives ``b = [V > o_last]``; the code
with digital redundancy correction is ``k = sum_n d_n 2**(N-2-n) + 2**(N-1) + b - 1``.
``C1 = 1 + sigma_C1 z``, ``C2 = 1 + sigma_C2 z``, ``Cpar = sigma_Cpar z``
(relative to C1), per stage and per ADC; one ADC per ``group_size`` columns.

``cyclic`` -- the pipeline's stage used ``N - 1`` times: one set of
capacitors and comparators per ADC, reused in every cycle.
"""
from __future__ import annotations

import math
from typing import Any, ClassVar, Mapping

import numpy

from simulator.errors import ConfigError
from simulator.quantization.uniform import UniformQuantizer, symmetric_range

__all__ = ["ADCModel", "ADC_MODELS", "register_adc", "Registry", "IdealGrid", "midrise_codes", "symmetric_cdac_thresholds",
           "unsigned_cdac_thresholds", "split_cdac_thresholds"]

class Registry(dict):
    """Converter models by name (``adc_type`` / ``dac_type``); :meth:`register` is the class decorator."""

    def register(self, cls):
        """Make ``cls`` selectable by its ``name``; returns it (use as a class decorator)."""
        self[cls.name] = cls
        return cls


#: ADC models by ``adc_type``; ``@register_adc`` adds an :class:`ADCModel` subclass
ADC_MODELS: Registry = Registry()
register_adc = ADC_MODELS.register


class IdealGrid:
    """The ideal converters: one :class:`UniformQuantizer` grid ``q`` over ``levels_range(lo, hi)``.

    ``zero_centred``: the quantizer's grid (False: plain, see :mod:`simulator.quantization.uniform`).
    """

    zero_centred = True

    @staticmethod
    def levels_range(lo: float, hi: float) -> tuple[float, float]:
        """The range the quantizer's levels span for the requested range."""
        return lo, hi

    def _set_grid(self) -> None:
        self.q = UniformQuantizer(self.bits, *self.levels_range(self.lo, self.hi), zero_centred=self.zero_centred)
        self.lo, self.hi = self.q.lo, self.q.hi

    signed = property(lambda self: self.q.signed)
    step = property(lambda self: self.q.step)
    k_range = property(lambda self: self.q.k_range)

    def __call__(self, y, xp, out=None):
        return self.q(y, xp, out=out)


class ADCModel:
    """Base of all ADC models: ``bits`` over ``[lo, hi]`` for an array of ``n_cols`` columns."""

    name: ClassVar[str] = ""
    #: parameter name -> default
    parameters: ClassVar[dict[str, Any]] = {}

    def __init__(self, bits: int, lo: float, hi: float, *, n_cols: int = 1, params: Mapping[str, Any] | None = None,
                 rng=None, xp=numpy) -> None:
        if bits > 0 and not hi > lo:
            raise ConfigError(f"ADC range must have lo < hi, got ({lo}, {hi})")
        self.bits, self.lo, self.hi, self.n_cols = int(bits), float(lo), float(hi), int(n_cols)
        self.p = dict(self.parameters)
        self.p.update(params or {})
        self.rng = rng

    @classmethod
    def check_parameter(cls, key: str, value) -> None:
        default = cls.parameters[key]
        if isinstance(default, bool):
            if not isinstance(value, bool):
                raise ConfigError(f"adc_params.{key} = {value!r}: expected true or false")
        elif isinstance(default, int):
            if isinstance(value, bool) or not isinstance(value, int) or value < 1:
                raise ConfigError(f"adc_params.{key} = {value!r}: expected an integer >= 1")
        elif isinstance(value, bool) or not isinstance(value, (int, float)) or not (value >= 0) or (
                key != "gain_db" and not math.isfinite(value)):
            raise ConfigError(f"adc_params.{key} = {value!r}: expected a number >= 0")

    @property
    def enabled(self) -> bool:
        return self.bits > 0

    # ---- the nominal level grid, as UniformQuantizer describes it (for diagnostics) --
    # Level k sits at ``lo + k * step`` (``signed`` False) or ``k * step`` (True), k in ``k_range``.
    signed = False

    @property
    def step(self) -> float:
        """Nominal code width: (hi - lo) / 2**bits (the circuit models' bins; subclasses with levels override)."""
        return (self.hi - self.lo) / 2**self.bits if self.bits > 0 else self.hi - self.lo

    @property
    def k_range(self) -> tuple[int, int]:
        return 0, 2**self.bits - 1

    def __call__(self, y, xp, out=None):  # pragma: no cover - interface
        raise NotImplementedError

    # ---- helpers for the circuit models --------------------------------------
    def _normal(self, size, sigma: float):
        """Standard normal draws times sigma, as a NumPy array (zeros when sigma == 0)."""
        if sigma == 0 or self.rng is None:
            return numpy.zeros(size)
        z = self.rng.standard_normal(size)
        z = z.get() if hasattr(z, "get") else z
        return numpy.asarray(z, dtype=numpy.float64) * sigma

    @property
    def gain_factor(self) -> float:
        """Open-loop gain A (inf for gain_db = inf)."""
        g = float(self.p.get("gain_db", math.inf))
        return math.inf if math.isinf(g) else 10.0 ** (g / 20.0)


def midrise_codes(u, bits: int, xp):
    """Ideal codes of a ``2**bits``-bin mid-rise quantizer of ``u`` in [-1, 1]."""
    n = 2**bits
    k = xp.floor((u + 1.0) * (n / 2))
    return xp.clip(k, 0, n - 1)


class _CircuitADC(ADCModel):
    """Shared range mapping of the circuit ADCs (see the module docstring).

    ``in_lo``, ``in_hi``: the input range; ``lo``, ``hi``: the first and last
    output level (``in_lo + step/2``, ``in_hi - step/2``), ``step = (in_hi -
    in_lo) / 2**bits``, so ``lo + k * step`` is the output of code ``k``.
    """

    def __init__(self, bits, lo, hi, **kw) -> None:
        super().__init__(bits, lo, hi, **kw)
        self.in_lo, self.in_hi = self.lo, self.hi
        if self.bits > 0:
            half = 0.5 * (self.in_hi - self.in_lo) / 2**self.bits
            self.lo, self.hi = self.in_lo + half, self.in_hi - half

    @property
    def step(self) -> float:
        return (self.in_hi - self.in_lo) / 2**self.bits if self.bits > 0 else self.in_hi - self.in_lo

    def _to_unit(self, y, xp):
        c, h = 0.5 * (self.in_hi + self.in_lo), 0.5 * (self.in_hi - self.in_lo)
        return xp.clip((y - c) / h, -1.0, 1.0)

    def _from_codes(self, k, xp, out=None):
        res = xp.multiply(k, self.step, out=out)
        res += self.lo
        return res

    def __call__(self, y, xp, out=None):
        if not self.enabled:
            return y
        u = self._to_unit(y, xp)
        k = self.codes(u, xp)
        return self._from_codes(k.astype(y.dtype, copy=False), xp, out=out)

    def codes(self, u, xp):  # pragma: no cover - interface
        raise NotImplementedError

    def _column_offsets(self, n: int):
        return self._normal(n, float(self.p["sigma_comparator"]))

    def _groups(self) -> int:
        return -(-self.n_cols // int(self.p["group_size"]))


# -------------------------------------------------------------------- CDACs
def _cap(nominal, z, sigma):
    """Capacitor of ``nominal`` unit caps with relative unit mismatch ``sigma`` (``z`` standard normal)."""
    return nominal + sigma * numpy.sqrt(nominal) * z


def _bits_of(m, nbits):
    """(len(m), nbits) 0/1 matrix of the binary digits of integers m."""
    m = numpy.asarray(m, dtype=numpy.int64)
    return (m[:, None] >> numpy.arange(nbits)[None, :]) & 1


def symmetric_cdac_thresholds(bits: int, z, sigma: float, gain: float):
    """CDAC outputs for codes 0..2**bits - 1 of the two's-complement CDAC (index 0 unused: -inf).

    ``z``: bits standard normal draws (N - 1 binary capacitors, then the feedback capacitor).
    """
    N = bits
    caps = _cap(2.0 ** numpy.arange(N - 1), z[: N - 1], sigma)
    cf = _cap(2.0 ** (N - 1), z[N - 1], sigma)
    s = numpy.arange(2**N) - 2 ** (N - 1)
    S = _bits_of(numpy.abs(s), N - 1) @ caps
    beta = cf / (cf + S)
    T = numpy.sign(s) * S / cf / (1.0 + 1.0 / (gain * beta))
    T[0] = -numpy.inf
    return T


def unsigned_cdac_thresholds(bits: int, z, sigma: float, gain: float):
    """CDAC outputs for codes 0..2**bits - 1 of the unsigned CDAC (index 0 unused: -inf); ``z``: bits + 1 draws."""
    N = bits
    caps = _cap(2.0 ** numpy.arange(N), z[:N], sigma)
    cf = _cap(2.0**N, z[N], sigma)
    k = numpy.arange(2**N)
    S = _bits_of(k, N) @ caps
    beta = cf / (cf + S)
    T = (2.0 * S / cf - 1.0) / (1.0 + 1.0 / (gain * beta))
    T[0] = -numpy.inf
    return T


def split_cdac_thresholds(bits: int, z, sigma: float, gain: float):
    """Two's-complement thresholds from a split (bridged) CDAC; ``z``: bits + 1 draws (see module docstring)."""
    N = bits
    L = N // 2
    M = N - 1 - L
    cl = _cap(2.0 ** numpy.arange(L), z[:L], sigma)
    ct = _cap(1.0, z[L], sigma)  # LSB terminating capacitor
    cm = _cap(2.0 ** numpy.arange(M), z[L + 1 : L + 1 + M], sigma)
    cb_nom = 2.0**L / (2.0**L - 1.0) if L > 0 else 1.0
    cb = _cap(cb_nom, z[N], sigma)
    CL = cl.sum() + ct
    CM = cm.sum()
    s = numpy.arange(2**N) - 2 ** (N - 1)
    m = numpy.abs(s)
    DL = _bits_of(m & (2**L - 1), L) @ cl if L > 0 else numpy.zeros(len(m))
    DM = _bits_of(m >> L, M) @ cm if M > 0 else numpy.zeros(len(m))
    V = (DM * (CL + cb) + cb * DL) / ((CL + cb) * (CM + cb) - cb**2)
    T = numpy.sign(s) * V / (1.0 + 1.0 / gain)  # buffered output: beta = 1
    T[0] = -numpy.inf
    return T


# ------------------------------------------------------------- ADC models
@register_adc
class GenericADC(IdealGrid, ADCModel):
    """The manual's ADC (:class:`UniformQuantizer`): zero-centred signed levels, 2**bits unsigned ones."""

    name = "generic"

    def __init__(self, bits, lo, hi, **kw) -> None:
        super().__init__(bits, lo, hi, **kw)
        self._set_grid()


@register_adc
class QuantizerADC(GenericADC):
    """2**bits equally spaced levels from lo to hi inclusive (the plain grid of :class:`UniformQuantizer`)."""

    name = "quantizer"
    zero_centred = False


@register_adc
class SignMagnitudeADC(GenericADC):
    """Sign bit + (bits - 1) magnitude bits: 2**bits - 1 levels on +-max(|lo|, |hi|), one at zero."""

    name = "sign_magnitude"
    levels_range = staticmethod(symmetric_range)


@register_adc
class RampADC(_CircuitADC):
    """Ramp ADC: one shared CDAC ramp, one comparator per column (module docstring)."""

    name = "ramp"
    parameters = {"gain_db": 100.0, "sigma_capacitor": 0.0, "sigma_comparator": 0.0, "symmetric_cdac": True}

    def __init__(self, bits, lo, hi, **kw) -> None:
        super().__init__(bits, lo, hi, **kw)
        if not self.enabled:
            return
        sc, gain = float(self.p["sigma_capacitor"]), self.gain_factor
        if self.p["symmetric_cdac"]:
            T = symmetric_cdac_thresholds(self.bits, self._normal(self.bits, 1.0), sc, gain)
        else:
            T = unsigned_cdac_thresholds(self.bits, self._normal(self.bits + 1, 1.0), sc, gain)
        self.thresholds = T  # index k: CDAC output for code k
        self.offsets = self._column_offsets(self.n_cols)
        self._mono = numpy.maximum.accumulate(T[1:])  # first crossing of the ramp

    def codes(self, u, xp):
        v = u - xp.asarray(self.offsets, dtype=u.dtype)
        mono = xp.asarray(self._mono, dtype=u.dtype)
        return xp.searchsorted(mono, v.ravel(), side="left").reshape(v.shape)


@register_adc
class SarADC(_CircuitADC):
    """SAR ADC: binary search against a (split) CDAC; one SAR unit per group_size columns."""

    name = "sar"
    parameters = {"gain_db": 100.0, "sigma_capacitor": 0.0, "sigma_comparator": 0.0, "split_cdac": True,
                  "group_size": 8}

    def __init__(self, bits, lo, hi, **kw) -> None:
        super().__init__(bits, lo, hi, **kw)
        if not self.enabled:
            return
        sc, gain = float(self.p["sigma_capacitor"]), self.gain_factor
        G = self._groups()
        tables = []
        for _ in range(G):
            if self.p["split_cdac"] and self.bits >= 3:
                tables.append(split_cdac_thresholds(self.bits, self._normal(self.bits + 1, 1.0), sc, gain))
            else:
                tables.append(symmetric_cdac_thresholds(self.bits, self._normal(self.bits, 1.0), sc, gain))
        group = numpy.arange(self.n_cols) // int(self.p["group_size"])
        self.thresholds = numpy.stack(tables)[group]  # (C, 2**bits)
        self.offsets = self._normal(G, float(self.p["sigma_comparator"]))[group]
        # With increasing CDAC outputs the binary search ends at the count of thresholds below the input:
        # one sorted search over all columns (each column's table shifted clear of the others) gives it.
        T = self.thresholds[:, 1:]
        self.monotonic = bool(numpy.all(numpy.diff(T, axis=1) > 0)) and bool(numpy.all(numpy.isfinite(T)))
        if self.monotonic:  # per column: -inf, T_1 .. T_{2^N - 1}, +inf (code k spans [edge k, edge k+1))
            n = 2**self.bits
            self._edges = numpy.concatenate([numpy.full((self.n_cols, 1), -numpy.inf), T,
                                             numpy.full((self.n_cols, 1), numpy.inf)], axis=1).ravel()
            self._stride = n + 1

    def codes(self, u, xp):
        """Codes of normalized inputs ``u`` (..., C); with increasing CDAC outputs the binary search ends at the
        count of thresholds below the input, found from the ideal code by stepping to the enclosing thresholds."""
        if not self.monotonic:
            return self.codes_binary_search(u, xp)
        n = 2**self.bits
        v = u.astype(xp.float64) - xp.asarray(self.offsets)
        edges = xp.asarray(self._edges)
        base = xp.arange(self.n_cols, dtype=xp.int64) * self._stride
        k = xp.clip(xp.floor((v + 1.0) * (n / 2)), 0, n - 1).astype(xp.int64)
        for _ in range(n):  # a few steps for small mismatch; bounded by the number of codes
            low = xp.take(edges, k + base) >= v  # input at or below this code's lower threshold: step down
            high = xp.take(edges, k + 1 + base) < v  # above the next threshold: step up
            if not (bool(xp.any(low)) or bool(xp.any(high))):
                break
            k = k - low + high
        return k

    def codes_binary_search(self, u, xp):
        """The SAR's N comparison cycles, cycle by cycle (any CDAC, monotonic or not)."""
        n = 2**self.bits
        C = self.n_cols
        table = xp.asarray(self.thresholds.ravel(), dtype=xp.float64)
        base = xp.arange(C, dtype=xp.int64) * n
        v = u.astype(xp.float64) - xp.asarray(self.offsets)
        reg = xp.zeros(u.shape, dtype=xp.int64)
        for i in range(self.bits):
            trial = reg + 2 ** (self.bits - 1 - i)
            T = xp.take(table, trial + base)
            reg = xp.where(v > T, trial, reg)
        return reg


class _StagedADC(_CircuitADC):
    """1.5-bit-per-stage conversion shared by the pipeline and cyclic ADCs."""

    parameters = {"gain_db": 100.0, "sigma_C1": 0.0, "sigma_C2": 0.0, "sigma_Cpar": 0.0, "sigma_comparator": 0.0,
                  "group_size": 8}
    _stages_share = False

    def __init__(self, bits, lo, hi, **kw) -> None:
        super().__init__(bits, lo, hi, **kw)
        if not self.enabled:
            return
        G = self._groups()
        S = max(self.bits - 1, 0)
        ns = 1 if self._stages_share else S
        C1 = 1.0 + self._normal((G, ns), float(self.p["sigma_C1"]))
        C2 = 1.0 + self._normal((G, ns), float(self.p["sigma_C2"]))
        Cp = self._normal((G, ns), float(self.p["sigma_Cpar"]))
        sc = float(self.p["sigma_comparator"])
        off = self._normal((G, 2 * ns + 1), sc)
        if self._stages_share and S > 1:  # reuse the one stage in every cycle
            C1, C2, Cp = (numpy.repeat(a, S, axis=1) for a in (C1, C2, Cp))
            off = numpy.concatenate([numpy.tile(off[:, :2], (1, S)), off[:, 2:]], axis=1)
        group = numpy.arange(self.n_cols) // int(self.p["group_size"])
        gain = self.gain_factor
        beta = C1 / (C1 + C2 + Cp)
        self.stage_gain = ((1.0 + C2 / C1) / (1.0 + 1.0 / (gain * beta)))[group].T  # (S, C)
        self.stage_ref = ((C2 / C1) / (1.0 + 1.0 / (gain * beta)))[group].T
        self.off_hi = off[:, 0 : 2 * S : 2][group].T
        self.off_lo = off[:, 1 : 2 * S : 2][group].T
        self.off_last = off[:, 2 * S][group]

    def codes(self, u, xp):
        N = self.bits
        dt = u.dtype
        V = u
        k = xp.zeros(u.shape, dtype=dt)
        for n in range(N - 1):
            hi = V > 0.25 + xp.asarray(self.off_hi[n], dtype=dt)
            lo = V < -0.25 + xp.asarray(self.off_lo[n], dtype=dt)
            d = hi.astype(dt) - (lo & ~hi).astype(dt)
            k = k + d * 2.0 ** (N - 2 - n)
            V = xp.asarray(self.stage_gain[n], dtype=dt) * V - d * xp.asarray(self.stage_ref[n], dtype=dt)
        b = (V > xp.asarray(self.off_last, dtype=dt)).astype(dt)
        k = k + 2.0 ** (N - 1) + b - 1.0
        return xp.clip(k, 0, 2**N - 1)


@register_adc
class PipelineADC(_StagedADC):
    """Pipeline ADC of N - 1 independent 1.5-bit stages and a final comparator."""

    name = "pipeline"


@register_adc
class CyclicADC(_StagedADC):
    """Cyclic ADC: one 1.5-bit stage reused N - 1 times."""

    name = "cyclic"
    _stages_share = True
