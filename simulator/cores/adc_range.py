"""The ADC range policy of a layer: one object that knows the units and converts once (manual 9.3).

Three unit systems meet at a layer's ADCs:

* *raw* array units -- what an ADC digitizes: column currents in ``G_max *
  V_full`` (BALANCED: the difference of the two device columns);
* *normalized* units -- ``w . x`` with ``w = W / W_max`` and ``x = X / x_scale``;
* *algorithmic* units -- the model's own layer outputs ``W . X``.

:class:`LayerUnits` holds the constants that relate them for one layer (built
by its NeuralCore, which owns ``W_max``, ``x_scale`` and the encoding): a
digitized column output ``D`` of weight slice ``i`` is worth ``D *
slice_gains[i]`` in normalized units and ``D * slice_gains[i] * scale`` in
algorithmic units (``slice_gains[i] = gains_i / (1 - G_min)``, ``scale = W_max *
x_scale``). The WrapperCores recombine their slices with exactly these
factors, so there is one gain.

:class:`AdcRange` turns the configured ``adc_range_option`` into per-slice
ADC limits in raw units, once, at construction:

* ``max`` -- the largest possible output, ``rows * (1 - G_min)`` (BALANCED) or
  ``rows`` (OFFSET), signed when the outputs can be negative; with
  ``subtract_current_in_xbar = false`` one device plane alone (``rows``);
* ``granular`` -- the level step is one conductance step of a slice,
  ``(1 - G_min) / device_levels`` (9.3.3);
* ``calibrated`` -- ``adc_xbar_range`` (raw units, per slice), per-slice
  exponents ``C_i`` (limits ``y_max * 2**-C_i``, eqs. 9.1-9.2), or one range in
  algorithmic units (``adc_range`` or a calibration file; a file may store it
  in normalized units), divided by the slice gain.

It then hands every array its converter (:meth:`AdcRange.converter`); the
data flow is top to bottom: NeuralCore -> WrapperCore -> NumericCore.
"""
from __future__ import annotations

import math
from dataclasses import dataclass

from simulator.circuits.converters import make_adc
from simulator.errors import CalibrationError
from simulator.quantization.uniform import UniformQuantizer


@dataclass(frozen=True)
class LayerUnits:
    """How one layer's raw array outputs relate to its normalized and algorithmic outputs."""

    Gmin: float  #: normalized minimum conductance, 1 / On_off_ratio
    Wmax: float  #: weight scale W_max (algorithmic weight units)
    x_scale: float  #: input full scale (algorithmic activation units)
    gains: tuple  #: the encoding's per-slice recombination gains (SliceEncoding.gains)
    device_levels: int | None  #: conductance steps of one slice (None: continuous)
    rows_max: int  #: rows of the tallest array of the layer
    style: str  #: "BALANCED" or "OFFSET"
    input_signed: bool  #: whether the inputs can be negative

    @property
    def n_slices(self) -> int:
        return len(self.gains)

    @property
    def scale(self) -> float:
        """Normalized -> algorithmic units: ``W_max * x_scale``."""
        return self.Wmax * self.x_scale

    @property
    def slice_gains(self) -> tuple:
        """Raw digitized output of slice ``i`` -> normalized units: ``gains_i / (1 - G_min)``."""
        inv = 1.0 / (1.0 - self.Gmin)
        return tuple(g * inv for g in self.gains)

    def algorithmic_gain(self, i: int = 0) -> float:
        """Raw output of slice ``i`` -> algorithmic units (the factor the wrappers apply)."""
        return self.slice_gains[i] * self.scale

    @property
    def output_signed(self) -> bool:
        return self.style == "BALANCED" or self.input_signed

    def y_max(self) -> float:
        """Largest possible array output (raw units): every input and weight at full scale."""
        full = 1.0 - self.Gmin if self.style == "BALANCED" else 1.0
        return self.rows_max * full


class AdcRange:
    """Per-slice ADC limits (raw units) for the configured ``adc_range_option``, and each array's ADC.

    ``hw``: the layer's config (``adc_bits``, ``adc_range_option``,
    ``adc_range``, ``adc_exponents``, ``adc_xbar_range``, ``adc_type``,
    ``adc_params``, ``subtract_current_in_xbar``); ``calibration``: the layer's
    entry of a calibration file (dict with ``range``, ``exponents``, ``units``)
    or None. With ``adc_bits = 0`` no limits are needed and none are computed
    until :attr:`limits` is asked for.
    """

    def __init__(self, hw, units: LayerUnits, calibration=None, name: str = "") -> None:
        self.hw, self.units, self.calibration, self.name = hw, units, calibration, name
        self.bits = int(hw.adc_bits)
        self.option = hw.adc_range_option
        self.adc_type = getattr(hw, "adc_type", "generic")
        self._limits = None
        #: one UniformQuantizer per weight slice (empty when adc_bits = 0)
        self.quantizers = [UniformQuantizer(self.bits, lo, hi) for lo, hi in self.limits] if self.bits > 0 else []

    @property
    def limits(self) -> list[tuple[float, float]]:
        """ADC (lo, hi) in raw units for every weight slice."""
        if self._limits is None:
            self._limits = self._compute()
        return self._limits

    def converter(self, s: int, n_cols: int, streams, core_name: str, xp):
        """The ADC of one array holding weight slice ``s``: its quantizer, or a circuit model (None: no ADC).

        A circuit ADC draws its mismatches from the array's keyed stream ``("adc", core_name)``.
        """
        if self.bits == 0:
            return None
        q = self.quantizers[s]
        if self.adc_type == "generic":
            return q
        return make_adc(self.adc_type, q.bits, q.lo, q.hi, n_cols=n_cols, params=self.hw.adc_params,
                        rng=streams.generator("adc", core_name), xp=xp)

    # ------------------------------------------------------------ the options
    def _compute(self) -> list[tuple[float, float]]:
        if self.option == "max":
            return self._max()
        if self.option == "calibrated" and getattr(self.hw, "adc_xbar_range", None) is not None:
            return self._xbar_ranges()
        if self.option == "granular":
            return self._granular()
        return self._calibrated()

    def _max(self) -> list[tuple[float, float]]:
        u = self.units
        if not getattr(self.hw, "subtract_current_in_xbar", True) and u.style == "BALANCED":
            full = u.rows_max  # one device plane alone: up to rows * G_max, signed with signed inputs
            return [(-full if u.input_signed else 0.0, full)] * u.n_slices
        ymax = u.y_max()
        return [(-ymax if u.output_signed else 0.0, ymax)] * u.n_slices

    def _xbar_ranges(self) -> list[tuple[float, float]]:
        S = self.units.n_slices
        ranges = [tuple(float(v) for v in r) for r in self.hw.adc_xbar_range]  # raw units, per slice
        if len(ranges) == 1 and S > 1:
            ranges = ranges * S
        if len(ranges) != S:
            raise CalibrationError(f"layer {self.name!r}: adc_xbar_range has {len(ranges)} ranges, expected "
                                   f"one per weight slice (Nslices = {S})")
        return ranges

    def _granular(self) -> list[tuple[float, float]]:
        u = self.units
        delta = (1.0 - u.Gmin) / u.device_levels
        B = self.bits
        if u.output_signed:
            return [(-(2 ** (B - 1) - 1) * delta, (2 ** (B - 1) - 1) * delta)] * u.n_slices
        return [(0.0, (2**B - 1) * delta)] * u.n_slices

    def _calibrated(self) -> list[tuple[float, float]]:
        """Inline config values first (adc_exponents, adc_range), then the calibration file."""
        hw, u, name, calib = self.hw, self.units, self.name, self.calibration
        S = u.n_slices
        exps, rng_alg = hw.adc_exponents, hw.adc_range
        if exps is None and rng_alg is None and calib is not None:
            if S > 1 or calib.get("exponents") is not None:
                exps = calib.get("exponents")
            rng_alg = calib.get("range")
        if S > 1 or (exps is not None and rng_alg is None):  # exponents C_i (eqs. 9.1-9.2), also unsliced
            if exps is None:
                raise CalibrationError(
                    f"layer {name!r}: adc_range_option = 'calibrated' with Nslices = {S} needs per-slice "
                    f"exponents C_i (layers.{name}.adc_exponents or a calibration file from `xbarsim calibrate`)"
                )
            if len(exps) != S:
                raise CalibrationError(f"layer {name!r}: {len(exps)} ADC exponents given, expected Nslices = {S}")
            ymax, signed = u.y_max(), u.output_signed
            return [(-ymax * 2.0**-c if signed else 0.0, ymax * 2.0**-c) for c in exps]
        if rng_alg is None:
            raise CalibrationError(
                f"layer {name!r}: adc_range_option = 'calibrated' but no ADC range is given for it "
                f"(layers.{name}.adc_range, calibration_file, or run `xbarsim calibrate`)"
            )
        lo, hi = (float(v) for v in rng_alg)
        if not (math.isfinite(lo) and math.isfinite(hi) and lo < hi):
            raise CalibrationError(f"layer {name!r}: calibrated ADC range ({lo}, {hi}) must be finite with min < max")
        if calib is not None and calib.get("units") == "normalized" and hw.adc_range is None:
            g = u.slice_gains[0]  # normalized w.x -> raw
        else:
            g = u.algorithmic_gain(0)  # algorithmic -> raw
        return [(lo / g, hi / g)]
