"""Loading calibrated ADC and activation ranges for a simulation.

The reading side of calibration, below the executor: it imports the file
format (:mod:`simulator.calibration_file`) and the config, never the
profiling or calibration code of :mod:`adc_calibration`. A missing file
raises a :class:`~simulator.errors.CalibrationError` naming the ``xbarsim
calibrate`` command that writes it (:func:`calibrate_cli_args`).

Sources (``adc_range_option = "calibrated"``):

* ``calibration_file`` ending in ``.h5``: written by ``xbarsim calibrate``
  (:mod:`simulator.calibration_file`), keyed by network and hardware parameters;
* ``calibration_file`` ending in ``.npy``: CrossSim-style ADC limits, one row
  per analog MVM layer in graph order -- ``(layers, 2)`` ``(min, max)``, or
  ``(layers, Nslices)`` integer exponents C_i. The units of ``(min, max)`` are
  set by ``npy_adc_units``: ``"normalized"`` (default; CrossSim 3's ADC units,
  the MVM of weights scaled to ``|w| <= 1`` and inputs to ``|x| <= 1``, where
  the "max" range is ``+-rows``) or ``"algorithmic"`` (raw layer values);
* no file named: the default location where ``xbarsim calibrate`` writes the
  file for this network and hardware key.

``dac_limits_file`` (``.npy``, ``(layers, 2)``) gives input-activation ranges.
The result maps core names to ``{"range": (lo, hi)}`` or ``{"exponents": [...]}``
under ``"adc"`` and layer names to ``(lo, hi)`` under ``"dac"``.
"""
from __future__ import annotations

import json
import re
import shlex
from pathlib import Path
from typing import Any, Optional

import numpy as np

from simulator.calibration_file import HardwareKey, default_path, load_calibration
from simulator.config import Config, load_config, parse_value
from simulator.errors import CalibrationError, XbarsimError

__all__ = ["core_names", "load_for_simulation", "needs_adc_calibration", "calibration_for", "calibrate_cli_args"]


def core_names(network, cfg) -> list[str]:
    """Names of the analog MVM cores of ``network`` under ``cfg``, in graph order (GRU cells: ``<layer>/ih``, ``/hh``)."""
    names = []
    for layer in network.mvm_layers:
        if not cfg.for_layer(layer.name).analog:
            continue
        if layer.type == "GRUCell":
            names += [layer.name + "/ih", layer.name + "/hh"]
        else:
            names.append(layer.name)
    return names


def _load_npy(path: Path, what: str):
    if not path.exists():
        raise CalibrationError(f"{what} file {str(path)!r} not found")
    try:
        arr = np.load(path, allow_pickle=False)
    except Exception as exc:
        raise CalibrationError(f"{path}: not a readable .npy file ({exc.__class__.__name__})") from None
    if arr.ndim != 2 or not np.all(np.isfinite(arr)):
        raise CalibrationError(f"{path}: expected a finite 2-D array (layers x 2 or layers x Nslices), got shape {arr.shape}")
    return arr


def _inline_adc(hw) -> bool:
    """True when a layer needs no calibration file: not calibrated, or its range is in the config."""
    if hw.adc_range_option != "calibrated" or hw.adc_bits == 0:
        return True
    return hw.adc_exponents is not None or (hw.Nslices == 1 and hw.adc_range is not None)


def _dac_limits(network, cfg) -> dict:
    """Input-activation ranges of ``dac_limits_file`` (``(layers, 2)`` .npy), by layer name."""
    arr = _load_npy(Path(cfg.dac_limits_file), "dac_limits_file")
    layers = [l.name for l in network.mvm_layers if cfg.for_layer(l.name).analog]
    if arr.shape != (len(layers), 2):
        raise CalibrationError(
            f"{cfg.dac_limits_file}: shape {arr.shape} does not match the model's {len(layers)} analog MVM layers (expected ({len(layers)}, 2))"
        )
    out = {}
    for name, (lo, hi) in zip(layers, arr):
        if not lo < hi:
            raise CalibrationError(f"{cfg.dac_limits_file}: layer {name!r} has min {lo} >= max {hi}")
        out[name] = (float(lo), float(hi))
    return out


def _npy_adc(path: Path, names: list[str], cfg) -> dict:
    """ADC entries of a CrossSim-style ``.npy`` ``calibration_file``, one row per analog core."""
    arr = _load_npy(path, "calibration_file")
    if arr.shape[0] != len(names):
        raise CalibrationError(
            f"{path}: {arr.shape[0]} rows of ADC limits but the model has {len(names)} analog MVM arrays ({', '.join(names)})"
        )
    out = {}
    for name, row in zip(names, arr):
        hw = cfg.for_layer(name.split("/")[0])
        if hw.Nslices > 1:
            if arr.shape[1] != hw.Nslices:
                raise CalibrationError(f"{path}: {arr.shape[1]} columns, expected Nslices = {hw.Nslices} exponents per layer")
            out[name] = {"exponents": [int(v) for v in row]}
        else:
            if arr.shape[1] != 2:
                raise CalibrationError(f"{path}: shape {arr.shape}, expected ({len(names)}, 2) (min, max) per layer")
            out[name] = {"range": (float(row[0]), float(row[1])), "units": cfg.npy_adc_units}
    return out


def _h5_calibration(path: Optional[Path], network, names: list[str], cfg):
    """The checked :class:`~simulator.calibration_file.Calibration` of an ``xbarsim calibrate`` file (default location without ``path``)."""
    key = HardwareKey.from_config(cfg.model_dump())
    if path is None:
        path = default_path(network.name, key, cfg.calibration_dir)
    config_path, cli_args = calibrate_cli_args(cfg)
    layer_nslices = {n: cfg.for_layer(n.split("/")[0]).Nslices for n in names}
    return load_calibration(
        path, network.name, key, names, config_path=config_path, root=cfg.calibration_dir, cli_args=cli_args,
        layer_nslices={n: v for n, v in layer_nslices.items() if v != key.Nslices},
    )


def load_for_simulation(network, cfg) -> dict:
    """The calibrated ranges ``cfg`` asks for: ``{"adc": {core: entry}, "dac": {layer: (lo, hi)}}`` (see the module docstring)."""
    names = core_names(network, cfg)
    out: dict = {"adc": {}, "dac": {}}
    if cfg.dac_limits_file:
        out["dac"] = _dac_limits(network, cfg)
    if not needs_adc_calibration(cfg):
        return out
    path = Path(cfg.calibration_file) if cfg.calibration_file else None
    if path is None and all(_inline_adc(cfg.for_layer(n.split("/")[0])) for n in names):
        return out  # every calibrated layer has its range in the config: no file needed
    if path is not None and path.suffix == ".npy":
        out["adc"] = _npy_adc(path, names, cfg)
        return out
    calib = _h5_calibration(path, network, names, cfg)
    for name in names:
        if name in calib.adc_ranges:
            r = np.asarray(calib.adc_ranges[name])
            if r.dtype.kind in "iu" or cfg.for_layer(name.split("/")[0]).Nslices > 1:
                out["adc"][name] = {"exponents": [int(v) for v in r]}
            else:
                out["adc"][name] = {"range": (float(r[0]), float(r[1]))}
    for name, rng in calib.dac_ranges.items():
        out["dac"].setdefault(name, tuple(float(v) for v in rng))
    return out


def needs_adc_calibration(cfg) -> bool:
    """Whether some layer uses calibrated ADC ranges that the config does not give inline as adc_xbar_range."""
    def wants(p):
        return p.adc_range_option == "calibrated" and getattr(p, "adc_xbar_range", None) is None

    return wants(cfg) or any(wants(cfg.for_layer(name)) for name in cfg.layers)


def calibration_for(network, cfg):
    """What :class:`~simulator.simulation.Simulation` loads for ``cfg`` (None when it needs no file).

    Loading once and passing the result to every Simulation of a run avoids
    re-reading the file, and makes a missing or mismatched file fail on the
    user's config (not on a derived one, such as the ideal reference's).
    """
    wants_adc = needs_adc_calibration(cfg)
    if not wants_adc and not cfg.dac_limits_file:
        return None
    return load_for_simulation(network, cfg)


# ---------------------------------------------------------------------------
# the command that reproduces a config's calibration file (for messages)
# ---------------------------------------------------------------------------
_BARE = re.compile(r"[A-Za-z0-9_./-]+")


def _toml_value(v: Any) -> str:
    if v is None:
        return "none"
    if isinstance(v, bool):
        return "true" if v else "false"
    if isinstance(v, (int, float)):
        return repr(v)
    if isinstance(v, str):
        return v if _BARE.fullmatch(v) and parse_value(v) == v else json.dumps(v)
    if isinstance(v, (list, tuple)):
        return "[" + ", ".join(_toml_value(x) for x in v) + "]"
    if isinstance(v, dict):
        return "{" + ", ".join(f"{json.dumps(str(k))} = {_toml_value(x)}" for k, x in v.items()) + "}"
    return json.dumps(str(v))


def calibrate_cli_args(cfg) -> tuple[Optional[str], list[str]]:
    """``(config_path, args)`` of the ``xbarsim calibrate`` command for ``cfg``.

    ``config_path`` is the file the config was read from (None for dicts and
    defaults); ``args`` are shell-quoted ``--set KEY=VALUE`` pairs for every
    value that differs from that file (from the defaults without a file), so
    the command rebuilds exactly ``cfg`` and so writes the file it loads.
    """
    src = getattr(cfg, "source", None)
    base, path = None, None
    if src and not str(src).startswith("<") and Path(src).is_file():
        try:
            base, path = load_config(src), str(src)
        except XbarsimError:
            base = None
    if base is None:
        base = Config()
    cur, ref = cfg.to_dict(), base.to_dict()
    args = []
    for k, v in cur.items():
        if k == "layers" or ref.get(k) == v:
            continue
        args.append(f"{k}={_toml_value(v)}")
    for layer, ov in cur.get("layers", {}).items():
        rov = ref.get("layers", {}).get(layer, {})
        for k, v in ov.items():
            if rov.get(k) != v:
                args.append(f"layers.{layer}.{k}={_toml_value(v)}")
    return path, [f"--set {shlex.quote(a)}" for a in args]
