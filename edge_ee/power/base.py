"""The common interface of every power/energy source."""

from __future__ import annotations

from abc import ABC, abstractmethod
from collections.abc import Callable
from dataclasses import asdict, dataclass
from typing import TYPE_CHECKING, Any, Literal

if TYPE_CHECKING:
    from .board import DevicePowerModel

Quantity = Literal["power", "energy"]


class PowerSource(ABC):
    """One way of measuring (or estimating) the power of a named rail.

    ``read()`` returns the instantaneous power in watts when ``quantity == "power"``, or a
    cumulative energy counter in joules when ``quantity == "energy"``. A counter that wraps declares
    ``energy_range_j`` (the sampler adds it back); sources that unwrap internally leave it ``None``.
    ``read()`` raises an ``OSError`` (usually a :class:`~edge_ee.power.sysfs.SensorError`) when the
    sensor fails or disappears.
    """

    kind: str = "unknown"  # jetson, tegrastats, pi5, hwmon, rapl, estimate
    name: str = "unknown"  # human name, e.g. "INA3221 (JetPack 5/6 hwmon)"
    rail: str = "unknown"  # what is measured, e.g. "VDD_IN"
    unit: str = ""  # native unit of the sensor, e.g. "mW (in_powerN_input)"
    quantity: Quantity = "power"
    estimated: bool = False
    update_interval_s: float = 0.1  # do not sample faster than this
    energy_range_j: float | None = None
    path: str | None = None  # where it reads from (as seen on the device)

    @abstractmethod
    def read(self) -> float:
        """Power [W] or cumulative energy [J], see ``quantity``."""

    @classmethod
    def candidates(cls, detail: str | None, model: DevicePowerModel | None) -> list[Candidate]:
        """The sensors of this kind present on this machine (a registered back end overrides this).

        ``detail`` is the ``KIND:DETAIL`` part of ``--power-source`` (``None`` when absent or when the
        back end is tried automatically); ``model`` the estimate's power model."""
        raise NotImplementedError(f"{cls.__qualname__} does not list candidates")

    @classmethod
    def check_detail(cls, detail: str) -> None:
        """Raise ``ValueError`` when ``detail`` (``KIND:DETAIL``) cannot be right; default: any is fine."""
        return

    def close(self) -> None:  # noqa: B027 - optional hook
        """Release resources (subprocesses); idempotent."""

    def describe(self) -> dict[str, Any]:
        return {
            "kind": self.kind,
            "name": self.name,
            "rail": self.rail,
            "unit": self.unit,
            "quantity": self.quantity,
            "estimated": self.estimated,
            "update_interval_s": self.update_interval_s,
            "path": self.path,
        }

    def __enter__(self) -> PowerSource:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()

    def __repr__(self) -> str:
        est = ", estimated" if self.estimated else ""
        return f"<{type(self).__name__} {self.kind} rail={self.rail} {self.quantity}{est}>"


@dataclass
class SensorInfo:
    """One candidate sensor as reported by :func:`~edge_ee.power.list_sensors` (``edge-ee doctor``)."""

    kind: str
    name: str
    rail: str | None = None
    unit: str | None = None
    quantity: str | None = None
    path: str | None = None
    present: bool = True  # the sensor exists (file, command) even if it cannot be read
    readable: bool = False
    reason: str | None = None  # why not readable / not usable
    estimated: bool = False
    auto: bool = True  # discover() may pick it without being asked
    value: float | None = None  # one reading: W or J (see quantity)

    def to_dict(self) -> dict[str, Any]:
        return asdict(self)


@dataclass
class Candidate:
    """A sensor that exists on this machine; ``open()`` returns a source or raises ``SensorError``."""

    kind: str
    name: str
    path: str | None
    open: Callable[[], PowerSource]
    auto: bool = True  # False: listed and usable when preferred, but never picked automatically
    note: str | None = None


class CounterUnwrapper:
    """Turns a wrapping counter (range ``range_``) into a monotonically increasing one."""

    def __init__(self, range_: float | None) -> None:
        self.range = range_ if range_ and range_ > 0 else None
        self._last: float | None = None
        self._offset = 0.0

    def __call__(self, raw: float) -> float:
        if self._last is not None and raw < self._last and self.range is not None:
            self._offset += self.range
        self._last = raw
        return raw + self._offset
