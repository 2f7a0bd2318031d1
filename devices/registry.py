"""Discovery of device models by name.

Models are found in (1) the modules of the ``devices`` package, (2) ``.py``
files in the folders listed in the ``XBARSIM_DEVICE_PATH`` environment
variable (``os.pathsep``-separated) or passed as ``extra_paths``, and (3) the
``xbarsim.devices`` entry-point group. A model is any
:class:`devices.base.DeviceModel` subclass with a non-empty ``name``.
"""
from __future__ import annotations

import importlib
import importlib.util
import inspect
import os
import pkgutil
import sys
from importlib.metadata import entry_points
from pathlib import Path

from devices.base import DeviceModel
from simulator.errors import DeviceModelError

KINDS = ("error", "drift", "noise")
_CONFIG_KEY = {"error": "error_model", "drift": "drift_model", "noise": "noise_model"}


def _models_in(module) -> list[type[DeviceModel]]:
    found = []
    for _, obj in inspect.getmembers(module, inspect.isclass):
        if issubclass(obj, DeviceModel) and obj is not DeviceModel and obj.name and obj.__module__ == module.__name__:
            found.append(obj)
    return found


def _load_file(path: Path):
    mod_name = f"xbarsim_device_plugin_{path.stem}_{abs(hash(str(path)))}"
    if mod_name in sys.modules:
        return sys.modules[mod_name]
    spec = importlib.util.spec_from_file_location(mod_name, path)
    module = importlib.util.module_from_spec(spec)
    sys.modules[mod_name] = module
    try:
        spec.loader.exec_module(module)
    except Exception as exc:  # a broken plugin is a user input error
        del sys.modules[mod_name]
        why = " ".join(f"{exc.__class__.__name__}: {exc}".split())
        raise DeviceModelError(f"{path}: device plugin failed to import ({why})") from None
    return module


_NOT_MODELS = ("base", "registry", "stack", "plotting")


def _all_models(extra_paths) -> list[type[DeviceModel]]:
    """Every model class, in discovery order (package, plugin folders, entry points)."""
    found: list[type[DeviceModel]] = []
    for info in pkgutil.iter_modules([str(Path(__file__).resolve().parent)]):  # this package's own modules
        if info.name in _NOT_MODELS or info.name.startswith("_"):
            continue
        found += _models_in(importlib.import_module(f"devices.{info.name}"))
    paths = [p for p in os.environ.get("XBARSIM_DEVICE_PATH", "").split(os.pathsep) if p]
    paths += [str(p) for p in (extra_paths or [])]
    for folder in paths:
        folder_path = Path(folder)
        if not folder_path.is_dir():
            raise DeviceModelError(f"device plugin folder {folder!r} does not exist")
        for file in sorted(folder_path.glob("*.py")):
            found += _models_in(_load_file(file))
    for ep in entry_points(group="xbarsim.devices"):
        try:
            obj = ep.load()
        except Exception as exc:
            raise DeviceModelError(f"entry point {ep.name!r} failed to load ({exc})") from None
        if inspect.isclass(obj):
            if not (issubclass(obj, DeviceModel) and obj.name):
                raise DeviceModelError(f"entry point {ep.name!r} is not a named DeviceModel subclass")
            found.append(obj)
        else:
            found += _models_in(obj)
    return found


def _by_kind(extra_paths) -> dict[str, dict[str, type[DeviceModel]]]:
    """{kind: {name: class}}; a later source overrides an earlier one for the kinds it provides.

    Looking models up per kind lets one name have separate classes for its
    error, drift and noise hooks (e.g. an "HfO2" error class and an "HfO2"
    drift class in a plugin).
    """
    table: dict[str, dict[str, type[DeviceModel]]] = {k: {} for k in KINDS}
    for cls in _all_models(extra_paths):
        for kind in cls.provides:
            if kind in table:
                table[kind][cls.name] = cls
    return table


def discover(extra_paths: list[str | Path] | None = None) -> dict[str, type[DeviceModel]]:
    """Return {name: model class} over all discovery sources (last source wins per name)."""
    return {cls.name: cls for cls in _all_models(extra_paths)}


def available_models(kind: str | None = None, extra_paths=None) -> list[str]:
    """Sorted names of the models providing ``kind`` (any kind when None)."""
    table = _by_kind(extra_paths)
    kinds = KINDS if kind is None else (kind,)
    return sorted({n for k in kinds for n in table.get(k, {})})


def get_model(name: str, kind: str, extra_paths=None) -> type[DeviceModel]:
    """Return the model class called ``name`` that provides ``kind`` ("error", "drift", "noise")."""
    if kind not in KINDS:
        raise ValueError(f"kind must be one of {KINDS}")
    table = _by_kind(extra_paths)
    cls = table[kind].get(name)
    if cls is None:
        names = sorted(table[kind])
        other = [k for k in KINDS if name in table[k]]
        hint = f" ({name!r} provides only: {', '.join(other)})" if other else ""
        raise DeviceModelError(
            f"{_CONFIG_KEY[kind]} = {name!r} is not a known {kind} model{hint}; available: {', '.join(names) or 'none'}"
        )
    return cls
