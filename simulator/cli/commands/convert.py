"""``xbarsim convert IN OUT``: turn a Keras .h5, ONNX, PyTorch or xbarsim model into our HDF5 model file.

The input format is recognised from the file's content as
:func:`simulator.load_model` does (:mod:`simulator.io.loader`: xbarsim HDF5,
Keras HDF5, ONNX, ...); ``.pt``/``.pth`` -> a whole ``torch.nn.Module`` saved
with ``torch.save`` (needs ``--input-shape`` for the example input it is
traced with), or with ``--module package.module:Class`` a state_dict saved
with ``torch.save(model.state_dict())``, loaded into that class. An xbarsim model file is re-written (e.g. to upgrade it).
``--format`` overrides the guess; ``--no-check`` skips the import self-check.
"""
from __future__ import annotations

from pathlib import Path

import click

from simulator.cli.options import no_check_option
from simulator.errors import ModelError

FORMATS = ("auto", "keras", "onnx", "torch", "xbarsim")


def _parse_shape(text: str | None) -> tuple[int, ...] | None:
    if text is None:
        return None
    try:
        dims = tuple(int(v) for v in text.replace("x", ",").split(",") if v.strip())
    except ValueError:
        raise ModelError(f"--input-shape {text!r}: expected comma-separated integers such as 1,3,32,32") from None
    if not dims or any(d <= 0 for d in dims):
        raise ModelError(f"--input-shape {text!r}: expected positive integers such as 1,3,32,32")
    return dims


def detect_format(path: Path) -> str:
    """'keras', 'onnx', 'torch', 'xbarsim' (or another registered format) for an existing model file."""
    if path.suffix.lower() in (".pt", ".pth"):
        return "torch"
    if path.suffix.lower() == ".keras":
        raise ModelError(f"{path}: Keras 3 '.keras' archives are not supported; save the model as '.h5' "
                         "(model.save('model.h5')) or export it to ONNX")
    from simulator.io.loader import detect_format as sniff

    return sniff(path).name


def load_torch_module(path: Path, input_shape: tuple[int, ...] | None):
    """Load a whole module saved with ``torch.save`` and import it with an example input."""
    if input_shape is None:
        raise ModelError(f"{path}: converting a PyTorch model needs --input-shape (e.g. 1,3,32,32)")
    try:
        import torch
    except ImportError:
        raise ModelError("PyTorch import needs the optional 'torch' package: pip install 'xbarsim[torch]'") from None
    try:
        from simulator.io.torch_import import from_torch
    except ImportError as exc:
        raise ModelError(f"PyTorch import is not available in this installation ({exc})") from None
    try:
        # a whole pickled module needs the full unpickler; only convert files you trust
        obj = torch.load(str(path), map_location="cpu", weights_only=False)
    except Exception as exc:
        first = (str(exc).splitlines() or [""])[0]
        raise ModelError(f"{path}: cannot load PyTorch file ({exc.__class__.__name__}: {first})") from None
    if isinstance(obj, dict):
        raise ModelError(f"{path}: holds a state_dict, not a module; pass its model class with --module "
                         "package.module:Class, save the whole model with torch.save(model, ...) or export it to ONNX")
    if not isinstance(obj, torch.nn.Module):
        raise ModelError(f"{path}: holds a {type(obj).__name__}, expected a torch.nn.Module")
    obj.eval()
    if len(input_shape) in (1, 3):  # no batch axis given
        input_shape = (1,) + input_shape
    example = torch.zeros(input_shape)
    return from_torch(obj, example)


def convert_model(src: str | Path, fmt: str = "auto", input_shape: tuple[int, ...] | None = None,
                  ignored_layer_types: tuple[str, ...] | None = None, check: bool = True):
    """Read ``src`` in any supported format and return the Network (``check``: the import self-check)."""
    src = Path(src)
    if not src.exists():
        raise ModelError(f"{src}: model file not found")
    if fmt == "auto":
        fmt = detect_format(src)
    if fmt == "keras":
        from simulator.io.keras_h5 import DEFAULT_IGNORED_LAYER_TYPES, load_keras_h5

        return load_keras_h5(src, ignored_layer_types=DEFAULT_IGNORED_LAYER_TYPES if ignored_layer_types is None
                             else ignored_layer_types)
    if fmt == "onnx":
        from simulator.io.onnx_import import load_onnx

        return load_onnx(src, check=check)
    if fmt == "torch":
        return load_torch_module(src, input_shape)
    from simulator.model_files import load_model

    return load_model(src, check=check)


def _convert_state_dict(src: Path, fmt: str, module_spec: str, module_kwargs: str | None,
                        input_shape: tuple[int, ...] | None):
    """``--module``: the state_dict file ``src`` loaded into ``module_spec`` and imported."""
    import json

    if fmt not in ("auto", "torch"):
        raise ModelError(f"--module loads a PyTorch state_dict; --format {fmt} does not go with it")
    if not src.exists():
        raise ModelError(f"{src}: model file not found")
    if input_shape is None:
        raise ModelError(f"{src}: --module needs --input-shape (e.g. 1,1,8,8)")
    kwargs = {}
    if module_kwargs is not None:
        try:
            kwargs = json.loads(module_kwargs)
        except json.JSONDecodeError as exc:
            raise ModelError(f"--module-kwargs {module_kwargs!r}: not JSON ({exc.msg})") from None
        if not isinstance(kwargs, dict):
            raise ModelError(f"--module-kwargs {module_kwargs!r}: expected a JSON object such as '{{\"width\": 8}}'")
    try:
        from simulator.io.torch_import import from_state_dict
    except ImportError as exc:  # pragma: no cover - part of the package
        raise ModelError(f"PyTorch import is not available in this installation ({exc})") from None
    if len(input_shape) in (1, 3):  # no batch axis given
        input_shape = (1,) + input_shape
    return from_state_dict(src, module_spec, input_shape, kwargs)


@click.command("convert")
@click.argument("src", metavar="IN", type=click.Path(dir_okay=False, path_type=Path))
@click.argument("out", metavar="OUT", type=click.Path(dir_okay=False, path_type=Path))
@click.option("--format", "fmt", type=click.Choice(FORMATS), default="auto", show_default=True,
              help="Input format (default: recognised from the file).")
@click.option("--input-shape", default=None, metavar="N,C,H,W",
              help="Example input shape for PyTorch modules (batch axis optional).")
@click.option("--ignore-layer-type", "ignored", multiple=True, metavar="TYPE",
              help="Keras layer types to drop (default: Dropout, GaussianNoise and similar). Repeatable.")
@click.option("--keep-training-layers", is_flag=True, help="Keep Dropout/GaussianNoise layers of Keras models.")
@click.option("-f", "--force", is_flag=True, help="Overwrite OUT if it exists.")
@click.option("--module", "module_spec", default=None, metavar="PACKAGE.MODULE:CLASS",
              help="IN is a state_dict (torch.save(model.state_dict())): build this model class and load it "
                   "(witin_nn models are saved this way). Needs --input-shape.")
@click.option("--module-kwargs", default=None, metavar="JSON",
              help="Keyword arguments for the --module class, as a JSON object.")
@no_check_option
def command(src: Path, out: Path, fmt: str, input_shape: str | None, ignored: tuple[str, ...],
            keep_training_layers: bool, force: bool, module_spec: str | None, module_kwargs: str | None,
            no_check: bool) -> None:
    """Convert the model IN (Keras .h5, .onnx, .pt/.pth, xbarsim) into an xbarsim model file OUT."""
    from simulator.model_files import load_model
    from simulator.network import save_model

    if src.resolve() == out.resolve():
        raise ModelError(f"{out}: OUT must differ from IN")
    if out.exists() and not force:
        raise ModelError(f"{out}: file exists; pass --force to overwrite it")
    ignored_types: tuple[str, ...] | None = None
    if keep_training_layers:
        ignored_types = tuple(ignored)
    elif ignored:
        from simulator.io.keras_h5 import DEFAULT_IGNORED_LAYER_TYPES

        ignored_types = DEFAULT_IGNORED_LAYER_TYPES + tuple(ignored)
    if module_spec is not None:
        net = _convert_state_dict(src, fmt, module_spec, module_kwargs, _parse_shape(input_shape))
    elif module_kwargs is not None:
        raise ModelError("--module-kwargs needs --module")
    else:
        net = convert_model(src, fmt, _parse_shape(input_shape), ignored_types, check=not no_check)
    net.metadata.setdefault("converted_from", str(src))
    if out.parent and not out.parent.exists():
        raise ModelError(f"{out}: folder {out.parent} does not exist")
    try:
        save_model(net, out)
    except OSError as exc:
        raise ModelError(f"{out}: cannot write ({exc.__class__.__name__}: {exc})") from None
    back = load_model(out)  # verify that the written file reads back
    n_mvm = len(back.mvm_layers)
    click.echo(
        f"wrote {out}: {len(back.layers)} layers ({n_mvm} MVM), input {back.input_layout} "
        f"{list(back.input_shape)}, outputs {', '.join(back.outputs)}"
    )
