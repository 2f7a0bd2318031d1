"""One loader for every model file: the format is recognised from the file's content.

:func:`load_any` (behind :func:`simulator.load_model` and ``model_name`` in
configs, :mod:`simulator.model_files`) reads the first bytes of the file and asks each entry of
:data:`FORMATS`, in order, whether it recognises them; the first that does
loads the file. File name suffixes are only a tie-breaker (``.onnx``), never
required. An unrecognised file raises :class:`ModelError` naming the file and
the formats accepted.

Adding a format, or installing the loader of one recognised here (``.pt2``
programs: the torch host's loader, installed by :mod:`simulator.model_files`,
which sits above the torch host)::

    from simulator.io.loader import register_format
    register_format("pt2", load=load_torch_export)

``load`` is a callable ``load(path: Path, *, check: bool) -> model`` or a
``"module:function"`` string imported on first use (keeps heavy frameworks
out of ``import simulator``). ``check`` asks the loader to run its import
self-check (:mod:`simulator.io.selfcheck`) against the model's own runtime.
"""
from __future__ import annotations

import importlib
import zipfile
from dataclasses import dataclass, replace
from pathlib import Path
from typing import Any, Callable, Union

from simulator.errors import ModelError

Loader = Union[str, Callable[..., Any], None]

HDF5_SIGNATURE = b"\x89HDF\r\n\x1a\n"


@dataclass(frozen=True)
class ModelFormat:
    """One entry of the dispatch table."""

    name: str
    description: str
    sniff: Callable[[Path, bytes], bool]  # (path, first 64 bytes) -> recognised?
    load: Loader  # None: recognised but no loader installed


# ------------------------------------------------------------------ sniffers
def _hdf5_root(path: Path) -> tuple[str | None, set[str], set[str]] | None:
    """(format attribute, root attribute names, root keys) of an HDF5 file, None if it is not one."""
    import h5py

    try:
        if not h5py.is_hdf5(str(path)):
            return None
        with h5py.File(path, "r") as f:
            fmt = f.attrs.get("format")
            fmt = fmt.decode() if isinstance(fmt, bytes) else fmt
            return (None if fmt is None else str(fmt)), set(f.attrs.keys()), set(f.keys())
    except (OSError, ValueError):
        return ("<unreadable>", set(), set())  # an HDF5 signature but a broken file: the xbarsim reader says why


def _is_xbarsim(path: Path, head: bytes) -> bool:
    root = _hdf5_root(path)
    return root is not None and root[0] in ("xbarsim-model", "<unreadable>")


def _is_keras(path: Path, head: bytes) -> bool:
    root = _hdf5_root(path)
    return root is not None and ("model_config" in root[1] or "layer_names" in root[1] or "model_weights" in root[2])


def _is_onnx(path: Path, head: bytes) -> bool:
    """ONNX files are protobuf ModelProto messages: field 1 (ir_version, a small varint) comes first."""
    if path.suffix.lower() == ".onnx":
        return True
    return len(head) >= 2 and head[0] == 0x08 and 1 <= head[1] <= 0x7F


def _is_pt2(path: Path, head: bytes) -> bool:
    """A zip archive written by ``torch.export.save`` (it holds an ``archive_format`` record)."""
    if not head.startswith(b"PK\x03\x04"):
        return False
    try:
        with zipfile.ZipFile(path) as z:
            names = z.namelist()
    except (zipfile.BadZipFile, OSError):
        return path.suffix.lower() == ".pt2"
    return any(n.endswith("archive_format") or "serialized_exported_program" in n for n in names)


def _load_xbarsim(path: Path, *, check: bool = True):
    from simulator.network import read_xbarsim_h5

    return read_xbarsim_h5(path)  # our own format: nothing to compare with


def _load_keras(path: Path, *, check: bool = True):
    # No TensorFlow here: the Keras importer is tested against independent re-implementations instead.
    from simulator.io.keras_h5 import load_keras_h5

    return load_keras_h5(path)


FORMATS: list[ModelFormat] = [
    ModelFormat("xbarsim", "xbarsim HDF5 model (.h5)", _is_xbarsim, _load_xbarsim),
    ModelFormat("keras", "Keras 2 HDF5 model (.h5)", _is_keras, _load_keras),
    ModelFormat("pt2", "torch.export program (.pt2)", _is_pt2, None),  # loader: simulator.model_files
    ModelFormat("onnx", "ONNX model (.onnx)", _is_onnx, "simulator.io.onnx_import:load_onnx"),
]


def register_format(name: str, load: Loader, *, sniff: Callable[[Path, bytes], bool] | None = None,
                    description: str | None = None, before: str | None = None) -> None:
    """Set the loader of format ``name`` (replacing an existing entry), or add a new format.

    A new format needs ``sniff`` and ``description``; it goes before the entry
    named ``before`` (default: before ONNX, whose sniffer is the loosest).
    """
    for i, fmt in enumerate(FORMATS):
        if fmt.name == name:
            FORMATS[i] = replace(fmt, load=load, sniff=sniff or fmt.sniff, description=description or fmt.description)
            return
    if sniff is None or description is None:
        raise ValueError(f"new model format {name!r} needs sniff and description")
    at = next((i for i, f in enumerate(FORMATS) if f.name == (before or "onnx")), len(FORMATS))
    FORMATS.insert(at, ModelFormat(name, description, sniff, load))


def accepted() -> str:
    return ", ".join(f.description for f in FORMATS)


def detect_format(path: Path) -> ModelFormat:
    """The table entry recognising ``path`` (raises ModelError when none does)."""
    try:
        with open(path, "rb") as fh:
            head = fh.read(64)
    except OSError as exc:
        raise ModelError(f"{path}: cannot read model file ({exc.__class__.__name__}: {exc})") from None
    for fmt in FORMATS:
        if fmt.sniff(path, head):
            return fmt
    root = _hdf5_root(path)
    if root is not None:
        keys = sorted(root[2]) or "none"
        raise ModelError(f"{path}: not an xbarsim model (an HDF5 file, but neither an xbarsim nor a Keras model; "
                         f"root keys: {keys}); accepted: {accepted()}")
    raise ModelError(f"{path}: not a model file of a known format (starts with {head[:8]!r}); accepted: {accepted()}")


def _resolve(load: Loader, fmt: ModelFormat, path: Path) -> Callable[..., Any]:
    if load is None:
        raise ModelError(f"{path}: recognised as a {fmt.description}, but no loader for it is installed "
                         "(load it with simulator.load_model)")
    if callable(load):
        return load
    module, _, func = load.partition(":")
    return getattr(importlib.import_module(module), func)


#: files whose self-check passed in this process: (resolved path, mtime_ns, size) -- sweeps load a model per point
_CHECKED: set[tuple[str, int, int]] = set()


def load_any(path: str | Path, *, check: bool = True):
    """Load the model file ``path`` with the loader of its format (``check``: run the import self-check).

    A file whose check passed once in this process (same path, size and
    modification time) is not checked again.
    """
    path = Path(path)
    if not path.exists():
        raise ModelError(f"{path}: model file not found")
    fmt = detect_format(path)
    st = path.stat()
    key = (str(path.resolve()), st.st_mtime_ns, st.st_size)
    model = _resolve(fmt.load, fmt, path)(path, check=check and key not in _CHECKED)
    if check:
        _CHECKED.add(key)
    return model
