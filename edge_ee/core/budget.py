"""Parse ``--budget`` values. The unit picks the kind: latency (us/ms/s), energy (uJ/mJ/J), power (mW/W).

The SI prefix is case-sensitive (``m`` is milli, ``M`` would be mega), so ``2.5MW`` or ``5MJ`` are
errors rather than being read as milliwatts/millijoules. The base letter may be written in either case
(``50mj`` is 50 mJ, ``2w`` is 2 W). Micro may be written ``u``, ``µ`` (micro sign) or ``μ`` (Greek mu).
Prefixes that make no sense on an edge device (kilo, mega, nano...) are rejected with the list of
accepted units.
"""

from __future__ import annotations

import math
import re
from dataclasses import dataclass
from typing import Literal

from ..errors import UsageError

BudgetKind = Literal["latency", "energy", "power"]

#: base letter (lower-cased) -> (kind, canonical symbol)
_BASES: dict[str, tuple[BudgetKind, str]] = {"s": ("latency", "s"), "j": ("energy", "J"), "w": ("power", "W")}
#: accepted prefixes per kind (case-sensitive) -> scale
_PREFIXES: dict[BudgetKind, dict[str, float]] = {
    "latency": {"u": 1e-6, "µ": 1e-6, "μ": 1e-6, "m": 1e-3, "": 1.0},
    "energy": {"u": 1e-6, "µ": 1e-6, "μ": 1e-6, "m": 1e-3, "": 1.0},
    "power": {"m": 1e-3, "": 1.0},
}
_PREFIX_NAMES = {"M": "mega (10^6)", "k": "kilo (10^3)", "K": "kilo (10^3)", "G": "giga (10^9)",
                 "n": "nano (10^-9)", "p": "pico (10^-12)", "U": "not a prefix (micro is u or µ)"}
ACCEPTED_UNITS = ("latency per inference: us (or µs), ms, s; energy per inference: uJ (or µJ), mJ, J; "
                  "average power: mW, W. The prefix is case-sensitive: m = milli, M = mega")
_RE = re.compile(r"^\s*([0-9]*\.?[0-9]+(?:[eE][-+]?[0-9]+)?)\s*([a-zA-Zµμ]+)\s*$")


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


def parse_unit(unit: str, text: str) -> tuple[BudgetKind, float]:
    """``"mW"`` -> ("power", 1e-3). Raises UsageError naming the unit and listing the accepted ones."""
    base = _BASES.get(unit[-1:].lower())
    prefix = unit[:-1]
    if base is not None:
        kind, symbol = base
        scale = _PREFIXES[kind].get(prefix)
        if scale is not None:
            return kind, scale
        if prefix in _PREFIX_NAMES:
            why = f"{prefix!r} is {_PREFIX_NAMES[prefix]}"
            if prefix == "M" and "m" in _PREFIXES[kind]:
                why += f"; for milli write a lower-case m: m{symbol}"
            raise UsageError(f"budget unit {unit!r} in {text!r} is not accepted: {why}", f"use {ACCEPTED_UNITS}")
    raise UsageError(f"unknown budget unit {unit!r} in {text!r}", f"use {ACCEPTED_UNITS}")


def parse_budget(text: str | None) -> Budget | None:
    if text is None or text == "":
        return None
    m = _RE.match(text)
    if not m:
        raise UsageError(
            f"cannot parse budget {text!r}",
            "give a number with a unit: latency 500us / 20ms / 0.1s, energy 50mJ / 1J, power 2.5W / 800mW",
        )
    num = float(m.group(1))
    kind, scale = parse_unit(m.group(2), text)
    if not math.isfinite(num) or num <= 0:
        raise UsageError(f"budget {text!r} must be a positive number")
    return Budget(kind, num * scale, text.strip())
