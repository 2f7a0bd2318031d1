"""ADC and activation range calibration: profile, optimize, write the calibration file (manual 9.4-9.6).

:func:`calibrate` is what ``xbarsim calibrate`` runs:

1. activations (``what`` = "dac" or "both"): a profiling pass with the DAC
   disabled, then per MVM core a ``(lo, hi)`` range from the Fig. 9.4
   optimizer (:func:`~adc_calibration.optimizers.activation_range`; the lower
   limit is fixed at 0 for non-negative activations, e.g. after a ReLU);
2. ADC inputs (``what`` = "adc" or "both"): a profiling pass with the ADC
   disabled and the activations quantized as at inference -- with the ranges
   just calibrated when ``what = "both"`` (the manual's "calibrated second"
   order, 9.6). Unsliced layers get a ``(lo, hi)`` range in algorithmic units
   from the range optimizer at ``nbits`` (ReLU-aware limits, ``lo`` = the
   smallest profiled value, on layers profiled ReLU-aware); bit-sliced layers
   get integer exponents ``C_i`` per slice covering the ``pct`` percentile
   (:func:`~adc_calibration.optimizers.sliced_range_exponents`);
3. the ranges go to one HDF5 file per network and hardware key (default
   ``<calibration_dir>/<network>__<key>.h5``, or ``calibration_file``, or
   ``out``); ranges of a file already there that this call does not
   recalibrate (``what`` = "adc" or "dac") are kept;
4. a per-layer table is returned (and printed by the CLI); with
   ``plots_dir``, one histogram PNG per layer with the chosen limits.
"""
from __future__ import annotations

import datetime
import logging
import math
import os
from pathlib import Path
from typing import Any, Callable, Optional

import numpy as np

from adc_calibration.optimizers import (
    OPTIMIZERS,
    activation_range,
    get_optimizer,
    optimize_range,
    percentile_range,
    sliced_limits,
    sliced_range_exponents,
)
from adc_calibration.profiling import profile
from simulator.calibration_file import HardwareKey, default_path, load_calibration, save_calibration
from simulator.errors import CalibrationError

log = logging.getLogger("xbarsim.calibration")

__all__ = ["calibrate", "calibration_target", "DEFAULT_PCT", "DEFAULT_NBITS"]

#: percentile of bit-sliced layers when neither the config nor the caller sets pct
DEFAULT_PCT = 99.99
#: optimization resolution when the config has no ADC / DAC quantization
DEFAULT_NBITS = 8


def calibration_target(cfg, network_name: str, out: Optional[os.PathLike | str] = None) -> Path:
    """Where ``xbarsim calibrate`` writes: ``out``, else the config's ``calibration_file``, else the default path."""
    if out is not None:
        path = Path(out)
    elif cfg.calibration_file:
        path = Path(cfg.calibration_file)
    else:
        return default_path(network_name, HardwareKey.from_config(cfg), cfg.calibration_dir)
    if path.suffix.lower() not in (".h5", ".hdf5"):
        what = "--out" if out is not None else "calibration_file"
        raise CalibrationError(
            f"{what} = {str(path)!r}: xbarsim calibrate writes HDF5 calibration files; use a name ending in .h5"
        )
    return path


def _call_optimizer(opt: Callable, name: Any, hist, nbits: int, **kw) -> tuple[float, float]:
    """Call a range optimizer; keyword arguments reach built-ins always, user functions only when set."""
    func = getattr(opt, "__wrapped__", opt)
    if func is percentile_range:
        kw.setdefault("pct", DEFAULT_PCT)
    elif func not in OPTIMIZERS.values():
        kw = {k: v for k, v in kw.items() if v is not None and v is not False}
    return opt(hist, nbits, **kw)


def _existing(path: Path, network_name: str, key: HardwareKey):
    """The calibration already at ``path`` for this network and key, or None."""
    if not path.is_file():
        return None
    try:
        return load_calibration(path, network_name, key)  # every range it holds; checks network and key
    except (CalibrationError, OSError, KeyError) as exc:
        log.info("not reusing %s: %s", path, exc)
        return None


def calibrate(
    config: Any,
    *,
    what: str = "both",
    nbits: Optional[int] = None,
    pct: Optional[float] = None,
    optimizer: Any = "mse",
    out: Optional[os.PathLike | str] = None,
    plots_dir: Optional[os.PathLike | str] = None,
    ntest: Optional[int] = None,
    raw_dir: Optional[os.PathLike | str] = None,
    relu_aware: Optional[bool] = None,
    network: Any = None,
    progress: bool = False,
    meta: Optional[dict] = None,
) -> tuple[Path, str]:
    """Profile, optimize and save calibrated ADC and activation ranges; returns ``(path, table)``.

    Parameters
    ----------
    config:
        The hardware config to calibrate for (path, dict or Config).
    what:
        "adc", "dac" or "both".
    nbits:
        Resolution used by the range optimization (manual 9.4.2); default:
        each layer's ``adc_bits`` (``dac_bits`` for activations), or 8 when 0.
    pct:
        Percentile for bit-sliced layers; it becomes the config's ``pct`` and
        so enters the hardware key (default: the config's, else 99.99).
    optimizer:
        "mse" (Fig. 9.4), "minmax", "percentile", a "module:function" path or
        a callable ``f(hist, nbits, **kw) -> (lo, hi)``; used for unsliced ADC
        ranges and for activation ranges.
    out:
        Output file (default: the config's ``calibration_file``, else
        ``<calibration_dir>/<network>__<hardware key>.h5``).
    plots_dir:
        Save histogram PNGs with the chosen limits here.
    ntest, raw_dir, relu_aware, network, progress:
        Passed to :func:`~adc_calibration.profiling.profile`.
    meta:
        Extra JSON-able entries stored in the file (e.g. the command line).
    """
    from simulator.config import load_config
    from simulator.model_files import load_model_for

    _check_arguments(what, nbits, pct)
    cfg = load_config(config)
    if pct is not None:
        cfg = cfg.with_overrides({"pct": float(pct)})
    opt = get_optimizer(optimizer)
    net = network if network is not None else load_model_for(cfg)
    key = HardwareKey.from_config(cfg)
    path = calibration_target(cfg, net.name, out)
    use_pct = float(cfg.pct) if cfg.pct is not None else DEFAULT_PCT
    old = _existing(path, net.name, key) if what != "both" else None

    dac_ranges: dict[str, tuple[float, float]] = dict(old.dac_ranges) if old is not None else {}
    adc_ranges: dict[str, Any] = dict(old.adc_ranges) if old is not None else {}
    rows: dict[str, dict[str, Any]] = {}
    kw = dict(ntest=ntest, raw_dir=raw_dir, progress=progress, network=net)
    store_d, store_a = _profile_passes(cfg, what, (opt, optimizer, nbits), use_pct, kw, relu_aware,
                                       rows, dac_ranges, adc_ranges)
    if what == "dac" and not adc_ranges:
        log.info("%s holds activation ranges only; run with --what adc (or both) before using "
                 "adc_range_option = 'calibrated'", path)
    n_images = max(getattr(s, "n_images", 0) for s in (store_d, store_a) if s is not None)
    info = {
        "what": what,
        "optimizer": optimizer if isinstance(optimizer, str) else getattr(opt, "__name__", "custom"),
        "adc_nbits": nbits, "pct": use_pct if key.Nslices > 1 else cfg.pct, "calibration_images": n_images,
    }
    save_calibration(path, net.name, key, adc_ranges, dac_ranges, _file_meta(cfg, rows, info, meta))

    if plots_dir is not None:
        _plots(plots_dir, store_a, store_d, adc_ranges, dac_ranges)
    return path, _table(path, net.name, key, rows, n_images, what)


def _profile_passes(cfg, what: str, optimization: tuple, use_pct: float, kw: dict, relu_aware: Optional[bool],
                    rows: dict, dac_ranges: dict, adc_ranges: dict):
    """Profile activations then ADC inputs (as ``what`` asks) and optimize their ranges into ``dac_ranges`` /
    ``adc_ranges`` (fresh activation ranges replace the old ones); returns the two ProfileStores (None if not run).
    ``optimization`` is ``(optimizer function, optimizer as given, nbits)``."""
    opt, optimizer, nbits = optimization
    raw_dir = kw["raw_dir"]
    store_d = store_a = None
    if what in ("dac", "both"):
        kw_d = dict(kw, raw_dir=Path(raw_dir) / "activations") if raw_dir is not None and what == "both" else kw
        store_d = profile(cfg, what="dac", **kw_d)
        dac_ranges.clear()
        dac_ranges.update(_activation_ranges(cfg, store_d, opt, optimizer, nbits, rows))
    if what in ("adc", "both"):
        if raw_dir is not None and store_d is not None:
            kw = dict(kw, raw_dir=Path(raw_dir) / "adc")  # one dump (and index.json) per pass
        store_a = profile(cfg, what="adc", relu_aware=relu_aware, dac_ranges=dac_ranges or None, **kw)
        adc_ranges.update(_adc_ranges(cfg, store_a, opt, optimizer, nbits, use_pct, rows))
    return store_d, store_a


def _file_meta(cfg, rows: dict, info: dict, meta: Optional[dict]) -> dict:
    """The ``meta`` entries of the file: how it was made (``info``), the config, then the caller's ``meta``."""
    out = dict(info, model_name=cfg.model_name, task=cfg.task)
    out["relu_aware"] = {n: bool(r.get("relu_aware")) for n, r in rows.items() if "relu_aware" in r}
    out["created"] = datetime.datetime.now(datetime.timezone.utc).isoformat(timespec="seconds")
    out["config"] = cfg.to_dict()
    out.update(meta or {})
    return out


def _check_arguments(what: str, nbits: Optional[int], pct: Optional[float]) -> None:
    if what not in ("adc", "dac", "both"):
        raise CalibrationError(f"what must be 'adc', 'dac' or 'both', got {what!r}")
    if nbits is not None and not 1 <= int(nbits) <= 32:
        raise CalibrationError(f"nbits must be between 1 and 32, got {nbits}")
    if pct is not None and not 50 < float(pct) <= 100:
        raise CalibrationError(f"pct must be in (50, 100], got {pct}")


def _activation_ranges(cfg, store_d, opt, optimizer, nbits: Optional[int], rows: dict) -> dict[str, tuple[float, float]]:
    """``(lo, hi)`` per core from the profiled activations (lo = 0 for non-negative ones); fills ``rows``."""
    dac_ranges = {}
    for name, h in store_d.activations.items():
        if h.empty:
            raise CalibrationError(f"layer {name!r}: no activations were profiled")
        hw = cfg.for_layer(name.split("/")[0])
        nb = int(nbits) if nbits is not None else (hw.dac_bits or DEFAULT_NBITS)
        nonneg = h.min >= 0
        if getattr(opt, "__wrapped__", None) is optimize_range:
            lo, hi = activation_range(h, nb, after_relu=nonneg)
        else:
            lo, hi = _call_optimizer(opt, optimizer, h, nb, min_fixed=0.0 if nonneg else None)
            if nonneg:
                lo = 0.0
                if not hi > 0:
                    hi = h.max if h.max > 0 else 1.0
        dac_ranges[name] = (float(lo), float(hi))
        li = store_d.layer_info.get(name)
        rows.setdefault(name, {}).update(
            dac=(lo, hi), dac_nbits=nb, act_min=h.min, act_max=h.max,
            after_relu=None if li is None else li.input_after_relu,
        )
    return dac_ranges


def _adc_ranges(cfg, store_a, opt, optimizer, nbits: Optional[int], use_pct: float, rows: dict) -> dict[str, np.ndarray]:
    """Per core: ``(lo, hi)`` (unsliced, algorithmic units) or exponents ``C_i`` (bit-sliced); fills ``rows``."""
    adc_ranges = {}
    for name, li in store_a.layer_info.items():
        hw = cfg.for_layer(li.layer)
        nb = int(nbits) if nbits is not None else (hw.adc_bits or DEFAULT_NBITS)
        if not store_a.slices(name):
            raise CalibrationError(f"layer {name!r}: no ADC inputs were profiled")
        row = rows.setdefault(name, {})
        if li.sliced:
            hists = store_a.slice_histograms(name)
            for i, h in enumerate(hists):
                if h.empty:
                    raise CalibrationError(f"layer {name!r}, slice {i}: no ADC inputs were profiled")
            exps = sliced_range_exponents(hists, li.y_max, use_pct, li.signed)
            adc_ranges[name] = np.asarray(exps, dtype=np.int64)
            row.update(adc_exponents=exps, adc_pct=use_pct, adc_nbits=nb,
                       adc_min=min(h.min for h in hists), adc_max=max(h.max for h in hists))
        else:
            h = store_a.adc_histogram(name, None)
            if h.empty:  # ReLU-aware profiling dropped everything: the ReLU zeroes all outputs
                log.warning("layer %r: every profiled ADC input is below -bias (its ReLU outputs are all 0)", name)
                lo, hi = 0.0, 1.0
            else:
                lo, hi = _call_optimizer(opt, optimizer, h, nb, relu_aware=li.relu_aware)
            adc_ranges[name] = np.array([lo, hi], dtype=np.float64)
            row.update(adc=(lo, hi), adc_nbits=nb, adc_min=h.min, adc_max=h.max)
        row.update(relu_aware=li.relu_aware, relu_note=li.relu_note, n_slices=li.n_slices,
                   partitions=li.n_partitions)
    return adc_ranges


def _plots(plots_dir, store_a, store_d, adc_ranges, dac_ranges) -> list[Path]:
    from adc_calibration.plots import plot_histograms

    paths: list[Path] = []
    if store_a is not None:
        lim = {}
        for name, li in store_a.layer_info.items():
            r = adc_ranges.get(name)
            if r is None:
                continue
            lim[name] = sliced_limits(r, li.y_max, li.signed) if li.sliced else np.asarray(r, dtype=np.float64)
        units = {n: "ADC input (raw array units)" for n, li in store_a.layer_info.items() if li.sliced}
        paths += plot_histograms(store_a, lim, plots_dir, units=units)
    if store_d is not None:
        paths += plot_histograms(store_d, dac_ranges, plots_dir, activations=True)
    return paths


def _fmt(v: float) -> str:
    return "nan" if v is None or (isinstance(v, float) and math.isnan(v)) else f"{v:.4g}"


def _table(path: Path, network: str, key: HardwareKey, rows: dict, n_images: int, what: str) -> str:
    lines = [f"calibrated {what} ranges of {network} ({n_images} calibration images), hardware key {key.tag()}"]
    head = f"  {'layer':<12} {'ADC range / exponents C_i':<30} {'profiled ADC inputs':<22} {'ReLU-aware':<10} " \
           f"{'activation range':<20} {'profiled activations':<20}"
    lines.append(head)
    notes = []
    for name in rows:
        r = rows[name]
        if "adc_exponents" in r:
            adc = f"C = {list(r['adc_exponents'])} (pct {r['adc_pct']:g})"
        elif "adc" in r:
            adc = f"({_fmt(r['adc'][0])}, {_fmt(r['adc'][1])}) @{r['adc_nbits']}b"
        else:
            adc = "-"
        prof = f"[{_fmt(r['adc_min'])}, {_fmt(r['adc_max'])}]" if "adc_min" in r else "-"
        relu = ("yes" if r.get("relu_aware") else "no") if "relu_aware" in r else "-"
        if r.get("relu_note"):
            notes.append(f"    {name}: ReLU-aware off: {r['relu_note']}")
        dac = f"({_fmt(r['dac'][0])}, {_fmt(r['dac'][1])}) @{r['dac_nbits']}b" if "dac" in r else "-"
        act = f"[{_fmt(r['act_min'])}, {_fmt(r['act_max'])}]" if "act_min" in r else "-"
        lines.append(f"  {name:<12} {adc:<30} {prof:<22} {relu:<10} {dac:<20} {act:<20}")
    lines += notes  # only when ReLU-aware profiling was asked for
    lines.append(f"wrote {path}")
    return "\n".join(lines)
