"""``nocode-ml``: everything the app does, scriptable.

Each sub-command lives in its own module of this package and exposes
``register(subparsers)``, which adds its parser and sets ``handler`` to a function taking the
parsed arguments and returning an exit code. Modules are imported only when listed in
:data:`COMMAND_MODULES`, and heavy libraries (torch, boto3, streamlit) are imported inside the
handlers so ``nocode-ml --help`` stays fast.
"""

from __future__ import annotations

import argparse
import contextlib
import importlib
import logging
import os
import select
import sys
from collections.abc import Sequence

from pipelines.errors import NoCodeMLError

# One entry per module in this package; order is the order shown in --help.
COMMAND_MODULES: tuple[str, ...] = (
    "synth",
    "stats",
    "evaluate",
    "train",
    "predict",
    "jobs",
    "serve",
)

log = logging.getLogger("nocode_ml")


def build_parser() -> argparse.ArgumentParser:
    """Parser with every sub-command whose module is present."""
    parser = argparse.ArgumentParser(
        prog="nocode-ml",
        description="Find, count and measure objects in microscopy images.",
    )
    parser.add_argument("-v", "--verbose", action="store_true", help="show debug logs")
    subparsers = parser.add_subparsers(dest="command", metavar="COMMAND")
    for name in COMMAND_MODULES:
        try:
            module = importlib.import_module(f"{__name__}.{name}")
        except ModuleNotFoundError as error:
            if error.name == f"{__name__}.{name}":
                continue  # sub-command not built yet
            raise
        module.register(subparsers)
    return parser


def main(argv: Sequence[str] | None = None) -> int:
    """Run the CLI; a user error prints one line and exits with status 2."""
    parser = build_parser()
    args = parser.parse_args(argv)
    logging.basicConfig(
        level=logging.DEBUG if args.verbose else logging.WARNING,
        format="%(levelname)s %(name)s: %(message)s",
    )
    handler = getattr(args, "handler", None)
    if handler is None:
        parser.print_help()
        return 0
    try:
        return int(handler(args) or 0)
    except NoCodeMLError as error:
        print(f"error: {error}", file=sys.stderr)
        return 2
    except KeyboardInterrupt:
        print("interrupted", file=sys.stderr)
        return 130
    except BrokenPipeError as error:
        if _stdout_closed():
            # Output piped into `head` and the like: stop quietly, as other tools do.
            return 1
        return _system_error(error)
    except OSError as error:
        return _system_error(error)


def _stdout_closed() -> bool:
    """Whether our standard output is a pipe whose reader has gone (and not some other pipe
    broke); if so, point it at devnull so the interpreter's final flush does not fail again."""
    try:
        descriptor = sys.stdout.fileno()
    except (OSError, ValueError):  # stdout replaced by an object without a file descriptor
        return False
    try:
        poller = select.poll()
        poller.register(descriptor, select.POLLOUT)
        closed = any(events & select.POLLERR for _, events in poller.poll(0))
    except (AttributeError, OSError):  # no poll() (Windows): assume it was stdout
        closed = True
    if closed:
        with contextlib.suppress(OSError):
            os.dup2(os.open(os.devnull, os.O_WRONLY), descriptor)
    return closed


def _system_error(error: OSError) -> int:
    """The operating system refused (disk full, permissions, a file where a folder should be,
    a lost connection): one line naming the paths; the traceback with ``--verbose``."""
    log.debug("system error", exc_info=error)
    paths = [str(p) for p in (error.filename, error.filename2) if p]
    where = f" ({' -> '.join(paths)})" if paths else ""
    print(f"error: {error.strerror or error}{where}", file=sys.stderr)
    return 1


if __name__ == "__main__":  # pragma: no cover
    sys.exit(main())
