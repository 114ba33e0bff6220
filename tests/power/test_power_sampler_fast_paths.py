"""The per-inference fast paths of the sampler compute exactly (bit for bit) what the general paths
compute: cumulative energy from the cached newest/previous/oldest samples vs the binary search over the
ring buffer (also once it has wrapped), ``split_window`` vs boundary by boundary, the integrator's batch
vs window by window, ``round_mj`` vs ``round``, and ``EnergyWindow`` is still a frozen dataclass."""

from __future__ import annotations

import dataclasses
import math
import pickle
import random

import pytest

from edge_ee.power import PowerSampler
from edge_ee.power.sampler import EnergySum, EnergyWindow, WindowIntegrator, round_mj

from .test_power_sampler import FnSource


def _power(seed: int):  # noqa: ANN202 - a piecewise, noisy power [W] as a function of time
    rng = random.Random(seed)
    levels = [rng.uniform(0.5, 6.0) for _ in range(64)]
    return lambda t: levels[int(t * 7.0) % 64] + 0.1 * math.sin(t * 31.0)


def _counter(seed: int, range_j: float | None = None):  # noqa: ANN202 - cumulative energy [J]
    p = _power(seed)
    state = {"t": None, "e": 0.0}

    def read(t: float) -> float:
        if state["t"] is not None:
            state["e"] += p(t) * (t - state["t"])
        state["t"] = t
        return state["e"] % range_j if range_j else state["e"]

    return read


def _sampler(clock, quantity: str, capacity: int, seed: int = 1, samples: int = 60, **kw) -> PowerSampler:
    rng = random.Random(seed)
    fn = _power(seed) if quantity == "power" else _counter(seed, kw.pop("range_j", None))
    src = FnSource(fn, clock, quantity=quantity, energy_range_j=kw.pop("energy_range_j", None))
    s = PowerSampler(src, clock=clock, capacity=capacity, **kw)
    for _ in range(samples):
        s.sample_once()
        clock.advance(rng.choice([0.013, 0.1, 0.1, 0.27]))
    return s


def _queries(s: PowerSampler, rng: random.Random) -> list[float]:
    """Sample times exactly, points between them, before the oldest and after the newest sample."""
    times, _ = s.samples()
    xs = [float(t) for t in times]
    xs += [float(a + (b - a) * f) for a, b in zip(times, times[1:]) for f in (1e-9, 0.3, 0.999999)]
    xs += [xs[0] - 1.0, xs[0] - 1e-9, xs[-1] + 1e-9, xs[-1] + 0.05, xs[-1] + 3.0]
    xs += [rng.uniform(xs[0] - 0.5, xs[-1] + 0.5) for _ in range(200)]
    return xs


CASES = [("power", 65536), ("power", 16), ("power", 5), ("power", 2), ("energy", 65536), ("energy", 16),
         ("energy", 3)]


def _same(a: float, b: float) -> bool:
    return (math.isnan(a) and math.isnan(b)) or (a == b and math.copysign(1.0, a) == math.copysign(1.0, b))


@pytest.mark.parametrize(("quantity", "capacity"), CASES)
def test_energy_at_fast_paths_return_what_the_search_returns(clock, quantity, capacity):
    rng = random.Random(capacity)
    s = _sampler(clock, quantity, capacity)
    c = s.curve
    assert c.count > capacity or capacity == 65536  # the small rings have wrapped around
    times, powers = s.samples()
    # the cached newest / previous / oldest samples are the buffer's
    assert (c._tn, c._pn) == (times[-1], powers[-1]) and (c._tq, c._pq) == (times[-2], powers[-2])
    assert (c._to, c._po) == (times[0], powers[0]) and s.newest_time() == times[-1]
    for x in _queries(s, rng):
        assert _same(c._energy_at(x), c._energy_at_searched(x)), x
    # keep sampling one sample at a time: the caches follow the ring as it wraps
    for _ in range(2 * min(capacity, 40)):
        s.sample_once()
        clock.advance(0.1)
        tn = s.newest_time()
        for x in (tn - 0.2, tn - 0.05, tn - 1e-9, tn, tn + 0.01, c._to, c._to + 1e-6, c._tq):
            assert _same(c._energy_at(x), c._energy_at_searched(x)), x


def test_energy_at_without_samples_or_with_one(clock):
    s = PowerSampler(FnSource(lambda t: 2.0, clock), clock=clock)
    assert math.isnan(s.curve.energy_at(100.0)) and s.newest_time() == -math.inf and not s.curve.covered(0, 1)
    s.set_baseline(1.0)
    w, pieces = s.split_window([100.0, 100.001])
    assert math.isnan(w.energy_j) and math.isnan(w.marginal_j) and w.extrapolated and math.isnan(pieces[0])
    assert w.to_telemetry()["energy_mj"] is None and w.to_telemetry()["energy_total_mj"] is None
    s.sample_once()
    for x in (99.0, 100.0, 101.0):
        assert _same(s.curve._energy_at(x), s.curve._energy_at_searched(x))


def _split_reference(s: PowerSampler, bounds: list[float]) -> tuple[tuple, list]:
    """split_window boundary by boundary through the general paths."""
    with s.curve.lock:
        es = [s.curve._energy_at_searched(b) for b in bounds]
    t0, t1 = bounds[0], bounds[-1]
    base = s.baseline_at(t1)
    if base is None:
        marginal, pieces = None, [None] * (len(bounds) - 1)
    else:
        pieces = [(es[i + 1] - es[i]) - s.idle.energy(bounds[i], bounds[i + 1]) for i in range(len(bounds) - 1)]
        marginal = math.fsum(pieces)
    times, _ = s.samples()
    covered = times[0] <= t0 and t1 <= times[-1]
    est = s.estimated_since is not None and t1 > s.estimated_since
    return (t0, t1, es[-1] - es[0], base, marginal, est, s.source.kind, s.source.rail, not covered), pieces


@pytest.mark.parametrize("baselines", [0, 1, 2])
@pytest.mark.parametrize(("quantity", "capacity"), [("power", 16), ("energy", 65536)])
def test_split_window_and_window_return_what_the_general_paths_return(clock, quantity, capacity, baselines):
    rng = random.Random(baselines)
    s = _sampler(clock, quantity, capacity)
    if baselines:
        s.set_baseline(1.25)
    if baselines == 2:  # a fallback brings its own idle power from the switch on
        s.idle.change_at(s.newest_time() - 0.5, 2.0)
    tn = s.newest_time()
    to = s.curve._to
    starts = [tn + 1e-4, tn, tn - 0.02, tn - 0.3, to - 0.1, rng.uniform(to, tn)]
    for t0 in starts:
        for n in (1, 2, 3):
            bounds = [t0] + sorted(t0 + rng.uniform(0, 0.003) for _ in range(n - 1)) + [t0 + 0.003]
            w, pieces = s.split_window(bounds)
            ref, ref_pieces = _split_reference(s, bounds)
            assert dataclasses.astuple(w) == ref and pieces == ref_pieces
            one = s.window(bounds[0], bounds[-1])
            assert dataclasses.astuple(one)[:3] == ref[:3] and one.extrapolated == ref[-1]
            if ref[4] is not None:
                assert one.marginal_j == ref[2] - s.idle.energy(bounds[0], bounds[-1])


@pytest.mark.parametrize("baseline", [None, 0.75])
def test_integrator_batch_returns_what_window_by_window_returns(clock, baseline):
    s = _sampler(clock, "energy", 16, samples=10)
    if baseline is not None:
        s.set_baseline(baseline)
    integ = WindowIntegrator(s)
    ref: dict[int, EnergySum] = {}
    queued: list[tuple[int, float, float]] = []
    rng = random.Random(3)
    for i in range(400):
        t0 = clock() + rng.uniform(-0.01, 0.0)
        t1 = t0 + rng.uniform(1e-5, 3e-3)
        integ.add(i % 3, t0, t1)
        queued.append((i % 3, t0, t1))
        clock.advance(rng.uniform(1e-3, 5e-3))
        if i % 37 == 0:
            s.sample_once()
        integ.update()
        while queued and queued[0][2] <= s.newest_time():  # what update() did before the batch
            k, a, b = queued.pop(0)
            ref.setdefault(k, EnergySum()).add(s.window(a, b))
    assert set(integ.sums) == set(ref)
    for k, v in integ.sums.items():
        got, want = dataclasses.astuple(v), dataclasses.astuple(ref[k])
        assert all(_same(a, b) if isinstance(a, float) else a == b for a, b in zip(got, want)), (got, want)
        assert v.n > 1 and v.extrapolated == 0 and math.isnan(v.marginal_j) == (baseline is None)


def test_round_mj_equals_round_to_four_decimals_bit_for_bit():
    def ref(x: float) -> float | None:
        return None if not math.isfinite(x) else round(x, 4) + 0.0

    rng = random.Random(7)
    xs = [rng.choice((-1, 1)) * 10 ** rng.uniform(-12, 8) for _ in range(20000)]
    for _ in range(5000):  # at and next to half-way points (ties: round half to even)
        half = (rng.randrange(-10**9, 10**9) + 0.5) / 1e4
        xs += [half, math.nextafter(half, math.inf), math.nextafter(half, -math.inf)]
    xs += [k / 20000 for k in range(-3000, 3000)] + [0.03125, -0.03125, 0.00005, 0.0, -0.0, 5e-324, -5e-324, 1e11,
                                                      -1e15, 1e300, math.inf, -math.inf, math.nan]
    for x in xs:
        got, want = round_mj(x), ref(x)
        assert (got is None and want is None) or (type(got) is float and got.hex() == want.hex()), x
    assert round_mj(None) is None and round_mj(1.23456789, 2) == 1.23 and round_mj(-1e-9, 6) == 0.0


def test_energy_window_is_still_a_frozen_dataclass():
    args = (1.0, 2.0, 3.0, 0.5, 2.5, False, "fake", "rail", True)
    w = EnergyWindow(*args)
    names = [f.name for f in dataclasses.fields(EnergyWindow)]
    assert names == ["t0", "t1", "energy_j", "baseline_w", "marginal_j", "estimated", "source", "rail",
                     "extrapolated"]
    assert w == EnergyWindow(**dict(zip(names, args))) and hash(w) == hash(EnergyWindow(*args))
    assert dataclasses.astuple(w) == args and list(vars(w)) == names
    assert repr(w).startswith("EnergyWindow(t0=1.0, t1=2.0, energy_j=3.0,")
    with pytest.raises(dataclasses.FrozenInstanceError):
        w.t0 = 5.0  # type: ignore[misc]
    assert dataclasses.replace(w, t0=1.5).t0 == 1.5 and pickle.loads(pickle.dumps(w)) == w
    assert w.mean_power_w == 3.0 and w.to_telemetry()["energy_mj"] == 2500.0
