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


def load_with_overrides(config: str | None, sets: tuple[str, ...]) -> Config:
    """Config from a file (or the defaults) with ``--set`` overrides applied, validated once."""
    data = read_config_file(__import__("pathlib").Path(config)) if config else {}
    apply_overrides(data, parse_sets(sets))
    return load_config(data, name=config or "<defaults>")


def parameter_summary(cfg: Config) -> str:
    """The parameters that differ from the defaults (what CrossSim prints before a run)."""
    defaults = Config().to_dict()
    current = cfg.to_dict()
    lines = [f"xbarsim: model {cfg.model_name}, task {cfg.task}, {cfg.Nruns} run(s)"]
    changed = {k: v for k, v in current.items() if k not in ("layers",) and defaults.get(k) != v}
    if changed:
        lines.append("  " + ", ".join(f"{k}={v}" for k, v in changed.items()))
    for name, ov in current["layers"].items():
        lines.append(f"  [layers.{name}] " + ", ".join(f"{k}={v}" for k, v in ov.items()))
    return "\n".join(lines)


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
    """Simulate inference accuracy on the chip described by CONFIG (default: the bundled digits model)."""
    from simulator.runner import run

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
    net = None
    if cfg.show_model_summary:  # CrossSim's option: print the layers before the run
        from simulator.network import load_model_for

        net = load_model_for(cfg)
        summary = getattr(net, "summary", None)
        click.echo(summary() if callable(summary) else f"model {net.name}")
    result = run(cfg, progress=not no_progress, echo=click.echo, network=net)
    click.echo(result.table())
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
