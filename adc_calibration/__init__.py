"""ADC and activation range calibration (CrossSim manual 9.3-9.6).

- :mod:`~adc_calibration.collectors`: bounded-memory profiling statistics
  (:class:`StreamingHistogram`, :class:`ReservoirSample`);
  :mod:`~adc_calibration.profile_store`: :class:`ProfileStore`, every stream of a network.
- :mod:`~adc_calibration.optimizers`: range optimizers (:func:`optimize_range`,
  :func:`sliced_range_exponents`, :func:`activation_range`, :func:`get_optimizer`).
- :mod:`simulator.calibration_file` (re-exported here): calibration files keyed by
  network and hardware (:class:`HardwareKey`, :func:`save_calibration`,
  :func:`load_calibration`); it lives below the executor, which reads it.
- :mod:`~adc_calibration.plots`: histogram plots with the chosen limits.
"""
from adc_calibration.collectors import ReservoirSample, StreamingHistogram
from adc_calibration.profile_store import ProfileStore
from simulator.calibration_file import (
    Calibration,
    HardwareKey,
    default_path,
    load_calibration,
    load_limits_npy,
    save_calibration,
)
from adc_calibration.optimizers import (
    OPTIMIZERS,
    activation_range,
    expected_error,
    get_optimizer,
    minmax_range,
    optimize_range,
    percentile_range,
    quantizer_levels,
    register_optimizer,
    sliced_limits,
    sliced_range_exponents,
)


def plot_histograms(store, ranges, out_dir, **kw):
    """See :func:`adc_calibration.plots.plot_histograms` (imports matplotlib on first use)."""
    from adc_calibration.plots import plot_histograms as _plot

    return _plot(store, ranges, out_dir, **kw)


__all__ = [
    "StreamingHistogram",
    "ReservoirSample",
    "ProfileStore",
    "optimize_range",
    "expected_error",
    "quantizer_levels",
    "minmax_range",
    "percentile_range",
    "sliced_range_exponents",
    "sliced_limits",
    "activation_range",
    "get_optimizer",
    "register_optimizer",
    "OPTIMIZERS",
    "HardwareKey",
    "Calibration",
    "default_path",
    "save_calibration",
    "load_calibration",
    "load_limits_npy",
    "plot_histograms",
]
