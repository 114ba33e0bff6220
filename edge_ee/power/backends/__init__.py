"""Power back ends, one module each; importing this package imports (and so registers) all of them.

Add a back end by adding a module here whose :class:`~edge_ee.power.base.PowerSource` subclass is
decorated with :func:`~edge_ee.power.registry.register_backend` (docs/architecture.md has an example).
"""

from __future__ import annotations

import importlib
import pkgutil

for _m in sorted(pkgutil.iter_modules(__path__), key=lambda m: m.name):
    importlib.import_module(f"{__name__}.{_m.name}")
