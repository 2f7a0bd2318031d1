"""WrapperCore: one row partition of a layer's weight matrix.

Builds the conductance representation of its normalized weights ``w``
(BALANCED one_sided / two_sided, OFFSET with digital or analog unit-column
offset, ``Nslices`` weight bit slices) as one NumericCore per slice, and
recombines their digitized outputs into ``w . x`` (normalized units: the
layer's NeuralCore multiplies by ``W_max * x_scale``):

* BALANCED: ``D_i = out_i / (1 - G_min)`` (the device difference was taken in analog);
* OFFSET, digital offset: ``D_i = (out_i - G_min * sum(x)) / (1 - G_min)`` and
  ``offset * sum(x)`` is subtracted digitally;
* OFFSET, analog offset: ``D = (out - out_unit) / (1 - G_min)`` where the unit
  column holds the conductance of a zero weight (per slice: that slice's part
  of the zero weight's encoding, see :func:`unit_fractions`);

then ``w . x = sum_i gains_i * D_i`` (shift-and-add over slices).
"""
from __future__ import annotations

from simulator.backend import as_streams, backend_of
from simulator.cores.adc_range import AdcRange, LayerUnits
from simulator.cores.mapping import SliceEncoding
from simulator.cores.numeric import ArrayOptions, InputSlicing, NumericCore
from simulator.errors import ConfigError


def unit_fractions(enc: SliceEncoding) -> list[float]:
    """Conductance fraction of the analog-offset unit column in every slice.

    The unit column holds a zero weight: ``sum_i gains_i * u_i = offset``. One
    slice: ``u = offset / gain``. Bit-sliced (uniform levels): the zero weight
    is the offset-encoded integer ``2**(B-1)``, whose base-``2**b`` digits are
    the slices' levels (e.g. eq. 6.8: level 2 in the top 2-bit slice, 0 below).
    """
    if enc.n_slices == 1:
        if enc.gains[0] == 0:
            raise ConfigError(
                "OFFSET with digital_offset = false: the weights have a single level (gain 0), so no unit column "
                "can represent their offset; set digital_offset = true"
            )
        u = enc.offset / enc.gains[0]
        if not -1e-12 <= u <= 1 + 1e-12:
            raise ConfigError(
                f"OFFSET with digital_offset = false: a zero weight lies outside the weight levels' range (unit column "
                f"at conductance fraction {u:.3g}, outside [0, 1]); set digital_offset = true"
            )
        return [min(max(u, 0.0), 1.0)]
    top, b = enc.device_levels, enc.bits_per_slice
    code = int(round(enc.offset * top / enc.gains[0]))  # offset in units of the lowest slice's level
    return [((code >> (b * i)) & (2**b - 1)) / top for i in range(enc.n_slices)]


class WrapperCore:
    """The NumericCores of one block of a layer's matrix and the recombination of their outputs."""

    def __init__(
        self, encoding: SliceEncoding, *, units: LayerUnits, digital_offset: bool, options: ArrayOptions, devices,
        xp, rng, dtype, name: str = "", adc_range: AdcRange | None = None, input_grid: tuple | None = None,
    ) -> None:
        """``encoding``: this block's conductance slices (:mod:`simulator.cores.mapping`); ``units``: the
        layer's units (the slice gains used to recombine); ``adc_range``: the layer's ADC policy, which
        gives every array its ADC (None: no ADCs); ``input_grid``: ``(unit, kmin, kmax)`` when the inputs are
        integer DAC codes (see NumericCore), else None."""
        self.xp, self.name, self.opt = xp, name, options
        self.encoding = enc = encoding
        self.style = enc.style
        #: digitized output of slice i -> normalized ``w . x``: the layer's one gain (LayerUnits.slice_gains)
        self.slice_gains = units.slice_gains
        self.analog_offset = self.style == "OFFSET" and not digital_offset
        v_units = unit_fractions(enc) if self.analog_offset else [None] * enc.n_slices
        streams = as_streams(rng, backend_of(xp))
        self.cores = []
        for i in range(enc.n_slices):
            core_name = f"{name}/slice{i}"
            n_cols = int(enc.pos[i].shape[1]) + (1 if self.analog_offset else 0)
            adc = None if adc_range is None else adc_range.converter(i, n_cols, streams, core_name, xp)
            self.cores.append(NumericCore(
                enc.pos[i], enc.neg[i] if enc.neg is not None else None, v_units[i],
                options=options, devices=devices, xp=xp, rng=streams, dtype=dtype, name=core_name, adc=adc,
                levels=enc.device_levels, input_grid=input_grid,
            ))

    @property
    def n_rows(self) -> int:
        return self.cores[0].n_rows

    def mvm(self, x, x_sum, slicing: InputSlicing, row0: int = 0, scale: float = 1.0):
        """``scale * (w . x)`` (M, C) from inputs ``x`` (voltages or DAC codes, see NumericCore.mvm).

        ``x_sum`` is ``sum(x_hw)`` over this partition's rows, shape (M, 1),
        used by the digital offset subtraction; ``row0`` is the global MVM row
        of ``x[0]`` (keys the read noise); ``scale`` (the caller's units, e.g.
        ``W_max * x_scale``) rides on the slice gains, saving a pass over the output.
        """
        Gmin = self.opt.Gmin
        enc = self.encoding
        y = None
        for gain, core in zip(self.slice_gains, self.cores):
            g = gain * scale
            if self.style != "OFFSET":  # BALANCED: the array applies the gain while its outputs are in cache
                term = core.mvm(x, slicing, row0, scale=g)
            else:
                out = core.mvm(x, slicing, row0)
                if self.analog_offset:
                    d = out[:, :-1] - out[:, -1:]
                else:
                    d = out - Gmin * x_sum if Gmin else out
                term = d * g
            if y is None:
                y = term
            else:
                y += term
        if self.style == "OFFSET" and not self.analog_offset:
            y = y - (enc.offset * scale) * x_sum
        return y
