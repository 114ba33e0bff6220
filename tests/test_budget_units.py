"""``--budget`` units: the SI prefix is case-sensitive (m = milli, M = mega), unknown units are usage errors."""

from __future__ import annotations

import pytest

from edge_ee.core.budget import parse_budget
from edge_ee.errors import ExitCode, UsageError


@pytest.mark.parametrize("text, kind, value", [
    ("20ms", "latency", 0.02), ("500us", "latency", 500e-6), ("500µs", "latency", 500e-6),
    ("500μs", "latency", 500e-6), ("0.1s", "latency", 0.1), ("1S", "latency", 1.0),
    ("50mJ", "energy", 0.05), ("50mj", "energy", 0.05), ("2J", "energy", 2.0), ("300uJ", "energy", 300e-6),
    ("300µJ", "energy", 300e-6), ("2.5W", "power", 2.5), ("2.5w", "power", 2.5), ("800mW", "power", 0.8),
    (" 1.5e1 ms ", "latency", 0.015),
])
def test_accepted_units(text: str, kind: str, value: float) -> None:
    b = parse_budget(text)
    assert b is not None and b.kind == kind and b.value == pytest.approx(value)


@pytest.mark.parametrize("text, needle", [
    ("2.5MW", "mega"), ("5MJ", "mega"), ("20Ms", "mega"), ("1kW", "kilo"), ("5ns", "nano"),
    ("5uW", "unknown budget unit"), ("20 parsecs", "unknown budget unit"), ("3V", "unknown budget unit"),
])
def test_rejected_units_name_the_problem_and_list_the_accepted_ones(text: str, needle: str) -> None:
    with pytest.raises(UsageError) as ei:
        parse_budget(text)
    e = ei.value
    assert e.exit_code == ExitCode.USAGE
    assert needle in e.message and repr(text) in e.message
    assert e.hint is not None and "mW" in e.hint and "mJ" in e.hint and "ms" in e.hint


def test_mega_suggests_milli() -> None:
    with pytest.raises(UsageError, match="lower-case m: mW"):
        parse_budget("2.5MW")
    with pytest.raises(UsageError, match="lower-case m: mJ"):
        parse_budget("5MJ")
