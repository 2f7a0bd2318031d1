"""``xbarsim sweep``: accuracy over a grid of config parameters, resumable, local or on Dask."""
from __future__ import annotations

import sys

import click

from simulator.cli.options import no_check_option, with_no_check

_VALUES_HELP = """\b
VALUES forms:
  4,6,8              a list (TOML values: 'a','b' / true,false / [-1,1],[-2,2])
  0:9                integers, both ends included (0:8:2 with a step)
  0:1:lin:11         11 evenly spaced values
  1e-3:1e-1:log:5    5 log-spaced values (the plot gets a log axis)
  @values.txt        one value per line
"""


def _interruptible() -> None:
    """SIGINT and SIGTERM to the main process stop the sweep (workers terminated, finished points kept).

    A process started in the background by a non-interactive shell inherits
    SIGINT as ignored, and Python then never raises KeyboardInterrupt: install
    the handlers explicitly. SIGTERM (``kill PID``) is handled like Ctrl-C.
    """
    import signal

    def on_term(signum, frame):
        raise KeyboardInterrupt

    signal.signal(signal.SIGINT, signal.default_int_handler)
    signal.signal(signal.SIGTERM, on_term)


def _load_runner(spec: str):
    """``module:function`` -> the callable (hidden --runner option, for tests and custom runners)."""
    import importlib

    from simulator.sweep.spec import SweepError

    mod, sep, func = spec.partition(":")
    if not sep or not mod or not func:
        raise SweepError(f"--runner {spec!r}: expected MODULE:FUNCTION")
    try:
        obj = getattr(importlib.import_module(mod), func)
    except (ImportError, AttributeError) as exc:
        raise SweepError(f"--runner {spec!r}: cannot import it ({exc})") from None
    if not callable(obj):
        raise SweepError(f"--runner {spec!r} is not callable")
    return obj


@click.command(
    "sweep",
    epilog=_VALUES_HELP,
    context_settings={"max_content_width": 100},
)
@click.argument("config", type=click.Path(dir_okay=False))
@click.option("--param", "-p", "params", multiple=True, required=True, metavar="NAME=VALUES",
              help="A config key to sweep (repeatable; several form a grid). NAME may be layers.<layer>.<key>.")
@click.option("--zip", "zip_", is_flag=True, help="Pair the parameters' values point by point instead of a grid.")
@click.option("--workers", "-j", type=click.IntRange(min=1), default=None,
              help="Local worker processes (default: one per CPU; 1 = run in this process).")
@click.option("--scheduler", metavar="ADDRESS", default=None,
              help="Run on a Dask distributed cluster, e.g. tcp://host:8786.")
@click.option("--scheduler-timeout", type=click.FloatRange(min=0, min_open=True), default=10.0, show_default=True,
              help="Seconds to wait when connecting to --scheduler.")
@click.option("--resume", is_flag=True, help="Finish an interrupted sweep: skip points already in results.csv.")
@click.option("--name", default=None, help="Output folder name (default: <config stem>_<swept params>).")
@click.option("--out", type=click.Path(file_okay=False), default="sweeps", show_default=True,
              help="Parent folder of the sweep's output folder.")
@click.option("--seed", type=click.IntRange(min=0), default=0, show_default=True,
              help="Base seed of every point (run i uses seed + i).")
@click.option("--set", "sets", multiple=True, metavar="KEY=VALUE",
              help="Override a config value for the whole sweep (repeatable), e.g. --set Nruns=5.")
@click.option("--no-plot", is_flag=True, help="Do not draw accuracy.png.")
@click.option("--no-progress", is_flag=True, help="No progress bar.")
@click.option("--max-points", type=click.IntRange(min=1), default=None,
              help="Confirm a grid larger than 10000 points (the sweep refuses more points than this).")
@click.option("--runner", default=None, hidden=True, metavar="MODULE:FUNCTION",
              help="Use this callable instead of simulator.run (it must be importable by the workers).")
@no_check_option
def command(config, params, zip_, workers, scheduler, scheduler_timeout, resume, name, out, seed, sets, no_plot,
            no_progress, runner, no_check, max_points):
    """Sweep config parameters of CONFIG and record the accuracy of every point.

    Writes OUT/NAME/results.csv (one row per point and run, saved as each
    point finishes), summary.csv, accuracy.png, sweep.json and the config of
    every point in points/. Every point is validated before anything runs.

    \b
    Examples:
      xbarsim sweep sweeps/alpha_error.toml --param alpha_error=0:0.5:lin:11
      xbarsim sweep sweeps/adc_dac_grid.toml -p adc_bits=6:10 -p dac_bits=3,4,6,8
      xbarsim sweep sweeps/witin_noise_level.toml -p noise_level=0:9 --scheduler tcp://10.0.0.5:8786
    """
    from simulator.sweep import run_sweep
    from simulator.sweep.report import format_summary
    from simulator.sweep.spec import parse_set

    _interruptible()
    overrides = parse_set(with_no_check(sets, no_check))
    runner_fn = _load_runner(runner) if runner else None
    echo = lambda msg: click.echo(msg, err=True)  # noqa: E731 - status lines on stderr, the table on stdout
    try:
        res = run_sweep(
            config,
            list(params),
            zip=zip_,
            workers=workers,
            scheduler=scheduler,
            scheduler_timeout=scheduler_timeout,
            resume=resume,
            name=name,
            out=out,
            seed=seed,
            overrides=overrides,
            runner=runner_fn,
            progress=not no_progress,
            plot=not no_plot,
            echo=echo,
            **({"max_points": max_points} if max_points else {}),
        )
    except KeyboardInterrupt:
        click.echo("\nxbarsim: sweep interrupted; finished points are saved: run the same command with --resume "
                   "to complete it", err=True)
        sys.exit(130)
    click.echo(format_summary(res.summary))
    click.echo(f"results: {res.folder / 'results.csv'}  summary: {res.folder / 'summary.csv'}", err=True)
    if res.plot is not None:
        click.echo(f"plot: {res.plot}", err=True)
    elif res.note:
        click.echo(res.note, err=True)
