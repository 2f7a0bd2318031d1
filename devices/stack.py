"""Apply the configured device models to a conductance matrix.

:class:`DeviceStack` is what the simulator's NumericCore talks to. It resolves
the models named in the config, applies them in the manual's order (Fig. 7.1:
programming error, then drift, then read noise on top at every MVM), clips to
the physical range ``[G_min, 1]`` and checks every value a model returns, so
a broken plugin gives one clear error instead of NaNs downstream.
"""
from __future__ import annotations

import logging

from devices.base import DeviceModel, DeviceParams
from devices.registry import get_model
from simulator.errors import DeviceModelError, XbarsimError

log = logging.getLogger("xbarsim.devices")


def _why(exc: Exception) -> str:
    """``Type: message`` of an exception, on one line."""
    return " ".join(f"{exc.__class__.__name__}: {exc}".split())


def _construct(cls, params) -> DeviceModel:
    try:
        return cls(params)
    except XbarsimError:
        raise
    except Exception as exc:  # a broken plugin is a user input error
        raise DeviceModelError(f"device model {cls.name!r}: construction failed ({_why(exc)})") from exc


def _call(model: DeviceModel, what: str, *args):
    """Call hook ``what`` of ``model``; an exception from a plugin becomes one DeviceModelError line."""
    try:
        return getattr(model, what)(*args)
    except XbarsimError:
        raise
    except Exception as exc:
        raise DeviceModelError(f"device model {model.name!r}: {what} failed ({_why(exc)})") from exc


def _check(out, G, what: str, name: str, xp):
    if not hasattr(out, "shape") or tuple(out.shape) != tuple(G.shape):
        raise DeviceModelError(
            f"device model {name!r}: {what} returned shape {getattr(out, 'shape', type(out).__name__)}, expected {tuple(G.shape)}"
        )
    if not bool(xp.all(xp.isfinite(out))):
        raise DeviceModelError(f"device model {name!r}: {what} returned NaN or infinite values")
    return out.astype(G.dtype, copy=False)


class DeviceStack:
    """The error, drift and read-noise models of one simulation."""

    def __init__(
        self,
        params: DeviceParams,
        error_model: str = "none",
        drift_model: str = "none",
        noise_model: str = "none",
        extra_paths=None,
    ) -> None:
        self.params = params
        self.error: DeviceModel | None = None
        self.drift: DeviceModel | None = None
        self.noise: DeviceModel | None = None
        # resolve every named model first, so a misspelled name is an error even
        # when that model ends up unused (e.g. t_drift = 0, or error off under drift)
        error_cls = get_model(error_model, "error", extra_paths) if error_model != "none" else None
        drift_cls = get_model(drift_model, "drift", extra_paths) if drift_model != "none" else None
        noise_cls = get_model(noise_model, "noise", extra_paths) if noise_model != "none" else None
        if drift_cls is not None and params.t_drift > 0:
            self.drift = _construct(drift_cls, params)
            limit = self.drift.drift_valid_days
            if limit is not None and params.t_drift > limit:
                log.warning(
                    "t_drift = %g days is beyond the %g days covered by drift model %r; results are extrapolated",
                    params.t_drift, limit, drift_model,
                )
        if error_cls is not None:
            if self.drift is not None and error_model != "alpha":
                # manual 7.3: a drift model includes its own time-dependent error
                log.info("drift_model %r is active: custom error_model %r is not applied", drift_model, error_model)
            else:
                self.error = _construct(error_cls, params)
        if noise_cls is not None:
            self.noise = _construct(noise_cls, params)

    @property
    def Gmin(self) -> float:
        return self.params.Gmin

    def program(self, G, xp, rng):
        """Target conductances -> conductances at inference time (error, then drift), clipped."""
        if self.error is not None:
            G = _check(_call(self.error, "programming_error", G, xp, rng), G, "programming_error", self.error.name, xp)
            G = xp.clip(G, self.Gmin, 1.0)
        if self.drift is not None:
            G = _check(_call(self.drift, "drift", G, self.params.t_drift, xp, rng), G, "drift", self.drift.name, xp)
            G = xp.clip(G, self.Gmin, 1.0)
        return G

    def noise_sigma(self, G, xp):
        """Read-noise standard deviations for ``G`` (None when read noise is off)."""
        if self.noise is None:
            return None
        sigma = _check(_call(self.noise, "read_noise_sigma", G, xp), G, "read_noise_sigma", self.noise.name, xp)
        if bool(xp.any(sigma < 0)):
            raise DeviceModelError(f"device model {self.noise.name!r}: read_noise_sigma returned negative values")
        return sigma

    @property
    def output_equivalent_ok(self) -> bool:
        """True when read noise can be drawn at the column output exactly in distribution."""
        return self.noise is None or self.noise.read_noise_output_equivalent

    def sample_read(self, G, sigma, xp, rng):
        """One exact read: a fresh noisy conductance matrix."""
        if type(self.noise).sample_read_noise is DeviceModel.sample_read_noise:
            return self.noise.sample_read_noise(G, sigma, xp, rng)
        # a model's own sampler (non-Gaussian / clipped noise) is checked like the other hooks
        return _check(_call(self.noise, "sample_read_noise", G, sigma, xp, rng), G, "sample_read_noise", self.noise.name, xp)
