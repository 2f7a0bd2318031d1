"""Phase-change memory of Joshi et al. (manual 7.2.2, 7.3; Fig. 7.3b).

Source: V. Joshi et al., "Accurate deep neural network inference using
computational phase-change memory", Nature Communications 11, 2473 (2020),
doi:10.1038/s41467-020-16108-9: main-text Fig. 3(b) (programming error) and
Supplementary Note 2, Eqs. 8-9 and 12-16 (drift); fit values as distributed
with CrossSim v2.0.

Units: the normalized conductance maps to ``G_uS = G_max * G`` with
``G_max = 25 uS`` (override: ``device_params.pcm_Gmax_uS``, at most 25 uS);
suggested ``On_off_ratio = 100``. Times are in days (seconds in the formulas).

``"PCM_Joshi"`` is one model that provides both hooks:

* programming error (``error_model``): Gaussian, quadratic fit
  ``sigma(G) = max(a G^2 + b G + c, 0)`` uS with ``a = -1.78767e-3 /uS``,
  ``b = 7.585724e-2``, ``c = 0.28638599 uS`` (error measured at
  ``T0 = 27.36 s`` after programming).
* drift (``drift_model``): power law ``G(t) = G0 (t / t_ref)^(-nu)``,
  ``t_ref = 20 s`` (target conductances are defined at 20 s), with a random
  exponent ``nu ~ N(mu_nu(G0), sigma_nu(G0)^2)``:
  ``mu_nu = max(0.08 - 0.0045 G0, min(0.06, max(0.0825 - 0.00169 G0, 0.055)))``,
  ``sigma_nu = 1 / (8 G0 + 30.032)`` (G0 in uS). Programming noise enters at
  ``T0 = 27.36 s`` (the quadratic fit above) and again at ``T1 = 55.39 s``
  (cubic fit ``1.904e-4 G^3 - 7.290e-3 G^2 + 0.1004 G + 0.1923`` uS,
  Supplementary Fig. 16), each then drifting with the same exponent:
  ``G(t) = G0 (t/20s)^-nu + n0 (t/T0)^-nu + n1 (t/T1)^-nu``. Valid for
  ``t >= T1``; shorter non-zero times are rejected. Joshi et al.'s global
  drift compensation is not included (as in CrossSim).
"""
from __future__ import annotations

import math

from devices._util import SECONDS_PER_DAY, add_gaussian, extra_float
from devices.base import DeviceModel
from simulator.errors import DeviceModelError

#: largest PCM conductance of the data set (uS)
G_MAX_US = 25.0
#: quadratic fit of the programming error at T0 (uS): a G^2 + b G + c
PROGRAMMING_FIT = (-1.78767e-3, 7.585724e-2, 0.28638599)
#: cubic fit of the programming error at T1 (uS)
PROGRAMMING_FIT_T1 = (1.904e-4, -7.290e-3, 1.004e-1, 1.923e-1)
T_REF_S = 20.0
T0_S = 27.36
T1_S = 55.39


def _poly(G, coeffs, xp):
    """Horner evaluation of ``coeffs`` (highest power first), clipped at 0."""
    out = xp.zeros_like(G) + coeffs[0]
    for c in coeffs[1:]:
        out = out * G + c
    return xp.maximum(out, 0.0)


class PCMJoshi(DeviceModel):
    """PCM (Joshi et al. 2020): quadratic programming error and power-law drift ``G0 (t/20 s)^-nu``.

    Error: ``sigma = -1.78767e-3 G^2 + 7.585724e-2 G + 0.28638599`` uS (G in uS, G_uS = 25 G).
    Drift: ``nu ~ N(mu_nu(G0), (1/(8 G0 + 30.032))^2)``, ``mu_nu = max(0.08 - 0.0045 G0,
    min(0.06, max(0.0825 - 0.00169 G0, 0.055)))``; noise added at 27.36 s and 55.39 s.
    Nature Commun. 11, 2473 (2020), Fig. 3(b) and Suppl. Note 2.
    """

    name = "PCM_Joshi"
    provides = frozenset({"error", "drift"})
    #: shortest non-zero drift time the model accepts (T1, in days)
    drift_min_days = T1_S / SECONDS_PER_DAY

    def __init__(self, params) -> None:
        super().__init__(params)
        self.G_max = extra_float(params, "pcm_Gmax_uS", G_MAX_US, lo=0.0, hi=G_MAX_US)

    # -- programming error ------------------------------------------------
    def programming_sigma(self, G, xp):
        return _poly(self.G_max * G, PROGRAMMING_FIT, xp) / self.G_max

    def programming_error(self, G, xp, rng):
        return add_gaussian(G, self.programming_sigma(G, xp), xp, rng)

    # -- drift ---------------------------------------------------------------
    def _check_time(self, t_days: float) -> None:
        if 0 < t_days < self.drift_min_days:
            raise DeviceModelError(
                f"t_drift = {t_days:g} days: drift_model 'PCM_Joshi' needs t_drift >= {self.drift_min_days:.4g} days "
                f"({T1_S} s) or 0 (for shorter times use error_model = 'PCM_Joshi')"
            )

    def nu_stats(self, G, xp):
        """Mean and standard deviation of the drift exponent at normalized conductance ``G``."""
        g = self.G_max * G
        mu = xp.maximum(0.08 - 0.0045 * g, xp.minimum(0.06, xp.maximum(0.0825 - 0.00169 * g, 0.055)))
        sigma = 1.0 / (8.0 * g + 30.032)
        return mu, sigma

    def drift_mean(self, G, t_days: float, xp):
        """Deterministic part ``G (t / 20 s)^(-mu_nu(G))`` (the median over the random exponent)."""
        if t_days <= 0:
            return G
        self._check_time(t_days)
        mu, _ = self.nu_stats(G, xp)
        return G * (t_days * SECONDS_PER_DAY / T_REF_S) ** (-mu)

    def drift_sigma(self, G, t_days: float, xp):
        """Exact standard deviation of the drifted conductance (normalized units, before clipping).

        With ``nu ~ N(mu, s^2)``, ``E[x^(-k nu)] = exp(-k mu ln x + k^2 s^2 ln(x)^2 / 2)``;
        the three terms of ``G(t)`` are uncorrelated.
        """
        if t_days <= 0:
            return xp.zeros_like(G)
        self._check_time(t_days)
        t = t_days * SECONDS_PER_DAY
        mu, s = self.nu_stats(G, xp)

        def moment(x, k):
            L = math.log(x)
            return xp.exp(-k * mu * L + 0.5 * (k * s * L) ** 2)

        g = self.G_max * G
        s0 = _poly(g, PROGRAMMING_FIT, xp)
        s1 = _poly(g, PROGRAMMING_FIT_T1, xp)
        a = t / T_REF_S
        var = g**2 * (moment(a, 2) - moment(a, 1) ** 2) + s0**2 * moment(t / T0_S, 2) + s1**2 * moment(t / T1_S, 2)
        return xp.sqrt(var) / self.G_max

    def drift(self, G, t_days: float, xp, rng):
        if t_days <= 0:
            return G
        self._check_time(t_days)
        t = t_days * SECONDS_PER_DAY
        g = self.G_max * G
        mu, s = self.nu_stats(G, xp)
        nu = add_gaussian(mu, s, xp, rng)
        g_t0 = add_gaussian(g * (T0_S / T_REF_S) ** (-nu), _poly(g, PROGRAMMING_FIT, xp), xp, rng)
        g_t1 = add_gaussian(g_t0 * (T1_S / T0_S) ** (-nu), _poly(g, PROGRAMMING_FIT_T1, xp), xp, rng)
        return g_t1 * (t / T1_S) ** (-nu) / self.G_max
