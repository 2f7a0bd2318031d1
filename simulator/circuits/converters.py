"""ADC and DAC models behind one small protocol: names, validation and construction.

The models live in :mod:`simulator.circuits.adc_models` (ideal ADCs and the
circuit ADCs of Spear et al.: ramp, SAR, pipeline, cyclic) and
:mod:`simulator.circuits.dac_models`; their grids are the uniform quantizers
of :mod:`simulator.quantization.uniform`.

Protocol
--------
A converter is built once per array (its random mismatches are drawn then,
from the rng the core is given) and then called on batches::

    adc = make_adc("sar", bits=8, lo=-4.0, hi=4.0, n_cols=128, params={...}, rng=rng, xp=xp)
    y_q = adc(y, xp)            # y: (..., M, C) column outputs, columns on the last axis

Every converter has ``bits``, ``lo``, ``hi``, ``enabled`` and ``__call__(y, xp,
out=None)``. To add a model, subclass :class:`ADCModel` (or :class:`DACModel`),
give it a ``name`` and a ``parameters`` dict of its parameter names and
defaults, and decorate it with :func:`register_adc` (:func:`register_dac`);
config keys ``adc_type`` / ``adc_params`` (``dac_type``) then select it.

Names: ``adc_type`` is one of ``generic``, ``quantizer``, ``sign_magnitude`` (ideal)
or ``ramp``, ``sar``, ``pipeline``, ``cyclic`` (circuits), ``dac_type`` one of the
three ideal ones; CrossSim 3 class names (``SarADC``, ...) are accepted too.
"""
from __future__ import annotations

from typing import Any, Mapping

import numpy

from simulator.circuits.adc_models import ADC_MODELS
from simulator.circuits.dac_models import DAC_MODELS
from simulator.errors import ConfigError

__all__ = ["make_adc", "make_dac", "ADC_MODELS", "DAC_MODELS", "check_converter_options", "canonical_name",
           "CROSSSIM_NAMES"]


#: CrossSim 3 model names -> xbarsim adc_type / dac_type
CROSSSIM_NAMES = {
    "idealadc": "generic", "quantizeradc": "quantizer", "signmagnitudeadc": "sign_magnitude", "rampadc": "ramp",
    "saradc": "sar", "pipelineadc": "pipeline", "cyclicadc": "cyclic",
    "idealdac": "generic", "quantizerdac": "quantizer", "signmagnitudedac": "sign_magnitude",
}


def canonical_name(name: str, table: Mapping[str, type]) -> str:
    """``name`` as registered (case-insensitive; CrossSim class names such as 'SarADC' accepted)."""
    if name in table:
        return name
    low = str(name).strip().lower()
    for key in table:
        if key.lower() == low:
            return key
    alias = CROSSSIM_NAMES.get(low)
    if alias in table:
        return alias
    return name


def check_converter_options(adc_type: str, adc_params: Mapping[str, Any], dac_type: str) -> None:
    """Raise ConfigError (one line) for an unknown model or a parameter the model does not have."""
    adc = canonical_name(adc_type, ADC_MODELS)
    if adc not in ADC_MODELS:
        raise ConfigError(f"adc_type = {adc_type!r} is not a known ADC model; available: {', '.join(sorted(ADC_MODELS))}")
    dac = canonical_name(dac_type, DAC_MODELS)
    if dac not in DAC_MODELS:
        raise ConfigError(f"dac_type = {dac_type!r} is not a known DAC model; available: {', '.join(sorted(DAC_MODELS))}")
    cls = ADC_MODELS[adc]
    for key, value in (adc_params or {}).items():
        if key not in cls.parameters:
            owners = sorted(n for n, c in ADC_MODELS.items() if key in c.parameters)
            if owners:
                raise ConfigError(f"adc_params.{key} is a parameter of adc_type {', '.join(map(repr, owners))}, "
                                  f"not of adc_type = {adc!r} (its parameters: {', '.join(cls.parameters) or 'none'})")
            raise ConfigError(f"adc_params.{key} is not a parameter of any ADC model; adc_type = {adc!r} takes: "
                              f"{', '.join(cls.parameters) or 'none'}")
        cls.check_parameter(key, value)


def make_adc(adc_type: str, bits: int, lo: float, hi: float, *, n_cols: int = 1, params=None, rng=None, xp=numpy):
    """Build the ADC ``adc_type`` (validated names; see :func:`check_converter_options`)."""
    name = canonical_name(adc_type, ADC_MODELS)
    check_converter_options(name, params or {}, "generic")
    return ADC_MODELS[name](bits, lo, hi, n_cols=n_cols, params=params, rng=rng, xp=xp)


def make_dac(dac_type: str, bits: int, lo: float = 0.0, hi: float = 1.0):
    """Build the DAC ``dac_type`` for inputs in ``[lo, hi]``."""
    name = canonical_name(dac_type, DAC_MODELS)
    check_converter_options("generic", {}, name)
    return DAC_MODELS[name](bits, lo, hi)
