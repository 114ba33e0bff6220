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
write the bundle atomically. The same CLI library (typer) and the same exit-code table as ``edge-ee``
(:class:`edge_ee.errors.ExitCode`, README "Exit codes").
"""

from __future__ import annotations

import logging
import os
import shlex
import sys
from collections.abc import Callable
from enum import Enum
from pathlib import Path
from typing import Annotated, Any

import typer

from edge_ee.calibration.select import parse_fraction
from edge_ee.errors import EdgeEEError, ExitCode

from . import __version__
from .recipe import RecipeArgs

log = logging.getLogger("edge_ee_export")

EXIT_CODES = ("Exit codes: 0 ok, 2 usage (bad split point, non-logit model output), 9 dataset (missing files, "
              "espeak-ng missing, classes or preprocessing that do not fit the model), 10 ONNX/PyTorch mismatch "
              "(or bundle vs the original ONNX), 11 model cannot be used, 3 bad bundle (recalibrate), 1 other.")

app = typer.Typer(add_completion=False, no_args_is_help=True,
                  help=(__doc__ or "").split("\n\n")[0].replace("``", "") + " " + EXIT_CODES)


class _Run:
    """What ``main`` needs from the command that ran: the command line (recorded in the manifest) and the
    exit code (``None`` until a command body ran: then usage errors and ``--help`` exit as typer does)."""

    command: str = "edge-ee-export"
    rc: int | None = None


def _fraction(option: str) -> Callable[[Any], float]:
    """A fraction in (0, 1) from 1% or 0.01 (the runtime's parser, one implementation)."""

    def parse(text: Any) -> float:
        try:
            return parse_fraction(option, text)
        except EdgeEEError as e:
            raise typer.BadParameter(e.message.split(": ", 1)[-1]) from None

    return parse


class Method(str, Enum):
    pteenet = "pteenet"
    sdn = "sdn"
    eenet = "eenet"
    trecx = "trecx"


class Color(str, Enum):
    rgb = "rgb"
    bgr = "bgr"
    gray = "gray"


def _default_cache() -> str:
    return os.environ.get("EDGE_EE_EXPORT_CACHE", str(Path.home() / ".cache" / "edge-ee-export"))


Out = Annotated[str, typer.Option("--out", help="bundle directory to write (replaced atomically)")]
Arch = Annotated[str | None, typer.Option(help="resnet8 | resnet8_wide | dscnn | mobilenet_v1 (default per dataset)")]
MethodOpt = Annotated[Method, typer.Option(help="exit training: pteenet/sdn freeze the backbone; eenet/trecx "
                                                "fine-tune jointly")]
Head = Annotated[str | None, typer.Option(help="exit head family (default per method): pool_linear, dws, conv, and "
                                               "*_conf variants with a learned confidence")]
Splits = Annotated[str | None, typer.Option(help="comma-separated module paths for the early exits")]
FinalSplit = Annotated[str | None, typer.Option(help="module path after which the final classifier starts")]
Place = Annotated[str | None, typer.Option(help="comma-separated MAC fractions: choose split points there")]
Epochs = Annotated[int | None, typer.Option(help="training epochs (backbone and exits)")]
BackboneEpochs = Annotated[int | None, typer.Option(help="backbone epochs (overrides --epochs)")]
ExitEpochs = Annotated[int | None, typer.Option(help="exit training epochs (overrides --epochs)")]
Lr = Annotated[float, typer.Option(help="backbone learning rate (one-cycle peak)")]
Pretrained = Annotated[str | None, typer.Option(help="state_dict (.pt) of the backbone: skip its training")]
Model = Annotated[str | None, typer.Option(help="your own backbone instead of --arch: module.path:factory or "
                                                "file.py:factory (factory() returns the nn.Module); split points "
                                                "from `edge-ee-export inspect`")]
Weights = Annotated[str | None, typer.Option(help="with --model: its state_dict; skips backbone training")]
TrainLimit = Annotated[int | None, typer.Option(help="use at most N training samples (quick runs)")]
Seed = Annotated[int, typer.Option()]
TargetDrop = Annotated[float, typer.Option(parser=_fraction("--target-drop"),
                                           help="allowed accuracy drop vs the full model: 1% or 0.01")]
Confidence = Annotated[float, typer.Option(parser=_fraction("--confidence"),
                                           help="probability that the drop on new data stays within --target-drop "
                                                "(90% or 0.9)")]
Quantize = Annotated[bool, typer.Option("--quantize", help="int8 static quantisation (accuracy change recorded)")]
Cache = Annotated[str | None, typer.Option(show_default="$EDGE_EE_EXPORT_CACHE or ~/.cache/edge-ee-export",
                                           help="checkpoints and synthesised audio (resumable runs)")]
NoResume = Annotated[bool, typer.Option("--no-resume", help="ignore existing checkpoints")]
Name = Annotated[str | None, typer.Option(help="bundle name in the manifest")]
Threads = Annotated[int | None, typer.Option(help="torch threads (default: torch's choice)")]
NoProgress = Annotated[bool, typer.Option("--no-progress", help="no progress bars")]
Verbose = Annotated[bool, typer.Option("--verbose", "-v", help="debug logging")]
Mean = Annotated[str | None, typer.Option(help="per-channel mean on the [0, 1] scale (default: measured on the "
                                               "images; required with --weights: the one the model was trained with)")]
Std = Annotated[str | None, typer.Option(help="per-channel std (default: measured; required with --weights)")]


def _execute(verbose: bool, body: Callable[[], Path | None]) -> None:
    """Run a command body: logging, one message and the table's exit code for an error the user can act on
    (no traceback), the bundle path on stdout on success."""
    logging.basicConfig(level=logging.DEBUG if verbose else logging.INFO,
                        format="%(asctime)s %(levelname)s %(message)s", stream=sys.stderr)
    try:
        out = body()
    except EdgeEEError as e:
        print(f"edge-ee-export: error: {e.message}", file=sys.stderr)
        if e.hint:
            print(f"  hint: {e.hint}", file=sys.stderr)
        _Run.rc = int(e.exit_code)
    except KeyboardInterrupt:
        print("edge-ee-export: interrupted; no bundle was written (checkpoints are kept)", file=sys.stderr)
        _Run.rc = 130
    else:
        if out is not None:
            print(out)
        _Run.rc = int(ExitCode.OK)
    raise typer.Exit(_Run.rc)


def _recipe(dataset: str, options: dict[str, Any]) -> None:
    from .recipe import run_recipe

    verbose = options.pop("verbose")
    options["cache"] = options["cache"] or _default_cache()
    for k in ("method", "color"):
        if isinstance(options.get(k), Enum):
            options[k] = options[k].value
    args = RecipeArgs(dataset=dataset, **options)
    _execute(verbose, lambda: run_recipe(args, _Run.command))


@app.command("fashion-mnist", help="Fashion-MNIST (Debian dataset-fashion-mnist IDX files)")
def fashion_mnist(
    out: Out, arch: Arch = None, method: MethodOpt = Method.pteenet, head: Head = None, splits: Splits = None,
    final_split: FinalSplit = None, place: Place = None, epochs: Epochs = None, backbone_epochs: BackboneEpochs = None,
    exit_epochs: ExitEpochs = None, lr: Lr = 0.1, pretrained: Pretrained = None, model: Model = None,
    weights: Weights = None, train_limit: TrainLimit = None, seed: Seed = 0, target_drop: TargetDrop = 0.01,
    confidence: Confidence = 0.9, quantize: Quantize = False, cache: Cache = None, no_resume: NoResume = False,
    name: Name = None, threads: Threads = None, no_progress: NoProgress = False, verbose: Verbose = False,
    data: Annotated[str | None, typer.Option(help="directory with the IDX files (default "
                                                  "/usr/share/datasets/fashion-mnist)")] = None,
) -> None:
    _recipe("fashion-mnist", dict(locals()))


@app.command("kws", help="keyword spotting, synthesised with espeak-ng (MLPerf Tiny MFCC front end)")
def kws(
    out: Out, arch: Arch = None, method: MethodOpt = Method.pteenet, head: Head = None, splits: Splits = None,
    final_split: FinalSplit = None, place: Place = None, epochs: Epochs = None, backbone_epochs: BackboneEpochs = None,
    exit_epochs: ExitEpochs = None, lr: Lr = 0.1, pretrained: Pretrained = None, model: Model = None,
    weights: Weights = None, train_limit: TrainLimit = None, seed: Seed = 0, target_drop: TargetDrop = 0.01,
    confidence: Confidence = 0.9, quantize: Quantize = False, cache: Cache = None, no_resume: NoResume = False,
    name: Name = None, threads: Threads = None, no_progress: NoProgress = False, verbose: Verbose = False,
    words: Annotated[str | None, typer.Option(help="comma-separated subset of keywords (quick runs)")] = None,
    voices: Annotated[str | None, typer.Option(help="comma-separated espeak-ng training voices (default: 6 English "
                                                    "accents + de, fr, es, nl)")] = None,
    noise: Annotated[list[str] | None, typer.Option(metavar="WAV", help="a background recording (16 kHz 16-bit "
                                                    "WAV) mixed into training; repeatable")] = None,
    no_babble: Annotated[bool, typer.Option("--no-babble", help="no background speech in training")] = False,
    clips_per_keyword: Annotated[int | None, typer.Option(help="training utterances per keyword (default 400; "
                                                          "unknown words scale alike)")] = None,
    pooled_guarantee: Annotated[bool, typer.Option("--pooled-guarantee", help=(
        "hold the threshold guarantee on the mix of backgrounds only (cheaper) instead of in each of quiet, "
        "stationary noise and babble at once"))] = False,
) -> None:
    _recipe("kws", dict(locals()))


@app.command("image-folder", help="any image folder, one sub-folder per class")
def image_folder(
    out: Out,
    data: Annotated[str, typer.Option(help="root folder with one sub-folder per class")],
    arch: Arch = None, method: MethodOpt = Method.pteenet, head: Head = None, splits: Splits = None,
    final_split: FinalSplit = None, place: Place = None, epochs: Epochs = None, backbone_epochs: BackboneEpochs = None,
    exit_epochs: ExitEpochs = None, lr: Lr = 0.1, pretrained: Pretrained = None, model: Model = None,
    weights: Weights = None, train_limit: TrainLimit = None, seed: Seed = 0, target_drop: TargetDrop = 0.01,
    confidence: Confidence = 0.9, quantize: Quantize = False, cache: Cache = None, no_resume: NoResume = False,
    name: Name = None, threads: Threads = None, no_progress: NoProgress = False, verbose: Verbose = False,
    size: Annotated[tuple[int, int], typer.Option(metavar="H W", help="input size")] = (96, 96),
    color: Annotated[Color, typer.Option(help="channel order")] = Color.rgb,
    mean: Mean = None, std: Std = None,
) -> None:
    _recipe("image-folder", dict(locals()))


@app.command("onnx", help="early exits on an existing ONNX image classifier")
def onnx(
    model_file: Annotated[str, typer.Argument(metavar="MODEL.onnx", help="the ONNX image classifier")],
    data: Annotated[str, typer.Option(help="image folder, one sub-folder per class (sorted = output order)")],
    out: Out,
    mean: Annotated[str | None, typer.Option(help="per-channel mean the model was trained with, [0, 1] scale "
                                                  "(required)")] = None,
    std: Annotated[str | None, typer.Option(help="per-channel std the model was trained with (required)")] = None,
    color: Annotated[Color | None, typer.Option(help="channel order the model expects (default: gray for 1 "
                                                     "channel, rgb for 3)")] = None,
    exits: Annotated[str | None, typer.Option(help="comma-separated cut names, module prefixes or MACs fractions "
                                                   "(default 25%,50%); list them with `edge-ee-export inspect "
                                                   "MODEL.onnx`")] = None,
    final_split: Annotated[str | None, typer.Option(help="cut after which the model's classifier starts (default: "
                                                         "the last feature map)")] = None,
    head: Annotated[str, typer.Option(help="exit head family (pool_linear, dws, conv, *_conf)")] = "conv_conf",
    exit_epochs: Annotated[int, typer.Option()] = 10,
    calib: Annotated[int | None, typer.Option(help="calibration frames in total (default 10% of the data); more "
                                                   "frames let a tighter guarantee be certified")] = None,
    target_drop: TargetDrop = 0.01, confidence: Confidence = 0.9,
    train_limit: Annotated[int | None, typer.Option()] = None,
    seed: Seed = 0, name: Annotated[str | None, typer.Option()] = None,
    threads: Annotated[int | None, typer.Option()] = None,
    no_progress: Annotated[bool, typer.Option("--no-progress")] = False, verbose: Verbose = False,
) -> None:
    """Convert the ONNX classifier, check it scores above chance on the data through the runtime's preprocessing,
    train exits on the frozen model, calibrate, export, and check the bundle's full model against the original ONNX
    model before the bundle is put in place."""
    from .byom import OnnxArgs, run_onnx

    args = OnnxArgs(model_file=model_file, data=data, out=out, mean=mean, std=std,
                    color=color.value if color is not None else None, exits=exits, final_split=final_split, head=head,
                    exit_epochs=exit_epochs, calib=calib, target_drop=target_drop, confidence=confidence,
                    train_limit=train_limit, seed=seed, name=name, threads=threads, no_progress=no_progress)
    _execute(verbose, lambda: run_onnx(args, _Run.command))


@app.command("inspect", help="list a model's candidate exit points (name, output shape, MACs fraction)")
def inspect(
    model_file: Annotated[str | None, typer.Argument(metavar="MODEL.onnx", help="an ONNX classifier")] = None,
    model: Annotated[str | None, typer.Option("--model", help="module.path:factory or file.py:factory")] = None,
    weights: Annotated[str | None, typer.Option(help="state_dict for --model")] = None,
    input: Annotated[str | None, typer.Option("--input", help="with --model: input size C,H,W")] = None,  # noqa: A002
    verbose: Verbose = False,
) -> None:
    from .byom import InspectArgs
    from .byom import inspect as run_inspect

    args = InspectArgs(model_file=model_file, torch_model=model, weights=weights, input=input)
    _execute(verbose, lambda: run_inspect(args))


@app.command("recalibrate", help="re-select a Fashion-MNIST bundle's thresholds with a guarantee (no retraining)")
def recalibrate(
    bundle: Annotated[str, typer.Argument(help="bundle directory (rewritten in place)")],
    data: Annotated[str | None, typer.Option(help="Fashion-MNIST IDX directory (default "
                                                  "/usr/share/datasets/...)")] = None,
    target_drop: TargetDrop = 0.01, confidence: Confidence = 0.9, verbose: Verbose = False,
) -> None:
    """Re-select an existing bundle's thresholds with a guarantee, without retraining: the bundle's own ONNX
    chain runs on the held-out threshold split the exporter used, rebuilt from the seed in the manifest."""
    from .recipe import recalibrate as run_recalibrate

    _execute(verbose, lambda: run_recalibrate(bundle, data, target_drop, confidence))


def _version(value: bool) -> None:
    if value:
        print(f"edge-ee-export {__version__}")
        raise typer.Exit()


@app.callback()
def _main(
    version: Annotated[bool, typer.Option("--version", callback=_version, is_eager=True,
                                          help="Print the version and exit.")] = False,
) -> None:
    pass


def main(argv: list[str] | None = None) -> int:
    """The ``edge-ee-export`` entry point: the exit code of the command that ran. Bad options and ``--help``
    end in ``SystemExit`` before any command runs (code 2 and 0), as with any typer program."""
    args = list(sys.argv[1:] if argv is None else argv)
    _Run.command = "edge-ee-export " + " ".join(shlex.quote(x) for x in args)
    _Run.rc = None
    try:
        app(args=args, prog_name="edge-ee-export")
    except SystemExit:
        if _Run.rc is not None:
            return _Run.rc
        raise
    return int(ExitCode.OK)  # pragma: no cover - typer always ends with SystemExit


if __name__ == "__main__":
    sys.exit(main())
