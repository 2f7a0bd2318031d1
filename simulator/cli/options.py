"""Options shared by several sub-commands."""
from __future__ import annotations

from typing import Callable

import click

#: ``--no-check``: commands that load models skip the import self-check (config ``check = false``)
no_check_option: Callable = click.option(
    "--no-check", "no_check", is_flag=True,
    help="Skip the import self-check against the model's own runtime (onnxruntime, torch); same as check = false.",
)


def with_no_check(sets: tuple[str, ...], no_check: bool) -> tuple[str, ...]:
    """``--set`` overrides plus ``check=false`` when ``--no-check`` was given."""
    return tuple(sets) + (("check=false",) if no_check else ())
