"""DAC models: the input quantizers that drive an array's rows.

A DAC is built once per layer over the layer's input range ``[lo, hi]``
(algorithmic activation units) and called on batches of activations:
``x_q = dac(x, xp)``. Every model subclasses :class:`DACModel` and registers
with :func:`register_dac`; :mod:`simulator.circuits.converters` builds them by
name (config key ``dac_type``). All three are ideal quantizers
(:class:`~simulator.quantization.uniform.UniformQuantizer` grids, available as
``model.q``):

* ``generic`` -- the manual's DAC: zero-centred, ``2**bits - 1`` levels with one
  at zero for a signed range, ``2**bits`` for an unsigned one;
* ``quantizer`` -- ``2**bits`` levels from ``lo`` to ``hi`` inclusive (CrossSim's QuantizerDAC);
* ``sign_magnitude`` -- ``2**bits - 1`` levels on ``+-max(|lo|, |hi|)`` (CrossSim's SignMagnitudeDAC).
"""
from __future__ import annotations

from typing import ClassVar

from simulator.circuits.adc_models import IdealGrid, Registry
from simulator.quantization.uniform import symmetric_range

__all__ = ["DACModel", "DAC_MODELS", "register_dac"]

#: DAC models by ``dac_type``; ``@register_dac`` adds a :class:`DACModel` subclass
DAC_MODELS: Registry = Registry()
register_dac = DAC_MODELS.register


class DACModel:
    """Base of all DAC models: ``bits`` over the input range ``[lo, hi]``."""

    name: ClassVar[str] = ""

    def __init__(self, bits: int, lo: float = 0.0, hi: float = 1.0) -> None:
        self.bits, self.lo, self.hi = int(bits), float(lo), float(hi)

    @property
    def enabled(self) -> bool:
        return self.bits > 0

    def __call__(self, x, xp, out=None):  # pragma: no cover - interface
        raise NotImplementedError


@register_dac
class GenericDAC(IdealGrid, DACModel):
    """The manual's DAC (:class:`~simulator.quantization.uniform.UniformQuantizer` over the input range)."""

    name = "generic"

    def __init__(self, bits, lo=0.0, hi=1.0) -> None:
        super().__init__(bits, lo, hi)
        self._set_grid()


@register_dac
class QuantizerDAC(GenericDAC):
    """2**bits levels from lo to hi inclusive (the plain grid of the uniform quantizer)."""

    name = "quantizer"
    zero_centred = False


@register_dac
class SignMagnitudeDAC(GenericDAC):
    """2**bits - 1 levels on +-max(|lo|, |hi|) (sign bit + magnitude)."""

    name = "sign_magnitude"
    levels_range = staticmethod(symmetric_range)
