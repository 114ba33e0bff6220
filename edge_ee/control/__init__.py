"""Budget control: operating points on the accuracy/cost frontier, the PI controller that moves along
them, and the run hooks (controller, energy measurement)."""

from .controller import ControllerConfig, IndexController
from .operating_points import Frontier, OperatingPoint, from_manifest, from_profile, ladder

__all__ = ["ControllerConfig", "Frontier", "IndexController", "OperatingPoint", "from_manifest", "from_profile",
           "ladder"]
