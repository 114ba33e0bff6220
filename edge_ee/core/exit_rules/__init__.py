"""Exit rules: one class per rule, the only place that knows a rule's semantics.

An exit rule turns an exit head's output into a *score* and decides whether the input may stop there:

* ``max_softmax`` (SDN, T-RecX, MSDNet): exit when max softmax(logits / T) >= threshold;
* ``entropy`` (BranchyNet): exit when the softmax entropy, normalised to [0, 1] by log(classes), is <= threshold;
* ``confidence`` (EENets, PTEENet): exit when the head's learned sigmoid confidence >= threshold.

Each rule owns: the score of one input (``score``, the engine's per-frame path) and of a batch (``scores``, the
calibration path: the same numbers, vectorised), whether a score fires at a threshold (``fires``), the thresholds that
always and never fire (``always``/``never``: finite, so they survive JSON), the valid threshold range, and the
*firing key*: a monotone map of scores and thresholds such that ``fires(s, t) == key(s) >= key(t)``. Calibration
searches thresholds in key space (larger key = more confident for every rule) and converts back with
``threshold_of_key``. Rules are per head (``Head.rule``); the engine, manifest parsing, operating points, profile and
the exporter call these classes and nothing else.

A rule is one module of this package (``max_softmax.py``, ``entropy.py``, ``confidence.py``): the package imports
every module in it, and each rule registers itself next to its class with :func:`register_rule` (as timm's
``register_model``), so adding a rule is adding a module (docs/architecture.md has a worked example). Rules are
stateless (one score per head output); a stateful rule such as patience (PABEE) would keep its state per inference
and is not implemented.

The reported confidence is always the max softmax probability of the answering exit, so numbers compare across rules.
"""

from __future__ import annotations

import importlib
import math
import pkgutil
from typing import ClassVar

import numpy as np

from ...errors import UsageError

_SMALL = 64  # up to this many classes plain Python beats numpy's per-call overhead


def softmax(logits: np.ndarray, temperature: float = 1.0) -> np.ndarray:
    """Softmax of one logit vector (float64)."""
    z = np.asarray(logits, np.float64).reshape(-1)
    if temperature != 1.0:
        z = z / temperature
    e = np.exp(z - z.max())
    e /= e.sum()
    return e


def softmax_terms(logits: np.ndarray, temperature: float = 1.0) -> tuple[int, list[float] | np.ndarray, float]:
    """The parts of ``softmax(logits, temperature)`` the engine's answer needs: (index of the largest logit, the
    first on ties; the terms exp((z - max) / T); their sum). The probabilities are ``terms / sum``, the top one
    ``1 / sum``. Plain Python up to ``_SMALL`` classes: right after a model run the CPU caches hold the model,
    not the interpreter, and numpy's ufunc machinery then costs several times a short Python loop
    (``benchmarks/engine_overhead.py`` reports the answer step right after a run and repeated at once)."""
    flat = logits if logits.ndim == 1 else logits.reshape(-1)
    if flat.size > _SMALL:
        z = np.asarray(flat, np.float64)
        if temperature != 1.0:
            z = z / temperature
        i = int(z.argmax())
        e = np.exp(z - z[i])
        return i, e, float(e.sum())
    z = flat.tolist()
    m = max(z)
    if temperature != 1.0:
        inv = 1.0 / temperature
        terms = [math.exp((v - m) * inv) for v in z]
    else:
        terms = [math.exp(v - m) for v in z]
    return z.index(m), terms, sum(terms)


def softmax_rows(logits: np.ndarray, temperature: float = 1.0) -> np.ndarray:
    """Row-wise softmax of ``[N, C]`` logits (float64)."""
    z = np.asarray(logits, np.float64).reshape(len(logits), -1) / temperature
    z = z - z.max(1, keepdims=True)
    e = np.exp(z)
    return e / e.sum(1, keepdims=True)


def normalized_entropy(p: np.ndarray) -> float:
    n = p.size
    if n < 2:
        return 0.0
    q = p[p > 0]
    return float(-(q * np.log(q)).sum() / math.log(n))



class ExitRule:
    """Base class: a rule whose exit fires when the score is >= the threshold (``higher_fires``) or <= it."""

    name: ClassVar[str]
    rank: ClassVar[int] = 100  # place in the rule list (help, errors, the exporter's tie-break), then by name
    higher_fires: ClassVar[bool] = True
    needs_confidence: ClassVar[bool] = False  # the head must output a learned confidence
    always: ClassVar[float]  # a threshold at which the exit fires for every input
    never: ClassVar[float]  # a threshold at which it fires for none

    # ---- per input (the engine's hot path: a couple of microseconds)
    def score(self, logits: np.ndarray, temperature: float = 1.0, confidence: float | None = None) -> float:
        raise NotImplementedError

    def fires(self, score: float, threshold: float) -> bool:
        return score >= threshold if self.higher_fires else score <= threshold

    # ---- per batch (calibration)
    def scores(self, logits: np.ndarray, temperature: float = 1.0,
               confidence: np.ndarray | None = None) -> np.ndarray:
        raise NotImplementedError

    # ---- key space: larger = more willing to exit, for every rule
    def key(self, x: np.ndarray | float) -> np.ndarray | float:
        return x if self.higher_fires else -x

    def threshold_of_key(self, k: float) -> float:
        """The threshold whose key is ``k``, clipped into [always, never] (the valid range)."""
        t = float(k) if self.higher_fires else -float(k)
        lo, hi = self.valid_range()
        return min(max(t, lo), hi)

    def valid_range(self) -> tuple[float, float]:
        return (min(self.always, self.never), max(self.always, self.never))

    def check_threshold(self, t: float) -> str | None:
        """Why ``t`` is not a threshold of this rule (None: it is)."""
        lo, hi = self.valid_range()
        if not (isinstance(t, (int, float)) and math.isfinite(t) and lo <= t <= hi):
            return (f"threshold {t!r} is outside [{lo:g}, {hi:g}] for exit rule {self.name!r} "
                    f"({self.always:g} always exits, {self.never:g} never does)")
        return None


RULES: dict[str, ExitRule] = {}
DEFAULT_RULE = "max_softmax"  # a head that names no rule; the final classifier's (it always answers)


def register_rule(cls: type[ExitRule]) -> type[ExitRule]:
    """Class decorator: make a rule available by its ``name`` (manifest, ``--rule``, calibration)."""
    RULES[cls.name] = cls()
    return cls


def get_rule(name: str) -> ExitRule:
    try:
        return RULES[name]
    except KeyError:
        raise UsageError(f"unknown exit rule {name!r}", f"use one of {', '.join(RULES)}") from None


def rule_names() -> tuple[str, ...]:
    return tuple(RULES)


def _load_rules() -> None:
    """Import every module of this package (each registers its rules), then order the rules by ``rank``, name."""
    for info in pkgutil.iter_modules(__path__):
        importlib.import_module(f"{__name__}.{info.name}")
    ordered = sorted(RULES.items(), key=lambda kv: (type(kv[1]).rank, kv[0]))
    RULES.clear()
    RULES.update(ordered)


_load_rules()
