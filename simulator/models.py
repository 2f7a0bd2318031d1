"""Bundled models and name -> path resolution for ``model_name``."""
from __future__ import annotations

from pathlib import Path

from simulator.errors import ModelError

DATA_DIR = Path(__file__).resolve().parent / "data"

#: Bundled model name -> file inside simulator/data.
BUNDLED_MODELS: dict[str, str] = {
    "digits_cnn": "digits_cnn.h5",
    "digits_mlp": "digits_mlp.h5",
    "witin_digits": "witin_digits.h5",
}

DEFAULT_MODEL = "digits_cnn"


def available_models() -> list[str]:
    return sorted(name for name, fname in BUNDLED_MODELS.items() if (DATA_DIR / fname).exists())


def resolve_model_path(name_or_path: str | Path) -> Path:
    """Return the file for a bundled model name or a path; raise ModelError when missing."""
    text = str(name_or_path)
    if text in BUNDLED_MODELS:
        path = DATA_DIR / BUNDLED_MODELS[text]
        if not path.exists():
            raise ModelError(f"bundled model {text!r} is not installed (expected {path})")
        return path
    path = Path(text).expanduser()
    if not path.exists():
        hint = f"; bundled models: {', '.join(available_models())}" if available_models() else ""
        raise ModelError(f"model file {text!r} not found{hint}")
    if path.is_dir():
        raise ModelError(f"model path {text!r} is a directory, expected a model file")
    return path
