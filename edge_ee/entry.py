"""The ``edge-ee`` entry point: a SIGTERM handler first, then the (slow to import) command line.

A service manager may stop the process at any moment, also while Python imports onnxruntime and numpy
in the first second: it then stops cleanly (cleanup runs, exit 0 as for a stop during the run, one line
on stderr) instead of dying with status 143 and no message. ``run`` replaces the handler with its own,
which ends the loop between frames and prints the summary.
"""

from __future__ import annotations

import contextlib
import os
import signal
import sys
from typing import Any


class StoppedEarly(BaseException):
    """SIGTERM before ``run`` installed its own handler (a BaseException: no ``except Exception`` eats it)."""


def _stop_early(signum: int, _frame: Any) -> None:
    raise StoppedEarly(signal.Signals(signum).name)


def main() -> None:
    try:
        signal.signal(signal.SIGTERM, _stop_early)
    except ValueError:  # not the main thread (embedded use): leave signals alone
        pass
    try:
        # numpy before the command line (which imports onnxruntime): a SIGTERM that lands inside
        # onnxruntime's own import of numpy comes out as ImportError("import numpy failed"), not as StoppedEarly
        import numpy  # noqa: F401

        from .commands import main as cli_main

        cli_main()
    except StoppedEarly as e:
        sys.stderr.write(f"edge-ee: stopped by {e} during start-up, before the first frame: nothing to "
                         "summarise\n")
        # The context managers have run while the exception unwound. The signal may have landed inside the
        # import of a C extension (numpy, onnxruntime), whose half-initialised state can deadlock the
        # interpreter's own shutdown: leave without it.
        with contextlib.suppress(Exception):
            sys.stdout.flush()
            sys.stderr.flush()
        os._exit(0)
