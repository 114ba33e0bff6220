"""Calibration: temperatures, Pareto frontier, and agreement with the runtime's exit decisions."""

from __future__ import annotations

import numpy as np
import pytest

torch = pytest.importorskip("torch")

from edge_ee_export.calibrate import ExitOutputs, exit_table, fit_temperature, select_thresholds  # noqa: E402

from edge_ee.core.bundle import load_bundle  # noqa: E402
from edge_ee.core.engine import Engine  # noqa: E402


def test_temperature_recovers_overconfidence() -> None:
    rng = np.random.default_rng(0)
    true = rng.normal(0, 2, (4000, 5))
    p = np.exp(true) / np.exp(true).sum(1, keepdims=True)
    labels = np.array([rng.choice(5, p=row) for row in p])
    t = fit_temperature(true * 3.0, labels)
    assert 2.5 < t < 3.5


def test_frontier_is_pareto_and_sorted() -> None:
    rng = np.random.default_rng(1)
    n, c = 600, 4
    labels = rng.integers(0, c, n)
    logits = []
    for noise in (2.0, 1.0, 0.3):
        z = rng.normal(0, noise, (n, c))
        z[np.arange(n), labels] += 1.5
        logits.append(z)
    out = ExitOutputs(logits, [None, None, None], labels)
    table = exit_table(out, [1.0, 1.0, 1.0], "max_softmax", [10, 30, 60], [2, 2, 1])
    front = table.frontier(levels=20, max_points=None)
    macs = [p.mean_macs for p in front]
    accs = [p.accuracy for p in front]
    assert macs == sorted(macs) and accs == sorted(accs)
    assert front[0].exit_fractions[0] == pytest.approx(1.0)
    t = table.frontier(levels=20, max_points=10)
    assert len(t) <= 11 and t[0] == front[0] and t[-1] == front[-1]


def _outputs(n: int, rng: np.random.Generator) -> ExitOutputs:
    labels = rng.integers(0, 4, n)
    logits = []
    for noise in (2.0, 1.0, 0.3):
        z = rng.normal(0, noise, (n, 4))
        z[np.arange(n), labels] += 2.5
        logits.append(z)
    return ExitOutputs(logits, [None, None, None], labels)


def test_thresholds_are_held_per_condition_where_the_split_knows_them() -> None:
    rng = np.random.default_rng(2)
    out = _outputs(3000, rng)
    cond = np.where(rng.uniform(0, 1, 3000) < 0.5, "babble", "quiet")
    cal = select_thresholds(out, [1.0] * 3, [10, 30, 60], [2, 2, 1], 0.02, 0.9, conditions=cond)
    g = cal["guarantee"]
    assert set(g["conditions"]) == {"babble", "quiet"} and "guarantee_note" not in cal
    pooled = select_thresholds(out, [1.0] * 3, [10, 30, 60], [2, 2, 1], 0.02, 0.9)
    assert pooled["guarantee"]["conditions"] is None
    # a condition with too few frames: the guarantee falls back to the pooled frames and the bundle says why
    few = np.where(np.arange(3000) < 20, "babble", "quiet")
    cal = select_thresholds(out, [1.0] * 3, [10, 30, 60], [2, 2, 1], 0.02, 0.9, conditions=few)
    assert cal["guarantee"]["conditions"] is None and "babble (20)" in cal["guarantee_note"]


def test_manifest_point_matches_engine(fm_export, fm_data) -> None:
    """The chosen thresholds, run by the Engine on the threshold split, give the recorded point."""
    _, path = fm_export
    m = load_bundle(path).manifest
    chosen = m.calibration.chosen
    assert chosen is not None and m.calibration.guarantee is not None
    eng = Engine(str(path))
    x, y = fm_data.calib_thr.x.numpy(), fm_data.calib_thr.y.numpy()
    exits, correct, macs = [], [], []
    for i in range(len(y)):
        r = eng.infer(x[i: i + 1])
        exits.append(r.exit_index)
        correct.append(r.label_index == y[i])
        macs.append(r.macs)
    frac = np.bincount(exits, minlength=3) / len(y)
    np.testing.assert_allclose(frac, chosen.exit_fractions, atol=2.5 / len(y))
    assert abs(np.mean(correct) - chosen.accuracy) <= 2.5 / len(y)
    assert abs(np.mean(macs) - chosen.mean_macs) / m.full_model_macs() < 0.02


def test_recalibrate_rewrites_thresholds_with_a_guarantee(fm_export, fm_data, tmp_path) -> None:
    """A bundle's thresholds re-selected from its own ONNX chain: new guarantee, same ONNX files, still loads."""
    import shutil

    from edge_ee_export.recalibrate import recalibrate_bundle

    _, path = fm_export
    b = tmp_path / "b"
    shutil.copytree(path, b)
    before = load_bundle(b).manifest
    cal = recalibrate_bundle(b, fm_data.calib_thr, target_drop=0.05, confidence=0.8)
    after = load_bundle(b).manifest
    g = after.calibration.guarantee
    assert g is not None and g.target == 0.05 and g.confidence == 0.8 and g.n == len(fm_data.calib_thr)
    assert [h.threshold for h in after.exits[:-1]] == cal["chosen"]["thresholds"]
    assert [s.segment.sha256 for s in after.stages] == [s.segment.sha256 for s in before.stages]
    assert after.calibration.temperatures == [h.temperature for h in before.exits]
