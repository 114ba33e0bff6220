"""The early-exit methods of the literature as exporter recipes, on any backbone and data set.

A :class:`Variant` fixes what distinguishes one method from another: how the exits are trained (frozen backbone
or joint, which loss: :func:`edge_ee_export.train.train_exits`), which exit-head family, how many exits, and which
exit rule decides (calibration may only choose among ``rules``). Everything else is shared: the trained backbone
(joint methods fine-tune a copy of it), the split points of the model's recipe, temperatures on ``calib_temp``,
risk-controlled thresholds on ``calib_thr`` (:mod:`edge_ee_export.calibrate`). ``benchmarks/methods.py`` compares
them; the exporter's CLI default is :data:`DEFAULT_VARIANT`.

* ``branchynet``: joint training, equal-weight sum of every exit's cross-entropy, conv branches, entropy rule;
* ``sdn``: internal classifiers (pool + linear) on a frozen backbone ("IC-only"), max-softmax rule;
* ``eenet``: joint training with the EENets cost-aware loss, conv branches with a confidence output, confidence rule;
* ``pteenet``: frozen backbone, the recipe's conv branches with confidence, EENets-style loss, confidence rule;
* ``trecx``: one depthwise-separable exit, joint ``w * CE(early) + CE(final)`` (w = 0.4) and the early-view final
  classifier, max-softmax rule;
* ``default``: the exporter's default (PTEENet training and heads; the rule is the cheapest on the calibration
  split among all the heads allow).

A new variant registers itself with :func:`register_variant` next to its definition.
"""

from __future__ import annotations

import copy
import time
import warnings
from dataclasses import dataclass, field
from typing import Any

import torch
from torch import nn

from .attach import EarlyExitModel, attach_exits, place_splits
from .errors import UsageError
from .train import train_exits
from .zoo import Recipe

# T-RecX places its single exit early: the recipe split whose MACs are closest to this fraction of the model
SINGLE_EXIT_FRACTION = 0.35


@dataclass(frozen=True)
class Variant:
    name: str
    title: str  # display name
    train: str  # train_exits method: pteenet / sdn (frozen backbone), eenet / trecx (joint)
    head: str | None  # exit-head family; None: the recipe's own
    rules: tuple[str, ...] | None  # exit rules calibration may choose from; None: every rule the heads allow
    single_exit: bool = False
    train_kw: dict[str, Any] = field(default_factory=dict)
    summary: str = ""

    @property
    def joint(self) -> bool:
        return self.train in ("eenet", "trecx")


VARIANTS: dict[str, Variant] = {}


def register_variant(v: Variant) -> Variant:
    if v.name in VARIANTS:
        raise ValueError(f"variant {v.name!r} is registered twice")
    VARIANTS[v.name] = v
    return v


# BranchyNet's joint loss is T-RecX's without the early view and with equal weights
register_variant(Variant("branchynet", "BranchyNet", "trecx", "conv", ("entropy",),
                         train_kw={"early_weight": 1.0, "early_view": False},
                         summary="joint, sum of exit CEs, conv branches, entropy rule"))
register_variant(Variant("sdn", "SDN", "sdn", "pool_linear", ("max_softmax",),
                         summary="frozen backbone, pool+linear internal classifiers, max-softmax rule"))
register_variant(Variant("eenet", "EENets", "eenet", "conv_conf", ("confidence",),
                         summary="joint, cost-aware loss, conv branches + confidence, confidence rule"))
register_variant(Variant("pteenet", "PTEENet", "pteenet", None, ("confidence",),
                         summary="frozen backbone, conv branches + confidence, confidence rule"))
register_variant(Variant("trecx", "T-RecX", "trecx", "dws", ("max_softmax",), single_exit=True,
                         train_kw={"early_weight": 0.4},
                         summary="one depthwise-separable exit, joint w*CE(early)+CE(final), early view, max-softmax"))
register_variant(Variant("default", "edge-ee default", "pteenet", None, None,
                         summary="PTEENet training and heads; calibration picks the cheapest rule"))
DEFAULT_VARIANT = "default"


def get_variant(name: str) -> Variant:
    try:
        return VARIANTS[name]
    except KeyError:
        raise UsageError(f"unknown early-exit method {name!r}; choose one of {', '.join(VARIANTS)}") from None


def exit_splits(v: Variant, model: nn.Module, example: torch.Tensor, splits: list[str]) -> list[str]:
    """The variant's split points among the recipe's ``splits`` (all of them, or T-RecX's single early one)."""
    if not v.single_exit or len(splits) <= 1:
        return list(splits)
    return place_splits(model, example, [SINGLE_EXIT_FRACTION], candidates=splits)


def training_key(v: Variant, recipe: Recipe) -> tuple:
    """Variants with equal keys train to identical models (same seed): train once, calibrate each."""
    return (v.train, v.head or recipe.head, v.single_exit, tuple(sorted(v.train_kw.items())))


def build(v: Variant, backbone: nn.Module, example: torch.Tensor, recipe: Recipe, num_classes: int,
          head_kw: dict[str, Any] | None = None) -> EarlyExitModel:
    """Attach the variant's exits to a deep copy of ``backbone`` (joint methods must not change the original)."""
    model = copy.deepcopy(backbone)
    splits = exit_splits(v, model, example, list(recipe.splits))
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")  # head-cost warnings: the benchmark reports every head's MACs itself
        return attach_exits(model, splits, example, final_split=recipe.final_split, head=v.head or recipe.head,
                            num_classes=num_classes, **(recipe.head_kw if head_kw is None else head_kw))


def train(v: Variant, ee: EarlyExitModel, data: Any, epochs: int, seed: int = 0,
          progress: bool = False) -> tuple[list[dict[str, float]], float]:
    """Train the variant's exits; returns (history, CPU seconds of this process spent training)."""
    t0 = time.process_time()
    hist = train_exits(ee, data, method=v.train, epochs=epochs, seed=seed, progress=progress, **v.train_kw)
    return hist, time.process_time() - t0
