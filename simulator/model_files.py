"""Loading a model: any model file, or the model a config names.

This is the one entry point that knows every model source -- our HDF5
format, Keras HDF5, ONNX (:mod:`simulator.io.loader` recognises them from the
file's content), ``torch.export`` programs and state_dict files loaded into a
``torch.nn.Module`` class (the torch host). It sits above both the io
importers and :mod:`simulator.torch_host`, so neither of them needs to know
the other; :mod:`simulator.network` stays a pure data model.

torch stays optional: the torch host is imported only when a ``.pt2`` file or
a ``module = "package.module:Class"`` config asks for it.
"""
from __future__ import annotations

from pathlib import Path
from typing import Any

from simulator.errors import ConfigError
from simulator.io.loader import load_any, register_format
from simulator.models import resolve_model_path
from simulator.network import Network


def _load_torch_export(path: Path, *, check: bool = True):
    """``.pt2`` programs (``torch.export.save``) through the torch host."""
    from simulator.torch_host.export_program import load_torch_export

    return load_torch_export(path, check=check)


register_format("pt2", load=_load_torch_export)


def load_model(path: str | Path, *, check: bool = True) -> Network | Any:
    """Read a model file of any supported format, recognised from its content.

    ``path`` may also be the name of a bundled model (``"digits_cnn"``, ...).
    Formats: our HDF5 model, Keras HDF5, ONNX, ``.pt2`` programs (a
    :class:`~simulator.torch_host.TorchNetwork`) and those added with
    :func:`simulator.io.loader.register_format`. ``check`` runs the importer's
    self-check against the model's own runtime where one exists (ONNX:
    onnxruntime; torch). Raises :class:`~simulator.errors.ModelError` naming
    the file on any problem.
    """
    return load_any(resolve_model_path(path), check=check)


def load_model_for(cfg) -> Network | Any:
    """The model a config names: ``model_name`` in any format, or with ``module = "package.module:Class"`` the
    state_dict file ``model_name`` loaded into that class (``module_kwargs``; example input of ``input_shape``)."""
    if getattr(cfg, "module", None):
        from simulator.torch_host import load_state_dict_model

        if not cfg.input_shape:
            raise ConfigError(f"{cfg.source}: module = {cfg.module!r} needs input_shape, the model's input without "
                              "the batch axis in its own layout (e.g. input_shape = [3, 32, 32])")
        return load_state_dict_model(resolve_model_path(cfg.model_name), cfg.module, cfg.module_kwargs,
                                     (2, *cfg.input_shape), check=cfg.check)
    return load_model(cfg.model_name, check=cfg.check)
