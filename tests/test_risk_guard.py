"""Risk-priced deadline guard: a stage that may miss the deadline runs only for inputs whose answer is
likely enough to improve, and the price of a miss adapts so that the miss rate meets its target."""

from __future__ import annotations

import math
from pathlib import Path

import numpy as np
import pytest

from edge_ee.core.deadline import LatencyModel, RiskPricedGuard, StrictGuard
from edge_ee.core.engine import Engine


def _model(stage1: list[float], head1: float = 0.0) -> LatencyModel:
    m = LatencyModel(2)
    m.seed([[1e-3] * 20, stage1], [[0.0] * 20, [head1] * len(stage1)])
    return m


def _run(m: LatencyModel, k: int, seconds: float, head: float = 0.0) -> None:
    """What the engine records for one run of stage k: its segment, then its head."""
    m.update_segment(k, seconds)
    m.update_head(k, head)


def _risk(m: LatencyModel, **kw: float) -> RiskPricedGuard:
    """A risk-priced guard over ``m``, with whole runs kept (as ``Engine.use_guard`` switches them on)."""
    m.whole_runs = True
    return RiskPricedGuard(m, **kw)  # type: ignore[arg-type]


def _restart(m: LatencyModel, k: int) -> None:
    """What a probe does to a stage's history."""
    for stat in (m.segments[k], m.heads[k], m.stages[k]):
        stat.restart()


def test_miss_probability_is_the_window_fraction_above_the_remaining_time() -> None:
    m = _model([1e-3] * 90 + [3e-3] * 10)  # 10% of stage-1 runs preempted
    assert m.miss_prob(1, 2e-3) == pytest.approx(0.10)
    assert m.miss_prob(1, 5e-3) == 0.0
    assert m.miss_prob(1, 0.5e-3) == 1.0
    assert m.miss_prob(1, -1.0) == 1.0  # no time left at all
    h = _model([1e-3] * 90 + [3e-3] * 10, head1=1.5e-3)  # the head's mean comes off the remaining time
    assert h.miss_prob(1, 2e-3) == 1.0 and h.miss_prob(1, 3.5e-3) == pytest.approx(0.10)
    for _ in range(300):  # stage 0 (the strict guard's load indicator) twice as slow: not rescaled here
        m.update_segment(0, 2e-3)
    assert m.miss_prob(1, 1.8e-3) == pytest.approx(0.10)
    assert LatencyModel(2).miss_prob(1, 1e-3) == 0.0  # never measured: optimistic, as the strict guard


def test_a_short_history_does_not_freeze_a_stage() -> None:
    """After a probe restarts a stage, one slow run among a few must not read as a large miss risk
    (every input would then skip the stage and it would never be measured again); a stage whose
    typical run does not fit is skipped without weighing, however short its history."""
    m = _model([1e-3] * 20)
    g = _risk(m, price=10.0)
    _restart(m, 1)
    for x in (1e-3, 1e-3, 3e-3):  # the probe and two more runs, one of them preempted
        _run(m, 1, x)
    deadline = (2e-3 + m.margin_s) / (1 - m.margin_frac)  # 2 ms left
    assert m.miss_prob(1, 2e-3) == pytest.approx(1 / m.min_evidence)
    assert g.fits(1, 0.0, deadline, lambda: 0.5) and not g.fits(1, 0.0, deadline, lambda: 0.2)
    slow = _model([1e-3] * 20)
    sg = _risk(slow, price=RiskPricedGuard.min_price)
    _restart(slow, 1)
    _run(slow, 1, 5e-3)  # the probe: the stage now takes 5 ms
    assert slow.miss_prob(1, 2e-3) < sg.max_risk  # a short history looks harmless ...
    assert not sg.fits(1, 0.0, deadline, lambda: 0.9)  # ... but its typical run does not fit
    assert not sg.weighed


def test_risk_is_taken_by_unconfident_inputs_only() -> None:
    m = _model([1e-3] * 90 + [3e-3] * 10)
    elapsed = 0.0
    deadline = (2e-3 + m.margin_s) / (1 - m.margin_frac)  # 2 ms left after the margin
    assert not StrictGuard(m).fits(1, elapsed, deadline)  # strict: the p95 (3 ms) does not fit
    g = _risk(m, target_miss=0.005, price=2.0)  # p = 0.1: worth it when P(wrong) >= 0.2
    assert g.fits(1, elapsed, deadline, lambda: 0.5)
    assert not g.fits(1, elapsed, deadline, lambda: 0.1)
    assert not g.fits(1, elapsed, deadline)  # no confidence to weigh: no risk

    def never() -> float:
        raise AssertionError("the answer's confidence is only needed when the stage may miss")

    assert g.fits(1, elapsed, 1.0, never)  # certain to fit
    g.price = g.min_price
    assert not g.fits(1, elapsed, 0.9e-3, lambda: 0.9)  # more likely to miss than not: never
    assert not StrictGuard(m).fits(1, elapsed, deadline, lambda: 0.9)


def test_price_settles_where_the_miss_rate_meets_its_target_and_follows_the_load() -> None:
    """Closed loop on a simulated stage: while loaded, 5% of its runs are preempted and miss the
    deadline. The price rises until only the least confident inputs (~10%) take the risk, so the miss
    rate settles at the 0.5% target rather than 5%; once the load is gone the window refills with fast
    runs, the miss probability drops to 0 and every input that asks for the stage gets it."""
    rng = np.random.default_rng(0)
    m = _model([1e-3] * 20)
    guard = _risk(m, target_miss=0.005, price=10.0)
    deadline = 3e-3
    went, missed, wrongs = [], [], []
    for t in range(60000):
        loaded = t < 40000
        w = float(rng.uniform(0.0, 0.9))
        go = guard.fits(1, 0.0, deadline, lambda w=w: w)
        miss = False
        if go:
            x = 5e-3 if loaded and rng.random() < 0.05 else 1e-3
            _run(m, 1, x)
            miss = x > deadline
        guard.observe(not miss)
        went.append(go)
        missed.append(miss)
        wrongs.append(w)
    g, ms, w_ = np.array(went), np.array(missed), np.array(wrongs)
    steady = slice(10000, 40000)
    assert 0.003 < ms[steady].mean() < 0.008  # the target, not the stage's 5%
    assert 0.03 < g[steady].mean() < 0.3
    assert w_[steady][g[steady]].mean() > w_[steady][~g[steady]].mean() + 0.3  # the unconfident ones went
    assert g[50000:].mean() > 0.99 and not ms[40000:].any()  # load gone: every input runs the stage
    assert guard.min_price <= guard.price <= guard.max_price


def test_price_holds_while_no_risk_is_weighed() -> None:
    """Anti-windup: frames whose stages are certain to fit (or certain not to) leave the price alone;
    otherwise a long calm spell would leave it at its floor and the next load step would start with a
    burst of misses."""
    m = _model([1e-3] * 90 + [3e-3] * 10)
    g = _risk(m, price=5.0)
    for _ in range(5000):
        assert g.fits(1, 0.0, 10e-3, lambda: 0.5)  # certain to fit
        g.observe(True)
    assert g.price == 5.0
    deadline = (2e-3 + m.margin_s) / (1 - m.margin_frac)  # p = 0.1: a risk is weighed, and it pays
    for _ in range(100):
        g.fits(1, 0.0, deadline, lambda: 0.5)
        g.observe(True)
    assert g.price < 5.0


def test_whole_runs_are_kept_in_risk_mode_only() -> None:
    m = _model([1e-3] * 20)
    _run(m, 1, 9e-3)  # strict mode: the guard does not use whole runs
    assert max(m.stages[1].ordered) == pytest.approx(1e-3)
    _risk(m)
    _run(m, 1, 9e-3, head=1e-3)
    assert max(m.stages[1].ordered) == pytest.approx(10e-3)


def test_only_frames_that_weighed_a_risk_move_the_price() -> None:
    """A miss no decision could have avoided (stage 0 alone overran, nothing was weighed) leaves the
    price alone; misses of frames that took or declined a risk drive it up to its cap."""
    m = _model([1e-3] * 90 + [3e-3] * 10)
    g = _risk(m, price=5.0)
    for _ in range(100):
        g.observe(False)
    assert g.price == 5.0
    deadline = (2e-3 + m.margin_s) / (1 - m.margin_frac)
    for _ in range(200):  # ~80 misses take the price from 5 to its cap
        g.fits(1, 0.0, deadline, lambda: 0.5)
        g.observe(False)
    assert g.price == g.max_price
    assert not g.fits(1, 0.0, deadline, lambda: 0.9)  # at the cap: p = 0.1 is never worth it


def test_engine_weighs_the_answer_so_far(bundle: Path) -> None:
    e = Engine(str(bundle))
    e.set_thresholds([math.inf, math.inf])  # no exit fires: only the guard stops early
    x = np.random.default_rng(0).random(e.input_shape, dtype=np.float32)
    g = RiskPricedGuard(e.latency, price=RiskPricedGuard.min_price)
    seen: list[float] = []
    orig = g.fits

    def spy(k, elapsed, deadline, wrong=None):  # type: ignore[no-untyped-def]
        if wrong is not None:
            seen.append(wrong())
        return orig(k, elapsed, deadline, wrong)

    g.fits = spy  # type: ignore[method-assign]
    e.use_guard(g)
    r = e.infer(x, deadline_s=10.0)
    assert r.exit_index == 2 and seen and all(0.0 <= v < 1.0 for v in seen)
    # every recent run of stage 1 was slower than the time left: skipped whatever the price
    e.latency.stages[1].seed([5.0] * 20)
    e.latency.segments[1].seed([5.0] * 20)
    r = e.infer(x, deadline_s=1.0)
    assert r.exit_index == 0 and r.deadline_stop
