"""The PI controller on simulated plants: step changes in load, saturation, noise (no wall clock)."""

from __future__ import annotations

import numpy as np
import pytest

from edge_ee.control.controller import IndexController, miss_rate_error

N = 20
COSTS = np.linspace(1.0, 3.0, N)  # predicted mean cost per operating point (e.g. ms)


def plant(i: int, load: float, rng: np.random.Generator) -> float:
    """Bimodal per-frame cost: early exit (1) or full model (3); the point sets the probability."""
    p_full = (COSTS[i] - 1.0) / 2.0
    return (1.0 if rng.random() > p_full else 3.0) * load * rng.uniform(0.95, 1.05)


def simulate(c: IndexController, loads: list[float], seed: int = 0) -> tuple[np.ndarray, np.ndarray]:
    rng = np.random.default_rng(seed)
    ys, idx = [], []
    for load in loads:
        i = c.index
        y = plant(i, load, rng)
        c.update(y, i)
        ys.append(y)
        idx.append(i)
    return np.array(ys), np.array(idx)


@pytest.mark.parametrize("with_costs", [True, False])
def test_tracks_target_and_settles_after_load_step(with_costs: bool) -> None:
    c = IndexController(N, 2.0, COSTS if with_costs else None)
    loads = [1.0] * 800 + [1.6] * 1200
    ys, idx = simulate(c, loads)
    assert abs(ys[400:800].mean() - 2.0) < 0.15  # before the step
    assert abs(ys[1100:].mean() - 2.0) < 0.15  # re-settled after the step
    assert idx[1100:].mean() < idx[400:800].mean() - 3  # moved to cheaper points
    assert idx.min() >= 0 and idx.max() <= N - 1


def test_settles_quickly_with_predicted_costs() -> None:
    c = IndexController(N, 2.0, COSTS)
    ys, _ = simulate(c, [1.0] * 500 + [1.6] * 500)
    window = ys[600:700].mean()  # within 100 frames of the step
    assert abs(window - 2.0) < 0.25


def test_no_windup_after_long_saturation() -> None:
    """A budget that cannot be met for a long time must not delay the recovery when load drops."""
    c = IndexController(N, 2.0, COSTS)
    ys, idx = simulate(c, [5.0] * 3000 + [1.0] * 300)
    assert (idx[500:3000] == 0).all()  # saturated at the cheapest point
    assert c.integral > -N  # bounded
    assert idx[3000 + 100:].mean() > 5  # recovered within 100 frames
    assert abs(ys[3150:].mean() - 2.0) < 0.3
    # and the other way: lots of slack holds the top without a debt
    c = IndexController(N, 2.0, COSTS)
    ys, idx = simulate(c, [0.2] * 3000 + [1.0] * 300)
    assert (idx[500:3000] == N - 1).all()
    assert abs(ys[3150:].mean() - 2.0) < 0.3


def test_feasibility_and_bounds() -> None:
    c = IndexController(N, 0.5, COSTS)
    assert c.feasible is False and c.index == 0
    c = IndexController(N, 10.0, COSTS)
    assert c.feasible is True and c.index == N - 1
    assert IndexController(N, 1.0).feasible is None
    for bad in (float("nan"), -1.0, float("inf")):
        i = c.index
        assert c.update(bad) == i  # ignored
    with pytest.raises(ValueError):
        IndexController(N, 0.0)
    with pytest.raises(ValueError):
        IndexController(N, 1.0, COSTS[:3])


def test_start_position_from_costs() -> None:
    c = IndexController(N, 2.0, COSTS)
    assert abs(c.u - 9.5) < 0.01  # where the predicted cost equals the target
    assert c.state()["index"] == c.index


def test_miss_rate_limit_moves_the_point_down_and_back() -> None:
    """Latency budgets: the mean is far below its target (slack), but inputs miss their deadline at a
    rate rising with the point (a loaded CPU preempts deep stages). The loop follows the more
    constraining limit: the miss rate settles near its target below the top, and the point goes back
    up once the misses stop (load gone), without swinging between the ends at every miss. This is how
    ControllerHook feeds ``limit_error``."""
    c = IndexController(N, target=10.0, costs=list(COSTS))
    target_miss = 0.005
    rng = np.random.default_rng(1)
    miss_f, idx, misses = 0.0, [], []
    for t in range(12000):
        i = c.index
        loaded = t < 8000
        missed = loaded and rng.random() < 0.02 * i / (N - 1)  # 0% at point 0 .. 2% at the top
        miss_f += 0.003 * (float(missed) - miss_f)  # the hook's EWMA
        c.update(plant(i, 1.0, rng), i, miss_rate_error(miss_f, target_miss))
        idx.append(i)
        misses.append(missed)
    idx_a, miss_a = np.array(idx), np.array(misses)
    assert 0.002 < miss_a[2000:8000].mean() < 0.009  # near the 0.5% target, not the top's 2%
    assert idx_a[2000:8000].mean() < 0.6 * (N - 1)
    assert idx_a[9000:].mean() > N - 2  # misses gone: back at the top within 1000 frames
    assert idx_a[2000:8000].std() < 4  # no swinging between the ends (a full-gain error: ~6.5)
