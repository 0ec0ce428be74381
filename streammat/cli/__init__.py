"""The ``streammat`` command: one sub-command module per verb.

Each module in ``_COMMANDS`` provides ``add_parser(subparsers)`` (which sets
``func=run`` on its parser) and ``run(args) -> int``. Library errors become one line
on stderr and a non-zero exit code, never a traceback.
"""

from __future__ import annotations

import argparse
import importlib
import logging
import os
import sys
from typing import NoReturn

from .._allocator import tune_allocator
from ..errors import ConfigError, Interrupted, StreammatError
from ._run import install_signal_handlers

# sub-command modules, in the order `streammat --help` lists them
_COMMANDS = ("process", "live", "serve", "models", "sample", "subscribe", "keys", "jobs")

EXIT_ERROR = 1
EXIT_USAGE = 2
EXIT_INTERRUPTED = 130


class _Parser(argparse.ArgumentParser):
    """Usage mistakes are one line (``streammat process: error: …``) and exit code 2."""

    def error(self, message: str) -> NoReturn:
        self.exit(EXIT_USAGE, f"{self.prog}: error: {message} (see {self.prog} --help)\n")


def build_parser() -> argparse.ArgumentParser:
    parser = _Parser(prog="streammat", description="Stream-processing video matting.")
    parser.add_argument("-v", "--verbose", action="count", default=0, help="more logging (-vv for debug)")
    parser.add_argument("-q", "--quiet", action="store_true", help="only errors")
    sub = parser.add_subparsers(dest="command", metavar="COMMAND", parser_class=_Parser)
    for name in _COMMANDS:
        importlib.import_module(f"{__name__}.{name}").add_parser(sub)
    for command in sub.choices.values():  # -v/-q also after the sub-command, as users type them
        command.add_argument("-v", "--verbose", action="count", default=argparse.SUPPRESS, help="more logging")
        command.add_argument("-q", "--quiet", action="store_true", default=argparse.SUPPRESS, help="only errors")
    return parser


class _Formatter(logging.Formatter):
    """``streammat: warning: message`` — the shape of the CLI's own error lines."""

    def format(self, record: logging.LogRecord) -> str:
        text = f"streammat: {record.levelname.lower()}: {record.getMessage()}"
        if record.exc_info:
            text += "\n" + self.formatException(record.exc_info)
        return text


def _setup_logging(verbose: int, quiet: bool) -> None:
    level = logging.ERROR if quiet else (logging.WARNING, logging.INFO, logging.DEBUG)[min(verbose, 2)]
    handler = logging.StreamHandler(sys.stderr)
    handler.setFormatter(_Formatter())
    logging.basicConfig(level=level, handlers=[handler], force=True)
    logging.captureWarnings(True)


def main(argv: list[str] | None = None) -> int:
    install_signal_handlers()  # first: a Ctrl-C at any moment is one line and exit 130
    try:
        parser = build_parser()
        args = parser.parse_args(argv)
        if not getattr(args, "func", None):
            parser.print_help()
            return EXIT_USAGE
        _setup_logging(args.verbose, args.quiet)
        tune_allocator()
        return int(args.func(args) or 0)
    except Interrupted as exc:
        print(f"streammat: {exc}", file=sys.stderr)
        return EXIT_INTERRUPTED
    except KeyboardInterrupt:
        print("streammat: interrupted", file=sys.stderr)
        return EXIT_INTERRUPTED
    except ConfigError as exc:
        print(f"streammat: error: {exc}", file=sys.stderr)
        return EXIT_USAGE
    except StreammatError as exc:
        print(f"streammat: error: {exc}", file=sys.stderr)
        return EXIT_ERROR
    except BrokenPipeError:
        return EXIT_ERROR
    except Exception as exc:
        if _caused_by_interrupt(exc):  # e.g. a library's import turned Ctrl-C into ImportError
            print("streammat: interrupted", file=sys.stderr)
            return EXIT_INTERRUPTED
        # a bug: still one line, with a hint to get the traceback
        logging.getLogger(__name__).debug("internal error", exc_info=True)
        print(f"streammat: internal error: {type(exc).__name__}: {exc} (run with -vv for details)", file=sys.stderr)
        return EXIT_ERROR


def _caused_by_interrupt(exc: BaseException) -> bool:
    seen: set[int] = set()
    cur: BaseException | None = exc
    while cur is not None and id(cur) not in seen:
        if isinstance(cur, KeyboardInterrupt):
            return True
        seen.add(id(cur))
        cur = cur.__cause__ or cur.__context__
    return False


def entry() -> None:
    """Console entry point: ``main()``, then exit at once.

    Every output is finalized before ``main`` returns. Interpreter teardown of torch,
    onnxruntime and numba takes 1.5-3 s here, which would make Ctrl-C feel slow, so the
    process exits without it once the streams are flushed."""
    code = main()
    sys.stdout.flush()
    sys.stderr.flush()
    os._exit(code)


if __name__ == "__main__":  # pragma: no cover
    entry()
