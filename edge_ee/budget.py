"""Parse ``--budget`` values. The unit picks the kind: latency (us/ms/s), energy (uJ/mJ/J), power (mW/W)."""

from __future__ import annotations

import math
import re
from dataclasses import dataclass
from typing import Literal

from .errors import UsageError

BudgetKind = Literal["latency", "energy", "power"]

_UNITS: dict[str, tuple[BudgetKind, float]] = {
    "us": ("latency", 1e-6), "µs": ("latency", 1e-6), "ms": ("latency", 1e-3), "s": ("latency", 1.0),
    "uj": ("energy", 1e-6), "µj": ("energy", 1e-6), "mj": ("energy", 1e-3), "j": ("energy", 1.0),
    "mw": ("power", 1e-3), "w": ("power", 1.0),
}
_RE = re.compile(r"^\s*([0-9]*\.?[0-9]+(?:[eE][-+]?[0-9]+)?)\s*([a-zA-Zµ]+)\s*$")


@dataclass(frozen=True)
class Budget:
    kind: BudgetKind
    value: float  # base units: seconds, joules or watts
    text: str

    @property
    def seconds(self) -> float | None:
        return self.value if self.kind == "latency" else None

    def to_json(self) -> dict[str, object]:
        return {"kind": self.kind, "value": self.value, "text": self.text}


def parse_budget(text: str | None) -> Budget | None:
    if text is None or text == "":
        return None
    m = _RE.match(text)
    if not m:
        raise UsageError(
            f"cannot parse budget {text!r}",
            "give a number with a unit: latency 500us / 20ms / 0.1s, energy 50mJ / 1J, power 2.5W / 800mW",
        )
    num, unit = float(m.group(1)), m.group(2).lower()
    if unit not in _UNITS:
        raise UsageError(
            f"unknown budget unit {m.group(2)!r} in {text!r}",
            "latency: us, ms, s; energy per inference: uJ, mJ, J; average power: mW, W",
        )
    if not math.isfinite(num) or num <= 0:
        raise UsageError(f"budget {text!r} must be a positive number")
    kind, scale = _UNITS[unit]
    return Budget(kind, num * scale, text.strip())
