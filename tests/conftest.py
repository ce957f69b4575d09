"""Shared fixtures: the real MNIST once per session, and local HTTP servers for download tests."""

from __future__ import annotations

import hashlib
import http.server
import threading
import time
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import pytest
from faults_support import no_figures, register_mini
from PIL import Image

from mnist_twolayer.datasets import DATASETS, DatasetSpec, load_mnist, mnist_layout
from mnist_twolayer.download import ENV_MIRROR
from mnist_twolayer.idx import encode_idx, write_idx


@pytest.fixture(scope="session")
def mnist() -> tuple[tuple[np.ndarray, np.ndarray], tuple[np.ndarray, np.ndarray]]:
    """``load_mnist()`` defaults: float32 in [0, 1], (N, 784) images, uint8 labels.

    Shared by the whole session, so the arrays are read-only: an in-place edit fails loudly
    instead of leaking into other tests.
    """
    data = load_mnist()
    for split in data:
        for array in split:
            array.setflags(write=False)
    return data


def user_picture(digit: np.ndarray, size: int = 200) -> Image.Image:
    """An MNIST digit as a person would draw it: black ink on white paper, ``size`` pixels
    square, RGB. ``digit`` is 784 or 28x28 values, floats in [0, 1] or uint8."""
    pixels = np.asarray(digit).reshape(28, 28)
    ink = pixels if pixels.dtype == np.uint8 else np.round(pixels * 255).astype(np.uint8)
    return Image.fromarray(255 - ink).resize((size, size), Image.Resampling.BICUBIC).convert(
        "RGB")


def mnist_batch(mnist, size: int, rng: int | np.random.Generator) -> tuple[np.ndarray,
                                                                          np.ndarray]:
    """``size`` distinct real training images (drawn by ``rng``) in float64, and their labels."""
    (x_train, t_train), _ = mnist
    index = np.random.default_rng(rng).choice(len(x_train), size, replace=False)
    return x_train[index].astype(np.float64), t_train[index]


class LocalServer:
    """A small HTTP server on 127.0.0.1 that serves ``files`` (URL path -> bytes).

    It honours ``Range: bytes=N-`` (206, with an ETag checked against ``If-Range``) unless the
    path is in ``no_range``. Per-path misbehaviour: ``truncate`` (send half the body, then close;
    a count of how many responses to cut, or -1 for all), ``stall`` (send headers, then
    nothing). Every request is recorded in ``requests`` as (path, headers, bytes of body sent).
    """

    def __init__(self) -> None:
        self.files: dict[str, bytes] = {}
        self.truncate: dict[str, int] = {}
        self.stall: set[str] = set()
        self.no_range: set[str] = set()
        self.delay = 0.0
        self.requests: list[tuple[str, dict[str, str], int]] = []
        self.stop = threading.Event()
        self._lock = threading.Lock()
        server = self

        class Handler(http.server.BaseHTTPRequestHandler):
            protocol_version = "HTTP/1.1"

            def log_message(self, *args: object) -> None:  # keep pytest output clean
                pass

            def do_GET(self) -> None:  # noqa: N802 - http.server's name
                # recorded on arrival, so the order is the order the client asked in
                with server._lock:
                    index = len(server.requests)
                    server.requests.append((self.path, dict(self.headers), 0))
                sent = server._respond(self)
                with server._lock:
                    server.requests[index] = (self.path, dict(self.headers), sent)

        self.httpd = http.server.ThreadingHTTPServer(("127.0.0.1", 0), Handler)
        self.httpd.daemon_threads = True
        self.url = f"http://127.0.0.1:{self.httpd.server_address[1]}"
        self.thread = threading.Thread(target=self.httpd.serve_forever, args=(0.05,),
                                       daemon=True)
        self.thread.start()

    def _respond(self, handler: http.server.BaseHTTPRequestHandler) -> int:
        path = handler.path
        body = self.files.get(path)
        if body is None:
            handler.send_error(404, "Not Found")
            return 0
        time.sleep(self.delay)
        etag = f'"{hashlib.sha256(body).hexdigest()[:16]}"'
        start = 0
        wanted = handler.headers.get("Range", "")
        if_range = handler.headers.get("If-Range")
        if wanted.startswith("bytes=") and path not in self.no_range and if_range in (None, etag):
            start = int(wanted[len("bytes="):].rstrip("-"))
        if start >= len(body) and start:
            handler.send_response(416)
            handler.send_header("Content-Range", f"bytes */{len(body)}")
            handler.send_header("Content-Length", "0")
            handler.end_headers()
            return 0
        handler.send_response(206 if start else 200)
        if start:
            handler.send_header("Content-Range", f"bytes {start}-{len(body) - 1}/{len(body)}")
        handler.send_header("Content-Length", str(len(body) - start))
        handler.send_header("ETag", etag)
        handler.end_headers()
        payload = body[start:]
        if path in self.stall:
            self.stop.wait(30)
            return 0
        cuts = self.truncate.get(path, 0)
        if cuts:
            self.truncate[path] = cuts - 1 if cuts > 0 else cuts
            payload = payload[: len(payload) // 2]
            handler.close_connection = True
        handler.wfile.write(payload)
        handler.wfile.flush()
        return len(payload)

    def close(self) -> None:
        self.stop.set()
        self.httpd.shutdown()
        self.httpd.server_close()


@pytest.fixture
def http_server() -> Iterator[Callable[[], LocalServer]]:
    """A factory of :class:`LocalServer` instances, all shut down after the test."""
    servers: list[LocalServer] = []

    def start() -> LocalServer:
        servers.append(LocalServer())
        return servers[-1]

    yield start
    for server in servers:
        server.close()


@dataclass
class Tiny:
    """A small MNIST-layout dataset registered as ``tiny`` for one test."""

    spec: DatasetSpec
    source: Path  # a folder holding its four gz files
    arrays: dict[tuple[str, str], np.ndarray]
    data_dir: Path  # an empty data folder to download into

    @property
    def folder(self) -> Path:
        return self.data_dir / "tiny"

    def gz(self, split: str, kind: str) -> bytes:
        return (self.source / self.spec.file(split, kind).filename).read_bytes()


def register(monkeypatch: pytest.MonkeyPatch, name: str,
             arrays: dict[tuple[str, str], np.ndarray], source: Path) -> DatasetSpec:
    """Write ``arrays`` as gz files into ``source`` and register dataset ``name`` for them."""
    stems = {(f.split, f.kind): f.stem for f in DATASETS["mnist"].files}
    sha = {}
    for key, array in arrays.items():
        write_idx(source / f"{stems[key]}.gz", array)
        sha[stems[key]] = hashlib.sha256(encode_idx(array)).hexdigest()
    spec = mnist_layout(name, sha, mirrors=())
    monkeypatch.setitem(DATASETS, name, spec)
    return spec


@pytest.fixture
def tiny(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Tiny:
    """Dataset ``tiny`` (20 train, 10 test images) with no registry mirrors and no
    ``MNIST_TWOLAYER_MIRROR``, so nothing reaches beyond 127.0.0.1."""
    rng = np.random.default_rng(0)
    arrays = {}
    for split, n in (("train", 20), ("test", 10)):
        arrays[split, "images"] = rng.integers(0, 256, (n, 28, 28), dtype=np.uint8)
        arrays[split, "labels"] = rng.integers(0, 10, n, dtype=np.uint8)
    monkeypatch.delenv(ENV_MIRROR, raising=False)
    spec = register(monkeypatch, "tiny", arrays, tmp_path / "source")
    return Tiny(spec, tmp_path / "source", arrays, tmp_path / "data")


@pytest.fixture(scope="module")
def mini_env(tmp_path_factory: pytest.TempPathFactory):
    """Dataset ``mini`` (600 + 200 real digits) registered for the module; no figures."""
    with pytest.MonkeyPatch.context() as mp:
        data_dir = register_mini(mp, tmp_path_factory.mktemp("data"))
        no_figures(mp)
        yield data_dir
