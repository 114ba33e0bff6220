"""The PI controller on simulated plants: step changes in load, saturation, noise (no wall clock)."""

from __future__ import annotations

import numpy as np
import pytest

from edge_ee.control.controller import IndexController

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
