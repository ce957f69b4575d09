"""Command-line interface: the parser, its argument types, and how errors are reported.

The subcommands live beside it, one module per concern: cli_data (download, info), cli_train
(train), cli_inspect (evaluate, predict, plot), cli_tools (gradcheck, serve). Every user
mistake becomes one ``error: ...`` line on stderr and exit status 2; an interrupt exits 130.
Nothing here computes anything the library does not already offer.
"""

from __future__ import annotations

import argparse
import json
import logging
import sys
from collections.abc import Callable, Sequence
from pathlib import Path
from typing import Any, NoReturn

from .errors import MnistTwoLayerError

EXIT_DISAGREE = 3  # gradcheck: some pair of gradient paths is outside its tolerance
EXIT_INCONCLUSIVE = 4  # gradcheck: no pair disagrees, but some tolerance is too loose to tell
EXIT_USER_ERROR = 2
EXIT_INTERRUPTED = 130


class OneLineParser(argparse.ArgumentParser):
    """An ArgumentParser whose errors are one line, not a usage block (scripts use it too)."""

    def error(self, message: str) -> NoReturn:
        sys.stderr.write(f"error: {self.prog}: {message} (see --help)\n")
        sys.exit(EXIT_USER_ERROR)


# --- argument types: each rejects a bad value with a message argparse prints on one line ---


def number(kind: Callable[[str], Any], name: str, low: float | None, strict: bool,
            high: float | None = None) -> Callable[[str], Any]:
    def parse(text: str) -> Any:
        try:
            value = kind(text)
        except ValueError:
            raise argparse.ArgumentTypeError(f"{text!r} is not {name}") from None
        if kind is float and value != value or value in (float("inf"), float("-inf")):
            raise argparse.ArgumentTypeError(f"{text!r} is not a finite number")
        if low is not None and (value <= low if strict else value < low):
            relation = "greater than" if strict else "at least"
            raise argparse.ArgumentTypeError(f"{text!r} must be {relation} {low:g}")
        if high is not None and value > high:
            raise argparse.ArgumentTypeError(f"{text!r} must be at most {high:g}")
        return value

    return parse


positive_int = number(int, "an integer", 0, strict=True)
nonnegative_int = number(int, "an integer", 0, strict=False)
positive_float = number(float, "a number", 0.0, strict=True)
nonnegative_float = number(float, "a number", 0.0, strict=False)
unit_interval = number(float, "a number", 0.0, strict=False, high=1.0)
# beyond 0.1 a difference quotient says little about the derivative (and exp may overflow)
finite_difference_step = number(float, "a number", 0.0, strict=True, high=0.1)


def print_json(obj: Any) -> None:
    print(json.dumps(obj, indent=2))


MODULE_PROG = "python -m mnist_twolayer"


def build_parser(prog: str = MODULE_PROG) -> argparse.ArgumentParser:
    from . import __version__

    parser = OneLineParser(
        prog=prog,
        description="Train and inspect a NumPy two-layer network on MNIST.",
    )
    parser.add_argument("--version", action="version", version=f"mnist_twolayer {__version__}")
    parser.set_defaults(prog=prog)  # commands name the program as it was invoked
    parser.add_argument("-v", "--verbose", action="store_true", help="log diagnostics")
    sub = parser.add_subparsers(dest="command", metavar="COMMAND", required=True)
    from . import cli_data, cli_inspect, cli_tools, cli_train  # each imports what is above

    for module in (cli_data, cli_train, cli_inspect, cli_tools):
        module.add_commands(sub)
    return parser


def main(argv: Sequence[str] | None = None, prog: str | None = None) -> int:
    """The CLI. ``prog`` is how it was invoked, for messages: ``python -m mnist_twolayer`` (from
    __main__), else the script's own name (``mnist-twolayer``) when it reads sys.argv."""
    if prog is None:
        prog = Path(sys.argv[0]).name if argv is None and sys.argv[0] else MODULE_PROG
    parser = build_parser(prog)
    try:
        args = parser.parse_args(argv)
    except SystemExit as exc:  # --help, or a bad flag already reported on one line
        return exc.code if isinstance(exc.code, int) else EXIT_USER_ERROR
    logging.basicConfig(level=logging.INFO if args.verbose else logging.WARNING,
                        format="%(levelname)s %(name)s: %(message)s")
    return run_reporting_errors(lambda: with_threads(getattr(args, "threads", None),
                                                      lambda: args.run(args)))


def add_threads(p: argparse.ArgumentParser) -> None:
    p.add_argument("--threads", type=positive_int, metavar="N",
                   help="BLAS threads for the matrix products (default: the BLAS's own choice, "
                        "usually one per core)")


def with_threads(threads: int | None, command: Callable[[], int]) -> int:
    """Run ``command`` with the BLAS limited to ``threads`` threads (None: as it is)."""
    if threads is None:
        return command()
    from threadpoolctl import threadpool_limits

    with threadpool_limits(limits=threads, user_api="blas"):
        return command()


def run_reporting_errors(command: Callable[[], int]) -> int:
    """Run ``command`` and return its exit status; a user's mistake, an interrupt, sizes too
    large for memory or a write the OS refuses become one ``error:`` line and a status."""
    try:
        return command()
    except MnistTwoLayerError as exc:
        sys.stderr.write(f"error: {exc}\n")
        return EXIT_USER_ERROR
    except KeyboardInterrupt:
        sys.stderr.write("error: interrupted\n")
        return EXIT_INTERRUPTED
    except MemoryError as exc:  # sizes this machine cannot hold, e.g. --hidden 10**12
        sys.stderr.write(f"error: out of memory ({exc or 'MemoryError'}); use smaller sizes "
                         f"(--hidden, --batch-size, --train-size, --batch)\n")
        return EXIT_USER_ERROR
    except OSError as exc:
        where = f": {exc.filename}" if exc.filename else ""
        sys.stderr.write(f"error: {exc.strerror or exc}{where}\n")
        return 1
