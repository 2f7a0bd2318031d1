"""Measured device data without code: the ``"empirical"`` model (``device_data = "file.csv"``).

The CSV file holds one row per measured device (sample) with these columns,
each name ending in its unit:

* ``G_target_<u>`` -- the conductance the device was programmed to (its level);
* ``G_programmed_<u>`` -- the conductance read right after programming;
* optionally ``time_<tu>`` and ``G_time_<u>`` -- a later read: the conductance
  of the same device ``time`` after programming. A device read at several
  times has one row per time (its ``G_programmed`` repeated); rows with both
  left empty are programming-only samples.

Conductance units ``<u>``: ``S``, ``mS``, ``uS``, ``nS``, ``pS``; time units
``<tu>``: ``s``, ``min``, ``h``, ``d``. The largest target level is ``G_max``
(normalized 1), so every conductance is divided by it; set ``On_off_ratio`` to
about ``G_max`` over the smallest level.

The file is checked on load: the columns exist with known units, values are
numbers, conductances are >= 0 and times > 0, there are at least 2 levels and
at least :data:`MIN_SAMPLES` samples per level (and per level and time), and
the levels are monotone (the median programmed conductance rises with the
target). Each problem is one line naming the file, the column or row and what
was expected.

Model (no distribution is fitted; the data's own quantiles are used):

* programming error: for a target ``G`` between levels ``k`` and ``k+1``
  (weight ``w``), a device draws one rank ``u ~ U(0, 1)`` and gets
  ``G + (1 - w) Q_k(u) + w Q_{k+1}(u)``, where ``Q_k`` is the empirical
  quantile function (linear between order statistics) of level ``k``'s
  deviations ``G_programmed - G_target``. Targets outside the levels use the
  nearest level's deviations. At a level this reproduces the measured
  quantiles; between levels it interpolates the quantile functions.
* drift: the ratio ``G_time / G_programmed`` of every sample gives per level
  and time a quantile function ``R_{k,t}``; a device draws one rank ``v``
  (the same at every inference time, so it follows one trajectory) and gets
  ``G_prog * R(v)``, interpolated between levels as above, linearly in
  ``ln t`` between measured times, from ratio 1 at ``t = 0`` linearly in ``t``
  up to the first measured time, and extrapolated in ``ln t`` from the last
  two times beyond the data (the stack warns); ratios are clipped at 0.
"""
from __future__ import annotations

import math
import os
import re
from dataclasses import dataclass
from functools import lru_cache

import numpy as np

from devices.base import DeviceModel
from simulator.errors import DeviceModelError

#: fewest samples per level (and per level and time) the file must hold
MIN_SAMPLES = 10
#: probabilities at which the quantile tables are stored
N_QUANTILES = 257
CONDUCTANCE_UNITS = {"S": 1.0, "mS": 1e-3, "uS": 1e-6, "nS": 1e-9, "pS": 1e-12}
TIME_UNITS_DAYS = {"s": 1 / 86400.0, "min": 1 / 1440.0, "h": 1 / 24.0, "d": 1.0}
_COLUMNS = ("G_target", "G_programmed", "time", "G_time")


@dataclass(frozen=True)
class DeviceData:
    """Quantile tables of a validated device-data file (normalized conductances, days)."""

    path: str
    g_max_siemens: float  #: largest target level (S) = normalized 1
    levels: np.ndarray  #: (L,) normalized target levels, ascending
    prog_q: np.ndarray  #: (L, P) quantiles of G_programmed - G_target per level
    prog_std: np.ndarray  #: (L,) sample standard deviation of the deviations
    times: np.ndarray  #: (T,) measured times in days, ascending (T = 0: no drift data)
    ratio_q: np.ndarray  #: (T, L, P) quantiles of G_time / G_programmed
    ratio_std: np.ndarray  #: (T, L) sample standard deviation of the ratios


def _column(df, base: str, units: dict, path: str, required: bool):
    """(name, scale) of the column ``base_<unit>`` (None when optional and absent)."""
    pattern = re.compile(rf"^{re.escape(base)}_(\w+)$")
    found = [(c, pattern.match(str(c).strip())) for c in df.columns]
    found = [(c, m.group(1)) for c, m in found if m]
    if not found:
        if not required:
            return None
        have = ", ".join(str(c) for c in df.columns) or "none"
        raise DeviceModelError(
            f"{path}: missing column {base}_<unit> (expected columns G_target_<unit>, G_programmed_<unit>"
            f"[, time_<unit>, G_time_<unit>], <unit> one of {', '.join(units)}); columns found: {have}"
        )
    if len(found) > 1:
        raise DeviceModelError(f"{path}: more than one {base} column ({', '.join(str(c) for c, _ in found)})")
    col, unit = found[0]
    if unit not in units:
        raise DeviceModelError(f"{path}: column {col!r} has unit {unit!r}; expected one of {', '.join(units)}")
    return col, units[unit]


def _numbers(df, col: str, path: str, allow_blank: bool = False) -> np.ndarray:
    import pandas as pd

    values = pd.to_numeric(df[col], errors="coerce").to_numpy(dtype=np.float64)
    raw_blank = df[col].isna().to_numpy()
    bad = np.isnan(values) & ~(raw_blank & allow_blank)
    bad |= np.isinf(values)
    if bad.any():
        row = int(np.argmax(bad))
        raise DeviceModelError(f"{path}: row {row + 2}, column {col!r} = {df[col].iloc[row]!r}: expected a finite number")
    return values


def _quantiles(samples: np.ndarray) -> np.ndarray:
    return np.quantile(samples, np.linspace(0.0, 1.0, N_QUANTILES))


def _check_count(n: int, what: str, path: str) -> None:
    if n < MIN_SAMPLES:
        raise DeviceModelError(f"{path}: {what} has {n} sample(s); at least {MIN_SAMPLES} per level are needed "
                               "for its distribution")


def _read_csv(path: str):
    import pandas as pd

    try:
        df = pd.read_csv(path, skipinitialspace=True)
    except Exception as exc:  # any parse problem is a user input error
        why = " ".join(f"{exc.__class__.__name__}: {exc}".split())
        raise DeviceModelError(f"{path}: cannot read the device-data CSV ({why})") from None
    if df.empty:
        raise DeviceModelError(f"{path}: the device-data CSV has no rows")
    return df


def _programming(target: np.ndarray, prog: np.ndarray, g_max: float, levels_si: np.ndarray, names: tuple[str, str],
                 scales: tuple[float, float], path: str) -> tuple[list, list]:
    """Per target level: quantiles and standard deviation of the programmed - target conductance (units of G_max);
    the levels' medians must rise with the targets."""
    (tcol, pcol), (tscale, pscale) = names, scales
    pn, levels = prog / g_max, levels_si / g_max
    prog_q, prog_std, medians = [], [], []
    for lv_si, lv in zip(levels_si, levels):
        d = pn[target == lv_si] - lv
        _check_count(len(d), f"level {lv_si / tscale:g} ({tcol})", path)
        prog_q.append(_quantiles(d))
        prog_std.append(float(np.std(d, ddof=1)))
        medians.append(float(np.median(d)) + lv)
    for k in range(1, len(levels)):
        if not medians[k] > medians[k - 1]:
            raise DeviceModelError(
                f"{path}: levels are not monotone: level {levels_si[k] / tscale:g} has median programmed conductance "
                f"{medians[k] * g_max / pscale:g}, not above level {levels_si[k - 1] / tscale:g}'s "
                f"{medians[k - 1] * g_max / pscale:g} ({pcol})"
            )
    return prog_q, prog_std


def _no_drift(n_levels: int) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """No read times: empty drift tables."""
    return np.zeros(0), np.zeros((0, n_levels, N_QUANTILES)), np.zeros((0, n_levels))


def _drift(df, target: np.ndarray, prog: np.ndarray, levels_si: np.ndarray, time_c: tuple, gt_c: tuple, pcol: str,
           tscale: float, path: str) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """(read times in days, quantiles and std of G_time / G_programmed per (time, level)) from the drift columns."""
    tm = _numbers(df, time_c[0], path, allow_blank=True) * time_c[1]
    gt = _numbers(df, gt_c[0], path, allow_blank=True) * gt_c[1]
    blank_t, blank_g = np.isnan(tm), np.isnan(gt)
    if (blank_t != blank_g).any():
        row = int(np.argmax(blank_t != blank_g))
        raise DeviceModelError(f"{path}: row {row + 2}: {time_c[0]!r} and {gt_c[0]!r} must both be given or both be empty")
    has = ~blank_t
    if not has.any():
        return _no_drift(len(levels_si))
    if (tm[has] <= 0).any():
        row = int(np.argmax(has & (tm <= 0)))
        raise DeviceModelError(f"{path}: row {row + 2}, column {time_c[0]!r} = {df[time_c[0]].iloc[row]!r}: "
                               "times must be > 0 (the programmed read is G_programmed)")
    if (gt[has] < 0).any():
        row = int(np.argmax(has & (gt < 0)))
        raise DeviceModelError(f"{path}: row {row + 2}, column {gt_c[0]!r} = {df[gt_c[0]].iloc[row]!r}: "
                               "conductances must be >= 0")
    if (prog[has] <= 0).any():
        row = int(np.argmax(has & (prog <= 0)))
        raise DeviceModelError(f"{path}: row {row + 2}: a drift sample needs {pcol!r} > 0 (the drift is the "
                               "ratio G_time / G_programmed)")
    times = np.unique(tm[has])
    rq, rs = [], []
    for t in times:
        row_q, row_s = [], []
        for lv_si in levels_si:
            sel = has & (tm == t) & (target == lv_si)
            _check_count(int(sel.sum()), f"level {lv_si / tscale:g} at {time_c[0]} = {t / time_c[1]:g}", path)
            r = gt[sel] / prog[sel]
            row_q.append(_quantiles(r))
            row_s.append(float(np.std(r, ddof=1)))
        rq.append(row_q)
        rs.append(row_s)
    return times, np.asarray(rq), np.asarray(rs)


@lru_cache(maxsize=16)
def _load(path: str, mtime_ns: int) -> DeviceData:
    df = _read_csv(path)
    tcol, tscale = _column(df, "G_target", CONDUCTANCE_UNITS, path, True)
    pcol, pscale = _column(df, "G_programmed", CONDUCTANCE_UNITS, path, True)
    time_c = _column(df, "time", TIME_UNITS_DAYS, path, False)
    gt_c = _column(df, "G_time", CONDUCTANCE_UNITS, path, False)
    if (time_c is None) != (gt_c is None):
        have, miss = ("time", "G_time") if gt_c is None else ("G_time", "time")
        raise DeviceModelError(f"{path}: a {have} column needs a {miss}_<unit> column as well (drift data come in pairs)")
    target = _numbers(df, tcol, path) * tscale
    prog = _numbers(df, pcol, path) * pscale
    for name, vals in ((tcol, target), (pcol, prog)):
        if (vals < 0).any():
            row = int(np.argmax(vals < 0))
            raise DeviceModelError(f"{path}: row {row + 2}, column {name!r} = {df[name].iloc[row]!r}: "
                                   "conductances must be >= 0")
    g_max = float(target.max())
    if not g_max > 0:
        raise DeviceModelError(f"{path}: column {tcol!r}: the largest target level must be > 0")
    levels_si = np.unique(target)
    if len(levels_si) < 2:
        raise DeviceModelError(f"{path}: column {tcol!r} has {len(levels_si)} level(s); at least 2 are needed")
    prog_q, prog_std = _programming(target, prog, g_max, levels_si, (tcol, pcol), (tscale, pscale), path)
    if time_c is None:
        times, ratio_q, ratio_std = _no_drift(len(levels_si))
    else:
        times, ratio_q, ratio_std = _drift(df, target, prog, levels_si, time_c, gt_c, pcol, tscale, path)
    return DeviceData(path, g_max, levels_si / g_max, np.asarray(prog_q), np.asarray(prog_std), times, ratio_q,
                      ratio_std)


def load_device_data(path: str) -> DeviceData:
    """Read and validate a device-data CSV (cached per file and modification time)."""
    if not path:
        raise DeviceModelError("error_model = 'empirical' needs device_data = \"<file>.csv\" (measured conductances)")
    if not os.path.isfile(path):
        raise DeviceModelError(f"device_data = {path!r}: file not found")
    return _load(os.path.abspath(path), os.stat(path).st_mtime_ns)


class EmpiricalDevice(DeviceModel):
    """Programming error and drift interpolated from measured per-level distributions (quantiles).

    Deviation ``G_prog - G_target`` and drift ratio ``G(t) / G_prog`` follow
    the file's per-level empirical quantile functions, interpolated between
    levels (in G) and times (in ln t). Normalized units: G / (largest target level).
    """

    name = "empirical"
    provides = frozenset({"error", "drift"})
    drift_includes_error = False

    def __init__(self, params) -> None:
        super().__init__(params)
        self.data = load_device_data(params.device_data or "")
        self.drift_valid_days = float(self.data.times[-1]) if len(self.data.times) else None
        self._cache: dict = {}

    def _arrays(self, xp, dtype):
        key = (xp.__name__, str(dtype))
        if key not in self._cache:
            d = self.data
            self._cache[key] = (
                xp.asarray(d.levels, dtype=dtype),
                xp.asarray(d.prog_q.reshape(-1), dtype=dtype),
                xp.asarray(d.ratio_q.reshape(-1), dtype=dtype),
            )
        return self._cache[key]

    def _level_weights(self, G, levels, xp):
        """(k, w): lower level index and weight of the upper one, clipped to the level range."""
        L = int(levels.shape[0])
        k = xp.clip(xp.searchsorted(levels, G, side="right") - 1, 0, L - 2)
        lo, hi = levels[k], levels[k + 1]
        w = xp.clip((G - lo) / (hi - lo), 0.0, 1.0)
        return k, w

    @staticmethod
    def _gather(flat, base, u, xp):
        """Quantile ``u`` from the table rows starting at flat index ``base`` (linear between stored quantiles)."""
        pos = u * (N_QUANTILES - 1)
        j = xp.clip(xp.floor(pos).astype(xp.int64), 0, N_QUANTILES - 2)
        f = pos - j
        return xp.take(flat, base + j) * (1 - f) + xp.take(flat, base + j + 1) * f

    def _quantile(self, flat, offset, G, u, levels, xp):
        k, w = self._level_weights(G, levels, xp)
        q0 = self._gather(flat, offset + k * N_QUANTILES, u, xp)
        q1 = self._gather(flat, offset + (k + 1) * N_QUANTILES, u, xp)
        return q0 * (1 - w) + q1 * w

    def programming_error(self, G, xp, rng):
        levels, prog, _ = self._arrays(xp, G.dtype)
        u = rng.random(G.shape, dtype=G.dtype)
        return G + self._quantile(prog, 0, G, u, levels, xp)

    def programming_sigma(self, G, xp):
        """Sample standard deviation of the deviations, interpolated between levels (for plots)."""
        levels = xp.asarray(self.data.levels, dtype=G.dtype)
        return xp.interp(G, levels, xp.asarray(self.data.prog_std, dtype=G.dtype))

    def _ratio(self, G_target, t_days: float, v, xp):
        """Drift ratio at ``t_days`` for targets ``G_target`` and ranks ``v``."""
        d = self.data
        levels, _, ratio = self._arrays(xp, G_target.dtype)
        block = len(d.levels) * N_QUANTILES
        T = len(d.times)

        def at(i):
            return self._quantile(ratio, i * block, G_target, v, levels, xp)

        if t_days <= d.times[0]:
            return 1.0 + (t_days / d.times[0]) * (at(0) - 1.0)
        if T == 1:
            return at(0)
        i = min(int(np.searchsorted(d.times, t_days, side="right")) - 1, T - 2)
        la, lb = math.log(d.times[i]), math.log(d.times[i + 1])
        f = (math.log(t_days) - la) / (lb - la)
        return at(i) * (1 - f) + at(i + 1) * f

    def drift_programmed(self, G_prog, G_target, t_days: float, xp, rng):
        if t_days <= 0:
            return G_prog
        if not len(self.data.times):
            raise DeviceModelError(f"{self.data.path}: has no time_<unit> / G_time_<unit> columns, so it cannot give "
                                   f"drift at t_drift = {t_days:g} days (add drift data or set a drift_model)")
        v = rng.random(G_prog.shape, dtype=G_prog.dtype)
        return G_prog * xp.maximum(self._ratio(G_target, t_days, v, xp), 0.0)

    def drift(self, G, t_days: float, xp, rng):
        return self.drift_programmed(G, G, t_days, xp, rng)

    def drift_mean(self, G, t_days: float, xp):
        """``G`` times the median drift ratio at ``t_days``."""
        if t_days <= 0 or not len(self.data.times):
            return G
        return G * self._ratio(G, t_days, xp.full_like(G, 0.5), xp)
