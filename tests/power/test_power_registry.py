"""The power back-end registry: discovery order, --power-source parsing and help all come from it."""

from __future__ import annotations

import pkgutil

import pytest

from edge_ee.errors import UsageError
from edge_ee.power import (
    ORDER,
    PREFER_HELP,
    Candidate,
    PowerSource,
    all_backends,
    discover,
    parse_prefer,
    power_source_help,
    register_backend,
    registry,
)
from edge_ee.power import backends as backends_pkg

from .test_power_rapl import make_rapl


def test_every_backend_module_registers_and_the_order_is_the_registry():
    kinds = [b.kind for b in all_backends()]
    assert tuple(kinds) == ORDER and kinds[-1] == "estimate"  # the estimate always works: tried last
    shipped = ["jetson", "tegrastats", "pi5", "hwmon", "rapl", "estimate"]
    assert [k for k in kinds if k in shipped] == shipped
    modules = {m.name for m in pkgutil.iter_modules(backends_pkg.__path__)}
    assert modules == {b.cls.__module__.rsplit(".", 1)[1] for b in all_backends()}


def test_help_is_generated_from_the_registry():
    for b in all_backends():
        assert b.syntax in PREFER_HELP and b.syntax in power_source_help()
    assert "hwmon[:NAME]" in PREFER_HELP and "tegrastats[:RAIL]" in PREFER_HELP
    assert "none" not in PREFER_HELP and power_source_help().endswith("or none (no energy measurement)")


def test_one_parser_for_the_power_source_string():
    assert parse_prefer(None) == (None, None) and parse_prefer(" Auto ").auto
    p = parse_prefer("HWMON:ina219")
    assert p == ("hwmon", "ina219") and p.spec == "hwmon:ina219" and not p.off
    off = parse_prefer("none")
    assert off.off and off.spec is None
    with pytest.raises(UsageError, match="unknown power source"):
        parse_prefer("battery")
    with pytest.raises(UsageError, match="bad power model"):
        parse_prefer("estimate:idle=x")
    with pytest.raises(UsageError, match="switches power measurement off"):
        discover("none")


class _Constant(PowerSource):
    kind = "constant"
    name = "test constant"
    rail = "TEST"

    @classmethod
    def candidates(cls, detail, model):
        return [Candidate("constant", cls.name, None, lambda: cls(float(detail or 2.5)))]

    @classmethod
    def check_detail(cls, detail):
        float(detail)

    def __init__(self, watts: float) -> None:
        self.watts = watts

    def read(self) -> float:
        return self.watts


def test_a_new_backend_is_one_decorated_class(fake, monkeypatch):
    monkeypatch.setattr(registry, "_BACKENDS", dict(registry._BACKENDS))
    register_backend(order=45, absent="never absent", detail="WATTS")(_Constant)
    kinds = [b.kind for b in all_backends()]
    assert kinds.index("constant") == kinds.index("hwmon") + 1 and kinds.index("constant") < kinds.index("rapl")
    assert "constant[:WATTS]" in power_source_help()
    make_rapl(fake)
    assert discover().kind == "constant"  # before rapl in the automatic order
    assert discover("constant:4").read() == 4.0
    with pytest.raises(UsageError, match="bad"):
        parse_prefer("constant:lots")
    with pytest.raises(ValueError, match="registered twice"):
        register_backend(order=1, absent="x")(type("Other", (_Constant,), {}))
