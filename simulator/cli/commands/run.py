"""``xbarsim run [CONFIG] [--set key=value ...]``: one inference simulation (Nruns runs)."""
from __future__ import annotations

import click

from simulator.cli.options import no_check_option, with_no_check
from simulator.config import Config, apply_overrides, load_config, parse_value, read_config_file
from simulator.errors import ConfigError


def parse_sets(sets: tuple[str, ...]) -> dict:
    """``("adc_bits=6", "layers.fc1.dac_bits=4")`` -> override dict (values in TOML syntax)."""
    out = {}
    for item in sets:
        if "=" not in item:
            raise ConfigError(f"--set {item!r}: expected KEY=VALUE, e.g. --set adc_bits=6")
        key, value = item.split("=", 1)
        out[key.strip()] = parse_value(value.strip())
    return out


#: the chip ``xbarsim run`` simulates without a CONFIG and without ``--set`` (package data)
FIRST_RUN_CONFIG = __import__("pathlib").Path(__file__).resolve().parents[2] / "data" / "first_run.toml"


def load_with_overrides(config: str | None, sets: tuple[str, ...]) -> Config:
    """Config from a file (or the defaults) with ``--set`` overrides applied, validated once."""
    data = read_config_file(__import__("pathlib").Path(config)) if config else {}
    apply_overrides(data, parse_sets(sets))
    return load_config(data, name=config or "<defaults>")


#: Config keys outside HardwareParams that still describe the chip (not how the run is done)
CHIP_RUN_KEYS = {"On_off_ratio", "t_drift", "device_path", "pct", "Verr_th", "x_par", "y_par", "witin_mode",
                 "fold_batchnorm", "calibration_file", "dac_limits_file"}


def parameter_summary(cfg: Config) -> str:
    """The parameters that differ from the defaults (what CrossSim prints before a run).

    Hardware keys (``HardwareParams``; their defaults are an ideal chip) and run settings are listed apart;
    file paths are shown relative to the working directory when they lie below it.
    """
    from simulator.config import PATH_KEYS, HardwareParams

    defaults = Config().to_dict()
    current = cfg.to_dict()
    changed = {k: v for k, v in current.items() if k not in ("layers",) and defaults.get(k) != v}
    chip_keys = set(HardwareParams.model_fields) | CHIP_RUN_KEYS
    hardware = {k: v for k, v in changed.items() if k in chip_keys}
    settings = {k: v for k, v in changed.items() if k not in hardware and k not in ("model_name", "task", "Nruns")}
    lines = [f"xbarsim: model {cfg.model_name}, task {cfg.task}, {cfg.Nruns} run(s)"]
    show = lambda d: ", ".join(f"{k}={_short_path(v) if k in PATH_KEYS else v}" for k, v in d.items())  # noqa: E731
    lines.append(f"  chip, where it differs from an ideal one: {show(hardware) if hardware else 'nothing (ideal chip)'}")
    if settings:
        lines.append(f"  run settings: {show(settings)}")
    for name, ov in current["layers"].items():
        lines.append(f"  [layers.{name}] " + show(ov))
    return "\n".join(lines)


def _short_path(value):
    """``value`` relative to the working directory when it is a path below it, else unchanged."""
    import os

    if not isinstance(value, str):
        return value
    rel = os.path.relpath(os.path.normpath(value))
    return value if rel.startswith("..") else rel


@click.command("run")
@click.argument("config", required=False, type=click.Path(dir_okay=False))
@click.option("--set", "sets", multiple=True, metavar="KEY=VALUE", help="Override a config key (repeatable).")
@click.option("--csv", "csv_path", type=click.Path(dir_okay=False), help="Write one row per run to this CSV file.")
@click.option("--no-progress", is_flag=True, help="Hide the progress bar.")
@click.option("--plot", "plot_path", type=click.Path(dir_okay=False),
              help="Accuracy-versus-time plot (PNG/PDF/SVG) when t_drift lists several times "
                   "[default: accuracy_vs_time.png].")
@no_check_option
def command(config: str | None, sets: tuple[str, ...], csv_path: str | None, no_progress: bool,
            plot_path: str | None, no_check: bool) -> None:
    """Simulate inference accuracy on the chip described by CONFIG.

    Without CONFIG and without --set: a realistic first chip on the bundled digits CNN (8-bit weights, calibrated
    8-bit DAC/ADC, 5 % programming error, 2 % read noise, 5 runs; simulator/data/first_run.toml). With --set
    only, the overrides apply to the schema defaults (an ideal chip).
    """
    from simulator.runner import run

    first_run = config is None and not sets
    if first_run:
        config = str(FIRST_RUN_CONFIG)
    cfg = load_with_overrides(config, with_no_check(sets, no_check))
    several = len(cfg.drift_times) > 1
    if plot_path is None and several:
        plot_path = "accuracy_vs_time.png"
    if plot_path:
        if not several:
            raise ConfigError(f"--plot {plot_path}: the accuracy-versus-time plot needs t_drift to list several times "
                              f"(t_drift = {cfg.t_drift})")
        check_writable(plot_path, "--plot")
    if csv_path:
        check_writable(csv_path, "--csv")
    click.echo(parameter_summary(cfg))
    from simulator.model_files import load_model_for
    from simulator.runner import adc_range_warnings

    net = load_model_for(cfg)
    if cfg.show_model_summary:  # CrossSim's option: print the layers before the run
        summary = getattr(net, "summary", None)
        click.echo(summary() if callable(summary) else f"model {net.name}")
    result = run(cfg, progress=not no_progress, echo=click.echo, network=net)
    click.echo(result.table())
    for i, line in enumerate(adc_range_warnings(cfg, net)):
        click.echo(("warning: " if i == 0 else "") + line)
    if first_run:
        click.echo("next: copy simulator/data/first_run.toml or a file in configs/ and edit it (xbarsim run CONFIG); "
                   "every parameter with units and range: docs/parameters.md; more: README.md")
    if csv_path:
        result.to_frame().to_csv(csv_path, index=False)
        click.echo(f"wrote {csv_path}")
    if plot_path:
        result.plot_vs_time(plot_path)
        click.echo(f"wrote {plot_path}")


def check_writable(path: str, option: str) -> None:
    """Refuse an output file whose folder is missing or not writable, or a known-unsupported image type,
    before any simulation time is spent."""
    import os
    from pathlib import Path

    from simulator.errors import OutputError

    p = Path(path)
    folder = p.parent if str(p.parent) else Path(".")
    if not folder.is_dir():
        raise OutputError(f"{option} {path}: folder {str(folder)!r} does not exist")
    if p.is_dir():
        raise OutputError(f"{option} {path}: is a folder, expected a file name")
    if not os.access(folder, os.W_OK) or (p.exists() and not os.access(p, os.W_OK)):
        raise OutputError(f"{option} {path}: not writable")
    if option == "--plot":
        import matplotlib

        matplotlib.use("Agg")
        from matplotlib.figure import Figure

        types = Figure().canvas.get_supported_filetypes()
        ext = p.suffix.lstrip(".").lower()
        if ext not in types:
            raise OutputError(f"{option} {path}: unknown image type {p.suffix or '(none)'!r}; "
                              f"use one of {', '.join('.' + t for t in sorted(types))}")
