"""Statistical PCM model of Nandakumar et al. (2019), as used by IBM aihwkit's PCM-like noise model.

Source: S. R. Nandakumar et al., "Phase-change memory models for deep learning
training and inference", 26th IEEE Int. Conf. on Electronics, Circuits and
Systems (ICECS 2019), pp. 727-730, doi:10.1109/ICECS46596.2019.8964852;
calibrated on about one million PCM devices (Joshi et al., Nature Commun. 11,
2473, 2020). Coefficients as published in aihwkit's documentation
("Inference and PCM statistical model") and its ``PCMLikeNoiseModel``.

Units and conventions: the normalized conductance ``G`` (xbarsim's ``G_max = 1``)
is aihwkit's ``g_T / g_max`` with ``g_max = 25 uS`` (the reference of the
fits). The programming polynomial gives a standard deviation in uS for
``g_max = 25 uS`` and scales with ``g_max``, so in normalized units every
formula below is independent of ``g_max``. Times: ``t_drift`` days after the
end of programming, ``t = 86400 t_drift + t_0`` seconds.

* programming error (``error_model = "PCM_Nandakumar"``):
  ``G_prog = G_T + N(0, sigma_prog)``,
  ``sigma_prog = (0.26348 + 1.9650 G_T - 1.1731 G_T^2) uS / 25 uS`` (clipped at 0);
* drift (``drift_model = "PCM_Nandakumar"``): ``G_drift = G_prog (t / t_0)^(-nu)``,
  ``t_0 = 20 s``, one exponent per device ``nu = |N(mu_nu, sigma_nu)|`` with
  ``mu_nu = clip(-0.0155 ln G_T + 0.0244, 0.049, 0.1)`` and
  ``sigma_nu = clip(-0.0125 ln G_T - 0.0059, 0.008, 0.045)`` (``G_T`` clipped at 1e-7);
* accumulated 1/f read noise at time t (part of the drift hook, as in aihwkit:
  one draw per device and inference time, frozen while the test set runs):
  ``G(t) = G_drift + |G_drift| sigma_nG(t) N(0, 1)``,
  ``sigma_nG(t) = Q_s sqrt(ln((t + t_read) / (2 t_read)))``, ``t_read = 250 ns``,
  ``Q_s = min(0.0088 / max(G_prog^0.65, 1e-3), 0.2)``.

The drift exponent and the read-noise draw of a device are the same at every
inference time of a run (the stack resets the drift generator), so a list of
times follows each device along one trajectory. ``t_drift = 0`` means "as
programmed": no drift and no accumulated read noise. Per-MVM read noise is a
separate ``noise_model``. The model does not include the programming error in
its drift, so it combines with any ``error_model``.

``device_params`` (all optional, as aihwkit's scales): ``pcm_prog_noise_scale``,
``pcm_drift_scale``, ``pcm_read_noise_scale`` (default 1 each, >= 0).
"""
from __future__ import annotations

import math

from devices._util import SECONDS_PER_DAY, add_gaussian, extra_float
from devices.base import DeviceModel

#: programming-noise polynomial, lowest power first: sigma(uS) = sum c_i G^i at g_max = 25 uS
PROG_COEFF = (0.26348, 1.9650, -1.1731)
#: g_max (uS) the programming polynomial refers to
PROG_G_MAX_US = 25.0
#: drift-exponent mean: (slope on ln G, intercept, lower clip, upper clip)
NU_MEAN = (-0.0155, 0.0244, 0.049, 0.1)
#: drift-exponent standard deviation: (slope on ln G, intercept, lower clip, upper clip)
NU_STD = (-0.0125, -0.0059, 0.008, 0.045)
#: 1/f noise: Q_s = min(Q_COEFF / max(G^Q_EXP, Q_FLOOR), Q_MAX)
Q_COEFF, Q_EXP, Q_FLOOR, Q_MAX = 0.0088, 0.65, 1e-3, 0.2
#: first reading time after programming (s) and read-pulse width (s)
T0_S = 20.0
T_READ_S = 250e-9
#: smallest relative target conductance in the logarithms
G_CLIP = 1e-7


class PCMNandakumar(DeviceModel):
    """PCM (Nandakumar et al., ICECS 2019; aihwkit PCMLikeNoiseModel): programming, drift, 1/f read noise.

    sigma_prog = (0.26348 + 1.9650 G - 1.1731 G^2) / 25 (normalized); G(t) = G_prog (t/20 s)^-nu,
    nu = |N(clip(-0.0155 ln G + 0.0244, 0.049, 0.1), clip(-0.0125 ln G - 0.0059, 0.008, 0.045))|;
    read noise |G_drift| min(0.0088/G^0.65, 0.2) sqrt(ln((t + 250 ns)/500 ns)), t = t_drift + 20 s.
    """

    name = "PCM_Nandakumar"
    provides = frozenset({"error", "drift"})
    drift_includes_error = False

    def __init__(self, params) -> None:
        super().__init__(params)
        self.prog_scale = extra_float(params, "pcm_prog_noise_scale", 1.0, lo=0.0, lo_open=False)
        self.drift_scale = extra_float(params, "pcm_drift_scale", 1.0, lo=0.0, lo_open=False)
        self.read_scale = extra_float(params, "pcm_read_noise_scale", 1.0, lo=0.0, lo_open=False)

    # -- programming -------------------------------------------------------
    def programming_sigma(self, G, xp):
        c0, c1, c2 = PROG_COEFF
        sig = c0 + G * (c1 + G * c2)
        return self.prog_scale * xp.maximum(sig, 0.0) / PROG_G_MAX_US

    def programming_error(self, G, xp, rng):
        return add_gaussian(G, self.programming_sigma(G, xp), xp, rng)

    # -- drift ---------------------------------------------------------------
    @staticmethod
    def seconds(t_days: float) -> float:
        """aihwkit's time ``t = t_inference + t_0`` in seconds for ``t_days`` after programming."""
        return t_days * SECONDS_PER_DAY + T0_S

    def nu_stats(self, G_target, xp):
        """(mu_nu, sigma_nu) of the Gaussian the drift exponent is drawn from (before |.| and the scale)."""
        lg = xp.log(xp.maximum(xp.abs(G_target), G_CLIP))
        a, b, lo, hi = NU_MEAN
        mu = xp.clip(a * lg + b, lo, hi)
        a, b, lo, hi = NU_STD
        sd = xp.clip(a * lg + b, lo, hi)
        return mu, sd

    def read_sigma(self, G_prog, t_days: float, xp):
        """Relative standard deviation ``sigma_nG(t) / |G_drift|`` of the accumulated 1/f noise."""
        t = self.seconds(t_days)
        q = xp.minimum(Q_COEFF / xp.maximum(xp.abs(G_prog) ** Q_EXP, Q_FLOOR), Q_MAX)
        return self.read_scale * q * math.sqrt(math.log((t + T_READ_S) / (2 * T_READ_S)))

    def drift_programmed(self, G_prog, G_target, t_days: float, xp, rng):
        if t_days <= 0:
            return G_prog
        mu, sd = self.nu_stats(G_target, xp)
        nu = self.drift_scale * xp.abs(add_gaussian(mu, sd, xp, rng))
        g = G_prog * (self.seconds(t_days) / T0_S) ** (-nu)
        z = rng.standard_normal(G_prog.shape, dtype=G_prog.dtype)
        return g + xp.abs(g) * self.read_sigma(G_prog, t_days, xp) * z

    def drift(self, G, t_days: float, xp, rng):
        """Drift with the programmed conductances standing in for the targets."""
        return self.drift_programmed(G, G, t_days, xp, rng)

    def drift_mean(self, G, t_days: float, xp):
        """``G (t/t_0)^(-mu_nu)``: the median over the drift exponent (|nu| ignored, mu_nu >= 0.049)."""
        if t_days <= 0:
            return G
        mu, _ = self.nu_stats(G, xp)
        return G * (self.seconds(t_days) / T0_S) ** (-self.drift_scale * mu)

    def drift_sigma(self, G, t_days: float, xp):
        """Standard deviation of ``G(t)`` for programmed = target ``G`` (nu Gaussian, lognormal moments).

        With ``x = (t/t_0)^(-nu)``, ``E[x^k] = exp(-k m L + k^2 s^2 L^2 / 2)``
        (``L = ln(t/t_0)``, ``m, s`` = scaled mu_nu, sigma_nu) and independent
        read noise: ``Var = G^2 (E[x^2] (1 + r^2) - E[x]^2)``, ``r`` = :meth:`read_sigma`.
        """
        if t_days <= 0:
            return xp.zeros_like(G)
        mu, sd = self.nu_stats(G, xp)
        m, s = self.drift_scale * mu, self.drift_scale * sd
        L = math.log(self.seconds(t_days) / T0_S)
        e1 = xp.exp(-m * L + 0.5 * (s * L) ** 2)
        e2 = xp.exp(-2 * m * L + 2 * (s * L) ** 2)
        r = self.read_sigma(G, t_days, xp)
        return xp.abs(G) * xp.sqrt(xp.maximum(e2 * (1 + r * r) - e1 * e1, 0.0))
