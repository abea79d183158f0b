"""adaopt's command line. ``main`` is the ``adaopt`` entry point.

The commands live in :mod:`adaopt.cli.app` (typer); importing this package does not
import typer, so a missing extra is reported in words rather than a traceback.
"""

import sys


def main(argv=None) -> None:
    try:
        from .app import app
    except ImportError as exc:
        print(f"adaopt's command line needs its extra: pip install 'adaopt[cli]' ({exc})", file=sys.stderr)
        raise SystemExit(1) from None
    app(args=argv, prog_name="adaopt")
