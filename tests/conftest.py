from __future__ import annotations

import sys
from pathlib import Path

import pytest

sys.path.insert(0, str(Path(__file__).parent))

from factory import build_bundle  # noqa: E402


@pytest.fixture
def bundle(tmp_path: Path) -> Path:
    return build_bundle(tmp_path / "b", preprocess={"kind": "image", "color": "gray", "size": [28, 28],
                                                    "scale": 1 / 255.0, "mean": [0.0], "std": [1.0]})


@pytest.fixture
def conf_bundle(tmp_path: Path) -> Path:
    return build_bundle(tmp_path / "c", head_kind="confidence", thresholds=[0.5, 0.5])
