"""``edge-ee validate``: fully check a bundle."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Annotated

import numpy as np
import typer

from ..core.bundle import Bundle, load_bundle
from ..core.engine import Engine
from .app import JsonOpt, handle_errors


@handle_errors
def validate(
    bundle_dir: Annotated[Path, typer.Argument(help="Bundle directory to check.")],
    as_json: JsonOpt = False,
    data: Annotated[Path | None, typer.Option(help="Labelled images (one sub-folder per class): fail when the full "
                                              "model's accuracy through the bundle's preprocessing is far below the "
                                              "recorded one.")] = None,
    per_class: Annotated[int, typer.Option("--per-class", min=1, help="With --data: images per class.")] = 20,
) -> None:
    """Fully check a bundle: manifest, paths, checksums, ONNX I/O chaining, and a test inference."""
    checks: list[str] = []
    b = load_bundle(bundle_dir)
    checks.append(f"manifest schema v{b.manifest.schema_version} parsed")
    checks.append(f"{len(b.manifest.files())} files present inside the bundle, sha256 verified")
    checks.append(f"input dtype {b.manifest.input.dtype} is what the first segment takes; "
                  f"{len(b.manifest.external_data)} external-data files, all listed and inside the bundle")
    eng = Engine(b)
    checks.append(f"{len(b.manifest.stages)} stages load in onnxruntime; inputs/outputs chain")
    from ..errors import BundleError

    x_pre = _check_preprocessing(b, eng)
    checks.append(f"preprocessing ({b.manifest.input.preprocess.get('kind', 'none')}) turns a source frame into "
                  f"the model's input {list(x_pre.shape)} {x_pre.dtype}, finite values")
    rng = np.random.default_rng(0)
    x = rng.random(eng.input_shape, dtype=np.float32).astype(eng.input_dtype)
    for inp in (x, x_pre):
        for k in range(eng.num_stages):
            r = eng.infer(inp, mode="exit_at", exit_at=k)
            if not np.all(np.isfinite(r.probs)):
                raise BundleError(f"exit {k} produced non-finite outputs on a test input")
    r = eng.infer(x)
    checks.append(f"test inference through every exit ok (adaptive run answered at exit {r.exit_index})")
    if data is not None:
        from ..pipeline.validate_data import check_data, describe

        checks.append(describe(check_data(b, data, per_class)))
    if as_json:
        typer.echo(json.dumps({"bundle": str(bundle_dir), "ok": True, "checks": checks}, indent=2))
    else:
        for c in checks:
            typer.echo(f"ok  {c}")
        typer.echo(f"{bundle_dir}: valid")


def _check_preprocessing(b: Bundle, eng: Engine) -> np.ndarray:
    """The manifest's preprocessing applied to a synthetic source frame: the model's input, or BundleError."""
    from ..errors import BundleError, InferenceError
    from ..pipeline.preprocess import make_preprocessor
    from ..sources.synthetic import SyntheticSource

    frame = SyntheticSource(b.manifest.input, seed=0).read()
    try:
        x = make_preprocessor(b.manifest.input)(frame.data)  # type: ignore[union-attr]
    except (InferenceError, ValueError) as e:
        raise BundleError(f"input.preprocess does not produce the model's input: {e}",
                          "fix the preprocessing spec in the manifest (re-export the bundle)") from None
    if tuple(x.shape) != tuple(eng.input_shape) or x.dtype != eng.input_dtype:
        raise BundleError(f"input.preprocess gives {list(x.shape)} {x.dtype}; the model takes "
                          f"{list(eng.input_shape)} {eng.input_dtype}")
    if not np.all(np.isfinite(x.astype(np.float64))):
        raise BundleError("input.preprocess gives non-finite values (inf/NaN) for a test frame",
                          "check scale, mean and std in the manifest")
    return x
