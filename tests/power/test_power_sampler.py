from __future__ import annotations

import math
import time
from collections.abc import Callable

import pytest

from edge_ee.power import EstimatedSource, PowerSampler, PowerSource
from edge_ee.power.sampler import WindowIntegrator


class FnSource(PowerSource):
    """Power (W) or a cumulative energy counter (J) as a function of the (fake) clock."""

    def __init__(self, fn: Callable[[float], float], clock: Callable[[], float], *, quantity: str = "power",
                 estimated: bool = False, energy_range_j: float | None = None, update: float = 0.1,
                 kind: str = "fake", idle_power_w: float | None = None) -> None:
        self.fn, self.clock = fn, clock
        self.quantity = quantity  # type: ignore[assignment]
        self.estimated = estimated
        self.energy_range_j = energy_range_j
        self.update_interval_s = update
        self.kind = kind
        self.rail = f"{kind} rail"
        self.closed = False
        if idle_power_w is not None:
            self.idle_power_w = idle_power_w

    def read(self) -> float:
        return self.fn(self.clock())

    def close(self) -> None:
        self.closed = True


def run(sampler: PowerSampler, clock, seconds: float, period: float = 0.1) -> None:
    for _ in range(round(seconds / period)):
        sampler.sample_once()
        clock.advance(period)
    sampler.sample_once()


def test_constant_power(clock):
    s = PowerSampler(FnSource(lambda t: 2.0, clock), clock=clock)
    run(s, clock, 10)
    assert s.energy_between(100.5, 105.5) == pytest.approx(10.0, abs=1e-9)
    assert s.energy_between(100.53, 100.57) == pytest.approx(0.08, abs=1e-9)  # shorter than a period
    assert s.energy_between(109.0, 112.0) == pytest.approx(6.0, abs=1e-9)  # past the newest sample: held
    assert s.window(109.0, 112.0).extrapolated and not s.window(101, 102).extrapolated


def test_step_power_within_half_a_period_of_the_step(clock):
    s = PowerSampler(FnSource(lambda t: 1.0 if t < 105.0 else 3.0, clock), clock=clock)
    run(s, clock, 10)
    # the trapezoid spreads the step over one sample interval: error <= dP * period / 2
    assert abs(s.energy_between(102.0, 108.0) - 12.0) <= 2.0 * 0.1 / 2 + 1e-9
    assert s.energy_between(101.0, 104.0) == pytest.approx(3.0, abs=1e-9)
    assert s.energy_between(106.0, 109.0) == pytest.approx(9.0, abs=1e-9)


def test_linear_power_short_windows_interpolated_exactly(clock):
    p = lambda t: 2.0 + (t - 100.0)  # noqa: E731
    s = PowerSampler(FnSource(p, clock), clock=clock)
    run(s, clock, 5)
    for a, b in [(103.02, 103.07), (101.0, 101.01), (100.05, 104.95)]:
        assert s.energy_between(a, b) == pytest.approx((b - a) * (p(a) + p(b)) / 2, rel=1e-9)
    # stage windows add up to the inference window
    ts = [102.01, 102.013, 102.04, 102.3]
    parts = sum(s.energy_between(x, y) for x, y in zip(ts, ts[1:]))
    assert parts == pytest.approx(s.energy_between(ts[0], ts[-1]), rel=1e-12)
    w, pieces = s.split_window(ts)  # no baseline: no energy above idle
    assert w.energy_j == pytest.approx(parts, rel=1e-12) and w.marginal_j is None and pieces == [None] * 3
    s.set_baseline(1.5)
    w, pieces = s.split_window(ts)
    assert len(pieces) == 3 and w.marginal_j == pytest.approx(sum(pieces), rel=1e-12)  # type: ignore[arg-type]
    for (x, y), piece in zip(zip(ts, ts[1:]), pieces):
        assert piece == pytest.approx(s.marginal_energy_between(x, y), rel=1e-9)


def test_ring_buffer_wraps_and_stays_searchable(clock):
    p = lambda t: 1.0 + 0.5 * (t - 100.0)  # noqa: E731
    s = PowerSampler(FnSource(p, clock), clock=clock, capacity=16)
    run(s, clock, 10)  # 101 samples through a 16-slot ring
    newest = s.newest_time()
    times, powers = s.samples()
    assert len(times) == 16 and times[-1] == newest and list(times) == sorted(times)
    assert powers[-1] == pytest.approx(p(newest))
    oldest = times[0]
    for k in range(1, 14):
        a = oldest + 0.07 * k
        b = a + 0.13 * k / 3
        assert s.energy_between(a, b) == pytest.approx((b - a) * (p(a) + p(b)) / 2, rel=1e-9)


def test_energy_counter_with_wrap_around(clock):
    # 2 W into a counter that wraps every 5 J (2.5 s)
    src = FnSource(lambda t: (2.0 * (t - 100.0)) % 5.0, clock, quantity="energy", energy_range_j=5.0)
    s = PowerSampler(src, clock=clock)
    run(s, clock, 10)
    assert s.energy_between(101.03, 108.07) == pytest.approx(2.0 * 7.04, rel=1e-9)
    assert s.energy_between(104.001, 104.002) == pytest.approx(0.002, rel=1e-6)
    assert s.power_at(105.0) == pytest.approx(2.0)


def test_energy_counter_step(clock):
    e = lambda t: (t - 100.0) if t < 105 else 5.0 + 4.0 * (t - 105.0)  # noqa: E731  1 W then 4 W
    s = PowerSampler(FnSource(e, clock, quantity="energy"), clock=clock)
    run(s, clock, 10)
    assert s.energy_between(102.0, 108.0) == pytest.approx(3.0 + 12.0, abs=1e-6)


def test_period_never_faster_than_sensor():
    src = FnSource(lambda t: 1.0, time.monotonic, update=0.5)
    assert PowerSampler(src, period_s=0.01).period_s == 0.5
    assert PowerSampler(FnSource(lambda t: 1.0, time.monotonic, update=0.0)).period_s == 0.01


def test_no_samples_gives_nan_and_null_telemetry(clock):
    s = PowerSampler(FnSource(lambda t: 1.0, clock), clock=clock)
    assert math.isnan(s.energy_between(1, 2))
    assert s.window(1, 2).to_telemetry()["energy_mj"] is None


def test_baseline_and_marginal_energy(clock):
    level = {"p": 1.5}
    s = PowerSampler(FnSource(lambda t: level["p"], clock), clock=clock)
    with pytest.raises(RuntimeError, match="baseline"):
        s.marginal_energy_between(0, 1)

    def fake_sleep(seconds: float) -> None:
        run(s, clock, seconds)

    s.sample_once()
    assert s.measure_baseline(2.0, sleep=fake_sleep) == pytest.approx(1.5)
    level["p"] = 4.0
    t0 = clock()
    run(s, clock, 1.0)
    t1 = clock()
    a, b = t0 + 0.2, t1 - 0.2  # away from the step
    assert s.marginal_energy_between(a, b) == pytest.approx(2.5 * (b - a), rel=1e-9)
    w = s.window(a, b)
    assert w.marginal_j == pytest.approx(2.5 * (b - a)) and w.baseline_w == pytest.approx(1.5)
    # the energy is the energy above idle; the total (idle power included) is kept beside it
    assert w.to_telemetry() == {"energy_mj": pytest.approx(2500 * (b - a), abs=1e-3),
                                "energy_total_mj": pytest.approx(4000 * (b - a), abs=1e-3), "energy_clamped": False,
                                "power_source": "fake", "power_rail": "fake rail", "energy_estimated": False,
                                "energy_extrapolated": False}


def test_sensor_disappears_mid_run_falls_back_to_estimate(clock, caplog):
    def read(t: float) -> float:
        if t > 105.0:
            raise OSError(19, "No such device")
        return 3.0

    src = FnSource(read, clock)
    est = FnSource(lambda t: 5.0, clock, estimated=True, kind="estimate", idle_power_w=4.0)
    s = PowerSampler(src, clock=clock, fallback=lambda: est)
    s.set_baseline(2.0)
    with caplog.at_level("WARNING", logger="edge_ee.power"):
        run(s, clock, 10)
    warns = [r for r in caplog.records if r.levelname == "WARNING"]
    assert len(warns) == 1 and "ESTIMATED" in warns[0].getMessage() and "No such device" in warns[0].getMessage()
    assert src.closed and s.source is est and s.estimated
    assert s.baseline_w == 4.0  # the measured baseline belongs to the lost sensor
    before, after = s.window(101.0, 104.0), s.window(107.0, 109.0)
    assert not before.estimated and before.energy_j == pytest.approx(9.0)
    assert after.estimated and after.source == "estimate" and after.energy_j == pytest.approx(10.0)
    assert after.to_telemetry()["energy_estimated"] is True
    assert s.info()["failed_sources"] and "No such device" in s.info()["failed_sources"][0]

    # marginal energy: each part of a window uses the baseline in force then (2 W, then the estimate's 4 W)
    assert before.marginal_j == pytest.approx(9.0 - 2.0 * 3.0)
    assert after.marginal_j == pytest.approx(10.0 - 4.0 * 2.0)
    switch = s.estimated_since
    assert s.baseline_at(switch - 1) == 2.0 and s.baseline_at(switch + 1) == 4.0
    across = s.window(switch - 1.0, switch + 1.0)
    assert across.marginal_j == pytest.approx(across.energy_j - 2.0 - 4.0)


def test_round_mj_never_negative_zero():
    from edge_ee.power.sampler import round_mj

    assert math.copysign(1.0, round_mj(-0.00001)) == 1.0 and round_mj(-0.00001) == 0.0
    assert round_mj(-0.5) == -0.5 and round_mj(float("nan")) is None and round_mj(None) is None


def test_window_not_covered_by_samples_is_flagged_extrapolated(clock):
    s = PowerSampler(FnSource(lambda t: 2.0, clock), clock=clock)
    s.set_baseline(0.5)
    run(s, clock, 1)  # samples 100.0 .. 101.0
    assert not s.window(100.2, 100.9).extrapolated
    assert s.window(100.9, 101.05).extrapolated  # past the newest sample
    assert s.window(99.9, 100.1).extrapolated  # before the oldest
    assert s.window(100.9, 101.05).to_telemetry()["energy_extrapolated"] is True


def test_window_integrator_waits_for_samples_covering_each_window(clock):
    """A window integrated right after the work holds the last reading; the integrator waits for a
    sample after the window, so a power step inside it is seen."""
    level = {"p": 1.0}
    s = PowerSampler(FnSource(lambda t: level["p"], clock), clock=clock)
    s.set_baseline(1.0)
    run(s, clock, 1)  # samples up to 101.0 at 1 W
    level["p"] = 5.0  # the next sample (101.1) reads 5 W
    w_early = s.window(101.02, 101.08)  # what a hook computing it at once would get: 1 W held
    assert w_early.extrapolated and w_early.marginal_j == pytest.approx(0.0, abs=1e-12)
    integ = WindowIntegrator(s)
    integ.add("stage0", 101.02, 101.08)
    assert integ.update() == 1 and not integ.sums  # not covered yet: stays queued
    clock.advance(0.1)
    s.sample_once()
    assert integ.update() == 0
    got = integ.sums["stage0"]
    assert got.n == 1 and got.extrapolated == 0 and not got.estimated
    # linear power between the samples at 101.0 (1 W) and 101.1 (5 W): mean over the window 3 W
    assert got.energy_j == pytest.approx(3.0 * 0.06, rel=1e-9)
    assert got.mean_mj() == pytest.approx(1e3 * 2.0 * 0.06, rel=1e-9)
    assert got.mean_mj(above_idle=False) == pytest.approx(1e3 * 3.0 * 0.06, rel=1e-9)


def test_window_integrator_finish_flags_what_no_sample_covers(clock):
    s = PowerSampler(FnSource(lambda t: 2.0, clock), clock=clock)
    run(s, clock, 1)
    integ = WindowIntegrator(s)
    integ.add(0, 100.5, 100.6)
    integ.add(0, 101.2, 101.3)  # no sample will come (no thread): integrated with the power held
    sums = integ.finish(timeout=0)
    assert sums[0].n == 2 and sums[0].extrapolated == 1 and integ.pending == 0
    assert sums[0].mean_mj() is None  # no baseline: no energy above idle
    assert sums[0].mean_mj(above_idle=False) == pytest.approx(200.0, rel=1e-9)


def test_window_integrator_bounds_its_queue(clock):
    s = PowerSampler(FnSource(lambda t: 2.0, clock), clock=clock)
    run(s, clock, 1)
    integ = WindowIntegrator(s, max_pending=3)
    for i in range(5):
        integ.add("k", 101.5 + i, 101.6 + i)
    assert integ.pending == 3 and integ.sums["k"].n == 2 and integ.sums["k"].extrapolated == 2


def test_default_fallback_is_the_cpu_estimate(clock, caplog):
    s = PowerSampler(FnSource(lambda t: (_ for _ in ()).throw(OSError("gone")), clock), clock=clock,
                     max_failures=1)
    with caplog.at_level("WARNING", logger="edge_ee.power"):
        s.sample_once()
    assert isinstance(s.source, EstimatedSource) and s.estimated
    assert s.period_s >= s.source.update_interval_s


def test_estimated_source_flags_every_window(clock):
    s = PowerSampler(FnSource(lambda t: 1.0, clock, estimated=True, kind="estimate"), clock=clock)
    run(s, clock, 1)
    assert s.window(100.1, 100.5).estimated


def test_background_thread_starts_and_stops_cleanly():
    src = FnSource(lambda t: 2.0, time.perf_counter, update=0.005)
    s = PowerSampler(src)
    with s:
        assert s.running
        t0 = s.clock()
        time.sleep(0.05)
        t1 = s.clock()
        assert s.wait_for(t1, timeout=2.0)
        assert s.energy_between(t0, t1) == pytest.approx(2.0 * (t1 - t0), rel=1e-6)
        assert len(s.samples()[0]) >= 2
    assert not s.running and src.closed
    s.stop()  # idempotent


def test_real_sysfs_sensor_removed_mid_run(fake, clock, caplog):
    import shutil

    from edge_ee.power import discover

    from .test_power_jetson import jp5_orin_nano

    jp5_orin_nano(fake)
    src = discover()
    assert src.kind == "jetson"
    s = PowerSampler(src, clock=clock)
    run(s, clock, 2)
    shutil.rmtree(fake.path("/sys/bus/i2c/drivers/ina3221"))  # the i2c device went away
    with caplog.at_level("WARNING", logger="edge_ee.power"):
        run(s, clock, 2)
    warns = [r.getMessage() for r in caplog.records if r.levelname == "WARNING"]
    assert len(warns) == 1 and "INA3221" in warns[0] and "does not exist" in warns[0]
    assert s.source.kind == "estimate" and s.source.estimated
    assert s.window(100.5, 101.5).energy_j == pytest.approx(4.5) and not s.window(100.5, 101.5).estimated
    assert s.window(103.0, 103.5).estimated
