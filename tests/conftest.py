"""Shared fixtures: the real MNIST once per session, and local HTTP servers for download tests."""

from __future__ import annotations

import hashlib
import http.server
import json
import os
import subprocess
import sys
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


def pytest_collection_modifyitems(config: pytest.Config, items: list[pytest.Item]) -> None:
    """Under mutmut (which runs a mutant's tests with -x), the fastest tests first, by the
    durations mutmut measured: a killed mutant costs its quickest failing test, not whatever
    slow test came first. Elsewhere the order is pytest's."""
    if "__mutmut_" not in os.environ.get("MUTANT_UNDER_TEST", ""):
        return
    stats = Path("mutmut-stats.json")  # mutmut runs the tests from its mutants/ folder
    if stats.is_file():
        durations = json.loads(stats.read_text())["duration_by_test"]
        items.sort(key=lambda item: durations.get(item.nodeid, 0.0))


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


def run_cli(*args: str, env: dict[str, str] | None = None, cwd: Path | None = None,
            timeout: float = 300) -> subprocess.CompletedProcess:
    """``python -m mnist_twolayer ARGS`` in a real process (so no traceback or warning can hide
    in pytest's capture), with ``env`` added to this process's environment."""
    return subprocess.run([sys.executable, "-m", "mnist_twolayer", *args], capture_output=True,
                          text=True, timeout=timeout, cwd=cwd, env={**os.environ, **(env or {})})


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
    path is in ``no_range``. Per-path misbehaviour, where a count is how many responses
    misbehave (-1: all of them):

    - ``status``: path -> [HTTP code, count] answered instead of the file;
    - ``truncate``: path -> count; half the body is sent, then the connection closes;
    - ``stall``: paths whose headers are sent, then nothing;
    - ``stall_midway``: path -> count; half the body, then nothing;
    - ``no_length``: paths sent without Content-Length, cut in half, then closed;
    - ``hold``: paths whose answer waits until the test sets ``release``;
    - ``delay``: seconds to wait before any answer.

    Every request is recorded in ``requests`` as (path, headers, bytes of body sent) when it
    arrives, in the order the client asked; the byte count is None until the body (or the
    part of it that will ever come) is sent.
    """

    def __init__(self) -> None:
        self.files: dict[str, bytes] = {}
        self.status: dict[str, list[int]] = {}
        self.truncate: dict[str, int] = {}
        self.stall: set[str] = set()
        self.stall_midway: dict[str, int] = {}
        self.no_length: set[str] = set()
        self.no_range: set[str] = set()
        self.hold: set[str] = set()
        self.release = threading.Event()
        self.delay = 0.0
        self.requests: list[tuple[str, dict[str, str], int | None]] = []
        self.stop = threading.Event()
        self._lock = threading.Lock()
        server = self

        class Handler(http.server.BaseHTTPRequestHandler):
            protocol_version = "HTTP/1.1"

            def log_message(self, *args: object) -> None:  # keep pytest output clean
                pass

            def do_GET(self) -> None:  # noqa: N802 - http.server's name
                with server._lock:
                    index = len(server.requests)
                    server.requests.append((self.path, dict(self.headers), None))
                try:
                    server._respond(self, index)
                finally:  # an error answer, or a stall that never ends: no body bytes
                    if server.requests[index][2] is None:
                        server._sent(index, 0)

        self.httpd = http.server.ThreadingHTTPServer(("127.0.0.1", 0), Handler)
        self.httpd.daemon_threads = True
        self.url = f"http://127.0.0.1:{self.httpd.server_address[1]}"
        self.thread = threading.Thread(target=self.httpd.serve_forever, args=(0.05,),
                                       daemon=True)
        self.thread.start()

    def _take(self, counts: dict[str, int], path: str) -> bool:
        """Whether this response of ``path`` misbehaves, counting it down if so."""
        with self._lock:
            left = counts.get(path, 0)
            if left:
                counts[path] = left - 1 if left > 0 else left
        return bool(left)

    def _sent(self, index: int, count: int) -> None:
        with self._lock:
            path, headers, _ = self.requests[index]
            self.requests[index] = (path, headers, count)

    def _respond(self, handler: http.server.BaseHTTPRequestHandler, index: int) -> None:
        path = handler.path
        body = self.files.get(path)
        if body is None:
            handler.send_error(404, "Not Found")
            return
        time.sleep(self.delay)
        if path in self.hold:
            self.release.wait(60)
        if path in self.status:
            with self._lock:
                code, left = self.status[path]
                if left:
                    self.status[path][1] = left - 1 if left > 0 else left
            if left:
                handler.send_error(code)
                return
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
            return
        handler.send_response(206 if start else 200)
        if start:
            handler.send_header("Content-Range", f"bytes {start}-{len(body) - 1}/{len(body)}")
        if path not in self.no_length:
            handler.send_header("Content-Length", str(len(body) - start))
        handler.send_header("ETag", etag)
        handler.end_headers()
        payload = body[start:]
        if path in self.stall:
            self._sent(index, 0)
            self.stop.wait(30)
            return
        stall_midway = self._take(self.stall_midway, path)
        if stall_midway or path in self.no_length or self._take(self.truncate, path):
            payload = payload[: len(payload) // 2]
            handler.close_connection = True
        handler.wfile.write(payload)
        handler.wfile.flush()
        self._sent(index, len(payload))
        if stall_midway:
            self.stop.wait(30)  # the client must give up by itself

    def requests_for(self, path: str, count: int | None = None, complete: bool = True
                     ) -> list[tuple[dict[str, str], int | None]]:
        """The requests of ``path`` as (headers, bytes sent); with ``count``, wait up to 60 s
        until that many have arrived and (``complete``) sent what they will: a response's
        thread may still be writing when the client has already moved on."""
        deadline = time.monotonic() + 60
        while True:
            found = [(headers, sent) for p, headers, sent in self.requests if p == path]
            done = not complete or None not in (sent for _, sent in found)
            if count is None or (len(found) >= count and done) or time.monotonic() > deadline:
                return found
            time.sleep(0.01)

    def close(self) -> None:
        self.stop.set()
        self.release.set()
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
