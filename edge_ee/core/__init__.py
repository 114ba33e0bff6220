"""The inference core: bundle and manifest, ONNX sessions, the early-exit engine, exit rules, the deadline guard
and budgets. Imports nothing from the other layers of ``edge_ee``."""
