"""benchmarks/methods.py's machinery on a tiny subset: every method trains, the table has its shape, and the oracle
is a lower bound on MACs for every method at equal accuracy."""

from __future__ import annotations

import importlib.util
import sys
from pathlib import Path

import pytest

pytest.importorskip("torch")

ROOT = Path(__file__).resolve().parents[2]
sys.path.insert(0, str(ROOT / "benchmarks"))
_spec = importlib.util.spec_from_file_location("bench_methods", ROOT / "benchmarks" / "methods.py")
assert _spec is not None and _spec.loader is not None
bench = sys.modules["bench_methods"] = importlib.util.module_from_spec(_spec)
_spec.loader.exec_module(bench)

from edge_ee_export.methods import VARIANTS, get_variant  # noqa: E402

FASHION = Path("/usr/share/datasets/fashion-mnist")


def test_methods_table_and_oracle_bound() -> None:
    if not FASHION.is_dir():
        pytest.skip("dataset-fashion-mnist is not installed")
    budget = bench.Budget(seeds=[0], backbone_epochs={"fm": 1}, exit_epochs={"fm": 1}, train_limit={"fm": 256},
                          test_limit=256, latency_n=0, latency_blocks=5, engine_limit=None)
    res = bench.run_task("fm", budget, str(FASHION), "", work=None, log=lambda s: None)
    per = res["seeds"]["0"]
    assert set(VARIANTS) <= set(per)
    for name in VARIANTS:
        r = per[name]
        t = r["tests"]["test"]
        assert t["n"] == 256
        assert len(t["exit_accuracy"]) == len(r["splits"]) + 1
        assert set(t["drops"]) == {str(d) for d in bench.DROPS}
        assert r["head_macs"] > 0 and r["train_cpu_s"] > 0
        for d in bench.DROPS:
            pt = t["drops"][str(d)]
            if VARIANTS[name].rules:
                assert pt["rule"] in VARIANTS[name].rules
            # hindsight on the same exits: never more MACs at the same accuracy than a threshold policy
            assert pt["oracle_macs_ratio_same_accuracy"] <= pt["macs_ratio"] + 1e-12
        # and the frontier's every point is above the oracle curve
        assert t["frontier"]
        for fp in t["frontier"]:
            assert fp["oracle_macs_ratio"] <= fp["macs_ratio"] + 1e-12
    assert len(per["trecx"]["splits"]) == 1 and per["trecx"]["heads"] == ["dws"]
    assert per["default"]["shares_training_with"] == "pteenet"
    lines = bench.task_section(res, None, None)
    table = [ln for ln in lines if ln.startswith("| ")]
    table = [ln for ln in lines if ln.startswith("|")]
    assert len(table) == 2 + len(VARIANTS) + 1  # header, rule, methods, the oracle
    assert all(ln.count("|") == table[0].count("|") for ln in table)
    assert bench.winner_lines(res)[0].startswith("- **Fashion-MNIST**")
    with pytest.raises(Exception, match="unknown early-exit method"):
        get_variant("nope")


def test_oracle_min_macs_is_the_hindsight_optimum() -> None:
    import itertools

    import numpy as np

    rng = np.random.default_rng(0)
    correct = rng.random((3, 7)) < 0.5
    cum = np.array([1.0, 3.0, 6.0])
    for acc in np.linspace(0, 1, 8):
        best = None
        for ex in itertools.product(range(3), repeat=7):  # every assignment of samples to exits
            a = correct[list(ex), range(7)].mean()
            if a >= acc - 1e-12:
                m = cum[list(ex)].mean()
                best = m if best is None else min(best, m)
        got = bench.oracle_min_macs(correct, cum, float(acc))
        assert (got is None) == (best is None)
        if got is not None:
            assert got == pytest.approx(best)
