"""The digit pad: its JSON API against a real server on 127.0.0.1, the `serve` command in a
subprocess, and the page in a real headless Chromium driven by Playwright."""

from __future__ import annotations

import contextlib
import http.client
import json
import os
import re
import shutil
import signal
import socket
import struct
import subprocess
import sys
import threading
import time
import zlib
from collections.abc import Iterator
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path

import numpy as np
import pytest
from conftest import run_cli, user_picture
from PIL import Image

from mnist_twolayer.cli import main
from mnist_twolayer.config import config_from_preset
from mnist_twolayer.errors import ImageError
from mnist_twolayer.images import image_to_mnist, prepare_digit
from mnist_twolayer.run_folder import FIGURES
from mnist_twolayer.server import MAX_UPLOAD_BYTES, Pad, PadServer, load_pad
from mnist_twolayer.trainer import Trainer

pytestmark = pytest.mark.slow
REPO = Path(__file__).resolve().parents[1]
PAGE = REPO / "mnist_twolayer" / "web" / "index.html"
CHROMIUM = Path("/usr/bin/chromium")
CHROMIUM_ARGS = ["--headless", "--no-sandbox", "--disable-gpu", "--disable-background-networking",
                 "--disable-component-update", "--disable-sync", "--no-first-run"]


@pytest.fixture(scope="module")
def run_dir(tmp_path_factory) -> Path:
    """A run folder from one epoch of the default preset on 20,000 training digits (93.7% on
    the test set, a few seconds). Measured once on the strokes below drawn with Pillow: 1 and
    7 with probability 0.993 and 0.9998, and so for 200 variants each with every stroke end
    moved at random by 3% of the pad (lowest probability 0.956 and 0.989)."""
    run = tmp_path_factory.mktemp("pad") / "run"
    Trainer(config_from_preset("default", epochs=1, train_size=20000), run).run()
    return run


@contextlib.contextmanager
def running(pad: Pad, host: str = "127.0.0.1") -> Iterator[PadServer]:
    server = PadServer(pad, host, 0)
    thread = threading.Thread(target=server.serve_forever, args=(0.05,), daemon=True)
    thread.start()
    try:
        yield server
    finally:
        server.shutdown()
        server.server_close()


@pytest.fixture(scope="module")
def server(run_dir) -> Iterator[PadServer]:
    with running(load_pad(run_dir / "model.npz")) as started:
        yield started


def call(server: PadServer, method: str, path: str, body: bytes | None = None,
         headers: dict[str, str] | None = None) -> tuple[int, http.client.HTTPMessage, bytes]:
    """One request with exactly ``headers`` (no Content-Length or Host added unless given)."""
    conn = http.client.HTTPConnection("127.0.0.1", server.server_port, timeout=60)
    try:
        conn.putrequest(method, path, skip_host=True, skip_accept_encoding=True)
        for name, value in {"Host": f"127.0.0.1:{server.server_port}", **(headers or {})
                            }.items():
            conn.putheader(name, value)
        conn.endheaders(body)
        response = conn.getresponse()
        return response.status, response.headers, response.read()
    finally:
        conn.close()


def post_image(server: PadServer, data: bytes, content_type: str = "image/png"
               ) -> tuple[int, dict]:
    status, _, body = call(server, "POST", "/api/predict", data,
                           {"Content-Type": content_type, "Content-Length": str(len(data))})
    return status, json.loads(body)


def error_of(body: bytes) -> str:
    answer = json.loads(body)
    assert list(answer) == ["error"] and "\n" not in answer["error"]
    return answer["error"]


def drawn(digit: np.ndarray, path: Path) -> Path:
    """An MNIST digit saved as a person would draw it (conftest.user_picture)."""
    user_picture(digit).save(path)
    return path


# --- the API ---


def test_pad_and_predict_agree_exactly(server, run_dir, mnist, tmp_path, capsys):
    (_, _), (x_test, _) = mnist
    paths = [drawn(x_test[i], tmp_path / f"digit{i}.png") for i in range(5)]
    paths.append(tmp_path / "digit5.jpg")
    with Image.open(paths[0]) as png:
        png.save(paths[-1], quality=90)
    assert main(["predict", str(run_dir / "model.npz"), *map(str, paths), "--top-k", "10",
                 "--json"]) == 0
    predictions = json.loads(capsys.readouterr().out)["predictions"]
    for path, expected in zip(paths, predictions, strict=True):
        kind = "image/jpeg" if path.suffix == ".jpg" else "image/png"
        status, answer = post_image(server, path.read_bytes(), kind)
        assert status == 200
        assert answer["digit"] == expected["digit"]
        by_digit = {row["class"]: row["probability"] for row in expected["top_k"]}
        assert answer["probabilities"] == [by_digit[k] for k in range(10)]  # bit for bit
        assert answer["prepared"] == image_to_mnist(path).reshape(28, 28).tolist()
    assert [p["digit"] for p in predictions[:5]] == [7, 2, 1, 0, 4]  # MNIST's first five


def test_a_blank_canvas_is_no_digit_not_an_error(server, tmp_path):
    blank = np.full((280, 280), 255, np.uint8)
    Image.fromarray(blank).save(tmp_path / "blank.png")
    with pytest.raises(ImageError) as why:  # whatever prepare_digit says about a blank page
        prepare_digit(blank)
    status, answer = post_image(server, (tmp_path / "blank.png").read_bytes())
    assert status == 200
    assert answer == {"digit": None, "probabilities": None, "prepared": None,
                      "message": f"upload: {why.value}"}


def png_claiming(width: int, height: int) -> bytes:
    """A tiny PNG whose header claims a huge canvas: a decompression bomb's calling card."""

    def chunk(kind: bytes, data: bytes) -> bytes:
        return (struct.pack(">I", len(data)) + kind + data
                + struct.pack(">I", zlib.crc32(kind + data)))

    return (b"\x89PNG\r\n\x1a\n" + chunk(b"IHDR", struct.pack(">IIBBBBB", width, height, 8, 0,
                                                               0, 0, 0))
            + chunk(b"IDAT", zlib.compress(b"\0" * 64)) + chunk(b"IEND", b""))


def a_png(tmp_path: Path) -> bytes:
    Image.fromarray(np.random.default_rng(0).integers(0, 256, (64, 64), np.uint8)).save(
        tmp_path / "noise.png")
    return (tmp_path / "noise.png").read_bytes()


@pytest.mark.parametrize("make, message", [
    (lambda tmp: b"this is not a picture\n", "upload: not an image (expected PNG or JPEG)"),
    (lambda tmp: b"", "upload: empty (0 bytes), not an image"),
    (lambda tmp: a_png(tmp)[:300], "upload: the image data is truncated or damaged"),
    (lambda tmp: png_claiming(8000, 7000),
     "upload: image is 8000x7000 pixels (56 MP), more than the 50 MP allowed"),
    (lambda tmp: png_claiming(20000, 20000),
     "upload: image claims more than 50 MP (a decompression bomb?); refusing to decode it"),
    (lambda tmp: b"\0" * MAX_UPLOAD_BYTES, "upload: not an image (expected PNG or JPEG)"),
], ids=["text", "empty", "truncated", "over 50 MP", "bomb", "exactly 2 MB of zeros"])
def test_an_unreadable_image_is_400_with_one_line(server, tmp_path, make, message):
    status, answer = post_image(server, make(tmp_path))
    assert (status, answer) == (400, {"error": message})


def test_an_upload_over_2_mb_is_413(server):
    body = b"\0" * (MAX_UPLOAD_BYTES + 1)  # sent whole: the server reads it, then answers
    status, _, answer = call(server, "POST", "/api/predict", body,
                             {"Content-Type": "image/png", "Content-Length": str(len(body))})
    assert (status, error_of(answer)) == (413, "the image is 2.0 MB; the pad accepts at most "
                                               "2 MB")
    # a claimed gigabyte is refused from the header alone: nothing of the body is sent
    status, headers, answer = call(server, "POST", "/api/predict", None,
                                   {"Content-Type": "image/png", "Content-Length": "1000000000"})
    assert (status, error_of(answer)) == (413, "the image is 953.7 MB; the pad accepts at "
                                               "most 2 MB")
    assert headers["Connection"] == "close"


@pytest.mark.parametrize("headers, status, message", [
    ({"Content-Type": "text/plain", "Content-Length": "LEN"}, 415,
     "Content-Type must be image/png or image/jpeg, not text/plain"),
    ({"Content-Length": "LEN"}, 415, "Content-Type must be image/png or image/jpeg, not missing"),
    ({"Content-Type": "image/png"}, 411, "a Content-Length header is required"),
    ({"Content-Type": "image/png", "Transfer-Encoding": "chunked"}, 411,
     "send the image with a Content-Length header, not chunked"),
    ({"Content-Type": "image/png", "Content-Length": "a lot"}, 400,
     "Content-Length must be one whole number of bytes"),
    ({"Content-Type": "image/png", "Content-Length": "-5"}, 400,
     "Content-Length must be one whole number of bytes"),
    ({"Content-Type": "image/png", "Content-Length": "1e3"}, 400,
     "Content-Length must be one whole number of bytes"),
], ids=["text/plain", "no type", "no length", "chunked", "words", "negative", "exponent"])
def test_wrong_type_or_length_headers(server, tmp_path, headers, status, message):
    png = a_png(tmp_path)
    headers = {name: value.replace("LEN", str(len(png))) for name, value in headers.items()}
    got, _, answer = call(server, "POST", "/api/predict", png, headers)
    assert (got, error_of(answer)) == (status, message)


def test_a_case_insensitive_type_with_parameters_is_accepted(server, tmp_path):
    png = a_png(tmp_path)
    status, answer = post_image(server, png, "Image/PNG; charset=binary")
    assert status == 200 and answer["digit"] in range(10)


def test_two_content_length_headers_are_refused(server, tmp_path):
    png = a_png(tmp_path)
    conn = http.client.HTTPConnection("127.0.0.1", server.server_port, timeout=60)
    conn.putrequest("POST", "/api/predict")
    conn.putheader("Content-Type", "image/png")
    conn.putheader("Content-Length", str(len(png)))
    conn.putheader("Content-Length", "5")
    conn.endheaders(png)
    response = conn.getresponse()
    assert (response.status, error_of(response.read())) == (
        400, "Content-Length must be one whole number of bytes")
    conn.close()


@pytest.mark.parametrize("method, path, allowed", [
    ("GET", "/api/predict", "POST"), ("PUT", "/api/predict", "POST"),
    ("OPTIONS", "/api/predict", "POST"), ("POST", "/", "GET, HEAD"),
    ("DELETE", "/api/model", "GET, HEAD"), ("PATCH", "/", "GET, HEAD"),
    ("POST", "/run/loss.png", "GET, HEAD"),
])
def test_a_wrong_method_is_405(server, method, path, allowed):
    status, headers, answer = call(server, method, path, b"", {"Content-Length": "0"})
    assert status == 405 and headers["Allow"] == allowed
    assert error_of(answer) == f"{method} is not allowed on {path}; use " + \
        " or ".join(allowed.split(", "))


SECRET = b"only-here-to-be-looked-for"

ESCAPES = ["/index.html", "/web/index.html", "/mnist_twolayer/web/index.html", "/api",
           "/api/", "/api/predict/", "/run", "/run/", "/run/model.npz", "/run/metrics.json",
           "/run/config.json", "/run/checkpoint.npz", "/run/secret.txt", "/secret.txt",
           "/run/../secret.txt", "/run/%2e%2e/secret.txt", "/run/%2E%2E/model.npz",
           "/run/..%2fsecret.txt", "/run/..%2Fmodel.npz", "/run/%2fetc%2fpasswd",
           "/%2e%2e/%2e%2e/%2e%2e/etc/passwd", "/../../../../etc/passwd", "//etc/passwd",
           "/etc/passwd", "/run//etc/passwd", "/run/./loss.png", "/run/loss.png/",
           "/run/loss.png/..", "/run/LOSS.png", "/run/loss.png%00", "/run%2floss.png",
           "/./", "/favicon.ico", "*", "http://127.0.0.1/../secret.txt"]


def test_nothing_outside_the_page_and_the_five_figures_is_served(server, run_dir):
    (run_dir / "secret.txt").write_bytes(SECRET)
    model = (run_dir / "model.npz").read_bytes()
    for path in ESCAPES:
        status, headers, body = call(server, "GET", path)
        assert status == 404, path
        assert headers["Content-Type"] == "application/json"
        assert SECRET not in body and b"root:" not in body and body != model
        assert error_of(body).startswith("no such page: ")
    status, _, body = call(server, "GET", "/run/%2e%2e/secret.txt")
    assert error_of(body) == "no such page: /run/%2e%2e/secret.txt"
    # a query string never reaches a file name
    status, _, body = call(server, "GET", "/run/loss.png?../../secret.txt")
    assert status == 200 and body == (run_dir / "loss.png").read_bytes()


def test_the_page_the_model_and_its_run(server, run_dir):
    status, headers, body = call(server, "GET", "/")
    assert status == 200 and body == PAGE.read_bytes()
    assert headers["Content-Type"] == "text/html; charset=utf-8"
    assert "default-src 'none'" in headers["Content-Security-Policy"]
    status, headers, empty = call(server, "HEAD", "/")
    assert status == 200 and empty == b"" and headers["Content-Length"] == str(len(body))

    status, _, body = call(server, "GET", "/api/model")
    model = json.loads(body)
    metrics = json.loads((run_dir / "metrics.json").read_text())
    assert model == {
        "path": str((run_dir / "model.npz").resolve()), "sizes": [784, 256, 10],
        "activation": "sigmoid", "dtype": "float32", "dataset": "mnist",
        "test_accuracy": metrics["test_accuracy"],
        "config": json.loads((run_dir / "config.json").read_text()),
        "run": {"folder": str(run_dir.resolve()), "metrics": metrics,
                "figures": [{"name": name, "url": f"/run/{name}"} for name in FIGURES]}}
    for name in FIGURES:
        status, headers, body = call(server, "GET", f"/run/{name}")
        assert (status, headers["Content-Type"]) == (200, "image/png")
        assert body == (run_dir / name).read_bytes()


def test_a_model_outside_a_run_folder_has_no_run_view(run_dir, tmp_path):
    shutil.copy(run_dir / "model.npz", tmp_path / "model.npz")
    with running(load_pad(tmp_path / "model.npz")) as alone:
        status, _, body = call(alone, "GET", "/api/model")
        assert json.loads(body)["run"] is None
        assert call(alone, "GET", "/run/loss.png")[0] == 404


def test_a_relu_model_says_so_and_reads_like_predict(tmp_path, mnist):
    from mnist_twolayer.network import TwoLayerNet

    net = TwoLayerNet(784, 30, 10, init="he", activation="relu", seed=0)
    net.save(tmp_path / "relu.npz")
    (_, _), (x_test, _) = mnist
    picture = drawn(x_test[0], tmp_path / "seven.png")
    with running(load_pad(tmp_path / "relu.npz")) as relu:
        assert json.loads(call(relu, "GET", "/api/model")[2])["activation"] == "relu"
        status, answer = post_image(relu, picture.read_bytes())
    expected = TwoLayerNet.load(tmp_path / "relu.npz").predict(image_to_mnist(picture)[None])[0]
    assert status == 200 and answer["probabilities"] == expected.tolist()


def test_figures_that_are_links_pipes_or_not_png_are_never_served(run_dir, tmp_path, caplog):
    run = tmp_path / "run"
    run.mkdir()
    for name in ("model.npz", "metrics.json", *FIGURES):
        shutil.copy(run_dir / name, run / name)
    outside = tmp_path / "outside.png"
    outside.write_bytes((run_dir / "confusion.png").read_bytes())
    (run / "loss.png").unlink()
    (run / "loss.png").symlink_to(outside)
    (run / "accuracy.png").write_bytes(SECRET)
    (run / "weights.png").unlink()
    os.mkfifo(run / "weights.png")  # opening it for reading would wait for a writer forever
    (tmp_path / "linked").symlink_to(run)  # the run folder itself may be a link
    with running(load_pad(tmp_path / "linked" / "model.npz")) as pad:
        figures = json.loads(call(pad, "GET", "/api/model")[2])["run"]["figures"]
        assert [f["name"] for f in figures] == ["confusion.png", "misclassified.png"]
        for name in ("loss.png", "accuracy.png", "weights.png"):
            assert call(pad, "GET", f"/run/{name}")[0] == 404
        assert call(pad, "GET", "/run/confusion.png")[2] == (run / "confusion.png").read_bytes()
    assert sorted(r.getMessage().split(": ")[-1] for r in caplog.records) == [
        "Too many levels of symbolic links", "not a PNG image",
        "not a regular file of at most 20 MB"]


def test_a_damaged_metrics_file_leaves_the_pad_working(run_dir, tmp_path, caplog):
    for name in ("model.npz", "loss.png"):
        shutil.copy(run_dir / name, tmp_path / name)
    (tmp_path / "metrics.json").write_text('{"test_accuracy": NaN}')
    pad = load_pad(tmp_path / "model.npz")
    assert pad.run_dir == tmp_path.resolve() and pad.metrics is None
    assert list(pad.figures) == ["loss.png"]
    assert "metrics.json cannot be read (NaN is not a JSON number)" in caplog.text


def test_other_hosts_are_refused_on_loopback(server):
    status, _, body = call(server, "GET", "/api/model", headers={"Host": "evil.example:80"})
    assert (status, error_of(body)) == (403, "the digit pad answers only to localhost / "
                                             "127.0.0.1 names")
    for host in ("localhost", f"localhost:{server.server_port}", "127.0.0.1", "[::1]:80"):
        assert call(server, "GET", "/api/model", headers={"Host": host})[0] == 200, host


def test_an_ipv6_loopback_host(run_dir):
    try:
        socket.create_server(("::1", 0), family=socket.AF_INET6).close()
    except OSError as exc:
        pytest.skip(f"no IPv6 loopback here ({exc})")
    with running(load_pad(run_dir / "model.npz"), host="::1") as server:
        assert server.url == f"http://[::1]:{server.server_port}/"
        conn = http.client.HTTPConnection("::1", server.server_port, timeout=60)
        conn.request("GET", "/api/model")  # Host: [::1]:port, a loopback name
        response = conn.getresponse()
        assert response.status == 200 and json.loads(response.read())["sizes"][0] == 784
        conn.close()


def test_requests_http_server_refuses_get_json_errors_too(server):
    many_headers = b"".join(b"X-%d: 1\r\n" % i for i in range(101))
    for request, status in ((b"BREW /api/model HTTP/1.1\r\nHost: 127.0.0.1\r\n\r\n", 501),
                            (b"GET /api/model HTTP/1.1\r\n" + many_headers + b"\r\n", 431),
                            (b"GET /" + b"a" * 70000 + b" HTTP/1.1\r\n\r\n", 414)):
        with socket.create_connection(("127.0.0.1", server.server_port), timeout=60) as sock:
            sock.sendall(request)
            response = http.client.HTTPResponse(sock)
            response.begin()
            assert response.status == status
            assert response.headers["Content-Type"] == "application/json"
            error_of(response.read())


def test_a_failure_inside_the_pad_is_a_json_500_and_a_logged_traceback(server, monkeypatch,
                                                                        caplog, tmp_path):
    def broken(pad: Pad, data: bytes) -> dict:
        raise RuntimeError("a bug")

    monkeypatch.setattr(Pad, "read", broken)
    status, answer = post_image(server, a_png(tmp_path))
    assert (status, answer) == (500, {"error": "the digit pad failed on this request; its log "
                                               "says why"})
    assert "RuntimeError: a bug" in caplog.text
    assert call(server, "GET", "/api/model")[0] == 200  # and it goes on serving


def test_concurrent_clients_each_get_their_own_answer(server, mnist, tmp_path):
    (_, _), (x_test, _) = mnist
    images = [drawn(x_test[i], tmp_path / f"d{i}.png").read_bytes() for i in range(8)]
    expected = [post_image(server, image)[1] for image in images]

    def client(k: int) -> list[dict]:
        # each client keeps one connection open for its requests, like a browser tab
        conn = http.client.HTTPConnection("127.0.0.1", server.server_port, timeout=60)
        answers = []
        for j in range(6):
            image = images[(k + j) % len(images)]
            conn.request("POST", "/api/predict", image, {"Content-Type": "image/png"})
            response = conn.getresponse()
            answers.append(json.loads(response.read()))
        conn.close()
        return answers

    with ThreadPoolExecutor(8) as pool:
        results = list(pool.map(client, range(8)))
    for k, answers in enumerate(results):
        assert answers == [expected[(k + j) % len(images)] for j in range(6)]
    assert len({answer["digit"] for answer in expected}) >= 6


# --- the command ---


def start_serve(*args: str, cwd: Path, env: dict[str, str] | None = None
                ) -> tuple[subprocess.Popen, str, str]:
    """Start `serve ... --port 0`; return the process, the line it printed and its URL."""
    process = subprocess.Popen([sys.executable, "-m", "mnist_twolayer", "serve", *args,
                                "--port", "0"], cwd=cwd, stdout=subprocess.PIPE,
                               stderr=subprocess.PIPE, text=True, env=env)
    line = process.stdout.readline()
    if not line:
        process.kill()
        pytest.fail(f"serve did not start: {process.communicate()[1]}")
    return process, line, line.split(": ")[-1].split()[0]


def get_json(url: str, headers: dict[str, str] | None = None) -> dict:
    port = int(url.rstrip("/").rsplit(":", 1)[1])
    conn = http.client.HTTPConnection("127.0.0.1", port, timeout=60)
    conn.request("GET", "/api/model", headers=headers or {})
    answer = json.loads(conn.getresponse().read())
    conn.close()
    return answer


def test_serve_takes_the_newest_run_opens_a_browser_and_stops_on_ctrl_c(run_dir, tmp_path):
    for name, age in (("new", 0), ("old", 3600)):
        (tmp_path / "runs" / name).mkdir(parents=True)
        shutil.copy(run_dir / "model.npz", tmp_path / "runs" / name / "model.npz")
        past = time.time() - age
        os.utime(tmp_path / "runs" / name / "model.npz", (past, past))
    opened = tmp_path / "opened.txt"
    browser = f"{sys.executable} -c 'import pathlib, sys; pathlib.Path(sys.argv[2])." \
              f"write_text(sys.argv[1])' %s {opened}"
    process, line, url = start_serve("--open", cwd=tmp_path,
                                     env={**os.environ, "BROWSER": browser})
    try:
        newest = tmp_path / "runs" / "new" / "model.npz"
        assert re.fullmatch(r"http://127\.0\.0\.1:[0-9]+/", url)
        assert line == f"digit pad for {newest.resolve()}: {url}  (Ctrl-C stops it)\n"
        assert get_json(url)["path"] == str(newest.resolve())
        while not opened.exists() or not opened.read_text():  # the browser runs in a thread
            assert process.poll() is None
            time.sleep(0.05)
        assert opened.read_text() == url
        process.send_signal(signal.SIGINT)
        out, err = process.communicate(timeout=60)
    finally:
        process.kill()
    assert process.returncode == 0
    assert (out, err) == ("", "digit pad stopped\n")


def test_serve_on_another_host_warns_once(run_dir, tmp_path):
    process, _, url = start_serve(str(run_dir), "--host", "0.0.0.0", cwd=tmp_path)
    try:
        assert url.startswith("http://127.0.0.1:")  # where this machine's browser finds it
        # served to the network, it answers whatever name it was reached by
        assert get_json(url, {"Host": "pad.example:80"})["sizes"] == [784, 256, 10]
        process.send_signal(signal.SIGINT)
        _, err = process.communicate(timeout=60)
    finally:
        process.kill()
    assert process.returncode == 0
    assert err == ("warning: --host 0.0.0.0: the digit pad is reachable from the network, by "
                   "anyone who can reach this machine\ndigit pad stopped\n")


def test_serve_on_a_port_in_use_is_one_line(run_dir, tmp_path):
    with socket.socket() as taken:
        taken.bind(("127.0.0.1", 0))
        taken.listen()
        port = taken.getsockname()[1]
        done = run_cli("serve", str(run_dir), "--port", str(port), cwd=tmp_path)
    assert (done.returncode, done.stdout) == (2, "")
    assert done.stderr == (f"error: cannot listen on 127.0.0.1:{port}: the port is in use; stop "
                           f"what runs there or choose another --port\n")


def test_serve_without_a_model_says_train_first(tmp_path):
    done = run_cli("serve", cwd=tmp_path)
    assert (done.returncode, done.stdout) == (2, "")
    assert done.stderr == ("error: no model given and no runs/*/model.npz here; train first: "
                           "python -m mnist_twolayer train\n")


def test_serve_refuses_what_it_cannot_serve(run_dir, tmp_path, capsys):
    from mnist_twolayer.network import TwoLayerNet

    TwoLayerNet(100, 5, 10).save(tmp_path / "small.npz")
    (tmp_path / "empty").mkdir()
    cases = [
        ([str(tmp_path / "empty")], f"{tmp_path / 'empty'} holds no model.npz; give a model.npz "
                                    f"or the folder of a finished run"),
        ([str(tmp_path / "small.npz")], f"{tmp_path / 'small.npz'} takes 100 inputs; the digit "
                                        f"pad prepares 28x28 digits (784 inputs)"),
        ([str(tmp_path / "nope.npz")], f"{tmp_path / 'nope.npz'}: no such file"),
        ([str(run_dir), "--host", "ä..b"], "cannot listen on ä..b:8000: not a valid host name"),
    ]
    for args, message in cases:
        assert main(["serve", *args]) == 2
        assert capsys.readouterr() == ("", f"error: {message}\n")
    assert main(["serve", str(run_dir), "--host", "nonexistent.invalid"]) == 2
    err = capsys.readouterr().err  # the resolver's words vary: offline, or no such name
    assert err.startswith("error: cannot listen on nonexistent.invalid:8000: unknown host (")
    assert err.endswith("); use an address such as 127.0.0.1\n") and err.count("\n") == 1
    assert main(["serve", str(run_dir), "--port", "70000"]) == 2
    assert capsys.readouterr().err == ("error: python -m mnist_twolayer serve: argument --port: "
                                       "'70000' must be at most 65535 (see --help)\n")


# --- the page, in a real browser ---


@pytest.fixture(scope="module")
def browser():
    sync_api = pytest.importorskip("playwright.sync_api",
                                   reason="Playwright is missing: pip install -e '.[dev]'")
    if not CHROMIUM.exists():
        pytest.skip(f"no Chromium at {CHROMIUM}; install it with: apt-get install -y chromium")
    with sync_api.sync_playwright() as playwright:
        chromium = playwright.chromium.launch(executable_path=str(CHROMIUM), args=CHROMIUM_ARGS)
        yield chromium
        chromium.close()


@pytest.fixture
def page(browser, server):
    """The pad in a fresh tab; every request it makes, and every error it logs, is kept."""
    from playwright.sync_api import expect  # present: the browser fixture made sure

    context = browser.new_context(viewport={"width": 1100, "height": 720})
    tab = context.new_page()
    tab.requests, tab.problems = [], []
    tab.on("request", lambda request: tab.requests.append(request.url))
    tab.on("console", lambda m: tab.problems.append(m.text) if m.type == "error" else None)
    tab.on("pageerror", lambda error: tab.problems.append(str(error)))
    tab.goto(server.url)
    expect(tab.locator("#model")).to_have_text(re.compile(r"^/.*model\.npz · 784-256-10 "))
    yield tab
    assert tab.problems == []
    assert all(url.startswith((server.url, "data:")) for url in tab.requests), tab.requests
    context.close()


VERTICAL = [(0.5, 0.15), (0.5, 0.85)]
SEVEN = [[(0.25, 0.22), (0.75, 0.22)], [(0.75, 0.22), (0.42, 0.85)]]


def draw(page, *strokes: list[tuple[float, float]]) -> None:
    """Draw strokes with the mouse (fractions of the pad), then wait until the page shows
    the answer for what is drawn."""
    box = page.locator("#pad").bounding_box()
    for stroke in strokes:
        (x, y), rest = stroke[0], stroke[1:]
        page.mouse.move(box["x"] + x * box["width"], box["y"] + y * box["height"])
        page.mouse.down()
        for x, y in rest:
            page.mouse.move(box["x"] + x * box["width"], box["y"] + y * box["height"], steps=12)
        page.mouse.up()
    idle(page)


def idle(page) -> None:
    page.wait_for_selector("body[data-state='idle']", state="attached")


def shown_probabilities(page) -> list[str | None]:
    return page.locator("#probabilities .bar").evaluate_all(
        "rows => rows.map(row => row.dataset.probability ?? null)")


def canvas_png(page) -> bytes:
    """The drawing exactly as the page holds it, as PNG bytes."""
    url = page.locator("#pad").evaluate("pad => pad.toDataURL('image/png')")
    import base64

    return base64.b64decode(url.split(",", 1)[1])


def pixels(page, selector: str) -> np.ndarray:
    """The RGBA pixels of a canvas, as the page holds them."""
    data = page.locator(selector).evaluate(
        "c => Array.from(c.getContext('2d').getImageData(0, 0, c.width, c.height).data)")
    return np.array(data, np.uint8).reshape(-1, 4)


def test_a_vertical_stroke_reads_1(page, server):
    draw(page, VERTICAL)
    assert page.locator("#digit").text_content() == "1"
    # what the page shows is the API's answer for the very drawing on the pad
    status, answer = post_image(server, canvas_png(page))
    assert status == 200 and answer["digit"] == 1 and max(answer["probabilities"]) > 0.9
    assert [float(p) for p in shown_probabilities(page)] == answer["probabilities"]
    expected = np.floor(np.array(answer["prepared"]) * 255 + 0.5).astype(np.uint8).ravel()
    shown = pixels(page, "#prepared")
    assert (shown[:, 0] == expected).all() and (shown[:, 3] == 255).all()


def test_a_seven_in_two_strokes_reads_7(page):
    draw(page, SEVEN[0])
    draw(page, SEVEN[1])
    assert page.locator("#digit").text_content() == "7"
    assert page.locator(".bar.best").get_attribute("data-digit") == "7"


def test_the_probabilities_on_the_page_sum_to_1(page):
    draw(page, *SEVEN)
    shown = [float(p) for p in shown_probabilities(page)]
    # float32 softmax: each p within a few float32 ulps (2^-24) of exact, so the ten sum to 1
    # within 10 * 4 * 2^-24 < 3e-6
    assert len(shown) == 10 and abs(sum(shown) - 1) < 3e-6
    texts = page.locator("#probabilities .v").all_text_contents()
    assert texts == [f"{100 * p:.1f}%" for p in shown]


def test_clear_empties_the_pad_and_the_prediction(page):
    draw(page, VERTICAL)
    assert page.locator("#digit").text_content() == "1"
    page.click("#clear")
    idle(page)
    assert page.locator("#digit").text_content() == ""
    assert shown_probabilities(page) == [None] * 10
    assert page.locator("#pad").evaluate(  # counted in the page: 280x280 is too many to send
        "c => c.getContext('2d').getImageData(0, 0, c.width, c.height).data"
        ".filter(v => v !== 255).length") == 0
    assert (pixels(page, "#prepared")[:, :3] == 0).all()
    assert page.locator("#clear").is_disabled() and page.locator("#undo").is_disabled()


def test_an_answer_that_arrives_after_clear_is_dropped(page):
    draw(page, VERTICAL)
    held = []
    page.route("**/api/predict", lambda route: held.append(route))  # held until released
    box = page.locator("#pad").bounding_box()
    page.mouse.click(box["x"] + box["width"] * 0.5, box["y"] + box["height"] * 0.9)  # a dot
    while not held:
        page.wait_for_timeout(20)
    page.click("#clear")
    assert len(held) == 1  # one request at a time, and nothing drawn since
    held[0].continue_()  # the server reads the drawing as 1; the page must not show it
    idle(page)
    assert page.locator("#digit").text_content() == ""
    assert shown_probabilities(page) == [None] * 10


def test_undo_takes_back_the_last_stroke(page, server):
    draw(page, SEVEN[0])
    first_stroke = canvas_png(page)
    draw(page, SEVEN[1])
    page.click("#undo")
    idle(page)
    assert canvas_png(page) == first_stroke
    _, answer = post_image(server, first_stroke)
    assert [float(p) for p in shown_probabilities(page)] == answer["probabilities"]


def test_screenshots_of_both_views_are_not_blank(page, run_dir, tmp_path):
    draw(page, *SEVEN)
    page.screenshot(path=tmp_path / "pad.png")
    with Image.open(tmp_path / "pad.png") as shot:
        grey = np.asarray(shot.convert("L"), dtype=np.float64)
    assert grey.shape == (720, 1100) and grey.std() > 20
    page.click("#tab-run")
    page.wait_for_selector("#view-run img")
    assert page.locator("#view-pad").is_hidden()
    sizes = page.locator("#view-run img").evaluate_all(
        "imgs => Promise.all(imgs.map(img => img.decode().then(() => "
        "[img.getAttribute('src'), img.naturalWidth, img.naturalHeight])))")
    expected = []
    for name in FIGURES:
        with Image.open(run_dir / name) as figure:
            expected.append([f"/run/{name}", *figure.size])
    assert sizes == expected
    metrics = json.loads((run_dir / "metrics.json").read_text())
    row = page.locator("#metrics tr", has_text="test_accuracy")
    assert row.locator("td").all_text_contents() == ["test_accuracy",
                                                     f"{100 * metrics['test_accuracy']:.2f}%"]
    page.screenshot(path=tmp_path / "run.png", full_page=True)
    with Image.open(tmp_path / "run.png") as shot:
        assert np.asarray(shot.convert("L"), dtype=np.float64).std() > 20
