"""The ADC-range policy of a layer (simulator.cores.adc_range), checked by hand through NeuralCore.

A calibrated range is given in algorithmic units (the layer's own outputs) or,
in a calibration file, in normalized units (``w . x``). Whatever the units,
the digitized outputs of a saturated layer must sit at the top ADC level, which
lies within half an ADC step of the range's upper limit in those units.
"""
import numpy as np
import pytest

from simulator.config import load_config
from simulator.cores.neural import NeuralCore
from simulator.cores.numeric import ArrayOptions
from simulator.errors import CalibrationError

RNG = np.random.default_rng(5)
W = RNG.normal(size=(20, 6))
X = np.abs(RNG.normal(size=(400, 20))) * 3.0  # large non-negative inputs: many outputs beyond the range


def _core(over, calibration=None, Gmin=0.1, input_range=(0.0, 12.0)):
    hw = load_config(over).for_layer("fc")
    return NeuralCore("fc", W, None, hw, options=ArrayOptions(Gmin=Gmin), devices=None, xp=np,
                      rng=np.random.default_rng(0), dtype=np.float64, input_range=input_range,
                      adc_calibration=calibration)


def _top_and_bottom(y):
    return float(y.max()), float(y.min())


@pytest.mark.parametrize("lo, hi", [(-4.0, 6.0), (-5.0, 5.0)])
def test_calibrated_range_in_algorithmic_units_clips_the_outputs_there(lo, hi):
    bits = 6
    core = _core({"adc_bits": bits, "adc_range_option": "calibrated", "adc_range": [lo, hi]})
    y = core(X)
    # hand calculation: a signed ADC of 2**bits - 1 levels over (lo, hi), one level at 0 (manual 9.3.1)
    step = (hi - lo) / (2**bits - 2)
    top, bottom = _top_and_bottom(y)
    assert abs(top - hi) <= step / 2 + 1e-12 and abs(bottom - lo) <= step / 2 + 1e-12
    # the outputs are multiples of the step (zero-centred grid), in algorithmic units
    k = y / step
    np.testing.assert_allclose(k, np.rint(k), atol=1e-9)
    # the ideal outputs really exceed the range: the ADC clipped them
    ideal = X @ W
    assert ideal.max() > hi + step and ideal.min() < lo - step


def test_calibration_file_range_in_normalized_units():
    """A file entry in normalized units (w . x) is scaled by W_max * x_scale, once."""
    bits = 7
    lo_n, hi_n = -0.3, 0.45
    core = _core({"adc_bits": bits, "adc_range_option": "calibrated"},
                 calibration={"range": (lo_n, hi_n), "units": "normalized"})
    scale = np.abs(W).max() * 12.0  # W_max (weight_percentile 100) * x_scale (max |input range|)
    lo, hi = lo_n * scale, hi_n * scale
    step = (hi - lo) / (2**bits - 2)
    top, bottom = _top_and_bottom(core(X))
    assert abs(top - hi) <= step / 2 + 1e-9 and abs(bottom - lo) <= step / 2 + 1e-9
    # the same range given in algorithmic units digitizes identically
    same = _core({"adc_bits": bits, "adc_range_option": "calibrated", "adc_range": [lo, hi]})
    np.testing.assert_allclose(same(X), core(X), rtol=0, atol=1e-9 * scale)


def test_max_range_raw_limits_and_no_limits_without_an_adc():
    # max: rows * (1 - Gmin) for BALANCED, signed (manual 9.3.2)
    core = _core({"adc_bits": 8})
    assert core.adc_limits() == [(-20 * 0.9, 20 * 0.9)]
    # no ADC: a calibrated option without any range needs no range, and there are no ADC grids
    core = _core({"adc_bits": 0, "adc_range_option": "calibrated"})
    assert core.adc_quantizers == []
    np.testing.assert_allclose(core(X), X @ W, rtol=1e-12)
    # with an ADC it does
    with pytest.raises(CalibrationError, match="no ADC range is given"):
        _core({"adc_bits": 6, "adc_range_option": "calibrated"})
