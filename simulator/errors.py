"""Exceptions for bad user input.

Every error a user can cause by a config, model file, data file or CLI
argument derives from :class:`XbarsimError`; its message is one line that
names the file, the field and what was expected. The CLI prints it and exits
with code 2. Anything else escaping is a bug in xbarsim.
"""
from __future__ import annotations


class XbarsimError(Exception):
    """Base class of all user-facing input errors."""


class ConfigError(XbarsimError, ValueError):
    """An inference config is invalid (unknown key, wrong type, bad range, bad combination)."""


class ModelError(XbarsimError, ValueError):
    """A model file is missing, corrupt or uses an unsupported layer."""


class DataError(XbarsimError, ValueError):
    """A dataset file is missing or malformed."""


class CalibrationError(XbarsimError, ValueError):
    """Calibration (ADC / activation range) files are missing, mismatched or malformed."""


class DeviceModelError(XbarsimError, ValueError):
    """A device model is unknown, misconfigured or returned invalid values."""


class BackendError(XbarsimError, RuntimeError):
    """The requested array backend (e.g. CuPy on a GPU) is not available."""


class ConvergenceError(XbarsimError, RuntimeError):
    """The parasitic-resistance circuit solver did not converge."""


class OutputError(XbarsimError, OSError):
    """An output file or folder cannot be created or written."""
