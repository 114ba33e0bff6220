"""The recipe commands (``fashion-mnist``, ``kws``, ``image-folder``) and ``recalibrate``, behind the CLI.

A recipe run: load the data, build (or take the user's) backbone, check the split points before any
training, train (or load) the backbone, attach exits and train them, calibrate temperatures and thresholds,
export + verify ONNX and write the bundle atomically.
"""

from __future__ import annotations

import logging
import warnings
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING, Any

from . import __version__
from .errors import UsageError

if TYPE_CHECKING:
    from torch import nn

    from .zoo import Recipe

log = logging.getLogger("edge_ee_export")

DATASETS = ("fashion-mnist", "kws", "image-folder")
DEFAULT_EPOCHS = {"fashion-mnist": 24, "kws": 24, "image-folder": 30}
DEFAULT_EXIT_EPOCHS = {"fashion-mnist": 8, "kws": 10, "image-folder": 10}
DEFAULT_ARCH = {"fashion-mnist": "resnet8", "kws": "dscnn", "image-folder": "mobilenet_v1"}
METHOD_HEAD = {"pteenet": "conv_conf", "eenet": "conv_conf", "sdn": "pool_linear", "trecx": "dws"}


@dataclass
class RecipeArgs:
    """The options of a recipe command (the CLI's option names with ``_`` for ``-``)."""

    dataset: str
    out: str
    cache: str
    arch: str | None = None
    method: str = "pteenet"
    head: str | None = None
    splits: str | None = None
    final_split: str | None = None
    place: str | None = None
    epochs: int | None = None
    backbone_epochs: int | None = None
    exit_epochs: int | None = None
    lr: float = 0.1
    pretrained: str | None = None
    model: str | None = None
    weights: str | None = None
    train_limit: int | None = None
    seed: int = 0
    target_drop: float = 0.01
    confidence: float = 0.9
    quantize: bool = False
    no_resume: bool = False
    name: str | None = None
    threads: int | None = None
    no_progress: bool = False
    data: str | None = None
    size: tuple[int, int] = (96, 96)
    color: str = "rgb"
    mean: str | None = None
    std: str | None = None
    words: str | None = None
    voices: str | None = None
    noise: list[str] | None = None
    no_babble: bool = False
    clips_per_keyword: int | None = None
    pooled_guarantee: bool = False


@dataclass(frozen=True)
class RecipeRun:
    """What the steps of one recipe run share."""

    a: RecipeArgs
    arch: str
    recipe: Recipe
    data: Any
    tag: str
    lim: str

    @property
    def progress(self) -> bool:
        return not self.a.no_progress

    def checkpoint(self, what: str) -> Path | None:
        return None if self.a.no_resume else Path(self.a.cache) / f"{self.tag}-{what}-s{self.a.seed}{self.lim}.pt"


def _arch(a: RecipeArgs) -> tuple[str, Recipe]:
    """The architecture name and the recipe (split points, heads) after checking the model options."""
    from .zoo import RECIPES

    if a.weights and not a.model:
        raise UsageError("--weights goes with --model", "for the built-in --arch models use --pretrained")
    if a.model and (a.arch or a.pretrained):
        raise UsageError("--model replaces --arch and --pretrained", "give the state_dict with --weights")
    if a.model:
        return a.model.rsplit(":", 1)[-1], RECIPES[DEFAULT_ARCH[a.dataset]]
    arch = a.arch or DEFAULT_ARCH[a.dataset]
    if arch not in RECIPES:
        raise UsageError(f"unknown --arch {arch!r}; choose one of {', '.join(RECIPES)}")
    return arch, RECIPES[arch]


def _fashion_mnist(a: RecipeArgs, arch: str, recipe: Recipe) -> tuple[Any, nn.Module]:
    from .byom import user_backbone
    from .data import fashion_mnist

    data = fashion_mnist.load(a.data, seed=a.seed, calib=6000, train_limit=a.train_limit, test_limit=a.train_limit)
    if a.model:
        return data, user_backbone(a, data.labels, data.train.x[:2])
    return data, recipe.build(num_classes=len(data.labels), **({"in_channels": 1} if arch != "dscnn" else {}))


def _kws(a: RecipeArgs, arch: str, recipe: Recipe) -> tuple[Any, nn.Module]:
    from .byom import user_backbone
    from .data import kws

    words = a.words.split(",") if a.words else None
    voices = a.voices.split(",") if a.voices is not None else None
    counts = kws.ClipCounts.for_keyword_clips(a.clips_per_keyword) if a.clips_per_keyword is not None \
        else kws.ClipCounts()
    data = kws.load(Path(a.cache) / "kws", seed=a.seed, counts=counts, train_limit=a.train_limit, words=words,
                    progress=not a.no_progress, voices=voices, noise_files=a.noise or (), babble=not a.no_babble)
    if a.model:
        return data, user_backbone(a, data.labels, data.train.x[:2])
    if arch != "dscnn":
        raise UsageError("the kws recipe uses --arch dscnn (49x10 MFCC input)")
    return data, recipe.build(num_classes=len(data.labels))


def _image_folder(a: RecipeArgs, arch: str, recipe: Recipe) -> tuple[Any, nn.Module]:
    from .byom import floats, require_normalisation, user_backbone
    from .data import image_folder

    mean, std = (require_normalisation(a, "with --weights") if a.weights else
                 (floats("--mean", a.mean), floats("--std", a.std)))
    data = image_folder.load(a.data, size=tuple(a.size), color=a.color, seed=a.seed, train_limit=a.train_limit,
                             mean=mean, std=std)
    if arch == "dscnn":
        raise UsageError("--arch dscnn is for keyword spotting")
    if a.model:
        return data, user_backbone(a, data.labels, data.train.x[:2])
    return data, recipe.build(num_classes=len(data.labels), in_channels=1 if a.color == "gray" else 3)


LOADERS = {"fashion-mnist": _fashion_mnist, "kws": _kws, "image-folder": _image_folder}


def _check_splits(r: RecipeRun, model: nn.Module) -> None:
    """Resolve the user model's default exits and check every split point before any training."""
    from .attach import split_model

    a = r.a
    if a.model:  # the user's module: split points from its cut points unless given
        from .byom import DEFAULT_EXITS
        from .cut_points import cut_points, default_final_split, resolve_exits

        cands = cut_points(model, r.data.train.x[:2])
        a.final_split = a.final_split or default_final_split(cands)
        if not a.splits and not a.place:
            a.splits = ",".join(resolve_exits(cands, DEFAULT_EXITS.split(","), a.final_split))
    if not a.place:
        early = a.splits.split(",") if a.splits else list(r.recipe.splits)
        split_model(model, early + [a.final_split or r.recipe.final_split])


def _load_pretrained(model: nn.Module, path: str) -> None:
    import torch

    if str(path).endswith(".onnx"):
        raise UsageError(f"--pretrained {path} is an ONNX model; --pretrained takes a state_dict of --arch",
                         f"use `edge-ee-export onnx {path} --data DIR ...`")
    try:
        state = torch.load(path, map_location="cpu", weights_only=True)
        model.load_state_dict(state)
    except FileNotFoundError as e:
        raise UsageError(f"--pretrained {path}: no such file") from e
    except Exception as e:  # noqa: BLE001
        raise UsageError(f"--pretrained {path}: cannot load ({str(e).splitlines()[0][:200]})") from e


def _backbone(r: RecipeRun, model: nn.Module) -> dict[str, Any]:
    """Train the backbone, or take the given weights (checked to score above chance); the training history."""
    from .byom import check_above_chance
    from .train import evaluate, train_backbone

    a = r.a
    history: dict[str, Any] = {}
    if a.weights:
        history["backbone"] = {"weights": a.weights}
    elif a.pretrained:
        _load_pretrained(model, a.pretrained)
        history["backbone"] = {"pretrained": a.pretrained}
    else:
        epochs = a.backbone_epochs or a.epochs or DEFAULT_EPOCHS[a.dataset]
        h = train_backbone(model, r.data, epochs=epochs, lr=a.lr, seed=a.seed, ckpt=r.checkpoint("backbone"),
                           progress=r.progress)
        history["backbone"] = {"epochs": epochs, "final": h[-1] if h else None}
    backbone_test = evaluate(model, r.data.test)
    log.info("backbone test accuracy %.4f", backbone_test)
    if a.weights or a.pretrained:
        check_above_chance(backbone_test, len(r.data.test), r.data.labels, "the given backbone")
    return history


def _attach(r: RecipeRun, model: nn.Module) -> tuple[Any, list[str], str, str]:
    """The early-exit model, its split points, final split and head family."""
    from .attach import attach_exits, place_splits

    a, recipe = r.a, r.recipe
    example = r.data.train.x[:2]
    if a.place:
        splits = place_splits(model, example, [float(f) for f in a.place.split(",")])
    else:
        splits = a.splits.split(",") if a.splits else list(recipe.splits)
    final_split = a.final_split or recipe.final_split
    head = a.head or (recipe.head if a.method == "pteenet" else METHOD_HEAD[a.method])
    with warnings.catch_warnings(record=True) as caught:
        warnings.simplefilter("always")
        ee = attach_exits(model, splits, example, final_split=final_split, head=head,
                          num_classes=len(r.data.labels), **(recipe.head_kw if not a.head and not a.model else {}))
    for w in caught:
        log.warning("%s", w.message)
    return ee, splits, final_split, head


def run_recipe(a: RecipeArgs, command: str) -> Path:
    """One recipe run (see the module docstring); the bundle directory written."""
    import torch

    from .calibrate import calibrate
    from .onnx_export import export_bundle, producer_info
    from .train import set_seed, train_exits

    if a.threads:
        torch.set_num_threads(a.threads)
    arch, recipe = _arch(a)
    set_seed(a.seed)
    data, model = LOADERS[a.dataset](a, arch, recipe)
    log.info("data %s: %s", a.dataset, data.sizes())
    r = RecipeRun(a, arch, recipe, data, tag=f"{a.dataset}-{arch}",
                  lim=f"-lim{a.train_limit}" if a.train_limit else "")
    _check_splits(r, model)
    history = _backbone(r, model)
    ee, splits, final_split, head = _attach(r, model)
    ex_epochs = a.exit_epochs or a.epochs or DEFAULT_EXIT_EPOCHS[a.dataset]
    where = "_".join(splits).replace(".", "-")
    h = train_exits(ee, data, method=a.method, epochs=ex_epochs, seed=a.seed,
                    ckpt=r.checkpoint(f"{a.method}-{head}-{where}-exits"), progress=r.progress)
    history["exits"] = {"epochs": ex_epochs, "method": a.method, "final": h[-1] if h else None}
    cal = calibrate(ee, data.calib_temp, data.calib_thr, target_drop=a.target_drop, confidence=a.confidence,
                    pooled=a.pooled_guarantee)
    cal["split"]["sizes"] = data.sizes()
    log.info("calibrated (%s): accuracy %.4f vs full %.4f at %.1f%% of the MACs (oracle %.1f%%)", cal["rule"],
             cal["chosen"]["accuracy"], cal["full_accuracy"], 100 * cal["chosen"]["macs_ratio"],
             100 * cal["oracle_macs_ratio"])
    desc = (f"{arch} on {a.dataset}, exits after {', '.join(splits)} ({head} heads, {a.method}); "
            f"built by edge-ee-export {__version__}")
    prod = producer_info(a.seed, command, method=a.method, arch=arch, head=head, splits=splits,
                         final_split=final_split, training=history,
                         dataset={"name": a.dataset, "sizes": data.sizes(), **data.meta})
    out = export_bundle(ee, cal, a.out, data, name=a.name or f"{r.tag}-ee", description=desc, producer=prod,
                        quantize=a.quantize)
    log.info("wrote %s", out)
    return out


def recalibrate(bundle: str, data_dir: str | None, target_drop: float, confidence: float) -> Path:
    """The threshold split the exporter held out for this bundle, rebuilt from the seed in its manifest."""
    from edge_ee.core.bundle import load_bundle

    from .data import fashion_mnist
    from .recalibrate import recalibrate_bundle

    m = load_bundle(bundle).manifest
    ds = m.producer.get("dataset") or {}
    if ds.get("name") != "fashion-mnist":
        raise UsageError(f"{bundle} was not exported from Fashion-MNIST (producer.dataset.name = "
                         f"{ds.get('name')!r})", "recalibrate other bundles with `edge-ee profile` on the device")
    seed = int(m.producer.get("seed", 0))
    data = fashion_mnist.load(data_dir, seed=seed, calib=6000)
    want = (ds.get("sizes") or {}).get("calib_thr")
    if want is not None and want != len(data.calib_thr):
        raise UsageError(f"the rebuilt threshold split has {len(data.calib_thr)} frames, the bundle recorded {want}",
                         "the bundle was exported with other data options; re-export it")
    cal = recalibrate_bundle(bundle, data.calib_thr, target_drop, confidence, seed=seed)
    g = cal.get("guarantee") or {}
    log.info("recalibrated: %.2f%% of the MACs, accuracy %.4f vs full %.4f on %s; guarantee: drop <= %.3g%% at "
             "%.3g%% confidence (upper bound %.3g%%)", 100 * cal["chosen"]["macs_ratio"], cal["chosen"]["accuracy"],
             cal["full_accuracy"], data.calib_thr.name, 100 * target_drop, 100 * confidence,
             100 * g.get("upper_bound", float("nan")))
    return Path(bundle)
