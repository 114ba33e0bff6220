"""``edge-ee validate BUNDLE --data DIR``: run a few labelled images through the runtime's own reader and
preprocessing and compare the full model's accuracy with the one the manifest records.

A bundle with the wrong preprocessing (normalisation, colour order, size rule) still loads and answers; only labelled
data shows it is wrong. ``DIR`` holds one sub-folder per class, named like the bundle's labels (case and punctuation
ignored), as ``run --source images:DIR`` expects.
"""

from __future__ import annotations

import math
from pathlib import Path
from typing import Any

import numpy as np

from ..core.bundle import Bundle
from ..errors import BundleError, UsageError

# Accuracy may fall this far below the recorded one (new data differs from the calibration split) before the check
# fails; with few images the allowance grows to 3 standard errors.
MIN_ALLOWANCE = 0.10


def check_data(bundle: Bundle, data_dir: Path, per_class: int = 20) -> dict[str, Any]:
    """Full-model and adaptive accuracy on up to ``per_class`` images of each label; raises :class:`BundleError`
    when the full model's accuracy is far below ``calibration.full_accuracy``."""
    from ..core.engine import Engine
    from ..sources.images import ImageSource
    from .preprocess import make_preprocessor

    m = bundle.manifest
    if m.input.preprocess.get("kind") != "image":
        raise UsageError(f"--data checks image bundles; this bundle's input is {m.input.preprocess.get('kind')!r}")
    if not Path(data_dir).is_dir():
        raise UsageError(f"--data {data_dir}: not a directory", "give a folder with one sub-folder per class")
    src = ImageSource(str(data_dir), labels=m.labels)
    pre = make_preprocessor(m.input)
    eng = Engine(bundle)
    seen: dict[str, int] = {}
    n = full_ok = ada_ok = 0
    macs = 0.0
    while (frame := src.read()) is not None:
        truth = frame.meta.get("truth")
        if truth is None or seen.get(str(truth), 0) >= per_class:
            continue
        seen[str(truth)] = seen.get(str(truth), 0) + 1
        x = pre(frame.data)
        full = eng.infer(x, mode="full")
        ada = eng.infer(x)
        n += 1
        full_ok += full.label == truth
        ada_ok += ada.label == truth
        macs += ada.macs
    if n == 0:
        raise UsageError(f"--data {data_dir}: no images in sub-folders named after the bundle's labels",
                         f"labels: {', '.join(m.labels[:12])}{', ...' if len(m.labels) > 12 else ''}")
    full_acc, ada_acc = full_ok / n, ada_ok / n
    cal = m.calibration
    recorded = cal.full_accuracy if cal is not None else None
    res: dict[str, Any] = {"images": n, "classes": len(seen), "full_accuracy": full_acc,
                           "adaptive_accuracy": ada_acc, "macs_ratio": macs / n / max(m.full_model_macs(), 1),
                           "recorded_full_accuracy": recorded}
    if recorded is not None and np.isfinite(recorded):
        allow = max(MIN_ALLOWANCE, 3 * math.sqrt(max(recorded * (1 - recorded), 1e-4) / n))
        res["allowance"] = allow
        if full_acc < recorded - allow:
            raise BundleError(
                f"the full model scores {100 * full_acc:.1f}% on {n} images of {data_dir} through the bundle's "
                f"preprocessing, far below the {100 * recorded:.1f}% its manifest records",
                "the bundle's input.preprocess (size/crop, colour, mean/std) does not match how the model was "
                "trained, or the folders are not its classes; re-export with the right preprocessing")
    return res


def describe(d: dict[str, Any]) -> str:
    rec = d["recorded_full_accuracy"]
    return (f"{d['images']} labelled images of {d['classes']} classes: full model {100 * d['full_accuracy']:.1f}%"
            + (f" (manifest records {100 * rec:.1f}%)" if rec is not None else "")
            + f", early exit {100 * d['adaptive_accuracy']:.1f}% at {100 * d['macs_ratio']:.1f}% of the MACs")
