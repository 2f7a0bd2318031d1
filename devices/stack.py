"""Apply the configured device models to a conductance matrix.

:class:`DeviceStack` is what the simulator's NumericCore talks to. It resolves
the models named in the config, applies them in the manual's order (Fig. 7.1:
programming error, then drift, then read noise on top at every MVM), clips to
the physical range ``[G_min, 1]`` and checks every value a model returns, so
a broken plugin gives one clear error instead of NaNs downstream.
"""
from __future__ import annotations

import dataclasses
import logging
from dataclasses import dataclass
from typing import Any

from devices.base import DeviceModel, DeviceParams
from devices.registry import get_model
from simulator.errors import DeviceModelError, XbarsimError

log = logging.getLogger("xbarsim.devices")


class _AskedDict(dict):
    """The ``device_params`` table, remembering which keys models look up (a misspelled key is then an error).

    Models read their ``device_params`` when they are constructed.
    """

    def __init__(self, *args) -> None:
        super().__init__(*args)
        self.asked: set[str] = set()

    def __contains__(self, key) -> bool:
        self.asked.add(key)
        return super().__contains__(key)

    def __getitem__(self, key):
        self.asked.add(key)
        return super().__getitem__(key)

    def get(self, key, default=None):
        self.asked.add(key)
        return super().get(key, default)


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


@dataclass
class ProgrammedArray:
    """One programmed conductance plane: what :meth:`DeviceStack.at_time` drifts from."""

    target: Any  #: target conductances (normalized; None when no drift model needs them)
    G: Any  #: programmed conductances (error applied, clipped), before drift
    drift_seed: int | None  #: seed of the drift model's generator (None: no drift model)
    stuck_off: Any = None  #: mask of devices stuck at G_min (None: no stuck cells)
    stuck_on: Any = None  #: mask of devices stuck at G_max


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
        extra = _AskedDict(params.extra)  # records the device_params keys the models look up
        params = self.params = dataclasses.replace(params, extra=extra)
        self.error: DeviceModel | None = None
        self.drift: DeviceModel | None = None
        self.noise: DeviceModel | None = None
        # resolve every named model first, so a misspelled name is an error even
        # when that model ends up unused (e.g. t_drift = 0, or error off under drift)
        error_cls = get_model(error_model, "error", extra_paths) if error_model != "none" else None
        drift_cls = get_model(drift_model, "drift", extra_paths) if drift_model != "none" else None
        noise_cls = get_model(noise_model, "noise", extra_paths) if noise_model != "none" else None
        times = self.times
        if any(t < 0 for t in times) or list(times) != sorted(times):
            raise DeviceModelError(f"t_drift = {list(times)}: times must be >= 0 and ascending")
        f_off, f_on = params.stuck_off_fraction, params.stuck_on_fraction
        if not (0 <= f_off <= 1 and 0 <= f_on <= 1 and f_off + f_on <= 1):
            raise DeviceModelError(
                f"stuck_off_fraction = {f_off:g}, stuck_on_fraction = {f_on:g}: each must be in [0, 1] and their sum <= 1"
            )
        if drift_cls is not None and max(times) > 0:
            self.drift = _construct(drift_cls, params)
            limit = self.drift.drift_valid_days
            if limit is not None and max(times) > limit:
                log.warning(
                    "t_drift = %g days is beyond the %g days covered by drift model %r; results are extrapolated",
                    max(times), limit, drift_model,
                )
            shortest = getattr(self.drift, "drift_min_days", None)
            too_short = [t for t in times if shortest is not None and 0 < t < shortest]
            if too_short:
                raise DeviceModelError(
                    f"t_drift = {too_short[0]:g} days: drift_model {drift_model!r} needs t_drift >= {shortest:.4g} days or 0"
                )
        if self.drift is not None and self.drift.drift_includes_error and 0 in times:
            raise DeviceModelError(
                f"t_drift = {list(times)}: drift_model {drift_model!r} includes the programming error in its drift, "
                "so at time 0 the arrays would hold no error; start the list after 0 (or use one time per run)"
            )
        if error_cls is not None:
            if self.drift is not None and self.drift.drift_includes_error and error_model != "alpha":
                # manual 7.3: a drift model includes its own time-dependent error
                log.info("drift_model %r is active: custom error_model %r is not applied", drift_model, error_model)
            else:
                self.error = _construct(error_cls, params)
        if noise_cls is not None:
            self.noise = _construct(noise_cls, params)
        if set(extra) - extra.asked:  # also ask the named models that are not active (t_drift = 0, error under drift)
            for cls in (error_cls, drift_cls):
                if cls is not None and all(type(m) is not cls for m in (self.error, self.drift, self.noise)):
                    try:
                        cls(params)
                    except Exception:  # noqa: BLE001 - only the keys it asks for matter here
                        pass
        unused = [k for k in extra if k not in extra.asked]
        named = [m for m in (error_model, drift_model, noise_model) if m != "none"]
        if unused and not named:
            log.warning("device_params %s has no effect: error_model, drift_model and noise_model are 'none'",
                        ", ".join(unused))
        elif unused:
            import difflib

            hint = difflib.get_close_matches(unused[0], sorted(extra.asked), n=1, cutoff=0.6)
            raise DeviceModelError(
                f"device_params.{unused[0]} is not a parameter of the device models {', '.join(repr(m) for m in named)}"
                + (f" (did you mean {hint[0]!r}?)" if hint else
                   f"; they read: {', '.join(sorted(extra.asked)) or 'no device_params'}")
            )

    @property
    def Gmin(self) -> float:
        return self.params.Gmin

    @property
    def times(self) -> tuple[float, ...]:
        """Every inference time (days) the arrays are evaluated at."""
        return tuple(self.params.t_drift_all) or (float(self.params.t_drift),)

    @property
    def stuck(self) -> bool:
        return self.params.stuck_off_fraction + self.params.stuck_on_fraction > 0

    def program_state(self, G, xp, rng) -> ProgrammedArray:
        """Program target conductances ``G`` once: programming error and stuck cells, drift draws fixed.

        Random numbers come from ``rng`` in this order: the error model's draws,
        one integer seeding the drift model's generator (reset to it at every
        inference time, so each device keeps its draws), then one uniform number
        per device deciding whether it is stuck off (``u < stuck_off_fraction``)
        or stuck on (the next ``stuck_on_fraction``).
        """
        target = G
        if self.error is not None:
            G = _check(_call(self.error, "programming_error", G, xp, rng), G, "programming_error", self.error.name, xp)
            G = xp.clip(G, self.Gmin, 1.0)
        seed = int(rng.integers(0, 2**62)) if self.drift is not None else None
        off = on = None
        if self.stuck:
            u = rng.random(G.shape, dtype=G.dtype)
            f_off = self.params.stuck_off_fraction
            off = u < f_off
            on = (u >= f_off) & (u < f_off + self.params.stuck_on_fraction)
        # the targets are kept only for a drift model (they set e.g. PCM drift exponents)
        return ProgrammedArray(target=target if self.drift is not None else None, G=G, drift_seed=seed,
                               stuck_off=off, stuck_on=on)

    def at_time(self, state: ProgrammedArray, t_days: float, xp):
        """Conductances ``t_days`` days after programming ``state`` (drift, then stuck cells), clipped.

        Stuck cells sit at ``G_min`` (off) or ``G_max = 1`` (on) at every time.
        """
        G = state.G
        if self.drift is not None and t_days > 0:
            drng = xp.random.default_rng(state.drift_seed)
            out = _call(self.drift, "drift_programmed", G, state.target, float(t_days), xp, drng)
            G = xp.clip(_check(out, G, "drift", self.drift.name, xp), self.Gmin, 1.0)
        if state.stuck_off is not None:
            G = xp.where(state.stuck_off, self.Gmin, G)
            G = xp.where(state.stuck_on, 1.0, G).astype(state.G.dtype, copy=False)
        return G

    def program(self, G, xp, rng):
        """Target conductances -> conductances at inference time ``params.t_drift`` (error, drift, stuck cells)."""
        return self.at_time(self.program_state(G, xp, rng), self.params.t_drift, xp)

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


#: the per-layer config keys that decide a layer's device models
DEVICE_KEYS = ("error_model", "drift_model", "noise_model", "alpha_error", "proportional_error", "alpha_noise",
               "proportional_noise", "device_params", "device_data", "stuck_off_fraction", "stuck_on_fraction")


def _freeze(v):
    if isinstance(v, dict):
        return tuple(sorted((k, _freeze(x)) for k, x in v.items()))
    if isinstance(v, (list, tuple)):
        return tuple(_freeze(x) for x in v)
    return v


def make_device_stack(cfg, hw, cache: dict | None = None) -> DeviceStack:
    """The :class:`DeviceStack` of one layer: global ``cfg`` values plus the layer's parameters ``hw``.

    ``cfg`` is a :class:`simulator.config.Config` (On_off_ratio, t_drift,
    device_path are chip-wide), ``hw`` the layer's
    :class:`~simulator.config.HardwareParams` (``cfg.for_layer(name)``), which
    carries the device keys of :data:`DEVICE_KEYS` (per-layer overridable).
    With ``device_data`` set, the "empirical" model is the error model, and
    also the drift model when ``drift_model = "none"`` and a time > 0 is
    evaluated. Layers with equal device settings share one stack through
    ``cache`` (a dict the caller keeps per simulation).
    """
    times = tuple(float(t) for t in cfg.drift_times)
    key = (times, cfg.On_off_ratio, cfg.device_path) + tuple(_freeze(getattr(hw, k)) for k in DEVICE_KEYS)
    if cache is not None and key in cache:
        return cache[key]
    error_model, drift_model = hw.error_model, hw.drift_model
    data = hw.device_data
    if data:
        import os

        source = getattr(cfg, "source", "")
        if not os.path.isabs(data) and not os.path.exists(data) and source and os.path.isfile(source):
            data = os.path.join(os.path.dirname(os.path.abspath(source)), data)  # relative to the config file
        if error_model == "none":
            error_model = "empirical"
        if drift_model in ("none", "empirical") and max(times) > 0:
            from devices.empirical import load_device_data

            if not len(load_device_data(data).times):
                raise DeviceModelError(
                    f"device_data = {hw.device_data!r} has no time_<unit> / G_time_<unit> columns, so it gives no drift "
                    f"for t_drift = {max(times):g} days: add drift data, set a drift_model, or use t_drift = 0"
                )
            drift_model = "empirical"
    params = DeviceParams(
        On_off_ratio=cfg.On_off_ratio, alpha_error=hw.alpha_error, proportional_error=hw.proportional_error,
        alpha_noise=hw.alpha_noise, proportional_noise=hw.proportional_noise, t_drift=times[0], t_drift_all=times,
        stuck_off_fraction=hw.stuck_off_fraction, stuck_on_fraction=hw.stuck_on_fraction,
        device_data=data, extra=dict(hw.device_params or {}),
    )
    stack = DeviceStack(
        params, error_model=error_model, drift_model=drift_model, noise_model=hw.noise_model,
        extra_paths=[cfg.device_path] if cfg.device_path else None,
    )
    if cache is not None:
        cache[key] = stack
    return stack
