"""``xbarsim run [CONFIG] [--set key=value ...]``: one inference simulation (Nruns runs)."""
from __future__ import annotations

import click

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
def command(config: str | None, sets: tuple[str, ...], csv_path: str | None, no_progress: bool) -> None:
    """Simulate inference accuracy on the chip described by CONFIG (default: the bundled digits model)."""
    from simulator.runner import run

    cfg = load_with_overrides(config, sets)
    click.echo(parameter_summary(cfg))
    result = run(cfg, progress=not no_progress, echo=click.echo)
    click.echo(result.table())
    if csv_path:
        result.to_frame().to_csv(csv_path, index=False)
        click.echo(f"wrote {csv_path}")
