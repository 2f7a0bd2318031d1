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
        raise DeviceModelError(f"{path}: device plugin failed to import ({exc.__class__.__name__}: {exc})") from None
    return module


def discover(extra_paths: list[str | Path] | None = None) -> dict[str, type[DeviceModel]]:
    """Return {name: model class} over all discovery sources."""
    import devices

    models: dict[str, type[DeviceModel]] = {}
    for info in pkgutil.iter_modules(devices.__path__):
        if info.name in ("base", "registry", "plotting") or info.name.startswith("_"):
            continue
        module = importlib.import_module(f"devices.{info.name}")
        for cls in _models_in(module):
            models[cls.name] = cls
    paths = [p for p in os.environ.get("XBARSIM_DEVICE_PATH", "").split(os.pathsep) if p]
    paths += [str(p) for p in (extra_paths or [])]
    for folder in paths:
        folder_path = Path(folder)
        if not folder_path.is_dir():
            raise DeviceModelError(f"device plugin folder {folder!r} does not exist")
        for file in sorted(folder_path.glob("*.py")):
            for cls in _models_in(_load_file(file)):
                models[cls.name] = cls
    for ep in entry_points(group="xbarsim.devices"):
        try:
            obj = ep.load()
        except Exception as exc:
            raise DeviceModelError(f"entry point {ep.name!r} failed to load ({exc})") from None
        classes = [obj] if inspect.isclass(obj) else _models_in(obj)
        for cls in classes:
            models[cls.name] = cls
    return models


def available_models(kind: str | None = None, extra_paths=None) -> list[str]:
    models = discover(extra_paths)
    return sorted(n for n, c in models.items() if kind is None or kind in c.provides)


def get_model(name: str, kind: str, extra_paths=None) -> type[DeviceModel]:
    """Return the model class called ``name`` that provides ``kind`` ("error", "drift", "noise")."""
    if kind not in KINDS:
        raise ValueError(f"kind must be one of {KINDS}")
    models = discover(extra_paths)
    cls = models.get(name)
    if cls is None or kind not in cls.provides:
        names = sorted(n for n, c in models.items() if kind in c.provides)
        raise DeviceModelError(
            f"{_CONFIG_KEY[kind]} = {name!r} is not a known {kind} model; available: {', '.join(names)}"
        )
    return cls
