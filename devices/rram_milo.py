"""HfO2 resistive RAM of Milo et al. (manual 7.2.2; Fig. 7.3c).

Source: V. Milo et al., "Optimized programming algorithms for multilevel RRAM
in hardware neural networks", IEEE International Reliability Physics Symposium
(IRPS) 2021, doi:10.1109/IRPS46558.2021.9405119, Fig. 4 (IGVVA-100 programming
algorithm); fit values as distributed with CrossSim v2.0.

Units: the normalized conductance maps to ``G_uS = G_max * G`` with
``G_max = 225 uS`` (override: ``device_params.rram_Gmax_uS``, at most 225 uS).
The data span 50-225 uS, so ``On_off_ratio`` of about 4.5 is the intended use
(CrossSim suggests 5); a wider range extrapolates the fit and is logged once.

``"RRAM_Milo"`` programming error: Gaussian, linear fit
``sigma(G) = max(a G + b, 0)`` uS with ``a = -9.107e-3`` and ``b = 4.782321 uS``;
normalized ``sigma_G = sigma(G_max G) / G_max``.
"""
from __future__ import annotations

from devices._util import add_gaussian, extra_float, warn_once
from devices.base import DeviceModel

#: largest RRAM conductance of the data set (uS)
G_MAX_US = 225.0
#: smallest RRAM conductance of the data set (uS)
G_MIN_DATA_US = 50.0
#: linear fit of the programming error (uS): a G + b
PROGRAMMING_FIT = (-9.107e-3, 4.782321)


class RRAMMilo(DeviceModel):
    """RRAM programming error: ``sigma = max(-9.107e-3 G + 4.782321, 0)`` uS, G in uS (G_uS = 225 G).

    Milo et al., IRPS 2021, Fig. 4 (IGVVA-100); data cover 50-225 uS.
    """

    name = "RRAM_Milo"
    provides = frozenset({"error"})

    def __init__(self, params) -> None:
        super().__init__(params)
        self.G_max = extra_float(params, "rram_Gmax_uS", G_MAX_US, lo=0.0, hi=G_MAX_US)
        g_min = self.G_max * params.Gmin
        if g_min < G_MIN_DATA_US * (1 - 1e-6):
            warn_once(
                ("RRAM_Milo", self.G_max, params.On_off_ratio),
                "error_model 'RRAM_Milo': Gmin = %.3g uS (On_off_ratio = %g) is below the %g uS covered by the data; "
                "the linear error fit is extrapolated (On_off_ratio <= %.3g stays within the data)",
                g_min, params.On_off_ratio, G_MIN_DATA_US, self.G_max / G_MIN_DATA_US,
            )

    def programming_sigma(self, G, xp):
        a, b = PROGRAMMING_FIT
        return xp.maximum(a * (self.G_max * G) + b, 0.0) / self.G_max

    def programming_error(self, G, xp, rng):
        return add_gaussian(G, self.programming_sigma(G, xp), xp, rng)
