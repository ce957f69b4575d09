"""Command-line interface: argparse subcommands that only assemble the library.

Every user mistake becomes one ``error: ...`` line on stderr and exit status 2; an interrupt
exits 130. Nothing here computes anything the library does not already offer.
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

EXIT_USER_ERROR = 2
EXIT_INTERRUPTED = 130


class _Parser(argparse.ArgumentParser):
    """An ArgumentParser whose errors are one line, not a usage block."""

    def error(self, message: str) -> NoReturn:
        sys.stderr.write(f"error: {self.prog}: {message} (see --help)\n")
        sys.exit(EXIT_USER_ERROR)


# --- argument types: each rejects a bad value with a message argparse prints on one line ---


def _number(kind: Callable[[str], Any], name: str, low: float | None, strict: bool,
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


positive_int = _number(int, "an integer", 0, strict=True)
nonnegative_int = _number(int, "an integer", 0, strict=False)
positive_float = _number(float, "a number", 0.0, strict=True)
nonnegative_float = _number(float, "a number", 0.0, strict=False)
unit_interval = _number(float, "a number", 0.0, strict=False, high=1.0)


def _print_json(obj: Any) -> None:
    print(json.dumps(obj, indent=2))


# --- subcommands ---


def _add_download(sub: argparse._SubParsersAction) -> None:
    p = sub.add_parser("download", help="download (or copy) a dataset, verify and cache it")
    p.add_argument("--dataset", default="mnist", help="dataset name (default: mnist)")
    p.add_argument("--data-dir", type=Path, help="where datasets live (see README)")
    p.add_argument("--force", action="store_true", help="fetch again even if files verify")
    p.add_argument("--mirror", action="append", default=[], metavar="URL",
                   help="a mirror to try first (repeatable)")
    p.add_argument("--from", dest="from_dir", type=Path, metavar="DIR",
                   help="copy the files from a local folder instead of the network")
    p.add_argument("--quiet", action="store_true", help="no progress bar")
    p.set_defaults(run=_run_download)


def _run_download(args: argparse.Namespace) -> int:
    from . import datasets

    results = datasets.download(args.dataset, args.data_dir, mirrors=args.mirror,
                                force=args.force, from_dir=args.from_dir, quiet=args.quiet)
    if not args.quiet:
        for r in results:
            how = {"present": "already present and verified",
                   "copied": f"copied from {r.source} and verified",
                   "downloaded": f"downloaded from {r.source} and verified"}[r.action]
            print(f"{r.filename}: {how}")
    print(f"{args.dataset}: {len(results)} files verified in "
          f"{datasets.dataset_dir(args.dataset, args.data_dir)}")
    return 0


def _add_info(sub: argparse._SubParsersAction) -> None:
    p = sub.add_parser("info", help="show where a dataset lives and whether it verifies")
    p.add_argument("--dataset", default="mnist", help="dataset name (default: mnist)")
    p.add_argument("--data-dir", type=Path, help="where datasets live (see README)")
    p.add_argument("--json", action="store_true", help="print one JSON object")
    p.set_defaults(run=_run_info)


def _run_info(args: argparse.Namespace) -> int:
    from . import datasets

    info = datasets.dataset_info(args.dataset, args.data_dir)
    if args.json:
        _print_json(info)
        return 0
    print(f"dataset   {info['dataset']}")
    print(f"data_dir  {info['data_dir']}  ({info['data_dir_source']})")
    print(f"folder    {info['path']}")
    print(f"{'split':<6} {'present':<8} {'verified':<9} {'samples':>7}  label counts 0..9")
    problems = []
    for split, s in info["splits"].items():
        counts = " ".join(map(str, s["label_counts"] or [])) or "-"
        samples = "-" if s["samples"] is None else s["samples"]
        print(f"{split:<6} {_yes(s['present']):<8} {_yes(s['verified']):<9} {samples:>7}  {counts}")
        problems += [f"{e['file']}: {'missing' if not e['present'] else e['error']}"
                     for e in s["files"].values() if not e["verified"]]
        problems += [f"{split}: {s['error']}"] if s["error"] else []
    for problem in problems:
        print(f"  {problem}")
    return 0


def _yes(flag: bool) -> str:
    return "yes" if flag else "no"


def build_parser() -> argparse.ArgumentParser:
    parser = _Parser(
        prog="python -m mnist_twolayer",
        description="Train and inspect a NumPy two-layer network on MNIST.",
    )
    parser.add_argument("-v", "--verbose", action="store_true", help="log diagnostics")
    sub = parser.add_subparsers(dest="command", metavar="COMMAND", required=True)
    for add in (_add_download, _add_info):
        add(sub)
    return parser


def main(argv: Sequence[str] | None = None) -> int:
    parser = build_parser()
    args = parser.parse_args(argv)
    logging.basicConfig(level=logging.INFO if args.verbose else logging.WARNING,
                        format="%(levelname)s %(name)s: %(message)s")
    try:
        return args.run(args)
    except MnistTwoLayerError as exc:
        sys.stderr.write(f"error: {exc}\n")
        return EXIT_USER_ERROR
    except KeyboardInterrupt:
        sys.stderr.write("error: interrupted\n")
        return EXIT_INTERRUPTED
    except OSError as exc:
        where = f": {exc.filename}" if exc.filename else ""
        sys.stderr.write(f"error: {exc.strerror or exc}{where}\n")
        return 1
