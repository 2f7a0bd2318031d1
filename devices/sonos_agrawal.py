"""40 nm SONOS in subthreshold operation, refit to 128K measured cells (the fit CrossSim 3.2 uses).

Source: V. Agrawal et al., "Subthreshold operation of SONOS analog memory to
enable accurate low-power neural network inference", IEEE IEDM 2022,
21.7.1-21.7.4 (doi:10.1109/IEDM45625.2022.10019564): Fig. 10(a) (state
dependence of the spread), Fig. 10(b) (mean drift), Fig. 11(b) (read noise).
The numbers below are the paper's fit coefficients as distributed with
CrossSim 3.2; the code is written for xbarsim. The manual (v2.0) SONOS model,
fit to the older TCAS-I 2022 data, stays as ``"SONOS"`` / ``"SONOS_interpolate"``
(devices/sonos.py).

The stored weight is the cell's read current ``I = I_max * G`` in nA
(``G`` normalized, ``G_max = 1``; ``I_max`` from ``device_params.sonos_Imax_nA``,
default 1600 nA; CrossSim sets it as ``Vread / Rmin``). Model ``"SONOS_Agrawal"``:

* mean drift: ``I(t) = I + sum_{n=0}^{10} p_n(t) I**n`` with a 10th-degree
  polynomial fit at t = 1..5 days (none at 0), coefficients interpolated
  linearly in time (extrapolated beyond 5 days);
* spread (programming error and device-to-device variation), Gaussian:
  ``sigma_I = A(t) (1 - exp(-I(t) / B(t)))`` nA, ``A, B`` fit at t = 0..5 days;
  at ``t = 0`` this is the programming error (``provides "error"``);
* read noise: ``sigma_I = A_n (1 - exp(-I / B_n))`` nA, ``A_n = 12.58037``,
  ``B_n = 215.36557``, re-sampled every read.

Validity (as in the paper's data): ``I_max <= 3200`` nA; with drift ``I_max <= 1800`` nA.
"""
from __future__ import annotations

from devices._util import add_gaussian, extra_float, lerp_table
from devices.base import DeviceModel
from simulator.errors import DeviceModelError

#: days at which the fit coefficients were extracted
DAYS = (0.0, 1.0, 2.0, 3.0, 4.0, 5.0)

#: spread fit (A [nA], B [nA]) at each of DAYS
SPREAD_AB = ((19.88665, 176.3115), (25.59102, 186.85544), (28.72753, 193.56834), (31.04318, 198.90332),
             (33.76214, 204.77023), (34.57909, 207.34309))

#: mean-drift polynomial coefficients p_0..p_10 (I and I(t) - I in nA) at each of DAYS
DRIFT_POLY = (
    (0.0,) * 11,
    (1.72684e-01, 5.72552e-02, -6.85715e-04, 3.50271e-06, -9.37682e-09, 1.40575e-11, -1.19803e-14, 5.41293e-18,
     -8.85448e-22, -1.66869e-25, 5.95180e-29),
    (2.50712e-01, 6.62195e-02, -6.83218e-04, 2.99442e-06, -6.78255e-09, 7.70482e-12, -3.04983e-15, -2.15919e-18,
     2.94617e-21, -1.23359e-24, 1.85329e-28),
    (-1.75300e-02, 9.76883e-02, -9.63791e-04, 4.55551e-06, -1.22391e-08, 1.93786e-11, -1.85899e-14, 1.07659e-17,
     -3.58211e-21, 5.96785e-25, -3.30410e-29),
    (4.03338e-02, 1.03111e-01, -1.04740e-03, 4.83961e-06, -1.28132e-08, 1.99484e-11, -1.85139e-14, 1.00008e-17,
     -2.84944e-21, 3.01008e-25, 1.18747e-29),
    (3.19927e-01, 1.06596e-01, -1.04054e-03, 4.50290e-06, -1.10352e-08, 1.56477e-11, -1.27592e-14, 5.45513e-18,
     -7.26841e-22, -2.43893e-25, 7.14608e-29),
)

#: read-noise fit (A_n [nA], B_n [nA])
READ_NOISE_AB = (12.58037, 215.36557)

I_MAX_LIMIT_NA = 3200.0
I_MAX_DRIFT_LIMIT_NA = 1800.0


def sigma_current(I, A: float, B: float, xp):
    """Saturating exponential ``A (1 - exp(-I / B))`` (nA), never negative."""
    return xp.maximum(A * (1.0 - xp.exp(-I / B)), 0.0)


def poly_drift(I, coeffs, xp):
    """``sum_n c_n I**n`` by Horner's rule (nA)."""
    out = xp.zeros_like(I)
    for c in reversed(coeffs):
        out = out * I + c
    return out


class SONOSAgrawal(DeviceModel):
    """SONOS fit of Agrawal et al. (IEDM 2022): polynomial mean drift, saturating-exponential spread and read noise.

    Units: ``I = I_max G`` nA (``device_params.sonos_Imax_nA``, default 1600); t in days.
    """

    name = "SONOS_Agrawal"
    provides = frozenset({"error", "drift", "noise"})
    drift_valid_days = DAYS[-1]

    def __init__(self, params) -> None:
        super().__init__(params)
        self.I_max = extra_float(params, "sonos_Imax_nA", 1600.0, lo=0.0, hi=I_MAX_LIMIT_NA)

    def _coefficients(self, t_days: float):
        poly = lerp_table(t_days, DAYS, DRIFT_POLY)
        A, B = lerp_table(t_days, DAYS, SPREAD_AB)
        return poly, A, B

    # -- programming error (t = 0) ------------------------------------------------
    def programming_sigma(self, G, xp):
        A, B = SPREAD_AB[0]
        return sigma_current(self.I_max * G, A, B, xp) / self.I_max

    def programming_error(self, G, xp, rng):
        return add_gaussian(G, self.programming_sigma(G, xp), xp, rng)

    # -- drift --------------------------------------------------------------------
    def drift_mean(self, G, t_days: float, xp):
        if t_days <= 0:
            return G
        poly, _, _ = self._coefficients(t_days)
        I = self.I_max * G
        return (I + poly_drift(I, poly, xp)) / self.I_max

    def drift_sigma(self, G, t_days: float, xp):
        _, A, B = self._coefficients(max(t_days, 0.0))
        return sigma_current(self.I_max * self.drift_mean(G, t_days, xp), A, B, xp) / self.I_max

    def drift(self, G, t_days: float, xp, rng):
        if t_days > 0 and self.I_max > I_MAX_DRIFT_LIMIT_NA:
            raise DeviceModelError(
                f"device_params.sonos_Imax_nA = {self.I_max:g}: the SONOS_Agrawal drift fit covers currents up to "
                f"{I_MAX_DRIFT_LIMIT_NA:g} nA (CrossSim: set Rmin and Vread so that Vread / Rmin <= 1.8 uA)"
            )
        return add_gaussian(self.drift_mean(G, t_days, xp), self.drift_sigma(G, t_days, xp), xp, rng)

    # -- read noise ------------------------------------------------------------------
    def read_noise_sigma(self, G, xp):
        A, B = READ_NOISE_AB
        return sigma_current(self.I_max * G, A, B, xp) / self.I_max
