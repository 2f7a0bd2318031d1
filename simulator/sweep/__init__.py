"""Resumable parameter sweeps (``xbarsim sweep``).

    from simulator.sweep import run_sweep
    res = run_sweep("configs/digits.toml", ["adc_bits=4,6,8", "noise_level=0:9"], workers=4)
    res.summary          # one row per point: mean, std, min, max accuracy

Modules: :mod:`~simulator.sweep.spec` (``--param`` parsing, grid/zip,
validation), :mod:`~simulator.sweep.store` (the output folder),
:mod:`~simulator.sweep.executors` (in-process, local processes, Dask),
:mod:`~simulator.sweep.report` (summary table, plot),
:mod:`~simulator.sweep.core` (the driver).
"""
from __future__ import annotations

from simulator.sweep.core import SweepResult, run_sweep
from simulator.sweep.spec import Param, SweepError, SweepSpec, parse_param, parse_values

__all__ = ["Param", "SweepError", "SweepResult", "SweepSpec", "parse_param", "parse_values", "run_sweep"]
