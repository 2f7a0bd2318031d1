"""``xbarsim calibrate [CONFIG] [options]``: profile and optimize ADC / activation ranges (manual 9.4-9.6)."""
from __future__ import annotations

import click

from simulator.cli.commands.run import load_with_overrides, parameter_summary
from simulator.cli.options import no_check_option, with_no_check


@click.command("calibrate")
@click.argument("config", required=False, type=click.Path(dir_okay=False))
@click.option("--what", type=click.Choice(["adc", "dac", "both"]), default="both", show_default=True,
              help="Calibrate ADC ranges, activation (DAC) ranges, or both (activations first).")
@click.option("--nbits", type=click.IntRange(1, 32), default=None,
              help="Resolution used by the range optimization [default: the config's adc_bits / dac_bits, or 8].")
@click.option("--pct", type=click.FloatRange(50, 100, min_open=True), default=None,
              help="Percentile the ranges of bit-sliced layers must cover (sets pct; part of the hardware key) "
                   "[default: the config's pct, or 99.99].")
@click.option("--out", "out", type=click.Path(dir_okay=False), default=None,
              help="Calibration file to write [default: calibration_file, else <calibration_dir>/<network>__<key>.h5].")
@click.option("--ntest", type=click.IntRange(1), default=None,
              help="Calibration images [default: calibration_ntest, else ntest, else the whole calibration split].")
@click.option("--plots", "plots", type=click.Path(file_okay=False), default=None,
              help="Save histogram PNGs with the chosen limits to this folder.")
@click.option("--raw-dir", "raw_dir", type=click.Path(file_okay=False), default=None,
              help="Also write every profiled value to this folder (float32 dumps + index.json; "
                   "subfolders activations/ and adc/ with --what both).")
@click.option("--optimizer", default="mse", show_default=True,
              help="Range optimizer: mse (manual Fig. 9.4), minmax, percentile, or module:function.")
@click.option("--relu-aware/--no-relu-aware", "relu_aware", default=None,
              help="ReLU-aware ADC profiling [default: the config's profile_adc_biased].")
@click.option("--set", "sets", multiple=True, metavar="KEY=VALUE", help="Override a config key (repeatable).")
@click.option("--no-progress", is_flag=True, help="Hide the progress bar.")
@click.option("--force", is_flag=True, help="Replace an existing calibration file (with --what adc/dac the other "
              "ranges in it are kept).")
@no_check_option
def command(config, what, nbits, pct, out, ntest, plots, raw_dir, optimizer, relu_aware, sets, no_progress,
            force, no_check) -> None:
    """Calibrate the ADC and activation ranges of the chip described by CONFIG.

    Runs the network on the calibration split with the ADCs disabled (and,
    for activation ranges, the DACs disabled), collects histograms of every
    ADC input and layer input, optimizes the ranges and writes one
    calibration file for the network and hardware key, which `xbarsim run`
    loads with adc_range_option = "calibrated".
    """
    from adc_calibration.calibrate import calibrate

    cfg = load_with_overrides(config, with_no_check(sets, no_check))
    check_outputs(cfg, out, plots, raw_dir, force, what)
    click.echo(parameter_summary(cfg))
    path, table = calibrate(
        cfg, what=what, nbits=nbits, pct=pct, optimizer=optimizer, out=out, plots_dir=plots, ntest=ntest,
        raw_dir=raw_dir, relu_aware=relu_aware, progress=not no_progress,
        meta={"config_file": config, "overrides": list(sets)},
    )
    click.echo(table)
    if plots:
        click.echo(f"histograms with the chosen limits in {plots}")
    if raw_dir:
        click.echo(f"raw profiled values in {raw_dir} (index.json lists the files)")


def _held_ranges(path) -> "set[str] | None":
    """Which of "adc" / "dac" an existing calibration file holds ranges for (None: not readable as one)."""
    try:
        import h5py

        with h5py.File(path, "r") as f:
            return {g for g in ("adc", "dac") if g in f and len(f[g])}
    except (OSError, ValueError):
        return None


def check_outputs(cfg, out, plots, raw_dir, force: bool, what: str = "both") -> None:
    """Before profiling: the calibration file, plot and raw-dump folders can be written; no silent overwrite."""
    from adc_calibration.calibrate import calibration_target
    from simulator.errors import OutputError
    from simulator.model_files import load_model_for
    from simulator.validation import check_output_dir, check_output_file

    name = "" if (out or cfg.calibration_file) else load_model_for(cfg).name
    target = calibration_target(cfg, name, out)
    check_output_file(target, "calibration file", OutputError, create_parents=True)
    if target.exists() and not force:
        held = _held_ranges(target)
        replaced = [w for w in ("adc", "dac") if w in held and what in (w, "both")]
        if replaced or held is None:
            kind = "unreadable" if held is None else " and ".join(r.upper() for r in replaced) + " ranges"
            raise OutputError(f"calibration file {str(target)!r} exists with {kind} this call would replace; "
                              "pass --force to replace them (or --out another file)")
    if plots:
        check_output_dir(plots, "--plots", OutputError)
    if raw_dir:
        check_output_dir(raw_dir, "--raw-dir", OutputError)
