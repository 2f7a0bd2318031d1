"""The device-model protocol.

A device model turns *target* conductances into what the array really holds
and reads. All conductances are in **normalized units**: ``G_max = 1`` and
``G_min = 1 / On_off_ratio`` (``0`` for an infinite ratio). Array math goes
through the array module ``xp`` (NumPy or CuPy) passed in; random numbers come
from the ``rng`` passed in (``xp.random.Generator``), so results are
reproducible from the simulation seed.

A model implements any subset of three hooks and says which in ``provides``:

* ``"error"`` -- :meth:`DeviceModel.programming_error`: sampled once when the
  weights are mapped (once per run).
* ``"drift"`` -- :meth:`DeviceModel.drift`: conductance after ``t_days`` days,
  including its time-dependent random spread. When several inference times
  are evaluated (``t_drift`` a list), the hook is called once per time on the
  same programmed conductances with a generator reset to the same state, so a
  device keeps its random draws (e.g. its drift exponent) at every time and
  the drift is cumulative from one programmed state. Models whose drift
  depends on the *target* conductance override :meth:`DeviceModel.drift_programmed`.
* ``"noise"`` -- :meth:`DeviceModel.read_noise_sigma`: a matrix of read-noise
  standard deviations (same shape as ``G``), re-sampled on every MVM.

The simulator clips programmed and drifted conductances to ``[G_min, 1]`` and
checks shapes and finiteness of whatever a model returns, so a plugin does not
need to. To add a device, drop a module defining a ``DeviceModel`` subclass
with a unique ``name`` into ``devices/`` (or a folder listed in
``XBARSIM_DEVICE_PATH``, or register it under the ``xbarsim.devices`` entry
point group) and name it in the config.
"""
from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any, ClassVar


@dataclass(frozen=True)
class DeviceParams:
    """Config values a device model may read (names as in the inference config)."""

    On_off_ratio: float = 0.0  # 0 = infinite
    alpha_error: float = 0.0
    proportional_error: bool = False
    alpha_noise: float = 0.0
    proportional_noise: bool = False
    t_drift: float = 0.0  # days (the first time when several are evaluated)
    #: every inference time (days) of the run, ascending (empty: just ``t_drift``)
    t_drift_all: tuple[float, ...] = ()
    #: fraction of devices stuck at G_min / at G_max (drawn once per programming)
    stuck_off_fraction: float = 0.0
    stuck_on_fraction: float = 0.0
    #: measured-device CSV for the "empirical" model (see devices/empirical.py)
    device_data: str | None = None
    extra: dict[str, Any] = field(default_factory=dict)  # [device_params] table of the config

    @property
    def Gmin(self) -> float:
        return 0.0 if self.On_off_ratio == 0 else 1.0 / self.On_off_ratio


class DeviceModel:
    """Base class of every device model. Override the hooks named in ``provides``."""

    #: name used in the config (error_model / drift_model / noise_model)
    name: ClassVar[str] = ""
    #: subset of {"error", "drift", "noise"}
    provides: ClassVar[frozenset[str]] = frozenset()
    #: True when read noise is Gaussian and unclipped, so it can be drawn at the
    #: column output (one extra matrix product) instead of per conductance.
    read_noise_output_equivalent: ClassVar[bool] = True
    #: for drift models: largest t_drift (days) the model's data covers (None = any)
    drift_valid_days: ClassVar[float | None] = None
    #: for drift models: True when the drift hook already includes the programming
    #: error (manual 7.3), so the stack turns a custom error_model off while drifting
    drift_includes_error: ClassVar[bool] = True

    def __init__(self, params: DeviceParams) -> None:
        self.params = params

    # -- hooks ---------------------------------------------------------------
    def programming_error(self, G, xp, rng):  # pragma: no cover - abstract
        """Return programmed conductances for target conductances ``G``."""
        raise NotImplementedError(f"device model {self.name!r} has no programming error")

    def drift(self, G, t_days: float, xp, rng):  # pragma: no cover - abstract
        """Return conductances ``t_days`` days after programming ``G``."""
        raise NotImplementedError(f"device model {self.name!r} has no drift model")

    def drift_programmed(self, G_prog, G_target, t_days: float, xp, rng):
        """Drift hook the stack calls: conductances ``t_days`` after programming.

        ``G_prog`` holds the programmed conductances, ``G_target`` the targets
        they were programmed to. The default ignores the targets and calls
        :meth:`drift`.
        """
        return self.drift(G_prog, t_days, xp, rng)

    def read_noise_sigma(self, G, xp):  # pragma: no cover - abstract
        """Return the read-noise standard deviation of every conductance in ``G``."""
        raise NotImplementedError(f"device model {self.name!r} has no read noise")

    def sample_read_noise(self, G, sigma, xp, rng):
        """Exact read noise: a fresh noisy conductance matrix (default: Gaussian, unclipped)."""
        return G + sigma * rng.standard_normal(G.shape, dtype=G.dtype)

    # -- optional, for plots and statistics tests -----------------------------
    def programming_sigma(self, G, xp):
        """Standard deviation of the programming error at ``G`` (for plots/tests)."""
        raise NotImplementedError

    def drift_mean(self, G, t_days: float, xp):
        """Deterministic part of the drift at ``t_days`` (for plots/tests)."""
        raise NotImplementedError

    def drift_sigma(self, G, t_days: float, xp):
        """Standard deviation of the drifted conductance at ``t_days`` (for plots/tests)."""
        raise NotImplementedError
