"""The digit pad: a local HTTP server for one page on which a user draws a digit and watches
the trained network read it.

The standard library's ``ThreadingHTTPServer`` is enough for one user, one page and a handful
of routes, and adds no dependency. Every answer is either the page, one of the five figures of
the model's run folder, or JSON. Nothing is looked up on disk from a request path: the routes
are a fixed table built at start-up, so ``..``, percent-encoding or absolute paths can only
ever miss it (404). A drawing goes through :func:`images.image_to_mnist`, the very function
``predict`` uses, so the pad and ``predict`` give the same answer for the same picture.
"""

from __future__ import annotations

import errno
import ipaddress
import json
import logging
import os
import re
import socket
import socketserver
import stat
import sys
import threading
from dataclasses import dataclass
from http import HTTPStatus
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from importlib import resources
from pathlib import Path
from typing import Any
from urllib.parse import urlsplit

import numpy as np

from .errors import ConfigError, ImageError, NoDigitError
from .images import FIELD, image_to_mnist
from .network import TwoLayerNet
from .run_folder import FIGURES

logger = logging.getLogger(__name__)

MAX_UPLOAD_BYTES = 2 * 1024 * 1024
"""Largest drawing accepted; a 280x280 canvas as PNG is a few kilobytes."""
IMAGE_TYPES = ("image/png", "image/jpeg")
UPLOAD_NAME = "upload"
"""How error messages name the uploaded image (``upload: not an image ...``)."""
DRAIN_BYTES = 16 * 1024 * 1024
"""A too-large upload up to this size is read and dropped before the 413, so the client's
sending finishes and it reads the answer; a larger one only gets the answer and a closed
connection."""
MAX_FIGURE_BYTES = 20 * 1024 * 1024
PNG_MAGIC = b"\x89PNG\r\n\x1a\n"
PAGE_SECURITY_POLICY = ("default-src 'none'; script-src 'unsafe-inline'; "
                        "style-src 'unsafe-inline'; img-src 'self' data:; connect-src 'self'; "
                        "base-uri 'none'; form-action 'none'; frame-ancestors 'none'")
"""The page loads nothing from elsewhere and cannot be framed by another site."""


@dataclass(frozen=True)
class Pad:
    """A loaded model and what the page shows about it; read once, at start-up."""

    net: TwoLayerNet
    path: Path
    run_dir: Path | None
    metrics: dict[str, Any] | None
    figures: dict[str, bytes]

    def describe(self) -> dict[str, Any]:
        """The answer of ``GET /api/model``."""
        meta = self.net.metadata
        run = None
        if self.run_dir is not None:
            run = {"folder": str(self.run_dir), "metrics": self.metrics,
                   "figures": [{"name": name, "url": f"/run/{name}"} for name in self.figures]}
        return {
            "path": str(self.path),
            "sizes": [self.net.input_size, self.net.hidden_size, self.net.output_size],
            "activation": self.net.activation,
            "dtype": self.net.dtype.name,
            "dataset": meta.get("dataset"),
            "test_accuracy": meta.get("test_accuracy"),
            "config": meta.get("config"),
            "run": run,
        }

    def read(self, data: bytes) -> dict[str, Any]:
        """The answer of ``POST /api/predict`` for an image's bytes; ImageError if unreadable."""
        try:
            x = image_to_mnist(data, UPLOAD_NAME)
        except NoDigitError as exc:
            return {"digit": None, "probabilities": None, "prepared": None, "message": str(exc)}
        probs = self.net.predict(x.astype(self.net.dtype, copy=False)[None, :])[0]
        return {"digit": int(np.argmax(probs)),
                "probabilities": [float(p) for p in probs],
                "prepared": x.reshape(FIELD, FIELD).tolist()}


def load_pad(model_path: Path) -> Pad:
    """Load the model and, when it sits in a run folder (beside a metrics.json), that run's
    metrics and figures."""
    net = TwoLayerNet.load(model_path)
    if net.input_size != FIELD * FIELD:
        raise ConfigError(f"{model_path} takes {net.input_size} inputs; the digit pad prepares "
                          f"{FIELD}x{FIELD} digits ({FIELD * FIELD} inputs)")
    folder = model_path.parent.resolve()
    if model_path.name != "model.npz" or not (folder / "metrics.json").is_file():
        return Pad(net, model_path.resolve(), None, None, {})
    figures = {}
    for name in FIGURES:
        data = _read_figure(folder / name)
        if data is not None:
            figures[name] = data
    return Pad(net, model_path.resolve(), folder, _read_metrics(folder / "metrics.json"),
               figures)


def _read_metrics(path: Path) -> dict[str, Any] | None:
    def refuse(constant: str) -> None:
        raise ValueError(f"{constant} is not a JSON number")

    try:
        metrics = json.loads(path.read_text(encoding="utf-8"), parse_constant=refuse)
    except (OSError, UnicodeDecodeError, ValueError) as exc:
        logger.warning("%s cannot be read (%s); the page shows no metrics", path, exc)
        return None
    if not isinstance(metrics, dict):
        logger.warning("%s is not a JSON object; the page shows no metrics", path)
        return None
    return metrics


def _read_figure(path: Path) -> bytes | None:
    """A figure's bytes if it is a regular PNG file of the run folder itself, else None.

    A symbolic link is never followed (it could point anywhere), a FIFO or device never
    opened for reading, and only PNG data is served, so nothing but the run's own figures
    can leave the machine through the pad.
    """
    try:
        fd = os.open(path, os.O_RDONLY | os.O_NOFOLLOW | os.O_NONBLOCK)
    except FileNotFoundError:
        return None
    except OSError as exc:
        logger.warning("not serving %s: %s", path, exc.strerror)
        return None
    with os.fdopen(fd, "rb") as handle:
        info = os.fstat(handle.fileno())
        if not stat.S_ISREG(info.st_mode) or info.st_size > MAX_FIGURE_BYTES:
            logger.warning("not serving %s: not a regular file of at most %d MB", path,
                           MAX_FIGURE_BYTES // 2**20)
            return None
        data = handle.read(MAX_FIGURE_BYTES + 1)
    if not data.startswith(PNG_MAGIC) or len(data) > MAX_FIGURE_BYTES:
        logger.warning("not serving %s: not a PNG image", path)
        return None
    return data


def is_loopback(host: str) -> bool:
    """True when ``host`` names this machine only (127.0.0.0/8, ::1, localhost)."""
    try:
        return ipaddress.ip_address(host.strip("[]")).is_loopback
    except ValueError:
        return host.lower() == "localhost"


class PadServer(ThreadingHTTPServer):
    """The pad's HTTP server; ``url`` is where it listens. Bind failures are ConfigErrors."""

    daemon_threads = True  # a browser keeping a connection open never delays the exit

    def __init__(self, pad: Pad, host: str = "127.0.0.1", port: int = 8000) -> None:
        self.pad = pad
        self.page = resources.files(__package__).joinpath("web/index.html").read_bytes()
        self.model_json = _json_bytes(pad.describe())
        self.only_local_hosts = is_loopback(host)
        # One image is prepared at a time: a canvas takes milliseconds, but a 2 MB upload may
        # decode to 50 MP and need about 0.8 GB while it is prepared; several at once could
        # exhaust the memory.
        self.preparing = threading.Lock()
        if ":" in host:
            self.address_family = socket.AF_INET6
        try:
            host.encode("idna")  # a name the resolver could not even encode fails in bind
        except UnicodeError:
            raise ConfigError(f"cannot listen on {host}:{port}: not a valid host name") from None
        try:
            super().__init__((host.strip("[]"), port), PadHandler)
        except OSError as exc:
            raise ConfigError(_bind_failure(host, port, exc)) from None
        self.routes: dict[str, tuple[str, ...]] = {
            "/": ("GET", "HEAD"), "/api/model": ("GET", "HEAD"), "/api/predict": ("POST",),
            **{f"/run/{name}": ("GET", "HEAD") for name in pad.figures}}

    def server_bind(self) -> None:
        # HTTPServer would ask the resolver for the host's full name, which can hang offline.
        socketserver.TCPServer.server_bind(self)
        self.server_name, self.server_port = str(self.server_address[0]), self.server_address[1]

    @property
    def url(self) -> str:
        """Where a browser on this machine finds the pad (a wildcard address is no place to
        browse to, so 0.0.0.0 and :: become the loopback address)."""
        host = {"0.0.0.0": "127.0.0.1", "::": "::1"}.get(self.server_name, self.server_name)
        return f"http://[{host}]:{self.server_port}/" if ":" in host else \
            f"http://{host}:{self.server_port}/"

    def handle_error(self, request: Any, client_address: Any) -> None:
        """A browser that goes away mid-request is routine; anything else is a bug to log."""
        error = sys.exc_info()[1]
        if isinstance(error, (ConnectionError, TimeoutError)):
            logger.info("connection from %s ended early: %s", client_address, error)
        else:
            logger.exception("error while answering %s", client_address)


def _bind_failure(host: str, port: int, exc: OSError) -> str:
    where = f"cannot listen on {host}:{port}"
    if isinstance(exc, socket.gaierror):
        return f"{where}: unknown host ({exc.strerror}); use an address such as 127.0.0.1"
    if exc.errno == errno.EADDRINUSE:
        return f"{where}: the port is in use; stop what runs there or choose another --port"
    if exc.errno == errno.EADDRNOTAVAIL:
        return f"{where}: {exc.strerror} (not an address of this machine)"
    return f"{where}: {exc.strerror or exc}"


def _json_bytes(obj: Any) -> bytes:
    return json.dumps(obj, allow_nan=False).encode("utf-8")


class PadHandler(BaseHTTPRequestHandler):
    """Routes a request through the server's fixed table; answers errors as JSON."""

    server: PadServer
    protocol_version = "HTTP/1.1"
    server_version = "mnist_twolayer-pad"
    sys_version = ""  # no need to tell the world which Python answers
    timeout = 60  # a client that stops sending frees its thread
    disable_nagle_algorithm = True  # headers and body leave at once, not 40 ms apart

    def do_GET(self) -> None:  # noqa: N802 - http.server's names
        try:
            self._dispatch()
        except (ConnectionError, TimeoutError):
            raise  # the client went away: nobody to answer (see PadServer.handle_error)
        except Exception:
            logger.exception("error while answering %s %s", self.command, self.path[:100])
            self.send_error(500, "the digit pad failed on this request; its log says why")

    do_HEAD = do_POST = do_PUT = do_DELETE = do_PATCH = do_OPTIONS = do_GET

    def log_message(self, format: str, *args: Any) -> None:
        logger.info("%s %s", self.address_string(), format % args)

    def send_error(self, code: int, message: str | None = None, explain: str | None = None
                   ) -> None:
        """Every error is ``{"error": "one line"}``, also those http.server raises itself."""
        self._send(code, _json_bytes({"error": message or HTTPStatus(code).phrase}),
                   "application/json", close=True)

    def _send(self, code: int, body: bytes, content_type: str, *, close: bool = False,
              headers: dict[str, str] | None = None) -> None:
        self.send_response(code)
        self.send_header("Content-Type", content_type)
        self.send_header("Content-Length", str(len(body)))
        self.send_header("Cache-Control", "no-store")
        self.send_header("X-Content-Type-Options", "nosniff")
        for name, value in (headers or {}).items():
            self.send_header(name, value)
        if close:
            self.send_header("Connection", "close")
            self.close_connection = True
        self.end_headers()
        if self.command != "HEAD":
            self.wfile.write(body)

    def _dispatch(self) -> None:
        if self.server.only_local_hosts and not self._host_is_local():
            # a page elsewhere reaching us through a rebound DNS name must not read answers
            self.send_error(403, "the digit pad answers only to localhost / 127.0.0.1 names")
            return
        path = urlsplit(self.path).path
        allowed = self.server.routes.get(path)
        if allowed is None:
            self.send_error(404, f"no such page: {path[:100]}")
            return
        if self.command not in allowed:
            self._send(405, _json_bytes({"error": f"{self.command} is not allowed on {path}; "
                                                  f"use {' or '.join(allowed)}"}),
                       "application/json", close=True, headers={"Allow": ", ".join(allowed)})
            return
        if path == "/":
            self._send(200, self.server.page, "text/html; charset=utf-8",
                       headers={"Content-Security-Policy": PAGE_SECURITY_POLICY})
        elif path == "/api/model":
            self._send(200, self.server.model_json, "application/json")
        elif path == "/api/predict":
            self._predict()
        else:
            self._send(200, self.server.pad.figures[path.removeprefix("/run/")], "image/png")

    def _host_is_local(self) -> bool:
        host = self.headers.get("Host")
        if host is None:  # HTTP/1.0 without Host: not a browser
            return True
        name = host[1:host.find("]")] if host.startswith("[") else host.rsplit(":", 1)[0]
        return is_loopback(name)

    def _predict(self) -> None:
        body = self._read_body()
        if body is None:
            return
        try:
            with self.server.preparing:
                answer = self.server.pad.read(body)
        except ImageError as exc:
            self.send_error(400, str(exc))
            return
        self._send(200, _json_bytes(answer), "application/json")

    def _read_body(self) -> bytes | None:
        """The request's image bytes, or None after answering why they are refused."""
        if "Transfer-Encoding" in self.headers:
            self.send_error(411, "send the image with a Content-Length header, not chunked")
            return None
        lengths = self.headers.get_all("Content-Length") or []
        if not lengths:
            self.send_error(411, "a Content-Length header is required")
            return None
        if len(lengths) > 1 or not re.fullmatch(r"[0-9]{1,15}", lengths[0].strip()):
            self.send_error(400, "Content-Length must be one whole number of bytes")
            return None
        length = int(lengths[0])
        if length > MAX_UPLOAD_BYTES:
            if length <= DRAIN_BYTES:  # read it, or the client sees a reset, not our answer
                self._discard(length)
            self.send_error(413, f"the image is {length / 2**20:.1f} MB; the pad accepts at "
                                 f"most {MAX_UPLOAD_BYTES // 2**20} MB")
            return None
        body = self.rfile.read(length)
        if len(body) < length:
            self.close_connection = True  # the client gave up midway; nobody to answer
            return None
        media_type = self.headers.get("Content-Type", "").split(";")[0].strip().lower()
        if media_type not in IMAGE_TYPES:
            self.send_error(415, f"Content-Type must be {' or '.join(IMAGE_TYPES)}, not "
                                 f"{media_type[:100] or 'missing'}")
            return None
        return body

    def _discard(self, length: int) -> None:
        while length > 0:
            chunk = self.rfile.read(min(length, 65536))
            if not chunk:
                return
            length -= len(chunk)


def serve_until_interrupted(server: PadServer) -> None:
    """Serve until Ctrl-C (KeyboardInterrupt in the main thread), then close the socket."""
    try:
        server.serve_forever()
    except KeyboardInterrupt:
        pass
    finally:
        server.server_close()
