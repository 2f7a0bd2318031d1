"""Inference configuration: schema, validation and loading.

Parameter names are CrossSim's (manual Table 3.1) so its users can move their
configs over; xbarsim's own additions are marked "xbarsim" in their
descriptions. A config is a TOML file (or a dict, or a CrossSim-style
``inference_config*.py`` module) with flat top-level keys and optional
per-layer overrides::

    weight_bits = 8
    adc_bits = 8
    [layers.conv2]
    adc_bits = 10

Validation (pydantic) rejects unknown keys with the closest valid name, wrong
types and out-of-range values, and incompatible combinations, each as one
:class:`~simulator.errors.ConfigError` line naming the file and the key.

Modules, bottom to top: :mod:`~simulator.config.files` (reading config files,
overrides, TOML), :mod:`~simulator.config.checks` (value and combination
checks), :mod:`~simulator.config.hardware` (:class:`HardwareParams`, the
per-layer parameters), :mod:`~simulator.config.schema` (:class:`Config`,
:func:`load_config`). ``docs/parameters.md`` is generated from the schema
(``scripts/gen_parameters_doc.py``).
"""
from simulator.config.checks import check_array_options, check_combinations, wire_resistances
from simulator.config.files import PATH_KEYS, apply_overrides, dict_to_toml, parse_value, read_config_file, resolve_paths
from simulator.config.hardware import LAYER_KEYS, HardwareParams, LayerOverrides, Range
from simulator.config.schema import DEVICE_ALIASES, Config, load_config

__all__ = [
    "Config",
    "HardwareParams",
    "LayerOverrides",
    "LAYER_KEYS",
    "Range",
    "load_config",
    "parse_value",
    "apply_overrides",
    "read_config_file",
    "resolve_paths",
    "dict_to_toml",
    "PATH_KEYS",
    "DEVICE_ALIASES",
    "check_combinations",
    "check_array_options",
    "wire_resistances",
]
