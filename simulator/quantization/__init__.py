"""Quantizers: what values weights and signals are rounded to.

* :mod:`~simulator.quantization.uniform` -- every equally spaced quantizer: the
  ADC/DAC grids (``UniformQuantizer``), the integer weight codes of the cores
  (``quantize_normalized``) and standalone symmetric weight levels
  (``uniform_levels``, ``quantize_uniform``).
* :mod:`~simulator.quantization.lloyd` -- Lloyd-Max (generalized
  density-aware) quantizer fitted to a layer's weights (``lloyd_max``,
  ``quantize_lloyd``, ``LloydResult``).
* :mod:`~simulator.quantization.noise` -- weight-noise injection
  ``N(0, (delta * max|W_q|)**2)`` (``relative_max_noise``).

How levels are put on conductances (BALANCED / OFFSET, slices, non-uniform
levels) is :mod:`simulator.cores.mapping`.
"""
from simulator.quantization.lloyd import LloydResult, lloyd_max, quantize_lloyd
from simulator.quantization.noise import relative_max_noise
from simulator.quantization.uniform import UniformQuantizer, quantize_uniform, uniform_levels

__all__ = [
    "UniformQuantizer",
    "uniform_levels",
    "quantize_uniform",
    "LloydResult",
    "lloyd_max",
    "quantize_lloyd",
    "relative_max_noise",
]
