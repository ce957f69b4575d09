"""``gradcheck`` and ``serve``: the gradient paths compared, and the digit pad."""

from __future__ import annotations

import argparse
import sys
from pathlib import Path

from .cli import (
    EXIT_DISAGREE,
    EXIT_INCONCLUSIVE,
    add_threads,
    finite_difference_step,
    nonnegative_int,
    number,
    positive_int,
    print_json,
)


def add_commands(sub: argparse._SubParsersAction) -> None:
    _add_gradcheck(sub)
    _add_serve(sub)


def _add_gradcheck(sub: argparse._SubParsersAction) -> None:
    from .gradcheck import METHODS, STEPS
    from .gradient import ACTIVATIONS, ORDERS

    p = sub.add_parser("gradcheck", help="compare the gradient paths on real MNIST images")
    p.add_argument("--batch", type=positive_int, default=100,
                   help="training images in the batch (default: 100)")
    p.add_argument("--hidden", type=positive_int, default=50,
                   help="hidden units (default: 50)")
    p.add_argument("--dtype", choices=("float64", "float32"), default="float64",
                   help="dtype of the net (default: float64; torch always runs in float64)")
    p.add_argument("--seed", type=nonnegative_int, default=0,
                   help="picks the images and the initial weights (default: 0)")
    p.add_argument("--methods", metavar="LIST",
                   help=f"comma-separated paths among {', '.join(METHODS)} "
                        "(default: all but the book's slow nditer loop, ~25 s on the full "
                        "net; torch only if installed)")
    p.add_argument("--activation", choices=ACTIVATIONS, default="sigmoid",
                   help="hidden activation of the net (default: sigmoid)")
    p.add_argument("--order", type=int, choices=ORDERS, default=2,
                   help="finite differences: 2 = central, 4 = five-point stencil "
                        "(vectorized only) (default: 2)")
    p.add_argument("--h", type=finite_difference_step,
                   help=f"finite-difference step (default: {STEPS[2]:g} for order 2, "
                        f"{STEPS[4]:g} for order 4)")
    p.add_argument("--data-dir", type=Path, help="where datasets live (see README)")
    p.add_argument("--json", action="store_true", help="print one JSON object")
    add_threads(p)
    p.set_defaults(run=_run_gradcheck)


def _run_gradcheck(args: argparse.Namespace) -> int:
    from .gradcheck import gradcheck_mnist, parse_methods

    methods = parse_methods(args.methods) if args.methods is not None else None
    result = gradcheck_mnist(batch=args.batch, hidden=args.hidden, dtype=args.dtype,
                             seed=args.seed, methods=methods, activation=args.activation,
                             order=args.order, h=args.h, data_dir=args.data_dir)
    if args.json:
        print_json(result.to_dict())
    else:
        print(result.table())
    # findings, not user errors (2) or failed writes (1): a disagreement, or no verdict
    states = {verdict.state for verdict in result.verdicts()}
    return (EXIT_DISAGREE if "DISAGREE" in states else
            EXIT_INCONCLUSIVE if "inconclusive" in states else 0)


def _add_serve(sub: argparse._SubParsersAction) -> None:
    p = sub.add_parser("serve", help="the digit pad: draw digits in a browser, see the net read "
                                     "them")
    p.add_argument("model", type=Path, nargs="?", metavar="MODEL",
                   help="a model.npz or a run folder (default: the newest runs/*/model.npz)")
    p.add_argument("--host", default="127.0.0.1",
                   help="address to listen on (default: 127.0.0.1, this machine only)")
    p.add_argument("--port", type=number(int, "an integer", 0, strict=False, high=65535),
                   default=8000, help="port (default: 8000; 0 picks a free one)")
    p.add_argument("--open", action="store_true", help="open the page in the default browser")
    p.set_defaults(run=_run_serve)


def _run_serve(args: argparse.Namespace) -> int:
    from .network import find_model
    from .server import PadServer, is_loopback, load_pad, serve_until_interrupted

    pad = load_pad(find_model(args.model))
    server = PadServer(pad, args.host, args.port)
    if not is_loopback(args.host):
        sys.stderr.write(f"warning: --host {args.host}: the digit pad is reachable from the "
                         f"network, by anyone who can reach this machine\n")
    print(f"digit pad for {pad.path}: {server.url}  (Ctrl-C stops it)", flush=True)
    if args.open:
        _open_browser(server.url)
    serve_until_interrupted(server)
    sys.stderr.write("digit pad stopped\n")
    return 0


def _open_browser(url: str) -> None:
    """Open ``url`` in a thread: a console browser would otherwise hold the server up."""
    import threading
    import webbrowser

    def run() -> None:
        if not webbrowser.open(url):
            sys.stderr.write(f"note: found no browser to open; open {url} yourself\n")

    threading.Thread(target=run, name="open-browser", daemon=True).start()
