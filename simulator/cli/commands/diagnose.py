"""``xbarsim diagnose CONFIG``: where the accuracy goes -- a per-layer error budget with plots."""
from __future__ import annotations

from pathlib import Path

import click


@click.command("diagnose", context_settings={"max_content_width": 100})
@click.argument("config", type=click.Path(dir_okay=False))
@click.option("--ntest", type=int, default=None, help="Test images (default: the config's ntest; 0 = whole split).")
@click.option("--layers", "layers", multiple=True, metavar="NAMES",
              help="Only these layers (comma-separated or repeated; default: every analog layer).")
@click.option("--out", type=click.Path(file_okay=False), default=None,
              help="Output folder (default: diagnose/<config name>).")
@click.option("--samples", type=click.IntRange(min=1), default=2048, show_default=True,
              help="Input rows sampled per layer for the cause split.")
@click.option("--workers", "-j", type=click.IntRange(min=1), default=None,
              help="Local worker processes for the sensitivity runs (default: one per CPU; 1 = this process).")
@click.option("--scheduler", metavar="ADDRESS", default=None, help="Run the sensitivity runs on a Dask cluster.")
@click.option("--scheduler-timeout", type=click.FloatRange(min=0, min_open=True), default=10.0, show_default=True)
@click.option("--seed", type=click.IntRange(min=0), default=None,
              help="Seed of the chip (default: the config's, else 0).")
@click.option("--no-sensitivity", is_flag=True, help="Skip the per-layer accuracy runs.")
@click.option("--no-plots", is_flag=True, help="Write the CSV and HTML page without PNG plots.")
@click.option("--no-progress", is_flag=True, help="Hide the progress bar.")
@click.option("--set", "sets", multiple=True, metavar="KEY=VALUE", help="Override a config key (repeatable).")
def command(config, ntest, layers, out, samples, workers, scheduler, scheduler_timeout, seed, no_sensitivity,
            no_plots, no_progress, sets) -> None:
    """Per-layer error budget of the chip described by CONFIG.

    For every analog layer: relative RMS error and SNR of its output against
    the ideal output on the same inputs, the split by cause (weight
    quantization, programming error/drift, read noise, parasitics, current
    limit, DAC, ADC; each switched on alone -- a first-order split), ADC/DAC
    clipping, level use and effective bits, Icol_max clipping, and the
    accuracy with only this layer non-ideal / only this layer ideal. Writes
    diagnose.csv, snr_by_cause.png, adc_histograms.png, sensitivity.png and
    report.html (self-contained) to OUT.
    """
    from simulator.cli.commands.run import load_with_overrides
    from simulator.diagnosis import active_causes, diagnose
    from simulator.model_files import load_model_for

    cfg = load_with_overrides(config, sets)
    names = [n.strip() for item in layers for n in item.split(",") if n.strip()] if layers else None
    if layers and not names:
        from simulator.errors import ConfigError

        raise ConfigError("--layers: no layer name given")
    net = load_model_for(cfg)
    analog = [l.name for l in net.layers if l.is_mvm and cfg.for_layer(l.name).analog]
    if names:
        bad = [n for n in names if n not in analog and n.split("/")[0] not in analog]
        if bad:
            from simulator.errors import ConfigError

            raise ConfigError(f"--layers: {', '.join(map(repr, bad))} names no analog layer of model "
                              f"{net.name!r}; analog layers: {', '.join(analog) or 'none'}")
    causes = active_causes(cfg, names or analog)
    if not causes:
        click.echo(f"{config}: nothing is non-ideal for the diagnosed layers (no weight quantization, device errors, "
                   "read noise, parasitics, current limit, DAC or ADC): every analog layer computes its exact "
                   "output; nothing to diagnose")
        return
    folder = Path(out) if out else Path("diagnose") / Path(config).stem
    report = diagnose(cfg, net, ntest=ntest, layers=names, samples=samples, workers=workers, scheduler=scheduler,
                      scheduler_timeout=scheduler_timeout, sensitivity=not no_sensitivity, out=folder,
                      plots=not no_plots, progress=not no_progress, seed=seed)
    click.echo(report.table())
    click.echo(f"wrote {folder / 'diagnose.csv'} and {folder / 'report.html'}", err=True)
