"""``download`` and ``info``: getting a dataset, and where it lives."""

from __future__ import annotations

import argparse
from pathlib import Path

from .cli import print_json


def add_commands(sub: argparse._SubParsersAction) -> None:
    _add_download(sub)
    _add_info(sub)


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
    from .datasets import dataset_dir
    from .download import download

    results = download(args.dataset, args.data_dir, mirrors=args.mirror, force=args.force,
                       from_dir=args.from_dir, quiet=args.quiet)
    if not args.quiet:
        for r in results:
            how = {"present": "already present and verified",
                   "copied": f"copied from {r.source} and verified",
                   "downloaded": f"downloaded from {r.source} and verified"}[r.action]
            print(f"{r.filename}: {how}")
    print(f"{args.dataset}: {len(results)} files verified in "
          f"{dataset_dir(args.dataset, args.data_dir)}")
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
        print_json(info)
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
