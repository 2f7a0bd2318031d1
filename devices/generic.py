"""Generic ``"alpha"`` models (manual 7.2.1 and 7.4.1).

Programming error and read noise are Gaussian with standard deviation
``alpha * G_max`` (state-independent; ``G_max = 1``) or ``alpha * G``
(state-proportional), chosen by ``proportional_error`` / ``proportional_noise``.
"""
from __future__ import annotations

from devices.base import DeviceModel


class AlphaModel(DeviceModel):
    """Generic Gaussian error/noise: sigma = alpha (state-independent) or alpha * G (proportional).

    Normalized units (G_max = 1); manual 7.2.1 / 7.4.1. Read noise is unclipped (output-equivalent).
    """

    name = "alpha"
    provides = frozenset({"error", "noise"})

    def programming_sigma(self, G, xp):
        a = self.params.alpha_error
        return a * G if self.params.proportional_error else xp.full_like(G, a)

    def programming_error(self, G, xp, rng):
        if self.params.alpha_error == 0:
            return G
        return G + self.programming_sigma(G, xp) * rng.standard_normal(G.shape, dtype=G.dtype)

    def read_noise_sigma(self, G, xp):
        a = self.params.alpha_noise
        return a * G if self.params.proportional_noise else xp.full_like(G, a)
