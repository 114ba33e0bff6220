"""The ``calibration`` section of a bundle manifest, typed.

Written by the exporter, read by the runtime (operating points for the controller, the guarantee for ``info`` and the
summary). Every key is optional, so a manifest without a calibration or from an older exporter still loads; such a
bundle carries no guarantee, and ``guarantee`` is None. Keys this version does not model (ECE, the oracle, per-rule
points, splits, quantisation results) are kept as they are in ``extra``.
"""

from __future__ import annotations

import math
from dataclasses import dataclass, field
from typing import Any

from ..errors import BundleError
from .points import OperatingPoint
from .select import Guarantee


def _floats(v: Any, where: str) -> list[float] | None:
    if v is None:
        return None
    if not isinstance(v, list) or not all(isinstance(x, (int, float)) and not isinstance(x, bool)
                                          and math.isfinite(float(x)) for x in v):
        raise BundleError(f"manifest: {where} must be a list of finite numbers")
    return [float(x) for x in v]


def _point(d: Any, where: str) -> OperatingPoint:
    try:
        return OperatingPoint.from_dict(d)
    except (KeyError, TypeError, ValueError) as e:
        raise BundleError(f"manifest: {where} is not an operating point ({e})",
                          "each needs 'thresholds' (a list of numbers), plus accuracy/mean_macs/exit_fractions"
                          ) from None


@dataclass
class Calibration:
    rule: str | None = None
    temperatures: list[float] | None = None
    target_drop: float | None = None
    full_accuracy: float | None = None
    full_macs: float | None = None
    exit_accuracy: list[float] | None = None
    operating_points: list[OperatingPoint] = field(default_factory=list)
    chosen: OperatingPoint | None = None
    guarantee: Guarantee | None = None
    extra: dict[str, Any] = field(default_factory=dict)

    _KNOWN = ("rule", "temperatures", "target_drop", "full_accuracy", "full_macs", "exit_accuracy",
              "operating_points", "chosen", "guarantee")

    def __bool__(self) -> bool:
        return bool(self.operating_points or self.chosen or self.rule or self.extra)

    @classmethod
    def from_dict(cls, d: Any, where: str = "calibration") -> Calibration:
        if d is None:
            return cls()
        if not isinstance(d, dict):
            raise BundleError(f"manifest: {where} must be an object")
        ops = d.get("operating_points") or []
        if not isinstance(ops, list):
            raise BundleError(f"manifest: {where}.operating_points must be a list of operating points")
        g = d.get("guarantee")
        try:
            guarantee = Guarantee.from_dict(g) if g is not None else None
        except TypeError as e:
            raise BundleError(f"manifest: {where}.guarantee is malformed ({e})") from None

        def num(key: str) -> float | None:
            v = d.get(key)
            if v is None:
                return None
            if not isinstance(v, (int, float)) or isinstance(v, bool) or not math.isfinite(float(v)):
                raise BundleError(f"manifest: {where}.{key} must be a finite number")
            return float(v)

        rule = d.get("rule")
        if rule is not None and not isinstance(rule, str):
            raise BundleError(f"manifest: {where}.rule must be a string")
        return cls(rule=rule, temperatures=_floats(d.get("temperatures"), f"{where}.temperatures"),
                   target_drop=num("target_drop"), full_accuracy=num("full_accuracy"), full_macs=num("full_macs"),
                   exit_accuracy=_floats(d.get("exit_accuracy"), f"{where}.exit_accuracy"),
                   operating_points=[_point(p, f"{where}.operating_points[{i}]") for i, p in enumerate(ops)],
                   chosen=_point(d["chosen"], f"{where}.chosen") if d.get("chosen") is not None else None,
                   guarantee=guarantee,
                   extra={k: v for k, v in d.items() if k not in cls._KNOWN})

    def to_dict(self) -> dict[str, Any]:
        out: dict[str, Any] = {k: v for k, v in {
            "rule": self.rule, "temperatures": self.temperatures, "target_drop": self.target_drop,
            "full_accuracy": self.full_accuracy, "full_macs": self.full_macs, "exit_accuracy": self.exit_accuracy,
        }.items() if v is not None}
        out.update(self.extra)
        if self.operating_points:
            out["operating_points"] = [p.to_dict() for p in self.operating_points]
        if self.chosen is not None:
            out["chosen"] = self.chosen.to_dict()
        if self.guarantee is not None:
            out["guarantee"] = self.guarantee.to_dict()
        return out
