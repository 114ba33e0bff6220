"""Calibration core: exact bounds, frontier, and the guarantee of the risk-controlled selection.

The guarantee is a statement about repeated calibration: over many calibration sets drawn from one distribution,
the selected thresholds' true risk exceeds the target in at most 1 - confidence of them. The tests draw many
calibration sets from a known simulated distribution and count.
"""

from __future__ import annotations

import math

import numpy as np
import pytest

from edge_ee.calibration import ExitTable, risk, select_point_estimate, select_risk_controlled
from edge_ee.calibration.record import Calibration
from edge_ee.calibration.select import frames_needed, parse_fraction
from edge_ee.errors import BundleError, UsageError


def test_clopper_pearson_matches_known_values() -> None:
    # the defining equations, checked with exact integer binomial sums
    def cdf(k: int, n: int, p: float) -> float:
        return sum(math.comb(n, i) * p ** i * (1 - p) ** (n - i) for i in range(k + 1))

    assert cdf(5, 100, risk.upper(5, 100, 0.05)) == pytest.approx(0.05, abs=1e-9)
    assert 1 - cdf(4, 100, risk.lower(5, 100, 0.05)) == pytest.approx(0.05, abs=1e-9)
    assert risk.upper(0, 100, 0.1) == pytest.approx(1 - 0.1 ** (1 / 100), abs=1e-9)
    assert risk.upper(100, 100, 0.1) == 1.0 and risk.lower(0, 100, 0.1) == 0.0


def test_clopper_pearson_coverage() -> None:
    rng = np.random.default_rng(3)
    for p in (0.003, 0.02, 0.3):
        k = rng.binomial(400, p, 2000)
        miss = np.mean([risk.upper(int(x), 400, 0.1) < p for x in k])
        assert miss <= 0.1 + 0.02  # exact: at most delta (conservative for a discrete distribution)


def population(n: int, rng: np.random.Generator, classes: int = 10) -> ExitTable:
    """Two early exits and a final one. Easier inputs (small d) give higher keys and are more often right; the
    final exit is right more often than the early ones, but not always where they are (overthinking exists)."""
    d = rng.uniform(0, 1, n)
    labels = rng.integers(0, classes, n)
    keys, preds = [], []
    for k, (a, noise) in enumerate([(0.55, 0.12), (0.8, 0.08), (0.93, 0.0)]):
        p_right = np.clip(a + (1 - a) * (1 - d) ** 0.5 - 0.25 * d, 0.0, 1.0)
        right = rng.uniform(0, 1, n) < p_right
        wrong = (labels + 1 + rng.integers(0, classes - 1, n)) % classes
        preds.append(np.where(right, labels, wrong))
        if k < 2:
            keys.append(np.clip(0.9 * (1 - d) + rng.normal(0, noise, n) + 0.1 * right, 0, 1))  # max softmax
    return ExitTable(keys=np.stack(keys), preds=np.stack(preds), rules=["max_softmax"] * 2,
                     cum_macs=np.array([10.0, 40.0, 100.0]), labels=labels, full_macs=100.0)


def true_risk(pop: ExitTable, key_thresholds: list[float], labelled: bool) -> float:
    worse, better, disagree = pop.outcome_counts(key_thresholds)
    return (worse - better) / pop.n if labelled else disagree / pop.n


@pytest.mark.parametrize("labelled", [True, False])
def test_guarantee_holds_over_many_calibration_sets(labelled: bool) -> None:
    rng = np.random.default_rng(11 if labelled else 12)
    pop = population(200_000, rng).with_labels(labelled)
    target, confidence, draws, n = (0.02 if labelled else 0.05), 0.9, 150, 1500
    viol_rc, viol_pe, macs_rc = 0, 0, []
    for i in range(draws):
        cal = population(n, rng).with_labels(labelled)
        sel = select_risk_controlled(cal, target, confidence, levels=20, seed=i)
        viol_rc += true_risk(pop, cal.key_thresholds(sel.point.thresholds), labelled) > target
        macs_rc.append(pop.point(cal.key_thresholds(sel.point.thresholds)).mean_macs)
        pe = select_point_estimate(cal, target)
        viol_pe += true_risk(pop, cal.key_thresholds(pe.thresholds), labelled) > target
        assert sel.guarantee is not None and sel.guarantee.n == n
        assert sel.guarantee.n_order + sel.guarantee.n_test == n
        assert sel.guarantee.upper_bound <= target or not sel.guarantee.certified
    # P(violation) <= 1 - confidence = 10%; 150 draws: allow binomial noise (sd ~2.4 pp)
    assert viol_rc / draws <= 0.1 + 0.05, viol_rc
    assert viol_pe / draws > viol_rc / draws  # the point estimate, with no margin, misses more often
    assert np.mean(macs_rc) < 95.0  # and the guarantee still saves compute


def conditioned(n: int, rng: np.random.Generator, noisy_share: float = 0.4) -> tuple[ExitTable, np.ndarray]:
    """``population`` with a condition per input: in "noisy" inputs the early exits are as confident as in "clean"
    ones but right less often (their answer is replaced by a wrong one with probability 0.15), as exits under a
    background they were not calibrated for."""
    t = population(n, rng)
    cond = np.where(rng.uniform(0, 1, n) < noisy_share, "noisy", "clean")
    preds = t.preds.copy()
    assert t.labels is not None
    for k in range(t.num_early):
        spoil = (cond == "noisy") & (rng.uniform(0, 1, n) < 0.15)
        preds[k, spoil] = (t.labels[spoil] + 1) % 10
    return ExitTable(keys=t.keys, preds=preds, rules=t.rules, cum_macs=t.cum_macs, labels=t.labels,
                     full_macs=t.full_macs), cond


def test_guarantee_per_condition_holds_in_each_condition() -> None:
    """Over many calibration sets, the per-condition selection's risk exceeds the target in SOME condition in at most
    1 - confidence of them; the pooled selection, certified only on the mix, misses in the noisy condition."""
    rng = np.random.default_rng(21)
    pop, pop_cond = conditioned(50_000, rng)
    parts = [pop.subset(np.flatnonzero(pop_cond == c)) for c in ("clean", "noisy")]
    target, confidence, draws, n = 0.05, 0.9, 100, 3000
    violations = {"per condition": 0, "pooled": 0}
    certified = 0
    for i in range(draws):
        cal, cond = conditioned(n, rng)
        per = select_risk_controlled(cal, target, confidence, levels=10, seed=i, conditions=cond)
        pooled = select_risk_controlled(cal, target, confidence, levels=10, seed=i)
        for name, sel in (("per condition", per), ("pooled", pooled)):
            keys = cal.key_thresholds(sel.point.thresholds)
            violations[name] += max(true_risk(t, keys, True) for t in parts) > target
        g = per.guarantee
        assert g is not None and g.conditions is not None and set(g.conditions) == {"clean", "noisy"}
        assert sum(int(c["n_test"]) for c in g.conditions.values()) == g.n_test
        assert all(c["upper_bound"] <= target for c in g.conditions.values())
        if g.certified:
            certified += 1
            assert "in every condition" in g.describe()
    # P(violation in some condition) <= 1 - confidence = 10%; 100 draws: sd of the rate ~3 pp
    assert violations["per condition"] / draws <= 0.1 + 0.06, violations
    assert violations["pooled"] / draws > 0.5, violations  # the mix hides the noisy condition
    assert certified / draws > 0.5  # and it still exits early in most draws


def test_per_condition_refuses_too_few_frames_in_a_condition() -> None:
    cal, cond = conditioned(400, np.random.default_rng(3), noisy_share=0.05)
    with pytest.raises(UsageError, match="too few calibration frames in condition noisy"):
        select_risk_controlled(cal, 0.02, 0.9, conditions=cond)
    with pytest.raises(UsageError, match="one per frame"):
        select_risk_controlled(cal, 0.02, 0.9, conditions=cond[:-1])


def test_too_little_data_says_how_much_is_needed() -> None:
    rng = np.random.default_rng(5)
    cal = population(60, rng)
    sel = select_risk_controlled(cal, 0.005, 0.9, levels=10)
    g = sel.guarantee
    assert g is not None and not g.certified
    assert sel.point.exit_fractions == [0.0, 0.0, 1.0]  # every input to the final exit
    assert "no early-exit point certified" in g.describe()
    assert g.frames_needed is None or g.frames_needed > 60
    assert 300 < (frames_needed(0.01, 0.0, 0.0, 0.02, 0.1, True) or 0) < 2000
    assert frames_needed(0.03, 0.0, 0.0, 0.02, 0.1, True) is None  # a point above the target never passes


@pytest.mark.parametrize("bad", [dict(target=0.0), dict(target=1.0), dict(confidence=1.0), dict(confidence=0.0),
                                 dict(n=10)])
def test_bad_requests(bad: dict) -> None:
    args = {"target": 0.01, "confidence": 0.9, "n": 2000, **bad}
    cal = population(args["n"], np.random.default_rng(0))
    with pytest.raises(UsageError):
        select_risk_controlled(cal, args["target"], args["confidence"])


def test_parse_fraction() -> None:
    assert parse_fraction("--target-drop", "1%") == pytest.approx(0.01)
    assert parse_fraction("--confidence", "0.9") == pytest.approx(0.9)
    for bad in ("0", "100%", "-1%", "x", "nan", "150%"):
        with pytest.raises(UsageError):
            parse_fraction("--confidence", bad)


def test_frontier_is_pareto_with_both_ends() -> None:
    pop = population(3000, np.random.default_rng(2))
    front = pop.frontier(levels=20)
    macs = [p.mean_macs for p in front]
    acc = [p.accuracy for p in front]
    assert macs == sorted(macs) and acc == sorted(acc)
    assert front[0].exit_fractions is not None and front[0].exit_fractions[0] == pytest.approx(1.0)
    assert len(pop.frontier(levels=20, max_points=5)) <= 6


def test_calibration_record_roundtrip_and_errors() -> None:
    pop = population(2000, np.random.default_rng(4))
    sel = select_risk_controlled(pop, 0.02, 0.9, levels=10)
    d = {"rule": "max_softmax", "operating_points": [p.to_dict() for p in pop.frontier(levels=10)],
         "chosen": sel.point.to_dict(), "guarantee": sel.guarantee.to_dict(), "oracle_macs_ratio": 0.2}
    c = Calibration.from_dict(d)
    assert c.guarantee == sel.guarantee and c.extra == {"oracle_macs_ratio": 0.2}
    assert Calibration.from_dict(c.to_dict()).to_dict() == c.to_dict()
    assert Calibration.from_dict({}).guarantee is None  # old bundles: no guarantee, still load
    for bad in ({"operating_points": [1, 2, 3]}, {"operating_points": "x"}, {"temperatures": [math.inf]},
                {"chosen": {"thresholds": "a"}}, {"guarantee": 5}, [1],
                {"guarantee": {**sel.guarantee.to_dict(), "conditions": {"babble": {"n_test": "x"}}}},
                {"guarantee": {**sel.guarantee.to_dict(), "conditions": [1]}}):
        with pytest.raises(BundleError):
            Calibration.from_dict(bad)
