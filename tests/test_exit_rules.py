"""Exit rules: one class per rule; per-input and batch scores agree; keys order firing; always/never hold."""

from __future__ import annotations

import numpy as np
import pytest

from edge_ee.core.exit_rules import RULES, get_rule


@pytest.mark.parametrize("name", ["max_softmax", "entropy", "confidence"])
def test_batch_scores_match_single_and_keys_order_firing(name: str) -> None:
    rng = np.random.default_rng(0)
    for classes in (2, 10, 100):  # both sides of the small-vector fast path
        logits = rng.normal(0, 3, (200, classes))
        conf = rng.uniform(0, 1, 200)
        r = get_rule(name)
        batch = r.scores(logits, 1.7, conf)
        single = np.array([r.score(row, 1.7, float(c)) for row, c in zip(logits, conf)])
        np.testing.assert_allclose(batch, single, rtol=1e-9, atol=1e-12)
        for t in np.quantile(batch, [0.1, 0.5, 0.9]):
            fired = np.array([r.fires(s, t) for s in single])
            assert (fired == (r.key(single) >= r.key(t))).all()
            assert r.threshold_of_key(r.key(t)) == pytest.approx(t)
        assert all(r.fires(s, r.always) for s in single)
        assert not any(r.fires(s, r.never) for s in single)
        # saturated softmax (a probability of exactly 1.0) still does not fire at `never`
        assert not r.fires(r.score(np.array([1000.0] + [0.0] * (classes - 1)), 1.0, 1.0), r.never)


def test_threshold_range() -> None:
    assert get_rule("max_softmax").check_threshold(0.9) is None
    assert "outside" in (get_rule("max_softmax").check_threshold(7.5) or "")
    assert "outside" in (get_rule("entropy").check_threshold(-5) or "")
    assert get_rule("entropy").check_threshold(float("nan")) is not None
    assert set(RULES) >= {"max_softmax", "entropy", "confidence"}


def test_every_rule_module_registers_itself() -> None:
    """Adding a rule is adding a module to edge_ee/core/exit_rules/: the package imports every module in it and
    each registers its rule; the rules keep their order (rank, then name)."""
    import pkgutil

    import edge_ee.core.exit_rules as pkg

    modules = {m.name for m in pkgutil.iter_modules(pkg.__path__)}
    defined = {type(r).__module__.rsplit(".", 1)[1] for r in RULES.values()}
    assert modules and modules <= defined
    assert pkg.rule_names()[:3] == ("max_softmax", "entropy", "confidence")
