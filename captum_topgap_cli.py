"""The ``captum-topgap`` console script's first module: it answers Ctrl-C while the libraries import.

Importing torch, Captum, pytorch-grad-cam, Foolbox and ART takes seconds. A SIGINT then would end in a
``KeyboardInterrupt`` traceback, or be swallowed by a bare ``except`` inside an import and lost. Until the
command line is parsed, SIGINT therefore exits at once with status 130 (nothing has been written yet);
:func:`captum_topgap.app.cli.main` then restores Python's handler, so the command itself stops cleanly.

Example:
    >>> import signal
    >>> signal.getsignal(signal.SIGINT) is signal.default_int_handler
    True
"""

from __future__ import annotations

import os
import signal
import sys
from types import FrameType


def _interrupted_at_start_up(_signum: int, _frame: FrameType | None) -> None:
    sys.stderr.write("captum-topgap: interrupted while starting\n")
    os._exit(130)


def main() -> int:
    """Install the start-up handler, import the command line and run it (exit status as ``cli.main``)."""
    signal.signal(signal.SIGINT, _interrupted_at_start_up)
    from captum_topgap.app.cli import main as run

    return run()


if __name__ == "__main__":
    raise SystemExit(main())
