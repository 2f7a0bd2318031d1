"""``"relative_max"`` programming error: Gaussian noise relative to the largest conductance.

The conductance-domain form of the weight-noise injection of ``seeds/004``
(noise-aware training): every weight of a layer gets ``N(0, (delta * max|W_q|)**2)``.
The layer's largest quantized weight ``max|W_q|`` is what the weight scaling
maps to ``G_max`` (``W_max``, 6.2.1), so in normalized conductance units
(``G_max = 1``) every device of the layer gets an independent ``N(0, sigma**2)``
with

    sigma = alpha_error * G_max = alpha_error      (one value for the whole layer)

whatever array, row partition (NrowsMax), weight slice or polarity holds the
device -- not ``max(G)`` of each physical array, which would make the noise
depend on how the layer is split.

(``proportional_error`` must be false: the spread is state-independent by
definition). Translating ``sigma`` to weight units:

* BALANCED one_sided (or the paper's unified reference) with ``G_min = 0``:
  ``G = |w| / max|W_q|`` on one device, so ``sigma`` in weight units is
  ``alpha_error * max|W_q|`` per device -- the paper's ``delta`` is
  ``alpha_error`` **per device**. Both devices of a pair are perturbed
  independently, so the weight ``(G+ - G-) * max|W_q|`` gets
  ``sqrt(2) * alpha_error * max|W_q|``; take ``alpha_error = delta / sqrt(2)``
  to reproduce the paper's per-weight ``delta``. With a proportional
  single-device mapping (``G = w / max|W_q|``, non-negative weights) it is
  exactly ``delta = alpha_error``.
* With ``G_min > 0`` the conductance span of a weight is ``1 - G_min``, so the
  weight-unit std becomes ``alpha_error * max|W_q| / (1 - G_min)`` per device
  (the reference is still ``G_max = 1``).
* BALANCED two_sided: ``G+- = G_mid +- (1 - G_min)/2 * w / max|W_q|`` and the
  decode is ``(G+ - G-) * max|W_q| / (1 - G_min)``: as for one_sided,
  ``alpha_error * max|W_q| / (1 - G_min)`` per device.
* OFFSET (``w = scale * (G - G_min) + offset`` with ``scale = (max l - min l) /
  (1 - G_min)``, about ``2 max|W_q| / (1 - G_min)`` for symmetric levels): the
  weight-unit std is ``alpha_error * scale``, i.e. about twice the BALANCED
  per-device value -- use ``alpha_error = delta (1 - G_min) / 2`` to match.

Also note that the simulator clips programmed conductances to ``[G_min, 1]``,
so devices at (or near) ``G_min`` or ``G_max`` -- e.g. every zero weight in a
one_sided map -- see a truncated, biased error; the paper's unclipped weight
noise is :func:`simulator.quantization.relative_max_noise`, applied in weight
units before mapping.
"""
from __future__ import annotations

from devices.base import DeviceModel
from simulator.errors import DeviceModelError


class RelativeMaxModel(DeviceModel):
    name = "relative_max"
    provides = frozenset({"error"})

    def __init__(self, params) -> None:
        super().__init__(params)
        if params.proportional_error:
            raise DeviceModelError(
                "error_model = 'relative_max' has a state-independent spread alpha_error * max(G); "
                "set proportional_error = false (for a spread proportional to G use error_model = 'alpha')"
            )
        if not params.alpha_error >= 0:
            raise DeviceModelError(f"error_model = 'relative_max' needs alpha_error >= 0, got {params.alpha_error!r}")

    def _sigma(self, G, xp) -> float:
        """``alpha_error * G_max``: the layer's ``max|W_q|`` sits at ``G_max = 1`` (normalized units)."""
        return float(self.params.alpha_error)

    def programming_sigma(self, G, xp):
        return xp.full_like(G, self._sigma(G, xp))

    def programming_error(self, G, xp, rng):
        sigma = self._sigma(G, xp)
        if sigma == 0.0:
            return G
        return G + sigma * rng.standard_normal(G.shape, dtype=G.dtype)
