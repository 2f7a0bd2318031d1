"""The calibration file format: calibrated ADC and activation (DAC) ranges (manual 9.3.1, 9.5).

A leaf module (NumPy, h5py and :mod:`simulator.errors` only): ``xbarsim
calibrate`` (:mod:`adc_calibration.calibrate`) writes these files and the
executor reads them through :mod:`simulator.calibration_io`.

One HDF5 file per network and hardware key. The key holds the hardware
parameters that change the ADC input distributions (manual 9.3.1): Nslices,
NrowsMax, style, ADC_per_ibit, input_bitslicing, plus the percentile ``pct``
when it was used (bit-sliced layers). A run refuses a file made for another
key, naming each parameter that differs.

Layout (version 1)::

    /                      attrs: format="xbarsim-calibration", version,
                                  network_name, Nslices, NrowsMax, style,
                                  ADC_per_ibit, input_bitslicing, [pct],
                                  meta (JSON)
    /adc/<i>               (2,) float64 (lo, hi) in algorithmic units, or
                           (Nslices,) int64 exponents C_i; attrs layer, kind
                           ("range" or "exponents")
    /dac/<i>               (2,) float64 (lo, hi); attrs layer

CrossSim-style ``.npy`` files of shape ``(n_layers, 2)`` are read by
:func:`load_limits_npy`.
"""
from __future__ import annotations

import json
import math
import os
import re
from dataclasses import asdict, dataclass, field, fields
from pathlib import Path
from typing import Any, Mapping, Optional, Sequence

import numpy as np

from simulator.errors import CalibrationError

__all__ = [
    "HardwareKey",
    "Calibration",
    "default_path",
    "save_calibration",
    "load_calibration",
    "load_limits_npy",
    "check_adc_range",
    "check_dac_range",
]

FORMAT = "xbarsim-calibration"
VERSION = 1
DEFAULT_ROOT = "calibration"


@dataclass(frozen=True)
class HardwareKey:
    """Hardware parameters a set of calibrated ADC ranges is valid for (manual 9.3.1).

    ``ADC_per_ibit`` only matters with input bit slicing, so it is stored as
    False when ``input_bitslicing`` is False. ``pct`` is None unless the
    bit-sliced percentile method was used.
    """

    Nslices: int = 1
    NrowsMax: int = 0
    style: str = "BALANCED"
    ADC_per_ibit: bool = False
    input_bitslicing: bool = False
    pct: Optional[float] = None

    def __post_init__(self) -> None:
        object.__setattr__(self, "Nslices", int(self.Nslices))
        object.__setattr__(self, "NrowsMax", int(self.NrowsMax))
        object.__setattr__(self, "style", str(self.style))
        object.__setattr__(self, "input_bitslicing", bool(self.input_bitslicing))
        object.__setattr__(self, "ADC_per_ibit", bool(self.ADC_per_ibit) and self.input_bitslicing)
        if self.pct is not None:
            object.__setattr__(self, "pct", float(self.pct))

    @classmethod
    def from_config(cls, cfg: Any, *, use_pct: Optional[bool] = None) -> "HardwareKey":
        """Key of a config (a Mapping, or an object with these attributes, e.g. a ``Config``).

        ``pct`` enters the key when ``use_pct`` is True, or by default when
        ``Nslices > 1`` and the config sets ``pct``.
        """

        def get(name: str, default: Any) -> Any:
            if isinstance(cfg, Mapping):
                v = cfg.get(name, default)
            else:
                v = getattr(cfg, name, default)
            return default if v is None else v

        nslices = int(get("Nslices", 1))
        pct = get("pct", None) if isinstance(cfg, Mapping) else getattr(cfg, "pct", None)
        if use_pct is None:
            use_pct = nslices > 1 and pct is not None
        if use_pct and pct is None:
            raise CalibrationError("the calibration key needs pct, but the config does not set pct")
        return cls(
            Nslices=nslices,
            NrowsMax=int(get("NrowsMax", 0)),
            style=str(get("style", "BALANCED")),
            ADC_per_ibit=bool(get("ADC_per_ibit", False)),
            input_bitslicing=bool(get("input_bitslicing", False)),
            pct=float(pct) if use_pct else None,
        )

    def tag(self) -> str:
        """File-name fragment encoding the key, e.g. ``Nslices1_NrowsMax144_BALANCED_ibits0_perIbit0``."""
        s = (
            f"Nslices{self.Nslices}_NrowsMax{self.NrowsMax}_{self.style}"
            f"_ibits{int(self.input_bitslicing)}_perIbit{int(self.ADC_per_ibit)}"
        )
        if self.pct is not None:
            s += f"_pct{self.pct!r}"
        return s

    def as_dict(self) -> dict[str, Any]:
        return asdict(self)


@dataclass
class Calibration:
    """Ranges loaded from a calibration file.

    ``adc_ranges[layer]`` is a (2,) float array ``(lo, hi)`` (algorithmic
    units) or a (Nslices,) int array of exponents ``C_i``;
    ``dac_ranges[layer]`` is a ``(lo, hi)`` tuple.
    """

    network_name: str
    key: HardwareKey
    adc_ranges: dict[str, np.ndarray] = field(default_factory=dict)
    dac_ranges: dict[str, tuple[float, float]] = field(default_factory=dict)
    meta: dict[str, Any] = field(default_factory=dict)
    path: Optional[Path] = None


def _safe(s: str) -> str:
    return re.sub(r"[^A-Za-z0-9_.-]+", "_", str(s)).strip("._") or "network"


def default_path(network_name: str, key: HardwareKey, root: Optional[os.PathLike | str] = None) -> Path:
    """``<root>/<network>__<key tag>.h5``; ``root`` defaults to ``calibration/`` in the current directory."""
    root = Path(DEFAULT_ROOT if root is None else root)
    return root / f"{_safe(network_name)}__{key.tag()}.h5"


# ---------------------------------------------------------------------------
# value checks
# ---------------------------------------------------------------------------
def check_adc_range(value: Any, layer: str, nslices: int, where: str = "",
                    kind: Optional[str] = None) -> tuple[np.ndarray, str]:
    """Validate one layer's ADC entry; returns ``(array, kind)``, kind "range" or "exponents".

    Without ``kind``, an integer array is taken as exponents when ``nslices > 1``.
    """
    arr = np.asarray(value)
    if kind is None:
        kind = "exponents" if arr.dtype.kind in "iu" and nslices > 1 else "range"
    if kind == "exponents":
        if nslices <= 1:
            raise CalibrationError(
                f"{where}layer {layer!r} has ADC exponents C_i but is not bit-sliced (Nslices = 1); expected (2,) (lo, hi)"
            )
        if arr.shape != (nslices,):
            raise CalibrationError(
                f"{where}ADC exponents of layer {layer!r} have shape {arr.shape}, expected ({nslices},) (one per weight slice)"
            )
        if arr.dtype.kind not in "iu":
            try:
                ok = bool(np.all(np.isfinite(arr)) and np.all(arr == np.round(arr)))
            except TypeError:
                ok = False
            if not ok:
                raise CalibrationError(f"{where}ADC exponents of layer {layer!r} are {arr.tolist()}; expected integers")
        return arr.astype(np.int64), "exponents"
    try:
        arr = arr.astype(np.float64)
    except (TypeError, ValueError):
        raise CalibrationError(f"{where}ADC range of layer {layer!r} is not numeric") from None
    if arr.shape != (2,):
        exp = f"(2,) (lo, hi) or ({nslices},) integer exponents" if nslices > 1 else "(2,) (lo, hi)"
        raise CalibrationError(f"{where}ADC range of layer {layer!r} has shape {arr.shape}, expected {exp}")
    _check_pair(arr, f"{where}ADC range of layer {layer!r}")
    return arr, "range"


def check_dac_range(value: Any, layer: str, where: str = "") -> tuple[float, float]:
    try:
        arr = np.asarray(value, dtype=np.float64)
    except (TypeError, ValueError):
        raise CalibrationError(f"{where}activation range of layer {layer!r} is not numeric") from None
    if arr.shape != (2,):
        raise CalibrationError(f"{where}activation range of layer {layer!r} has shape {arr.shape}, expected (2,) (lo, hi)")
    _check_pair(arr, f"{where}activation range of layer {layer!r}")
    return float(arr[0]), float(arr[1])


def _check_pair(arr: np.ndarray, what: str) -> None:
    lo, hi = float(arr[0]), float(arr[1])
    if not (math.isfinite(lo) and math.isfinite(hi)):
        raise CalibrationError(f"{what} is ({lo}, {hi}); expected finite numbers")
    if not lo < hi:
        raise CalibrationError(f"{what} is ({lo}, {hi}); expected lo < hi")


# ---------------------------------------------------------------------------
# save / load
# ---------------------------------------------------------------------------
def _json_default(o: Any) -> Any:
    if isinstance(o, np.generic):
        return o.item()
    if isinstance(o, np.ndarray):
        return o.tolist()
    if isinstance(o, Path):
        return str(o)
    return repr(o)


def save_calibration(
    path: os.PathLike | str,
    network_name: str,
    key: HardwareKey,
    adc_ranges: Mapping[str, Any],
    dac_ranges: Mapping[str, Any],
    meta: Optional[Mapping[str, Any]] = None,
) -> Path:
    """Write a calibration file (HDF5; parent folders are created, the write is atomic).

    ``adc_ranges[layer]``: (2,) ``(lo, hi)`` in algorithmic units for
    unsliced layers, or (Nslices,) integer exponents ``C_i`` for bit-sliced
    layers. ``dac_ranges[layer]``: ``(lo, hi)``. ``meta``: JSON-able extras
    (adc_bits used for the optimization, optimizer, calibration set size, ...).
    """
    import h5py

    path = Path(path)
    checked_adc = {str(l): check_adc_range(v, str(l), key.Nslices) for l, v in adc_ranges.items()}
    checked_dac = {str(l): check_dac_range(v, str(l)) for l, v in dac_ranges.items()}
    path.parent.mkdir(parents=True, exist_ok=True)
    tmp = path.with_name(path.name + ".tmp")
    with h5py.File(tmp, "w") as f:
        f.attrs["format"] = FORMAT
        f.attrs["version"] = VERSION
        f.attrs["network_name"] = str(network_name)
        for k, v in key.as_dict().items():
            if v is not None:
                f.attrs[k] = v
        f.attrs["meta"] = json.dumps(dict(meta or {}), default=_json_default)
        g = f.create_group("adc")
        for i, (layer, (arr, kind)) in enumerate(checked_adc.items()):
            ds = g.create_dataset(f"{i:05d}", data=arr)
            ds.attrs["layer"] = layer
            ds.attrs["kind"] = kind
        g = f.create_group("dac")
        for i, (layer, pair) in enumerate(checked_dac.items()):
            ds = g.create_dataset(f"{i:05d}", data=np.asarray(pair, dtype=np.float64))
            ds.attrs["layer"] = layer
    os.replace(tmp, path)
    return path


def _attr(v: Any) -> Any:
    if isinstance(v, bytes):
        return v.decode()
    if isinstance(v, np.generic):
        return v.item()
    return v


def _calibrate_hint(path: Path, network_name: str, key: HardwareKey, config_path: Optional[str],
                    root: Optional[os.PathLike | str], cli_args: Optional[Sequence[str]] = None) -> str:
    """The ``xbarsim calibrate`` command that writes ``path`` (matches simulator/cli/commands/calibrate.py).

    ``cli_args`` are the command's arguments after the config (e.g. ``--set``
    overrides, already shell-quoted; with them and no ``config_path`` the
    command runs on the defaults); without them ``--out PATH`` is added when
    ``path`` is not the default location for the network and key.
    """
    import shlex

    cmd = "xbarsim calibrate"
    if config_path:
        cmd += f" {shlex.quote(str(config_path))}"
    elif cli_args is None:
        cmd += " CONFIG"
    if cli_args is not None:
        cmd += "".join(f" {a}" for a in cli_args)
    elif Path(path) != default_path(network_name, key, root):
        cmd += f" --out {shlex.quote(str(path))}"
    return f"`{cmd}`"


def _file_key(attrs: Mapping[str, Any]) -> HardwareKey:
    """The hardware key stored in a file's root attributes."""
    return HardwareKey(**{fl.name: attrs.get(fl.name) for fl in fields(HardwareKey) if fl.name in attrs})


def _key_diffs(fkey: HardwareKey, key: HardwareKey, there: str) -> list[str]:
    """One phrase per parameter in which a file's key differs from the config's."""
    return [f"{fl.name} = {getattr(fkey, fl.name)!r} {there} but {getattr(key, fl.name)!r} in the config"
            for fl in fields(HardwareKey) if getattr(fkey, fl.name) != getattr(key, fl.name)]


def _other_keys(path: Path, network_name: str, key: HardwareKey) -> str:
    """For a missing file: which parameters differ in the files made for this network next to it ('' if none)."""
    folder = path.parent
    if not folder.is_dir():
        return ""
    import h5py

    found = []
    for other in sorted(folder.glob(f"{_safe(network_name)}__*.h5")):
        try:
            with h5py.File(other, "r") as f:
                attrs = {k: _attr(v) for k, v in f.attrs.items()}
            if attrs.get("format") != FORMAT or str(attrs.get("network_name")) != str(network_name):
                continue
            okey = _file_key(attrs)
        except (OSError, TypeError, ValueError):
            continue
        diffs = _key_diffs(okey, key, "there")
        if diffs:
            found.append((len(diffs), other, diffs))
    if not found:
        return ""
    n, other, diffs = min(found, key=lambda t: t[0])
    return f" (the file for the nearest hardware, {other}, differs: {'; '.join(diffs)})"


def _read_entries(path: Path, where: str) -> tuple[dict, dict, dict, dict]:
    """``(attrs, adc, kinds, dac)`` of a calibration file: its root attributes and raw entries by layer."""
    import h5py

    try:
        f = h5py.File(path, "r")
    except OSError as exc:
        raise CalibrationError(f"{where}cannot be read as HDF5 ({str(exc).splitlines()[0]})") from None
    with f:
        attrs = {k: _attr(v) for k, v in f.attrs.items()}
        adc: dict[str, np.ndarray] = {}
        kinds: dict[str, Optional[str]] = {}
        dac: dict[str, Any] = {}
        if attrs.get("format") == FORMAT:
            for name, ds in f.get("adc", {}).items():
                layer = str(_attr(ds.attrs.get("layer", name)))
                adc[layer] = ds[()]
                kinds[layer] = _attr(ds.attrs.get("kind")) if "kind" in ds.attrs else None
            for name, ds in f.get("dac", {}).items():
                dac[str(_attr(ds.attrs.get("layer", name)))] = ds[()]
    return attrs, adc, kinds, dac


def _check_header(attrs: Mapping[str, Any], where: str, network_name: str, key: HardwareKey, rerun: str) -> dict:
    """Check format, version, network and hardware key of a file's attributes; returns its meta dict."""
    if attrs.get("format") != FORMAT:
        raise CalibrationError(f"{where}not an xbarsim calibration file (no format = {FORMAT!r} attribute)")
    if int(attrs.get("version", 0)) > VERSION:
        raise CalibrationError(f"{where}format version {attrs.get('version')} is newer than this xbarsim reads ({VERSION})")
    fname = str(attrs.get("network_name"))
    if fname != str(network_name):
        raise CalibrationError(f"{where}made for network {fname!r}, but the config runs {network_name!r}; run {rerun}")
    try:
        fkey = _file_key(attrs)
    except (TypeError, ValueError) as exc:
        raise CalibrationError(f"{where}bad hardware key attributes ({exc})") from None
    diffs = _key_diffs(fkey, key, "in the file")
    if diffs:
        raise CalibrationError(f"{where}hardware key mismatch: {'; '.join(diffs)}; run {rerun} for this hardware")
    try:
        return json.loads(attrs.get("meta", "{}"))
    except json.JSONDecodeError:
        return {}


def load_calibration(
    path: os.PathLike | str,
    network_name: str,
    key: HardwareKey,
    layers: Optional[Sequence[str]] = None,
    *,
    config_path: Optional[str] = None,
    root: Optional[os.PathLike | str] = None,
    require_dac: bool = False,
    layer_nslices: Optional[Mapping[str, int]] = None,
    cli_args: Optional[Sequence[str]] = None,
) -> Calibration:
    """Load and check a calibration file written by :func:`save_calibration`.

    Raises :class:`~simulator.errors.CalibrationError` (one line) when the
    file is missing (naming the ``xbarsim calibrate`` command that makes it;
    ``config_path`` and ``root`` make that command exact), is not a
    calibration file, was made for another network or another hardware key
    (naming each differing parameter with both values), lacks an ADC range for
    one of ``layers`` (or an activation range, with ``require_dac``), or holds
    a range of the wrong shape, a non-finite value or ``lo >= hi``.
    ``layers=None`` loads every ADC and activation range the file holds.
    ``layer_nslices`` gives layers whose number of slices differs from
    ``key.Nslices`` (per-layer overrides). ``cli_args`` completes the
    suggested ``xbarsim calibrate`` command (see :func:`_calibrate_hint`).
    """
    path = Path(path)
    rerun = _calibrate_hint(path, network_name, key, config_path, root, cli_args)
    if not path.is_file():
        raise CalibrationError(
            f"calibration file {path} does not exist{_other_keys(path, network_name, key)}; run {rerun} to produce it"
        )
    where = f"calibration file {path}: "
    attrs, adc, kinds, dac = _read_entries(path, where)
    meta = _check_header(attrs, where, network_name, key, rerun)
    cal = Calibration(network_name=str(network_name), key=key, meta=meta, path=path)
    for layer in adc if layers is None else layers:
        if layer not in adc:
            have = ", ".join(sorted(adc)) or "none"
            raise CalibrationError(f"{where}no ADC range for layer {layer!r} (it has: {have}); run {rerun}")
        ns = int((layer_nslices or {}).get(layer, key.Nslices))
        arr, kind = check_adc_range(adc[layer], layer, ns, where, kind=kinds.get(layer))
        if ns > 1 and kind != "exponents":
            raise CalibrationError(
                f"{where}layer {layer!r} has a (lo, hi) ADC range but uses Nslices = {ns}; expected ({ns},) integer exponents C_i"
            )
        cal.adc_ranges[layer] = arr
        if layer in dac:
            cal.dac_ranges[layer] = check_dac_range(dac[layer], layer, where)
        elif require_dac:
            raise CalibrationError(f"{where}no activation range for layer {layer!r}; run {rerun}")
    if layers is None:
        cal.dac_ranges = {layer: check_dac_range(v, layer, where) for layer, v in dac.items()}
    return cal


def load_limits_npy(path: os.PathLike | str, layers: Sequence[str], nslices: int = 1) -> dict[str, np.ndarray]:
    """Read a CrossSim-style ``.npy`` of per-layer limits, in the order of ``layers``.

    Shape ``(n_layers, 2)``: ``(lo, hi)`` per layer in algorithmic units; or,
    for bit-sliced weights (``nslices > 1``), ``(n_layers, nslices)`` integer
    exponents ``C_i``. Returns ``{layer: row}``.
    """
    path = Path(path)
    if not path.is_file():
        raise CalibrationError(f"limits file {path} does not exist")
    try:
        arr = np.load(path, allow_pickle=False)
    except (ValueError, OSError) as exc:
        raise CalibrationError(f"limits file {path}: cannot be read as .npy ({str(exc).splitlines()[0]})") from None
    ncols = nslices if nslices > 1 else 2
    if arr.ndim != 2 or arr.shape != (len(layers), ncols):
        what = f"{nslices} exponents C_i" if nslices > 1 else "(lo, hi)"
        raise CalibrationError(
            f"limits file {path}: shape {arr.shape}, expected ({len(layers)}, {ncols}) (one row of {what} per layer)"
        )
    out: dict[str, np.ndarray] = {}
    for layer, row in zip(layers, arr):
        if nslices > 1:
            if not np.all(np.isfinite(row)) or not np.all(row == np.round(row)):
                raise CalibrationError(f"limits file {path}: exponents of layer {layer!r} are {row.tolist()}; expected integers")
            out[layer] = row.astype(np.int64)
        else:
            row = row.astype(np.float64)
            _check_pair(row, f"limits file {path}: range of layer {layer!r}")
            out[layer] = row
    return out
