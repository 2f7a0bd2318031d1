"""Hypothetical device with parabolic read noise (manual 7.4.2).

Source: the example custom read-noise model of CrossSim v2.0
(``noise_model = "parabolic"``); it describes no real device and is meant as a
template and for sensitivity studies.

Units: the normalized conductance maps to ``G_nS = G_max * G`` with
``G_max = 1000 nS`` (override: ``device_params.parabolic_Gmax_nS``). The read
noise standard deviation is ``sigma(G) = max(a G^2 + b G + c, 0)`` nS with
``(a, b, c) = (2e-4 /nS, 2e-2, 10 nS)`` (override:
``device_params.parabolic_coeffs = [a, b, c]``); normalized
``sigma_G = sigma(G_max G) / G_max`` (0.01 at G = 0, 0.23 at G = 1 by default).

The noise is Gaussian, re-sampled on every MVM and not clipped (a noisy
conductance may be negative), so it can be drawn exactly at the column output:
``read_noise_output_equivalent = True``.
"""
from __future__ import annotations

from devices._util import extra_float, extra_floats
from devices.base import DeviceModel

G_MAX_NS = 1000.0
NOISE_FIT = (2e-4, 2e-2, 10.0)


class ParabolicNoise(DeviceModel):
    """Read noise ``sigma = max(2e-4 G^2 + 2e-2 G + 10, 0)`` nS, G in nS (G_nS = 1000 G); hypothetical.

    Gaussian and unclipped (output-equivalent). CrossSim v2.0 example model.
    """

    name = "parabolic"
    provides = frozenset({"noise"})
    read_noise_output_equivalent = True

    def __init__(self, params) -> None:
        super().__init__(params)
        self.G_max = extra_float(params, "parabolic_Gmax_nS", G_MAX_NS, lo=0.0)
        self.coeffs = extra_floats(params, "parabolic_coeffs", NOISE_FIT, 3)

    def read_noise_sigma(self, G, xp):
        a, b, c = self.coeffs
        g = self.G_max * G
        return xp.maximum((a * g + b) * g + c, 0.0) / self.G_max
