"""``edge-ee-export``: build an early-exit bundle for the edge-ee runtime.

Recipes (built-in models, see README in export/)::

    edge-ee-export fashion-mnist --arch resnet8 --method pteenet --epochs 24 --exit-epochs 8 --out DIR
    edge-ee-export kws --arch dscnn --method pteenet --epochs 24 --exit-epochs 10 --out DIR
    edge-ee-export image-folder --data DIR --arch mobilenet_v1 --size 96 96 --epochs 30 --out DIR

Your own model (export/README.md, "Three ways in")::

    edge-ee-export inspect MODEL.onnx                      # or: inspect --model pkg.mod:factory --input 3,96,96
    edge-ee-export onnx MODEL.onnx --data DIR --mean M --std S --exits layer1,layer2 --out DIR
    edge-ee-export image-folder --data DIR --model pkg.mod:factory --weights W.pt --mean M --std S --out DIR

Each run: train (or load with --pretrained) the backbone, attach exits at the recipe's split
points (or --splits), train the exits, calibrate temperatures and thresholds, export + verify ONNX,
write the bundle atomically. Exit codes: 0 ok, 2 usage (bad split point, non-logit output),
3 dataset (missing files, espeak-ng missing, classes or preprocessing that do not fit the model), 4 ONNX/PyTorch
mismatch (or bundle vs the original ONNX), 5 model cannot be used (see onnx_import), 1 other errors.
"""

from __future__ import annotations

import argparse
import logging
import os
import shlex
import sys
import warnings
from pathlib import Path
from typing import Any

from edge_ee.calibration.select import parse_fraction
from edge_ee.errors import UsageError as RuntimeUsageError

from . import __version__
from .errors import ExportError, UsageError

log = logging.getLogger("edge_ee_export")

DATASETS = ("fashion-mnist", "kws", "image-folder")
DEFAULT_EPOCHS = {"fashion-mnist": 24, "kws": 24, "image-folder": 30}
DEFAULT_EXIT_EPOCHS = {"fashion-mnist": 8, "kws": 10, "image-folder": 10}
DEFAULT_ARCH = {"fashion-mnist": "resnet8", "kws": "dscnn", "image-folder": "mobilenet_v1"}
METHOD_HEAD = {"pteenet": "conv_conf", "eenet": "conv_conf", "sdn": "pool_linear", "trecx": "dws"}



def _fraction(option: str) -> Any:
    """argparse type: a fraction in (0, 1) from 1% or 0.01 (the runtime's parser, one implementation)."""
    def parse(text: str) -> float:
        try:
            return parse_fraction(option, text)
        except RuntimeUsageError as e:
            raise argparse.ArgumentTypeError(str(e).split(": ", 1)[-1]) from None
    return parse

def _parser() -> argparse.ArgumentParser:
    p = argparse.ArgumentParser(prog="edge-ee-export", description=__doc__.split("\n\n")[0],
                                formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--version", action="version", version=f"edge-ee-export {__version__}")
    sub = p.add_subparsers(dest="dataset", required=True, metavar="DATASET")
    for name, helptext in (("fashion-mnist", "Fashion-MNIST (Debian dataset-fashion-mnist IDX files)"),
                           ("kws", "keyword spotting, synthesised with espeak-ng (MLPerf Tiny MFCC front end)"),
                           ("image-folder", "any image folder, one sub-folder per class")):
        s = sub.add_parser(name, help=helptext, description=helptext)
        s.add_argument("--out", required=True, help="bundle directory to write (replaced atomically)")
        s.add_argument("--arch", default=None,
                       help="resnet8 | resnet8_wide | dscnn | mobilenet_v1 (default per dataset)")
        s.add_argument("--method", default="pteenet", choices=["pteenet", "sdn", "eenet", "trecx"],
                       help="exit training: pteenet/sdn freeze the backbone; eenet/trecx fine-tune jointly")
        s.add_argument("--head", default=None, help="exit head family (default per method): pool_linear, dws, "
                       "conv, and *_conf variants with a learned confidence")
        s.add_argument("--splits", default=None, help="comma-separated module paths for the early exits")
        s.add_argument("--final-split", default=None, help="module path after which the final classifier starts")
        s.add_argument("--place", default=None, help="comma-separated MAC fractions: choose split points there")
        s.add_argument("--epochs", type=int, default=None, help="training epochs (backbone and exits)")
        s.add_argument("--backbone-epochs", type=int, default=None, help="backbone epochs (overrides --epochs)")
        s.add_argument("--exit-epochs", type=int, default=None, help="exit training epochs (overrides --epochs)")
        s.add_argument("--lr", type=float, default=0.1, help="backbone learning rate (one-cycle peak)")
        s.add_argument("--pretrained", default=None, help="state_dict (.pt) of the backbone: skip its training")
        s.add_argument("--model", default=None, help="your own backbone instead of --arch: module.path:factory or "
                       "file.py:factory (factory() returns the nn.Module); split points from `edge-ee-export inspect`")
        s.add_argument("--weights", default=None, help="with --model: its state_dict; skips backbone training")
        s.add_argument("--train-limit", type=int, default=None, help="use at most N training samples (quick runs)")
        s.add_argument("--seed", type=int, default=0)
        s.add_argument("--target-drop", type=_fraction("--target-drop"), default=0.01,
                       help="allowed accuracy drop vs the full model: 1%% or 0.01")
        s.add_argument("--confidence", type=_fraction("--confidence"), default=0.9,
                       help="probability that the drop on new data stays within --target-drop (90%% or 0.9)")
        s.add_argument("--quantize", action="store_true", help="int8 static quantisation (accuracy change recorded)")
        s.add_argument("--cache", default=os.environ.get("EDGE_EE_EXPORT_CACHE",
                                                         str(Path.home() / ".cache" / "edge-ee-export")),
                       help="checkpoints and synthesised audio (resumable runs)")
        s.add_argument("--no-resume", action="store_true", help="ignore existing checkpoints")
        s.add_argument("--name", default=None, help="bundle name in the manifest")
        s.add_argument("--threads", type=int, default=None, help="torch threads (default: torch's choice)")
        s.add_argument("--no-progress", action="store_true", help="no progress bars")
        s.add_argument("-v", "--verbose", action="store_true")
        if name == "fashion-mnist":
            s.add_argument("--data", default=None, help="directory with the IDX files "
                           "(default /usr/share/datasets/fashion-mnist)")
        elif name == "image-folder":
            s.add_argument("--data", required=True, help="root folder with one sub-folder per class")
            s.add_argument("--size", type=int, nargs=2, default=[96, 96], metavar=("H", "W"))
            s.add_argument("--color", choices=["rgb", "bgr", "gray"], default="rgb")
            s.add_argument("--mean", default=None, help="per-channel mean on the [0, 1] scale (default: measured on "
                           "the images; required with --weights: the one the model was trained with)")
            s.add_argument("--std", default=None, help="per-channel std (default: measured; required with --weights)")
        else:
            s.add_argument("--words", default=None, help="comma-separated subset of keywords (quick runs)")
            s.add_argument("--voices", default=None, help="comma-separated espeak-ng training voices "
                           "(default: 6 English accents + de, fr, es, nl)")
            s.add_argument("--noise", action="append", default=[], metavar="WAV",
                           help="a background recording (16 kHz 16-bit WAV) mixed into training; repeatable")
            s.add_argument("--no-babble", action="store_true", help="no background speech in training")
    from .byom import add_parsers

    add_parsers(sub, _fraction)
    r = sub.add_parser("recalibrate", help="re-select a Fashion-MNIST bundle's thresholds with a guarantee "
                       "(no retraining)", description=(__import__("edge_ee_export.recalibrate").recalibrate.__doc__
                                                        or "").split("\n\n")[0])
    r.add_argument("bundle", help="bundle directory (rewritten in place)")
    r.add_argument("--data", default=None, help="Fashion-MNIST IDX directory (default /usr/share/datasets/...)")
    r.add_argument("--target-drop", type=_fraction("--target-drop"), default=0.01)
    r.add_argument("--confidence", type=_fraction("--confidence"), default=0.9)
    r.add_argument("-v", "--verbose", action="store_true")
    return p


def recalibrate(a: argparse.Namespace) -> Path:
    """The threshold split the exporter held out for this bundle, rebuilt from the seed in its manifest."""
    from edge_ee.bundle import load_bundle

    from .data import fashion_mnist
    from .recalibrate import recalibrate_bundle

    m = load_bundle(a.bundle).manifest
    ds = m.producer.get("dataset") or {}
    if ds.get("name") != "fashion-mnist":
        raise UsageError(f"{a.bundle} was not exported from Fashion-MNIST (producer.dataset.name = "
                         f"{ds.get('name')!r})", "recalibrate other bundles with `edge-ee profile` on the device")
    seed = int(m.producer.get("seed", 0))
    data = fashion_mnist.load(a.data, seed=seed, calib=6000)
    want = (ds.get("sizes") or {}).get("calib_thr")
    if want is not None and want != len(data.calib_thr):
        raise UsageError(f"the rebuilt threshold split has {len(data.calib_thr)} frames, the bundle recorded {want}",
                         "the bundle was exported with other data options; re-export it")
    cal = recalibrate_bundle(a.bundle, data.calib_thr, a.target_drop, a.confidence, seed=seed)
    g = cal.get("guarantee") or {}
    log.info("recalibrated: %.2f%% of the MACs, accuracy %.4f vs full %.4f on %s; guarantee: drop <= %.3g%% at "
             "%.3g%% confidence (upper bound %.3g%%)", 100 * cal["chosen"]["macs_ratio"], cal["chosen"]["accuracy"],
             cal["full_accuracy"], data.calib_thr.name, 100 * a.target_drop, 100 * a.confidence,
             100 * g.get("upper_bound", float("nan")))
    return Path(a.bundle)


def run(a: argparse.Namespace, command: str) -> Path:
    import torch

    from .attach import attach_exits, place_splits
    from .byom import DEFAULT_EXITS, check_above_chance, floats, require_normalisation, user_backbone
    from .calibrate import calibrate
    from .onnx_export import export_bundle, producer_info
    from .train import evaluate, set_seed, train_backbone, train_exits
    from .zoo import RECIPES

    if a.threads:
        torch.set_num_threads(a.threads)
    if a.weights and not a.model:
        raise UsageError("--weights goes with --model", "for the built-in --arch models use --pretrained")
    if a.model and (a.arch or a.pretrained):
        raise UsageError("--model replaces --arch and --pretrained", "give the state_dict with --weights")
    arch = a.model.rsplit(":", 1)[-1] if a.model else (a.arch or DEFAULT_ARCH[a.dataset])
    if not a.model and arch not in RECIPES:
        raise UsageError(f"unknown --arch {arch!r}; choose one of {', '.join(RECIPES)}")
    recipe = RECIPES[arch if not a.model else DEFAULT_ARCH[a.dataset]]
    progress = not a.no_progress
    cache = Path(a.cache)
    set_seed(a.seed)
    if a.dataset == "fashion-mnist":
        from .data import fashion_mnist

        data = fashion_mnist.load(a.data, seed=a.seed, calib=6000, train_limit=a.train_limit,
                                  test_limit=a.train_limit)
        model = (user_backbone(a, data.labels, data.train.x[:2]) if a.model else
                 recipe.build(num_classes=len(data.labels), **({"in_channels": 1} if arch != "dscnn" else {})))
    elif a.dataset == "kws":
        from .data import kws

        words = a.words.split(",") if a.words else None
        voices = a.voices.split(",") if a.voices is not None else None
        data = kws.load(cache / "kws", seed=a.seed, train_limit=a.train_limit, words=words, progress=progress,
                        voices=voices, noise_files=a.noise, babble=not a.no_babble)
        if a.model:
            model = user_backbone(a, data.labels, data.train.x[:2])
        elif arch != "dscnn":
            raise UsageError("the kws recipe uses --arch dscnn (49x10 MFCC input)")
        else:
            model = recipe.build(num_classes=len(data.labels))
    else:
        from .data import image_folder

        mean, std = (require_normalisation(a, "with --weights") if a.weights else
                     (floats("--mean", a.mean), floats("--std", a.std)))
        data = image_folder.load(a.data, size=tuple(a.size), color=a.color, seed=a.seed, train_limit=a.train_limit,
                                 mean=mean, std=std)
        cin = 1 if a.color == "gray" else 3
        if arch == "dscnn":
            raise UsageError("--arch dscnn is for keyword spotting")
        model = (user_backbone(a, data.labels, data.train.x[:2]) if a.model else
                 recipe.build(num_classes=len(data.labels), in_channels=cin))
    log.info("data %s: %s", a.dataset, data.sizes())
    # check the split points before spending time on training
    from .attach import split_model

    if a.model:  # the user's module: split points from its cut points unless given
        from .cut_points import cut_points, default_final_split, resolve_exits

        cands = cut_points(model, data.train.x[:2])
        a.final_split = a.final_split or default_final_split(cands)
        if not a.splits and not a.place:
            a.splits = ",".join(resolve_exits(cands, DEFAULT_EXITS.split(","), a.final_split))
    if not a.place:
        early = a.splits.split(",") if a.splits else list(recipe.splits)
        split_model(model, early + [a.final_split or recipe.final_split])
    bb_epochs = a.backbone_epochs or a.epochs or DEFAULT_EPOCHS[a.dataset]
    ex_epochs = a.exit_epochs or a.epochs or DEFAULT_EXIT_EPOCHS[a.dataset]
    tag = f"{a.dataset}-{arch}"
    lim = f"-lim{a.train_limit}" if a.train_limit else ""
    history: dict[str, Any] = {}
    if a.weights:
        history["backbone"] = {"weights": a.weights}
    elif a.pretrained:
        if str(a.pretrained).endswith(".onnx"):
            raise UsageError(f"--pretrained {a.pretrained} is an ONNX model; --pretrained takes a state_dict of --arch",
                             f"use `edge-ee-export onnx {a.pretrained} --data DIR ...`")
        try:
            state = torch.load(a.pretrained, map_location="cpu", weights_only=True)
            model.load_state_dict(state)
        except FileNotFoundError as e:
            raise UsageError(f"--pretrained {a.pretrained}: no such file") from e
        except Exception as e:  # noqa: BLE001
            raise UsageError(f"--pretrained {a.pretrained}: cannot load ({str(e).splitlines()[0][:200]})") from e
        history["backbone"] = {"pretrained": a.pretrained}
    else:
        ck = None if a.no_resume else cache / f"{tag}-backbone-s{a.seed}{lim}.pt"
        h = train_backbone(model, data, epochs=bb_epochs, lr=a.lr, seed=a.seed, ckpt=ck, progress=progress)
        history["backbone"] = {"epochs": bb_epochs, "final": h[-1] if h else None}
    backbone_test = evaluate(model, data.test)
    log.info("backbone test accuracy %.4f", backbone_test)
    if a.weights or a.pretrained:
        check_above_chance(backbone_test, len(data.test), data.labels, "the given backbone")
    example = data.train.x[:2]
    if a.place:
        splits = place_splits(model, example, [float(f) for f in a.place.split(",")])
    else:
        splits = a.splits.split(",") if a.splits else list(recipe.splits)
    final_split = a.final_split or recipe.final_split
    head = a.head or (recipe.head if a.method == "pteenet" else METHOD_HEAD[a.method])
    with warnings.catch_warnings(record=True) as caught:
        warnings.simplefilter("always")
        ee = attach_exits(model, splits, example, final_split=final_split, head=head,
                          num_classes=len(data.labels), **(recipe.head_kw if not a.head and not a.model else {}))
    for w in caught:
        log.warning("%s", w.message)
    where = "_".join(splits).replace(".", "-")
    ck = None if a.no_resume else cache / f"{tag}-{a.method}-{head}-{where}-exits-s{a.seed}{lim}.pt"
    h = train_exits(ee, data, method=a.method, epochs=ex_epochs, seed=a.seed, ckpt=ck, progress=progress)
    history["exits"] = {"epochs": ex_epochs, "method": a.method, "final": h[-1] if h else None}
    cal = calibrate(ee, data.calib_temp, data.calib_thr, target_drop=a.target_drop,
                    confidence=a.confidence)
    cal["split"]["sizes"] = data.sizes()
    log.info("calibrated (%s): accuracy %.4f vs full %.4f at %.1f%% of the MACs (oracle %.1f%%)", cal["rule"],
             cal["chosen"]["accuracy"], cal["full_accuracy"], 100 * cal["chosen"]["macs_ratio"],
             100 * cal["oracle_macs_ratio"])
    name = a.name or f"{tag}-ee"
    desc = (f"{arch} on {a.dataset}, exits after {', '.join(splits)} ({head} heads, {a.method}); "
            f"built by edge-ee-export {__version__}")
    prod = producer_info(a.seed, command, method=a.method, arch=arch, head=head, splits=splits,
                         final_split=final_split, training=history,
                         dataset={"name": a.dataset, "sizes": data.sizes(), **data.meta})
    out = export_bundle(ee, cal, a.out, name=name, task=data.task, labels=data.labels, preprocess=data.preprocess,
                        layout=data.layout, verify_split=data.calib_thr, description=desc, producer=prod,
                        quantize=a.quantize, quant_split=data.calib_thr)
    log.info("wrote %s", out)
    return out


def main(argv: list[str] | None = None) -> int:
    args = _parser().parse_args(argv)
    logging.basicConfig(level=logging.DEBUG if args.verbose else logging.INFO,
                        format="%(asctime)s %(levelname)s %(message)s", stream=sys.stderr)
    command = "edge-ee-export " + " ".join(shlex.quote(x) for x in (argv if argv is not None else sys.argv[1:]))
    try:
        if args.dataset == "inspect":
            from .byom import inspect

            inspect(args)
            return 0
        if args.dataset == "onnx":
            from .byom import run_onnx

            out = run_onnx(args, command)
        else:
            out = recalibrate(args) if args.dataset == "recalibrate" else run(args, command)
    except ExportError as e:
        print(f"edge-ee-export: error: {e.message}", file=sys.stderr)
        if e.hint:
            print(f"  hint: {e.hint}", file=sys.stderr)
        return e.exit_code
    except KeyboardInterrupt:
        print("edge-ee-export: interrupted; no bundle was written (checkpoints are kept)", file=sys.stderr)
        return 130
    except Exception as e:  # bundle/runtime errors from edge_ee carry a message and a hint
        from edge_ee.errors import EdgeEEError

        if isinstance(e, EdgeEEError):
            print(f"edge-ee-export: error: {e}", file=sys.stderr)
            return 1
        raise
    print(out)
    return 0


if __name__ == "__main__":
    sys.exit(main())
