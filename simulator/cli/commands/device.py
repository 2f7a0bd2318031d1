"""``xbarsim device``: inspect the device models (list them, plot their characteristics)."""
from __future__ import annotations

from pathlib import Path

import click

from simulator.errors import DeviceModelError


def _parse_params(items: tuple[str, ...]) -> dict:
    from simulator.config import parse_value

    extra = {}
    for item in items:
        key, sep, value = item.partition("=")
        if not sep or not key.strip():
            raise DeviceModelError(f"--param {item!r}: expected KEY=VALUE (a [device_params] entry)")
        extra[key.strip()] = parse_value(value.strip())
    return extra


command = click.Group("device", help="Device models: list them, plot their characteristics.")


@command.command("list")
@click.option("--device-path", "device_path", multiple=True, type=click.Path(file_okay=False),
              help="Extra folder of device-model modules (repeatable; adds to XBARSIM_DEVICE_PATH).")
def list_models(device_path: tuple[str, ...]) -> None:
    """List the available device models by kind (error_model, drift_model, noise_model)."""
    from devices.registry import KINDS, _by_kind

    table = _by_kind(list(device_path))
    keys = {"error": "error_model", "drift": "drift_model", "noise": "noise_model"}
    for kind in KINDS:
        click.echo(f"{keys[kind]}:")
        for name in sorted(table[kind]):
            doc = (table[kind][name].__doc__ or "").strip().splitlines()
            click.echo(f"  {name:<20} {doc[0] if doc else ''}")


@command.command("plot")
@click.argument("name")
@click.option("--out", "out", type=click.Path(dir_okay=False), default=None,
              help="PNG file to write (default: device_<NAME>.png).")
@click.option("--on-off-ratio", type=click.FloatRange(min=0), default=0.0, show_default=True,
              help="On_off_ratio: Gmax/Gmin (0 = infinite).")
@click.option("--alpha-error", type=click.FloatRange(min=0), default=0.0, show_default=True, help="alpha_error.")
@click.option("--proportional-error/--no-proportional-error", default=False, help="proportional_error.")
@click.option("--alpha-noise", type=click.FloatRange(min=0), default=0.0, show_default=True, help="alpha_noise.")
@click.option("--proportional-noise/--no-proportional-noise", default=False, help="proportional_noise.")
@click.option("--t-drift", type=click.FloatRange(min=0), default=0.0, show_default=True,
              help="t_drift (days), marked on drift plots.")
@click.option("--param", "param", multiple=True, metavar="KEY=VALUE",
              help="A [device_params] entry, e.g. pcm_Gmax_uS=20 (repeatable).")
@click.option("--device-path", "device_path", multiple=True, type=click.Path(file_okay=False),
              help="Extra folder of device-model modules (repeatable).")
def plot(name, out, on_off_ratio, alpha_error, proportional_error, alpha_noise, proportional_noise, t_drift,
         param, device_path) -> None:
    """Plot sigma_G vs G (programming error, read noise) and G(t) (drift) of device model NAME."""
    from devices.base import DeviceParams
    from devices.plotting import plot_device

    params = DeviceParams(
        On_off_ratio=on_off_ratio,
        alpha_error=alpha_error,
        proportional_error=proportional_error,
        alpha_noise=alpha_noise,
        proportional_noise=proportional_noise,
        t_drift=t_drift,
        extra=_parse_params(param),
    )
    path = Path(out) if out else Path(f"device_{name}.png")
    notes: list[str] = []
    written = plot_device(name, params, path, extra_paths=list(device_path), notes=notes)
    click.echo(f"wrote {written}")
    for note in notes:
        click.echo(f"note: {note}")
