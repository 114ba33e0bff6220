# edge-ee: `make demo` runs the runtime on its embedded bundle, `make test` runs the test suite.
# Both work from a clean clone on a fresh machine: they create .venv and install what they need.
PYTHON ?= python3
VENV   ?= .venv
BIN    := $(VENV)/bin
PIP    := $(BIN)/python -m pip --disable-pip-version-check -q
# torch is pinned: an unpinned torch pulls a multi-GB CUDA build.
TORCH  ?= torch==2.13.0

.PHONY: demo test lint bundles bench-bundle merged-bundles recalibrate-bundles samples system-deps clean

$(BIN)/python:
	$(PYTHON) -m venv $(VENV)

$(VENV)/.runtime-installed: pyproject.toml | $(BIN)/python
	$(PIP) install -e '.[opencv]'
	touch $@

# constraints.txt pins torch for every later install; onnx2torch (edge-ee-export onnx) goes in without its torchvision
# dependency: PyPI's torchvision does not load beside the CPU torch, and a classifier never needs it
# (edge_ee_export/onnx_import.py explains).
$(VENV)/.dev-installed: pyproject.toml constraints.txt $(wildcard export/pyproject.toml) | $(BIN)/python
	$(PIP) install '$(TORCH)'
	$(PIP) install -e '.[dev]'
	if [ -f export/pyproject.toml ]; then $(PIP) install -c constraints.txt -e ./export; fi
	$(PIP) install -c constraints.txt --no-deps 'onnx2torch==1.5.15'
	touch $(VENV)/.runtime-installed $@

system-deps:
	bash scripts/install-system-deps.sh

demo: $(VENV)/.runtime-installed
	$(BIN)/edge-ee info
	@echo; echo "== early exit: shipped Fashion-MNIST test images =="
	$(BIN)/edge-ee run --source sample --log runs/demo.jsonl
	@echo; echo "== the same images through the full model (no early exit) =="
	$(BIN)/edge-ee run --source sample --mode full --quiet
	@echo; echo "telemetry: runs/demo.jsonl"

# Rebuild the default bundles shipped in edge_ee/bundles (trains on real data; long on a CPU).
bundles: system-deps $(VENV)/.dev-installed
	PYTHON=$(BIN)/python bash export/make_bundles.sh

# The millisecond-scale benchmark bundle (4x-wide ResNet-8, three exits) used by
# benchmarks/budget_control.py; committed under benchmarks/bundles, so only needed to rebuild it.
bench-bundle: system-deps $(VENV)/.dev-installed
	PYTHON=$(BIN)/python BUILD=bench bash export/make_bundles.sh

# Add the merged graphs (schema v2: each segment with its head as one graph, the whole model as one graph) to the
# committed bundles, from their own ONNX files (no retraining); `make bundles` / `bench-bundle` write them already.
# Re-select the committed Fashion-MNIST bundles' thresholds with a guarantee (accuracy drop <= 1% at 90%
# confidence) on the threshold split the exporter held out for them; no retraining, ONNX files unchanged.
recalibrate-bundles: system-deps $(VENV)/.dev-installed
	for b in edge_ee/bundles/fashion_mnist benchmarks/bundles/fashion_mnist_wide; do \
	  PYTHONPATH=$(CURDIR)/export $(BIN)/python -m edge_ee_export.cli recalibrate $$b --target-drop 1% --confidence 90% || exit 1; \
	done

merged-bundles: $(VENV)/.dev-installed
	PYTHONPATH=$(CURDIR)/export $(BIN)/python -m edge_ee_export.merge edge_ee/bundles/fashion_mnist edge_ee/bundles/kws \
	  benchmarks/bundles/fashion_mnist_wide

test: system-deps $(VENV)/.dev-installed
	$(BIN)/ruff check .
	$(BIN)/python -m pytest -q

lint: $(VENV)/.dev-installed
	$(BIN)/ruff check .

.PHONY: wheel arm64-smoke
# The installable wheel (pure Python, bundles and samples inside): dist/edge_ee-VERSION-py3-none-any.whl
wheel: | $(BIN)/python
	$(PIP) wheel --no-deps -w dist .
	@ls dist/edge_ee-*.whl

# The runtime on emulated arm64 (qemu user mode, Debian 12 arm64 Python 3.11, aarch64 wheels from PyPI)
# plus a Python 3.10 (JetPack 6) dependency resolution; downloads are cached in .cache/arm64-smoke.
arm64-smoke: | $(BIN)/python
	PYTHON=$(abspath $(BIN)/python) bash scripts/arm64-smoke.sh

samples: system-deps $(VENV)/.dev-installed
	$(BIN)/python scripts/make_samples.py

clean:
	rm -rf $(VENV) runs .pytest_cache .ruff_cache
