#!/usr/bin/env bash
# Build the two default bundles shipped with edge-ee, reproducibly (fixed seeds and recipes):
#   edge_ee/bundles/fashion_mnist  ResNet-8, Fashion-MNIST, exits after stem and stack1 (PTEENet heads)
#   edge_ee/bundles/kws            DS-CNN, espeak-ng keyword spotting (1000 utterances per keyword; training clips
#                                  mixed afresh every epoch with babble, reverberation and noise at 5-25 dB, vocal
#                                  tract length perturbation), exits after block1 and block2, thresholds whose
#                                  1 pp guarantee holds in quiet, stationary noise and babble at once
# Needs torch (install it pinned, e.g. pip install torch==2.13.0 from the CPU index), the Debian
# packages dataset-fashion-mnist and espeak-ng. Checkpoints and synthesised audio are cached in
# $EDGE_EE_EXPORT_CACHE (default .cache/edge_ee_export), so an interrupted run resumes.
# BUILD=bench builds only benchmarks/bundles/fashion_mnist_wide instead (4x-wide ResNet-8, three exits,
# ~1 ms on a desktop core: the budget-control benchmark's bundle).
# KWS_SEEDS="1 2" also trains KWS bundles with those seeds into $CACHE/kws-seeds/ (not shipped; the
# benchmark reports them per seed).
set -euo pipefail
cd "$(dirname "$0")/.."
PY="${PYTHON:-.venv/bin/python}"
[ -x "$PY" ] || PY=python3
CACHE="${EDGE_EE_EXPORT_CACHE:-.cache/edge_ee_export}"
# 1 thread: robust on shared cores (OpenMP stalls when oversubscribed); the bench bundle was built with 2
[ "${BUILD:-}" = bench ] && DEFAULT_THREADS=2 || DEFAULT_THREADS=1
THREADS="${THREADS:-$DEFAULT_THREADS}"
export PYTHONPATH="$PWD/export:$PWD${PYTHONPATH:+:$PYTHONPATH}"
if ! "$PY" -c "import torch" 2>/dev/null; then
  echo "make bundles: torch is not importable by $PY; install it pinned: pip install torch==2.13.0" >&2
  exit 3
fi
# progress bars on a terminal; a log file or CI gets the per-epoch log lines only
PROGRESS=(); [ -t 2 ] || PROGRESS=(--no-progress)
run() { "$PY" -m edge_ee_export.cli "$@" --cache "$CACHE" --threads "$THREADS" "${PROGRESS[@]}"; }
FM=(fashion-mnist --arch resnet8 --method pteenet --epochs 24 --exit-epochs 8)
KWS=(kws --arch dscnn --method pteenet --epochs 24 --exit-epochs 10 --clips-per-keyword 1000)
if [ "${BUILD:-}" = bench ]; then
  run fashion-mnist --arch resnet8_wide --method pteenet --epochs 10 --exit-epochs 5 --seed 0 \
    --out benchmarks/bundles/fashion_mnist_wide
  du -sh benchmarks/bundles/fashion_mnist_wide
  exit 0
fi
run "${FM[@]}" --seed 0 --out edge_ee/bundles/fashion_mnist
run "${KWS[@]}" --seed 0 --out edge_ee/bundles/kws
for s in ${KWS_SEEDS:-}; do
  run "${KWS[@]}" --seed "$s" --out "$CACHE/kws-seeds/s$s"
done
du -sh edge_ee/bundles/fashion_mnist edge_ee/bundles/kws
