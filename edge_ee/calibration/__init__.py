"""Calibration core (torch-free): shared by ``edge-ee profile`` on the device and the exporter on the workstation.

* :mod:`.table`: cached per-exit outputs (:class:`ExitTable`) -> exits taken for a threshold vector -> operating
  points -> the Pareto frontier;
* :mod:`.select`: the risk-controlled selection with a finite-sample guarantee (Learn-then-Test) and the plain point
  estimate;
* :mod:`.risk`: exact binomial (Clopper-Pearson) bounds;
* :mod:`.record`: the typed ``calibration`` section of a bundle manifest;
* :mod:`.points`: operating points and the Pareto filter.
"""

from .points import OperatingPoint, pareto
from .select import Guarantee, Selection, select_point_estimate, select_risk_controlled
from .table import ExitTable

__all__ = ["ExitTable", "Guarantee", "OperatingPoint", "Selection", "pareto", "select_point_estimate",
           "select_risk_controlled"]
