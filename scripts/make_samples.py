"""Write the small labelled sample set shipped with the runtime (used by `--source sample` and `make demo`).

Images: the first N Fashion-MNIST *test* images of each class (never used in training), as PNGs in
one folder per class, from Debian's dataset-fashion-mnist.
"""

from __future__ import annotations

import argparse
import re
import shutil
from pathlib import Path

import cv2
import numpy as np

from edge_ee.pipeline.datasets import FASHION_MNIST_DIR, load_fashion_mnist
from edge_ee.pipeline.datasets import FASHION_MNIST_LABELS as LABELS


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__)
    ap.add_argument("--data", default=str(FASHION_MNIST_DIR))
    ap.add_argument("--per-class", type=int, default=20)
    ap.add_argument("--out", default=str(Path(__file__).resolve().parents[1] / "edge_ee/samples/image_classification"))
    a = ap.parse_args()
    x, y = load_fashion_mnist(a.data, "test")
    out = Path(a.out)
    shutil.rmtree(out, ignore_errors=True)
    for c, name in enumerate(LABELS):
        d = out / re.sub(r"[^A-Za-z0-9]+", "_", name)
        d.mkdir(parents=True)
        for i in np.flatnonzero(y == c)[: a.per_class]:
            cv2.imwrite(str(d / f"t10k_{i:05d}.png"), x[i])
    print(f"wrote {a.per_class * len(LABELS)} images to {out}")


if __name__ == "__main__":
    main()
