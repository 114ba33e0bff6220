"""Bring your own model: the ``onnx`` and ``inspect`` commands, and the checks shared with ``--model`` / ``--weights``.

``edge-ee-export onnx MODEL.onnx --data DIR --mean M --std S --exits E1,E2 --out BUNDLE``: convert the ONNX
classifier, check it scores above chance on the data through the runtime's preprocessing (a wrong --mean/--std/--color
or class order is caught here, not on the device), train exits on the frozen model, calibrate, export, and check the
bundle's full model against the original ONNX model before the bundle is put in place.
"""

from __future__ import annotations

import logging
import math
import time
import warnings
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING, Any

import torch
from torch import nn

from . import __version__
from .errors import DatasetError, ModelError, UsageError

if TYPE_CHECKING:
    from .recipe import RecipeArgs

log = logging.getLogger("edge_ee_export")

DEFAULT_EXITS = "25%,50%"


@dataclass
class OnnxArgs:
    """The options of ``edge-ee-export onnx``."""

    model_file: str
    data: str
    out: str
    mean: str | None = None
    std: str | None = None
    color: str | None = None
    exits: str | None = None
    final_split: str | None = None
    head: str = "conv_conf"
    exit_epochs: int = 10
    calib: int | None = None
    target_drop: float = 0.01
    confidence: float = 0.9
    train_limit: int | None = None
    seed: int = 0
    name: str | None = None
    threads: int | None = None
    no_progress: bool = False


@dataclass
class InspectArgs:
    """The options of ``edge-ee-export inspect``: an ONNX file, or a module factory with its input size."""

    model_file: str | None = None
    torch_model: str | None = None
    weights: str | None = None
    input: str | None = None


def floats(option: str, text: str | None) -> list[float] | None:
    if text is None:
        return None
    try:
        vals = [float(v) for v in text.split(",") if v.strip()]
    except ValueError:
        raise UsageError(f"{option} {text!r}: give comma-separated numbers, e.g. 0.485,0.456,0.406") from None
    if not vals:
        raise UsageError(f"{option} is empty")
    return vals


def require_normalisation(a: OnnxArgs | RecipeArgs, why: str) -> tuple[list[float], list[float]]:
    mean, std = floats("--mean", a.mean), floats("--std", a.std)
    if mean is None or std is None:
        raise UsageError(f"--mean and --std are required {why}: the per-channel normalisation the model was trained "
                         "with, on pixel values scaled to [0, 1]",
                         "e.g. --mean 0.485,0.456,0.406 --std 0.229,0.224,0.225 (ImageNet), or --mean 0 --std 1 "
                         "for none; the bundle records them and the runtime applies them")
    if any(s <= 0 for s in std):
        raise UsageError(f"--std {a.std}: every value must be > 0")
    return mean, std


def check_above_chance(acc: float, n: int, classes: list[str], what: str) -> None:
    """A model that scores near chance on labelled data is being fed the wrong input (normalisation, colour order,
    size) or its outputs are in another class order: refuse, instead of exporting a bundle that looks valid."""
    k = len(classes)
    chance = 1.0 / k
    floor = chance + max(0.1, 3 * math.sqrt(chance * (1 - chance) / max(n, 1)))
    if acc < floor:
        raise DatasetError(
            f"{what} scores {100 * acc:.1f}% on {n} labelled images (chance {100 * chance:.1f}%): its input or its "
            "class order does not match the data",
            "check --mean/--std/--color against how the model was trained, and that the class folders in sorted "
            f"order ({', '.join(classes[:10])}{', ...' if k > 10 else ''}) match the model's output order")


def check_classes(num_outputs: int, labels: list[str], root: Any) -> None:
    if num_outputs != len(labels):
        raise DatasetError(f"the model has {num_outputs} outputs but {root} has {len(labels)} class folders "
                           f"({', '.join(labels[:10])}{', ...' if len(labels) > 10 else ''})",
                           "give an image folder with one sub-folder per class the model predicts")


def inspect(a: InspectArgs) -> None:
    from .cut_points import cut_points, default_final_split, format_table

    model, example, src = _user_model(a)
    cands = cut_points(model, example)
    print(f"{src}: input {list(example.shape[1:])}")
    print(format_table(cands, default_final_split(cands) if cands else None))
    print("\npick early exits with --exits NAME,... (a name above, a module containing one, e.g. layer2, "
          "or a MACs fraction such as 30%); --final-split NAME moves the default final split")


def _user_model(a: InspectArgs) -> tuple[nn.Module, torch.Tensor, str]:
    from .onnx_import import load_factory, load_onnx

    if not a.torch_model:
        if not a.model_file:
            raise UsageError("give MODEL.onnx or --model module.path:factory")
        im = load_onnx(a.model_file)
        return im.module, im.example(), a.model_file
    shape = floats("--input", a.input)
    if shape is None or len(shape) != 3:
        raise UsageError("--model needs --input C,H,W (the model's input size, e.g. 3,96,96)")
    model = load_factory(a.torch_model, a.weights)
    return model, torch.zeros(2, *[int(v) for v in shape]), a.torch_model


def run_onnx(a: OnnxArgs, command: str) -> Path:
    from .attach import attach_exits
    from .calibrate import calibrate
    from .cut_points import cut_points, default_final_split, resolve_exits
    from .data import image_folder
    from .onnx_export import export_bundle, producer_info
    from .onnx_import import load_onnx, ort_logits, ort_session, parity
    from .train import set_seed, train_exits

    t0 = time.perf_counter()
    if a.threads:
        torch.set_num_threads(a.threads)
    set_seed(a.seed)
    im = load_onnx(a.model_file)
    c, h, w = im.input_shape
    if c not in (1, 3):
        raise ModelError(f"{a.model_file} takes {c} input channels; image bundles take 1 (gray) or 3 (colour)")
    color = a.color or ("gray" if c == 1 else "rgb")
    if (color == "gray") != (c == 1):
        raise UsageError(f"--color {color} gives {1 if color == 'gray' else 3} channels; the model takes {c}")
    mean, std = require_normalisation(a, "for an ONNX model")
    data = image_folder.load(a.data, size=(h, w), color=color, seed=a.seed, mean=mean, std=std, calib=a.calib,
                             train_limit=a.train_limit)
    check_classes(im.num_classes, data.labels, a.data)
    log.info("data %s: %s", a.data, data.sizes())
    sess = ort_session(im.onnx_bytes or b"", threads=a.threads or 1)
    probe = data.test if len(data.test) else data.calib_thr
    orig_acc = float((ort_logits(sess, probe.x.numpy()).argmax(1) == probe.y.numpy()).mean())
    check_above_chance(orig_acc, len(probe), data.labels, f"{a.model_file} (original ONNX, in onnxruntime)")
    log.info("original ONNX model: %.2f%% on %s (%d images)", 100 * orig_acc, probe.name, len(probe))
    example = data.train.x[:2]
    cands = cut_points(im.module, example)
    final = a.final_split or default_final_split(cands)
    exits = resolve_exits(cands, (a.exits or DEFAULT_EXITS).split(","), final)
    log.info("exits after %s; final split %s", ", ".join(exits), final)
    with warnings.catch_warnings(record=True) as caught:
        warnings.simplefilter("always")
        ee = attach_exits(im.module, exits, example, final_split=final, head=a.head, num_classes=im.num_classes)
    for w in caught:
        log.warning("%s", w.message)
    hist = train_exits(ee, data, method="pteenet", epochs=a.exit_epochs, seed=a.seed, progress=not a.no_progress)
    cal = calibrate(ee, data.calib_temp, data.calib_thr, target_drop=a.target_drop, confidence=a.confidence)
    cal["split"]["sizes"] = data.sizes()
    px, py = probe.x.numpy(), probe.y.numpy()
    name = a.name or f"{Path(a.model_file).stem}-ee"
    prod = producer_info(a.seed, command, method="pteenet", arch=f"onnx:{Path(a.model_file).name}", head=a.head,
                         splits=exits, final_split=final, source_model={**im.source, "accuracy": orig_acc,
                                                                         "measured_on": probe.name},
                         training={"exits": {"epochs": a.exit_epochs, "final": hist[-1] if hist else None}},
                         dataset={"name": "image-folder", "sizes": data.sizes(), **data.meta})
    out = export_bundle(ee, cal, a.out, data, name=name, producer=prod,
                        description=f"{Path(a.model_file).name} with exits after {', '.join(exits)}; built by "
                                    f"edge-ee-export {__version__}",
                        check=lambda d: {"parity_with_source_onnx": parity(im.onnx_bytes or b"", d, px, py)})
    log.info("calibrated (%s): accuracy %.4f vs full %.4f at %.1f%% of the MACs on %s; original ONNX %.2f%% on %s; "
             "export took %.1f s", cal["rule"], cal["chosen"]["accuracy"], cal["full_accuracy"],
             100 * cal["chosen"]["macs_ratio"], data.calib_thr.name, 100 * orig_acc, probe.name,
             time.perf_counter() - t0)
    return out


def user_backbone(a: RecipeArgs, labels: list[str], example: torch.Tensor) -> nn.Module:
    """``--model`` (+ ``--weights``) for the recipes: the module, checked to give one logit per class."""
    from .onnx_import import load_factory

    model = load_factory(a.model, a.weights)
    try:
        with torch.no_grad():
            out = model.eval()(example[:2])
    except Exception as e:  # noqa: BLE001 - the user's forward may raise anything
        raise ModelError(f"--model {a.model}: forward on a {list(example.shape[1:])} input failed: "
                         f"{type(e).__name__}: {str(e).splitlines()[0][:200]}") from e
    if not isinstance(out, torch.Tensor) or out.dim() != 2:
        raise ModelError(f"--model {a.model} does not return logits [N, classes]")
    check_classes(int(out.shape[1]), labels, "the data set")
    return model
