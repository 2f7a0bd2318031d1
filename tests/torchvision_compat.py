"""Import torchvision against the local torch build.

torchvision 0.28.0 registers fake (meta) kernels for its C++ operators
(``torchvision::nms``, ``roi_align``, ...) at import time.  When its compiled
extension does not match the installed torch, those operators do not exist and
``torch.library.register_fake`` raises ``RuntimeError: operator
torchvision::nms does not exist``, which aborts ``import torchvision``.

:func:`import_torchvision` wraps ``register_fake`` for the duration of the
import so that a registration that fails is skipped (the decorated Python
function is returned unchanged).  The model zoo (``torchvision.models``) does
not use those operators, so architectures build and run normally; only the
detection ops (nms, roi_align, ...) stay unavailable.
"""

from __future__ import annotations

import functools
import importlib
import sys
from types import ModuleType
from typing import Any, Callable

import torch


def _tolerant_register_fake(original: Callable[..., Any]) -> Callable[..., Any]:
    """Return a ``register_fake`` that skips registrations raising RuntimeError."""

    @functools.wraps(original)
    def register_fake(op: Any, func: Callable[..., Any] | None = None, /, *args: Any, **kwargs: Any) -> Any:
        if func is not None:
            try:
                return original(op, func, *args, **kwargs)
            except RuntimeError:
                return func
        try:
            decorator = original(op, *args, **kwargs)
        except RuntimeError:
            return lambda f: f

        def apply(f: Callable[..., Any]) -> Callable[..., Any]:
            try:
                return decorator(f)
            except RuntimeError:
                return f

        return apply

    return register_fake


def import_torchvision() -> ModuleType:
    """Import and return ``torchvision`` (with ``torchvision.models`` loaded).

    Safe to call repeatedly; the patch of ``torch.library.register_fake`` is
    undone after the first import.
    """
    if "torchvision.models" in sys.modules:
        return sys.modules["torchvision"]
    original = torch.library.register_fake
    torch.library.register_fake = _tolerant_register_fake(original)
    try:
        torchvision = importlib.import_module("torchvision")
        importlib.import_module("torchvision.models")
    finally:
        torch.library.register_fake = original
    return torchvision
