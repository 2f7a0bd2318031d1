"""Per-layer error budget of a chip: :func:`diagnose` (``xbarsim diagnose CONFIG``).

See :mod:`simulator.diagnosis.core` for what is measured and how,
:mod:`simulator.diagnosis.causes` for the causes and their configs,
:mod:`simulator.diagnosis.results` for what is returned and
:mod:`simulator.diagnosis.report` for the files written.
"""
from simulator.diagnosis.causes import CAUSES, active_causes, variant_config
from simulator.diagnosis.core import diagnose
from simulator.diagnosis.results import DiagnoseReport, LayerDiagnosis

__all__ = ["CAUSES", "DiagnoseReport", "LayerDiagnosis", "active_causes", "diagnose", "variant_config"]
