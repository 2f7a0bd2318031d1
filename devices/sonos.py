"""40 nm analog SONOS charge-trap memory (manual 7.2.2, 7.3; Fig. 7.3a).

Source: T. P. Xiao et al., "An accurate, error-tolerant, and energy-efficient
neural network inference engine based on SONOS analog memory", IEEE Trans.
Circuits Syst. I 69(4), 2022 (doi:10.1109/TCSI.2021.3134313), Fig. 4(d)
(programming error) and Fig. 4(e) (retention at 1, 2 and 5 days); fit values as
distributed with CrossSim v2.0.

The device is used in the subthreshold regime, where the stored weight is the
cell's read current ``I``. The normalized conductance ``G`` maps to
``I = I_max * G`` with ``I_max = 1600 nA`` (override: ``device_params.sonos_Imax_nA``,
at most 1600 nA, the largest measured state). Two models:

* ``"SONOS"`` (programming error): Gaussian, standard deviation given by a
  saturating exponential of the programmed current,
  ``sigma_I(I) = B * (1 - exp(-A * I))`` with ``A = 1.88704e-3 /nA`` and
  ``B = 39.5656 nA``; in normalized units ``sigma_G = sigma_I(I_max G) / I_max``.
* ``"SONOS_interpolate"`` (drift): the measured mean current of 16 programmed
  levels at t = 0, 1, 2, 5 days after programming. For a time ``t`` the level
  currents are interpolated linearly in time; a programmed current is mapped
  through the piecewise-linear curve (level at 0 days -> level at ``t``), and a
  Gaussian spread ``sigma_I(I(t))`` with time-dependent coefficients
  ``A(t), B(t)`` (also interpolated) is added. The spread includes the
  programming error, so the simulator turns off a custom ``error_model`` while
  drift is active. Data cover 5 days; later times are linear extrapolations
  (DeviceStack warns).
"""
from __future__ import annotations

from devices._util import add_gaussian, extra_float, interp_extrap, lerp_table
from devices.base import DeviceModel

#: largest SONOS read current of the data set (nA)
I_MAX_NA = 1600.0

#: saturating-exponential fit of the programming error at t = 0: (A [1/nA], B [nA])
PROGRAMMING_FIT = (1.88704e-3, 39.5656)

#: measurement times (days) of the retention data
DRIFT_DAYS = (0.0, 1.0, 2.0, 5.0)

#: mean current (nA) of the 16 programmed levels at each of DRIFT_DAYS
DRIFT_LEVELS_NA = (
    (52.36, 101.54, 151.1, 202.17, 254.18, 305.76, 361.97, 408.88,
     512.92, 607.13, 721.61, 825.66, 930.48, 1034.71, 1303.16, 1585.32),
    (54.94, 103.82, 155.11, 206.69, 259.1, 308.48, 363.51, 411.18,
     512.22, 601.67, 711.76, 817.82, 917.37, 1019.99, 1281.87, 1553.01),
    (56.51, 105.8, 157.73, 210.48, 262.89, 312.24, 369.76, 417.15,
     519.34, 604.93, 715.29, 814.42, 918.3, 1019.02, 1278.3, 1550.17),
    (58.44, 110.93, 162.27, 213.43, 273.47, 319.09, 377.16, 421.33,
     524.99, 608.45, 717.14, 819.56, 918.27, 1023.06, 1278.56, 1543.26),
)

#: spread fit (A [1/nA], B [nA]) at each of DRIFT_DAYS
DRIFT_SPREAD = ((1.88704e-3, 39.5656), (2.03079e-3, 46.1065), (2.05587e-3, 50.3982), (2.17328e-3, 53.4358))


def _sigma_current(I, A: float, B: float, xp):
    """Saturating exponential ``B (1 - exp(-A I))`` in nA, never negative."""
    return xp.maximum(B * (1.0 - xp.exp(-A * I)), 0.0)


def _imax(params) -> float:
    return extra_float(params, "sonos_Imax_nA", I_MAX_NA, lo=0.0, hi=I_MAX_NA)


class SONOSError(DeviceModel):
    """SONOS programming error: ``sigma_I = B (1 - exp(-A I))``, A = 1.88704e-3 /nA, B = 39.5656 nA.

    ``I = I_max G`` (I_max = 1600 nA); ``sigma_G = sigma_I / I_max`` (normalized).
    Xiao et al., IEEE TCAS-I 69(4), 2022, Fig. 4(d); manual Fig. 7.3(a).
    """

    name = "SONOS"
    provides = frozenset({"error"})

    def __init__(self, params) -> None:
        super().__init__(params)
        self.I_max = _imax(params)

    def programming_sigma(self, G, xp):
        A, B = PROGRAMMING_FIT
        return _sigma_current(self.I_max * G, A, B, xp) / self.I_max

    def programming_error(self, G, xp, rng):
        return add_gaussian(G, self.programming_sigma(G, xp), xp, rng)


class SONOSInterpolate(DeviceModel):
    """SONOS drift: interpolated retention data (0-5 days) plus spread ``B(t) (1 - exp(-A(t) I))``.

    Mean: piecewise-linear map of the programmed current through the 16 measured
    levels at 0 days -> the levels at ``t`` (linear in time between 0, 1, 2, 5 days).
    Spread: Gaussian, ``sigma_I = B(t) (1 - exp(-A(t) I(t)))`` nA, A/B interpolated in time.
    Units: ``I = I_max G``, I_max = 1600 nA; t in days. Xiao et al., IEEE TCAS-I 69(4), 2022, Fig. 4(e).
    """

    name = "SONOS_interpolate"
    provides = frozenset({"drift"})
    drift_valid_days = DRIFT_DAYS[-1]

    def __init__(self, params) -> None:
        super().__init__(params)
        self.I_max = _imax(params)

    def _at(self, t_days: float):
        levels = lerp_table(t_days, DRIFT_DAYS, DRIFT_LEVELS_NA)
        A, B = lerp_table(t_days, DRIFT_DAYS, DRIFT_SPREAD)
        return levels, A, B

    def drift_mean(self, G, t_days: float, xp):
        if t_days <= 0:
            return G
        levels, _, _ = self._at(t_days)
        return interp_extrap(self.I_max * G, DRIFT_LEVELS_NA[0], levels, xp) / self.I_max

    def drift_sigma(self, G, t_days: float, xp):
        """Standard deviation of the drifted conductance (normalized units)."""
        if t_days <= 0:
            return xp.zeros_like(G)
        _, A, B = self._at(t_days)
        I_t = self.I_max * self.drift_mean(G, t_days, xp)
        return _sigma_current(I_t, A, B, xp) / self.I_max

    def drift(self, G, t_days: float, xp, rng):
        if t_days <= 0:
            return G
        return add_gaussian(self.drift_mean(G, t_days, xp), self.drift_sigma(G, t_days, xp), xp, rng)
