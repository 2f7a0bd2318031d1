"""Config files and values: reading TOML / JSON / CrossSim ``.py`` configs, overrides, writing TOML.

Nothing here knows the schema (:mod:`simulator.config.schema` validates what
these functions read).
"""
from __future__ import annotations

import importlib.util
import json
import os
import sys
from pathlib import Path
from typing import Any, Mapping

from simulator.errors import ConfigError

if sys.version_info >= (3, 11):
    import tomllib
else:  # pragma: no cover
    import tomli as tomllib


#: config keys holding file or folder paths: relative ones are relative to the config file's folder
PATH_KEYS = ("dataset_path", "calibration_file", "calibration_dir", "dac_limits_file", "device_path", "device_data")
_MODEL_SUFFIXES = (".h5", ".hdf5", ".keras", ".onnx", ".pt", ".pt2", ".pth")


def resolve_paths(data: dict[str, Any], config_path: Path) -> dict[str, Any]:
    """Make the relative paths of a config file's :data:`PATH_KEYS` (and a file-like ``model_name``)
    relative to the folder of ``config_path`` (a config means the same wherever it is run from)."""
    if not isinstance(data, dict):
        return data
    base = Path(os.path.abspath(config_path)).parent
    for key in PATH_KEYS + ("model_name",):
        value = data.get(key)
        if not isinstance(value, str) or not value:
            continue
        if key == "model_name" and not ("/" in value or "\\" in value or value.lower().endswith(_MODEL_SUFFIXES)):
            continue  # a bundled model's name, not a path
        p = Path(value).expanduser()
        if not p.is_absolute():
            data[key] = str(base / p)
    return data


def read_config_file(path: Path) -> dict[str, Any]:
    """Raw dict from a ``.toml`` or CrossSim-style ``.py`` config file."""
    if not path.exists():
        raise ConfigError(f"config file {str(path)!r} not found")
    if path.suffix == ".toml":
        try:
            with open(path, "rb") as f:
                return resolve_paths(tomllib.load(f), path)
        except tomllib.TOMLDecodeError as exc:
            raise ConfigError(f"{path}: invalid TOML ({exc})") from None
        except UnicodeDecodeError as exc:
            raise ConfigError(f"{path}: not a TOML text file (byte {exc.start} is not UTF-8)") from None
        except OSError as exc:
            raise ConfigError(f"{path}: cannot be read ({exc.strerror or exc})") from None
    if path.suffix == ".py":
        data = _read_python_config(path)
        from simulator.io import crosssim_config

        if crosssim_config.is_crosssim3_flat(data):
            return resolve_paths(crosssim_config.from_flat(data, str(path)), path)
        return resolve_paths(data, path)
    if path.suffix == ".json":
        try:
            data = json.loads(path.read_text(encoding="utf-8"))
        except json.JSONDecodeError as exc:
            raise ConfigError(f"{path}: invalid JSON ({exc})") from None
        except UnicodeDecodeError as exc:
            raise ConfigError(f"{path}: not a JSON text file (byte {exc.start} is not UTF-8)") from None
        if not isinstance(data, dict):
            raise ConfigError(f"{path}: a JSON config must be an object of parameters, got a {type(data).__name__}")
        from simulator.io import crosssim_config, crosssim_json

        if crosssim_config.is_crosssim_json(data):
            return resolve_paths(crosssim_json.from_json(data, str(path)), path)
        return resolve_paths(data, path)
    raise ConfigError(f"{path}: config files must end in .toml, .py or .json")


def _read_python_config(path: Path) -> dict[str, Any]:
    """Read the upper-level assignments of a CrossSim ``inference_config*.py`` module."""
    spec = importlib.util.spec_from_file_location(f"_xbarsim_cfg_{path.stem}", path)
    module = importlib.util.module_from_spec(spec)
    try:
        spec.loader.exec_module(module)
    except Exception as exc:
        raise ConfigError(f"{path}: the Python config failed to run ({exc.__class__.__name__}: {exc})") from None
    data = {}
    for key, value in vars(module).items():
        if key.startswith("_") or callable(value) or type(value).__name__ == "module":
            continue
        if key in ("adc_bits_vec", "dac_bits_vec"):
            raise ConfigError(f"{path}: {key} is not supported; use [layers.<name>] adc_bits / dac_bits overrides")
        if isinstance(value, tuple):
            value = list(value)
        data[key] = value
    return data


def apply_overrides(data: dict[str, Any], overrides: Mapping[str, Any]) -> dict[str, Any]:
    """Set ``"key"`` or ``"layers.NAME.key"`` entries of a raw config dict in place."""
    for key, value in overrides.items():
        parts = key.split(".")
        if parts[0] == "layers":  # the layer name may hold dots (torch qualified names): the key is the last part
            if len(parts) < 3 or not all(parts[1:]):
                raise ConfigError(f"override {key!r}: per-layer keys are written layers.<layer name>.<key>")
            data.setdefault("layers", {}).setdefault(".".join(parts[1:-1]), {})[parts[-1]] = value
        elif len(parts) == 1:
            data[key] = value
        else:
            raise ConfigError(f"override {key!r}: expected a parameter name or layers.<layer>.<key>")
    return data


def parse_value(text: str) -> Any:
    """Parse a command-line value: TOML syntax (numbers, booleans, strings, lists) or a bare string."""
    try:
        return tomllib.loads(f"v = {text}")["v"]
    except tomllib.TOMLDecodeError:
        low = text.strip().lower()
        if low in ("true", "false"):
            return low == "true"
        if low in ("none", "null"):
            return None
        return text


def dict_to_toml(d: Mapping[str, Any]) -> str:
    """Minimal TOML writer for config dicts (scalars, lists, one level of tables)."""

    def fmt(v):
        if isinstance(v, bool):
            return "true" if v else "false"
        if isinstance(v, (int, float)):
            return repr(v)
        if isinstance(v, str):
            return json.dumps(v)
        if isinstance(v, (list, tuple)):
            return "[" + ", ".join(fmt(x) for x in v) + "]"
        raise TypeError(type(v))

    lines, tables = [], []
    for k, v in d.items():
        if v is None:
            continue
        if isinstance(v, Mapping):
            tables.append((k, v))
        else:
            lines.append(f"{k} = {fmt(v)}")
    for k, v in tables:
        scalars = {a: b for a, b in v.items() if not isinstance(b, Mapping) and b is not None}
        subs = {a: b for a, b in v.items() if isinstance(b, Mapping)}
        if scalars or not subs:
            lines.append(f"\n[{k}]")
            lines += [f"{a} = {fmt(b)}" for a, b in scalars.items()]
        for a, b in subs.items():
            lines.append(f"\n[{k}.{a}]")
            lines += [f"{c} = {fmt(e)}" for c, e in b.items() if e is not None]
    return "\n".join(lines) + "\n"
