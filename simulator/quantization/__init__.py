"""Standalone weight quantizers and level-to-conductance maps.

* :mod:`~simulator.quantization.uniform` -- equally spaced symmetric levels
  (``uniform_levels``, ``quantize_uniform``).
* :mod:`~simulator.quantization.lloyd` -- Lloyd-Max (generalized
  density-aware) quantizer fitted to a layer's weights (``lloyd_max``,
  ``quantize_lloyd``, ``LloydResult``).
* :mod:`~simulator.quantization.mapping` -- non-uniform levels onto
  normalized conductances (BALANCED one/two-sided, unified reference, OFFSET)
  and how to decode weights from conductances.
* :mod:`~simulator.quantization.noise` -- weight-noise injection
  ``N(0, (delta * max|W_q|)**2)`` (``relative_max_noise``).
"""
from simulator.quantization.lloyd import LloydResult, lloyd_max, quantize_lloyd
from simulator.quantization.mapping import (
    BalancedMapping,
    OffsetMapping,
    balanced_decode,
    balanced_one_sided,
    balanced_two_sided,
    balanced_unified_reference,
    balanced_weight_scale,
    offset_decode,
    offset_linear,
)
from simulator.quantization.noise import relative_max_noise
from simulator.quantization.uniform import quantize_uniform, uniform_levels

__all__ = [
    "uniform_levels",
    "quantize_uniform",
    "LloydResult",
    "lloyd_max",
    "quantize_lloyd",
    "BalancedMapping",
    "OffsetMapping",
    "balanced_unified_reference",
    "balanced_one_sided",
    "balanced_two_sided",
    "balanced_weight_scale",
    "balanced_decode",
    "offset_linear",
    "offset_decode",
    "relative_max_noise",
]
