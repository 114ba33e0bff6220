"""Bring your own model: the ``onnx`` and ``inspect`` commands, and the checks shared with ``--model`` / ``--weights``.

``edge-ee-export onnx MODEL.onnx --data DIR --mean M --std S --exits E1,E2 --out BUNDLE``: convert the ONNX
classifier, check it scores above chance on the data through the runtime's preprocessing (a wrong --mean/--std/--color
or class order is caught here, not on the device), train exits on the frozen model, calibrate, export, and check the
bundle's full model against the original ONNX model before the bundle is put in place.
"""

from __future__ import annotations

import argparse
import logging
import math
import time
import warnings
from pathlib import Path
from typing import Any

import torch
from torch import nn

from . import __version__
from .errors import DatasetError, ModelError, UsageError

log = logging.getLogger("edge_ee_export")

DEFAULT_EXITS = "25%,50%"


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


def require_normalisation(a: argparse.Namespace, why: str) -> tuple[list[float], list[float]]:
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


def inspect(a: argparse.Namespace) -> None:
    from .cut_points import cut_points, default_final_split, format_table

    model, example, src = _user_model(a)
    cands = cut_points(model, example)
    print(f"{src}: input {list(example.shape[1:])}")
    print(format_table(cands, default_final_split(cands) if cands else None))
    print("\npick early exits with --exits NAME,... (a name above, a module containing one, e.g. layer2, "
          "or a MACs fraction such as 30%); --final-split NAME moves the default final split")


def _user_model(a: argparse.Namespace) -> tuple[nn.Module, torch.Tensor, str]:
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


def run_onnx(a: argparse.Namespace, command: str) -> Path:
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
    out = export_bundle(ee, cal, a.out, name=name, task=data.task, labels=data.labels, preprocess=data.preprocess,
                        layout=data.layout, verify_split=data.calib_thr, producer=prod,
                        description=f"{Path(a.model_file).name} with exits after {', '.join(exits)}; built by "
                                    f"edge-ee-export {__version__}",
                        check=lambda d: {"parity_with_source_onnx": parity(im.onnx_bytes or b"", d, px, py)})
    log.info("calibrated (%s): accuracy %.4f vs full %.4f at %.1f%% of the MACs on %s; original ONNX %.2f%% on %s; "
             "export took %.1f s", cal["rule"], cal["chosen"]["accuracy"], cal["full_accuracy"],
             100 * cal["chosen"]["macs_ratio"], data.calib_thr.name, 100 * orig_acc, probe.name,
             time.perf_counter() - t0)
    return out


def add_parsers(sub: Any, fraction: Any) -> None:
    """The ``onnx`` and ``inspect`` sub-commands of ``edge-ee-export``."""
    s = sub.add_parser("onnx", help="early exits on an existing ONNX image classifier",
                       description=(__doc__ or "").split("\n\n")[1])
    s.add_argument("model_file", metavar="MODEL.onnx")
    s.add_argument("--data", required=True, help="image folder, one sub-folder per class (sorted = output order)")
    s.add_argument("--out", required=True, help="bundle directory to write (replaced atomically)")
    s.add_argument("--mean", default=None, help="per-channel mean the model was trained with, [0, 1] scale (required)")
    s.add_argument("--std", default=None, help="per-channel std the model was trained with (required)")
    s.add_argument("--color", choices=["rgb", "bgr", "gray"], default=None,
                   help="channel order the model expects (default: gray for 1 channel, rgb for 3)")
    s.add_argument("--exits", default=None, help=f"comma-separated cut names, module prefixes or MACs fractions "
                   f"(default {DEFAULT_EXITS.replace('%', '%%')}); list them with `edge-ee-export inspect MODEL.onnx`")
    s.add_argument("--final-split", default=None, help="cut after which the model's classifier starts (default: the "
                   "last feature map)")
    s.add_argument("--head", default="conv_conf", help="exit head family (pool_linear, dws, conv, *_conf)")
    s.add_argument("--exit-epochs", type=int, default=10)
    s.add_argument("--calib", type=int, default=None, help="calibration frames in total (default 10%% of the "
                   "data); more frames let a tighter guarantee be certified")
    s.add_argument("--target-drop", type=fraction("--target-drop"), default=0.01)
    s.add_argument("--confidence", type=fraction("--confidence"), default=0.9)
    s.add_argument("--train-limit", type=int, default=None)
    s.add_argument("--seed", type=int, default=0)
    s.add_argument("--name", default=None)
    s.add_argument("--threads", type=int, default=None)
    s.add_argument("--no-progress", action="store_true")
    s.add_argument("-v", "--verbose", action="store_true")
    i = sub.add_parser("inspect", help="list a model's candidate exit points (name, output shape, MACs fraction)")
    i.add_argument("model_file", nargs="?", default=None, metavar="MODEL.onnx")
    i.add_argument("--model", dest="torch_model", default=None, help="module.path:factory or file.py:factory")
    i.add_argument("--weights", default=None, help="state_dict for --model")
    i.add_argument("--input", default=None, help="with --model: input size C,H,W")
    i.add_argument("-v", "--verbose", action="store_true")


def user_backbone(a: argparse.Namespace, labels: list[str], example: torch.Tensor) -> nn.Module:
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
