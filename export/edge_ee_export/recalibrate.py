"""Re-select an existing bundle's thresholds with a guarantee, without retraining.

The bundle's own ONNX chain runs on a labelled calibration split (for the built-in datasets: the same held-out
threshold split the exporter used, rebuilt from the seed recorded in the manifest, so it was never trained on),
and the runtime's calibration core selects thresholds for ``--target-drop`` at ``--confidence``. Temperatures,
exit rule and ONNX files stay as they are; the heads' thresholds and the manifest's ``calibration`` are rewritten
(checksums recomputed). Used for a new target or confidence, and for bundles calibrated before guarantees existed.
"""

from __future__ import annotations

import os
from pathlib import Path
from typing import Any

from edge_ee.core.bundle import load_bundle
from edge_ee.core.exit_rules import DEFAULT_RULE
from edge_ee.core.manifest import write_manifest

from .calibrate import per_condition, select_thresholds
from .data import TensorSplit
from .errors import UsageError
from .onnx_export import apply_thresholds, chain_outputs


def recalibrate_bundle(bundle_dir: str | os.PathLike[str], split: TensorSplit, target_drop: float = 0.01,
                       confidence: float = 0.9, seed: int = 0) -> dict[str, Any]:
    """Rewrite ``bundle_dir``'s thresholds and calibration from ``split``; return the new calibration dict. The
    guarantee keeps the bundle's scope: held in each of ``split.conditions`` when the bundle's was per condition."""
    path = Path(bundle_dir)
    m = load_bundle(path).manifest
    heads = [s.head for s in m.stages]
    if len(m.stages) < 2:
        raise UsageError(f"{path} has no early exit to calibrate")
    rule = heads[0].rule if heads[0] is not None else DEFAULT_RULE
    segment_macs = [s.segment.macs for s in m.stages]
    head_macs = [h.macs if h is not None else 0 for h in heads]
    temps = [h.temperature if h is not None else 1.0 for h in heads]
    cal = select_thresholds(chain_outputs(path, m, split), temps, segment_macs, head_macs, target_drop, confidence,
                            rules=[rule], seed=seed,
                            conditions=split.conditions if per_condition(m.calibration.to_dict()) else None)
    old = m.calibration.to_dict()
    new = {**old, **cal, "temperatures": temps,
           "method": f"thresholds re-selected on {split.name} ({len(split)} frames) with the bundle's ONNX chain "
                     "(learn-then-test)"}
    new["split"] = {**(old.get("split") or {}), "thresholds": {"name": split.name, "size": len(split)}}
    apply_thresholds(m, new)
    write_manifest(m, path)
    load_bundle(path)  # the runtime must accept it
    return new
