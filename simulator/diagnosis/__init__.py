"""Per-layer error budget of a chip: :func:`diagnose` (``xbarsim diagnose CONFIG``).

See :mod:`simulator.diagnosis.core` for what is measured and how, and
:mod:`simulator.diagnosis.report` for the files written.
"""
from simulator.diagnosis.core import CAUSES, DiagnoseReport, LayerDiagnosis, active_causes, diagnose, variant_config

__all__ = ["CAUSES", "DiagnoseReport", "LayerDiagnosis", "active_causes", "diagnose", "variant_config"]
