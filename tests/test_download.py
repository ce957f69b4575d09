"""Downloads against HTTP servers on 127.0.0.1, local folders, and the download / info CLI."""

from __future__ import annotations

import gzip
import hashlib
import json
import shutil
import threading
import time
from pathlib import Path

import numpy as np
import pytest
from conftest import LocalServer, Tiny, run_cli

from mnist_twolayer import cli, datasets, idx
from mnist_twolayer.datasets import load_mnist
from mnist_twolayer.download import ENV_MIRROR, download, mirror_list
from mnist_twolayer.errors import DatasetError

REPO = Path(__file__).resolve().parent.parent
DEBIAN_FASHION = Path("/usr/share/datasets/fashion-mnist")
FAST = {"timeout": (2.0, 2.0), "retries": 0, "backoff": 0.0}


def serve_tiny(server: LocalServer, tiny: Tiny, prefix: str = "/tiny/") -> str:
    for f in tiny.spec.files:
        server.files[prefix + f.filename] = tiny.gz(f.split, f.kind)
    return server.url + prefix


def assert_installed(tiny: Tiny) -> None:
    """Every file verifies, and no temporary or partial file is left behind."""
    names = sorted(p.name for p in tiny.folder.iterdir())
    assert names == sorted(n for f in tiny.spec.files
                           for n in (f.filename, f"{f.stem}.npy", f"{f.stem}.npy.json"))
    (x, t), (x_test, t_test) = load_mnist(False, False, dataset="tiny", data_dir=tiny.data_dir,
                                          download=False)
    np.testing.assert_array_equal(t, tiny.arrays["train", "labels"])
    np.testing.assert_array_equal(x_test[:, 0], tiny.arrays["test", "images"])


# --- the network ---


def test_success_then_present(http_server, tiny: Tiny) -> None:
    server = http_server()
    mirror = serve_tiny(server, tiny)
    results = download("tiny", tiny.data_dir, mirrors=[mirror], quiet=True, **FAST)
    assert [(r.filename, r.action, r.source) for r in results] == [
        (f.filename, "downloaded", mirror) for f in tiny.spec.files]
    assert_installed(tiny)
    assert len(server.requests) == 4
    again = download("tiny", tiny.data_dir, mirrors=[mirror], quiet=True, **FAST)
    assert {r.action for r in again} == {"present"}
    assert len(server.requests) == 4
    forced = download("tiny", tiny.data_dir, mirrors=[mirror], force=True, quiet=True, **FAST)
    assert {r.action for r in forced} == {"downloaded"}
    assert len(server.requests) == 8


def test_404_then_second_mirror(http_server, tiny: Tiny) -> None:
    server = http_server()
    good = serve_tiny(server, tiny)
    results = download("tiny", tiny.data_dir, mirrors=[server.url + "/missing/", good],
                       quiet=True, **FAST)
    assert {r.source for r in results} == {good}
    assert [path.split("/")[1] for path, _, _ in server.requests] == ["missing", "tiny"] * 4
    assert_installed(tiny)


def test_every_mirror_fails(http_server, tiny: Tiny) -> None:
    server = http_server()
    server.files["/bad/train-images-idx3-ubyte.gz"] = b"not gzip"
    mirrors = [server.url + "/gone/", server.url + "/bad/", "http://127.0.0.1:9/"]
    with pytest.raises(DatasetError) as info:
        download("tiny", tiny.data_dir, mirrors=mirrors, quiet=True, **FAST)
    assert str(info.value) == (
        f"could not get tiny file train-images-idx3-ubyte.gz: "
        f"{server.url}/gone/: HTTP 404 Not Found; "
        f"{server.url}/bad/: payload sha256 {hashlib.sha256(b'not gzip').hexdigest()[:16]}... "
        "does not match "
        f"train-images-idx3-ubyte.gz's {tiny.spec.files[0].sha256[:16]}... (corrupt or wrong "
        "file); http://127.0.0.1:9/: connection failed (Connection refused) (after 1 attempt); "
        "for a local copy use --from DIR or --mirror URL")
    assert not [p for p in tiny.folder.iterdir()]


def test_wrong_bytes_never_enter_the_cache(http_server, tiny: Tiny) -> None:
    server = http_server()
    mirror = serve_tiny(server, tiny)
    labels = "/tiny/train-labels-idx1-ubyte.gz"
    server.files[labels] = gzip.compress(idx.encode_idx(np.zeros(20, np.uint8)))
    with pytest.raises(DatasetError, match=r"train-labels-idx1-ubyte.gz: .*/tiny/: payload "
                                           r"sha256 [0-9a-f]{16}\.\.\. does not match"):
        download("tiny", tiny.data_dir, mirrors=[mirror], quiet=True, **FAST)
    assert sorted(p.name for p in tiny.folder.glob("*.gz")) == ["train-images-idx3-ubyte.gz"]
    assert not list(tiny.folder.glob(".train-labels*"))  # no partial or temporary file either
    # the next mirror with the right bytes fills the gap and keeps the verified file
    good = serve_tiny(server, tiny, "/good/")
    results = download("tiny", tiny.data_dir, mirrors=[mirror, good], quiet=True, **FAST)
    assert [(r.action, r.source) for r in results] == [
        ("present", None), ("downloaded", good), ("downloaded", mirror), ("downloaded", mirror)]
    assert_installed(tiny)


def test_truncated_body(http_server, tiny: Tiny) -> None:
    server = http_server()
    mirror = serve_tiny(server, tiny)
    server.truncate["/tiny/train-images-idx3-ubyte.gz"] = -1
    server.no_range.add("/tiny/train-images-idx3-ubyte.gz")
    with pytest.raises(DatasetError) as info:
        download("tiny", tiny.data_dir, mirrors=[mirror], quiet=True,
                 timeout=(2.0, 2.0), retries=2, backoff=0.01)
    assert str(info.value) == (
        f"could not get tiny file train-images-idx3-ubyte.gz: {mirror}: connection broken "
        "mid-transfer (truncated body) (after 3 attempts); for a local copy use --from DIR or "
        "--mirror URL")
    assert len(server.requests) == 3
    assert not (tiny.folder / "train-images-idx3-ubyte.gz").exists()


def test_stalling_server_times_out(http_server, tiny: Tiny) -> None:
    server = http_server()
    mirror = serve_tiny(server, tiny)
    server.stall.add("/tiny/train-images-idx3-ubyte.gz")
    start = time.monotonic()
    with pytest.raises(DatasetError) as info:
        download("tiny", tiny.data_dir, mirrors=[mirror], quiet=True,
                 timeout=(1.0, 0.5), retries=1, backoff=0.01)
    # the server stalls for 30 s: only the client's own read timeout ends it sooner (2 x 0.5 s
    # here; 20 s leaves room for a loaded machine and still cannot be the stall's end)
    assert time.monotonic() - start < 20
    assert str(info.value) == (
        f"could not get tiny file train-images-idx3-ubyte.gz: {mirror}: read timeout (the "
        "server stopped sending) (after 2 attempts); for a local copy use --from DIR or "
        "--mirror URL")


def test_resume_with_range(http_server, tiny: Tiny) -> None:
    server = http_server()
    mirror = serve_tiny(server, tiny)
    path = "/tiny/train-images-idx3-ubyte.gz"
    size = len(server.files[path])
    server.truncate[path] = 1  # the first response is cut in half, later ones are whole
    download("tiny", tiny.data_dir, mirrors=[mirror], quiet=True,
             timeout=(2.0, 2.0), retries=1, backoff=0.0)
    first, second = server.requests_for(path, 2)
    assert "Range" not in first[0] and first[1] == size // 2
    assert second[0]["Range"] == f"bytes={size // 2}-"
    assert second[0]["If-Range"].startswith('"')
    assert second[1] == size - size // 2  # only the rest travelled
    assert_installed(tiny)


def test_restart_when_range_is_ignored(http_server, tiny: Tiny) -> None:
    server = http_server()
    mirror = serve_tiny(server, tiny)
    path = "/tiny/train-images-idx3-ubyte.gz"
    size = len(server.files[path])
    server.truncate[path] = 1
    server.no_range.add(path)
    download("tiny", tiny.data_dir, mirrors=[mirror], quiet=True,
             timeout=(2.0, 2.0), retries=1, backoff=0.0)
    first, second = server.requests_for(path, 2)
    assert "Range" not in first[0] and first[1] < size  # cut short
    assert second[0]["Range"] == f"bytes={size // 2}-" and second[1] == size  # a 200: all again
    assert_installed(tiny)


def test_partial_from_another_mirror_is_not_resumed(http_server, tiny: Tiny) -> None:
    """A gz's bytes differ between mirrors, so a partial file resumes only from its own URL."""
    server = http_server()
    first = serve_tiny(server, tiny, "/a/")
    second = serve_tiny(server, tiny, "/b/")
    server.truncate["/a/train-images-idx3-ubyte.gz"] = -1
    with pytest.raises(DatasetError):
        download("tiny", tiny.data_dir, mirrors=[first], quiet=True, **FAST)
    assert (tiny.folder / ".train-images-idx3-ubyte.gz.part").exists()
    download("tiny", tiny.data_dir, mirrors=[second], quiet=True, **FAST)
    headers = [h for p, h, _ in server.requests if p == "/b/train-images-idx3-ubyte.gz"]
    assert len(headers) == 1 and "Range" not in headers[0]
    assert_installed(tiny)


def test_concurrent_downloads_share_the_work(http_server, tiny: Tiny) -> None:
    server = http_server()
    mirror = serve_tiny(server, tiny)
    server.delay = 0.05
    results: list[object] = []

    def run() -> None:
        try:
            results.append(download("tiny", tiny.data_dir, mirrors=[mirror], quiet=True, **FAST))
        except Exception as exc:  # surfaced by the assertion below
            results.append(exc)

    threads = [threading.Thread(target=run) for _ in range(3)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join(30)
    assert all(isinstance(r, list) for r in results), results
    assert len(server.requests) == 4  # the lock made the others find verified files
    assert sorted(r.action for batch in results for r in batch) == ["downloaded"] * 4 + [
        "present"] * 8
    assert_installed(tiny)


def test_mirror_order(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv(ENV_MIRROR, "http://env-a/x, http://env-b/")
    assert mirror_list("mnist", ["http://flag/", "http://env-a/x/"]) == [
        "http://flag/", "http://env-a/x/", "http://env-b/",
        *datasets.DATASETS["mnist"].mirrors]
    with pytest.raises(DatasetError) as info:
        mirror_list("mnist", ["/srv/mnist"])
    assert str(info.value) == ("mirror '/srv/mnist' is not an http:// or https:// URL (for a "
                               "local folder use --from DIR)")


def test_missing_files_download_from_env_mirror(http_server, tiny: Tiny,
                                                monkeypatch: pytest.MonkeyPatch) -> None:
    server = http_server()
    monkeypatch.setenv(ENV_MIRROR, serve_tiny(server, tiny))
    (_, t), _ = load_mnist(dataset="tiny", data_dir=tiny.data_dir)
    np.testing.assert_array_equal(t, tiny.arrays["train", "labels"])
    assert len(server.requests) == 4


# --- local folders ---


def test_from_dir(tiny: Tiny) -> None:
    results = download("tiny", tiny.data_dir, from_dir=tiny.source)
    assert {(r.action, r.source) for r in results} == {("copied", str(tiny.source))}
    assert_installed(tiny)


def test_from_dir_takes_decompressed_idx_files_and_installs_them_as_gz(tiny: Tiny,
                                                                       tmp_path: Path) -> None:
    """Some distributions ship the four files decompressed; they verify by the same payload
    sha256 and enter the cache as gz files like any other."""
    plain = tmp_path / "plain"
    plain.mkdir()
    for f in tiny.spec.files:
        (plain / f.stem).write_bytes(gzip.decompress(tiny.gz(f.split, f.kind)))
    results = download("tiny", tiny.data_dir, from_dir=plain)
    assert {(r.action, r.source) for r in results} == {("copied", str(plain))}
    for f in tiny.spec.files:
        installed = (tiny.folder / f.filename).read_bytes()
        assert installed[:2] == b"\x1f\x8b"
        assert gzip.decompress(installed) == (plain / f.stem).read_bytes()
    assert_installed(tiny)
    damaged = bytearray((plain / "t10k-labels-idx1-ubyte").read_bytes())
    damaged[-1] ^= 1
    (plain / "t10k-labels-idx1-ubyte").write_bytes(bytes(damaged))
    with pytest.raises(DatasetError, match=r"t10k-labels-idx1-ubyte.gz: .*: payload sha256 .* "
                                           r"\(corrupt or wrong file\)"):
        download("tiny", tiny.data_dir, from_dir=plain, force=True)


def test_from_missing_dir(tiny: Tiny) -> None:
    with pytest.raises(DatasetError) as info:
        download("tiny", tiny.data_dir, from_dir=tiny.source / "nope")
    assert str(info.value) == f"--from {tiny.source / 'nope'}: no such folder"


def test_fashion_from_dir_rejects_files_that_do_not_verify(tmp_path: Path) -> None:
    source = tmp_path / "fake"
    for f in datasets.DATASETS["fashion-mnist"].files:
        shape = (3, 28, 28) if f.kind == "images" else (3,)
        idx.write_idx(source / f.filename, np.ones(shape, np.uint8))
    with pytest.raises(DatasetError) as info:
        download("fashion-mnist", tmp_path / "data", from_dir=source)
    assert str(info.value).startswith(
        f"could not get fashion-mnist file train-images-idx3-ubyte.gz: {source}: payload sha256 ")
    assert str(info.value).endswith("does not match train-images-idx3-ubyte.gz's "
                                    "c59f468a2f672dc8... (corrupt or wrong file)")
    assert not [p for p in (tmp_path / "data" / "fashion-mnist").iterdir()]


needs_debian = pytest.mark.skipif(not DEBIAN_FASHION.is_dir(),
                                  reason="Debian's dataset-fashion-mnist is not installed")


@needs_debian
def test_fashion_found_without_being_named(tmp_path: Path,
                                           monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv(ENV_MIRROR, "http://127.0.0.1:9/")  # must not be needed
    (x, t), (x_test, t_test) = load_mnist(dataset="fashion-mnist", data_dir=tmp_path)
    assert x.shape == (60000, 784) and x_test.shape == (10000, 784)
    assert np.bincount(t).tolist() == [6000] * 10
    assert np.bincount(t_test).tolist() == [1000] * 10
    info = datasets.dataset_info("fashion-mnist", tmp_path)
    assert all(s["verified"] for s in info["splits"].values())


@needs_debian
def test_fashion_from_dir_with_recompressed_payloads(tmp_path: Path) -> None:
    """Different gz bytes, the same payloads: verification is of payloads. (The images are
    copied as they are: recompressing 47 MB would dominate the test run.)"""
    source = tmp_path / "recompressed"
    source.mkdir()
    for f in datasets.DATASETS["fashion-mnist"].files:
        if f.kind == "labels":
            idx.write_idx(source / f.filename, idx.read_idx(DEBIAN_FASHION / f.filename))
        else:
            shutil.copy(DEBIAN_FASHION / f.filename, source / f.filename)
    assert ((source / "t10k-labels-idx1-ubyte.gz").read_bytes()
            != (DEBIAN_FASHION / "t10k-labels-idx1-ubyte.gz").read_bytes())
    results = download("fashion-mnist", tmp_path / "data", from_dir=source)
    assert {(r.action, r.source) for r in results} == {("copied", str(source))}


# --- the CLI ---


def test_cli_info_json_of_the_shipped_mnist(capsys: pytest.CaptureFixture[str],
                                            monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.delenv(datasets.ENV_DATA_DIR, raising=False)
    assert cli.main(["info", "--json"]) == 0
    info = json.loads(capsys.readouterr().out)
    assert info["dataset"] == "mnist"
    assert info["data_dir"] == str(REPO / "data") and info["data_dir_source"] == "checkout"
    assert info["splits"]["train"] == {
        "present": True, "verified": True, "samples": 60000, "error": None,
        "label_counts": [5923, 6742, 5958, 6131, 5842, 5421, 5918, 6265, 5851, 5949],
        "files": {kind: {"file": f"train-{kind}-idx{3 if kind == 'images' else 1}-ubyte.gz",
                         "present": True, "verified": True, "error": None}
                  for kind in ("images", "labels")}}
    assert info["splits"]["test"]["label_counts"] == [
        980, 1135, 1032, 1010, 982, 892, 958, 1028, 974, 1009]


def test_cli_info_table(capsys: pytest.CaptureFixture[str]) -> None:
    assert cli.main(["info", "--data-dir", str(REPO / "data")]) == 0
    assert capsys.readouterr().out == (
        "dataset   mnist\n"
        f"data_dir  {REPO / 'data'}  (argument)\n"
        f"folder    {REPO / 'data' / 'mnist'}\n"
        "split  present  verified  samples  label counts 0..9\n"
        "train  yes      yes         60000  5923 6742 5958 6131 5842 5421 5918 6265 5851 5949\n"
        "test   yes      yes         10000  980 1135 1032 1010 982 892 958 1028 974 1009\n")


def test_cli_info_table_with_problems(tiny: Tiny, capsys: pytest.CaptureFixture[str]) -> None:
    download("tiny", tiny.data_dir, from_dir=tiny.source)
    (tiny.folder / "t10k-labels-idx1-ubyte.gz").unlink()
    gz = tiny.folder / "train-labels-idx1-ubyte.gz"
    gz.write_bytes(b"junk")
    assert cli.main(["info", "--dataset", "tiny", "--data-dir", str(tiny.data_dir)]) == 0
    out = capsys.readouterr().out.splitlines()
    assert out[3:] == [
        "split  present  verified  samples  label counts 0..9",
        "train  yes      no              -  -",
        "test   no       no              -  -",
        f"  train-labels-idx1-ubyte.gz: {gz}: payload sha256 "
        f"{hashlib.sha256(b'junk').hexdigest()[:16]}... does not match "
        f"train-labels-idx1-ubyte.gz's {tiny.spec.file('train', 'labels').sha256[:16]}... "
        "(corrupt or wrong file)",
        "  t10k-labels-idx1-ubyte.gz: missing",
    ]


def test_cli_download_from_local_mirror_restores_a_deleted_file(http_server,
                                                                tmp_path: Path) -> None:
    """The issue's acceptance path, on the real MNIST served from data/mnist."""
    server = http_server()
    for f in datasets.DATASETS["mnist"].files:
        server.files[f"/mnist/{f.filename}"] = (REPO / "data" / "mnist" / f.filename).read_bytes()
    mirror = f"{server.url}/mnist/"
    folder = tmp_path / "mnist"
    assert cli.main(["download", "--data-dir", str(tmp_path), "--mirror", mirror, "--quiet"]) == 0
    assert len(server.requests) == 4
    (folder / "train-labels-idx1-ubyte.gz").unlink()
    result = run_cli("download", "--data-dir", str(tmp_path), "--mirror", mirror)
    assert result.returncode == 0, result.stderr
    assert result.stdout == (
        "train-images-idx3-ubyte.gz: already present and verified\n"
        f"train-labels-idx1-ubyte.gz: downloaded from {mirror} and verified\n"
        "t10k-images-idx3-ubyte.gz: already present and verified\n"
        "t10k-labels-idx1-ubyte.gz: already present and verified\n"
        f"mnist: 4 files verified in {folder}\n")
    assert result.stderr == ""  # no progress bar off a terminal
    assert [p for p, _, _ in server.requests[4:]] == ["/mnist/train-labels-idx1-ubyte.gz"]
    info = datasets.dataset_info("mnist", tmp_path)
    assert info["splits"]["train"]["label_counts"][:3] == [5923, 6742, 5958]


def test_cli_unknown_dataset() -> None:
    result = run_cli("download", "--dataset", "nope")
    assert result.returncode == 2
    assert result.stderr == "error: unknown dataset 'nope' (known: fashion-mnist, mnist)\n"
    assert result.stdout == ""


def test_cli_corrupted_gz(tmp_path: Path) -> None:
    folder = tmp_path / "mnist"
    folder.mkdir()
    gz = folder / "t10k-labels-idx1-ubyte.gz"
    data = bytearray((REPO / "data" / "mnist" / gz.name).read_bytes())
    data[len(data) // 2] ^= 0xFF
    gz.write_bytes(bytes(data))
    empty = tmp_path / "empty"
    empty.mkdir()
    result = run_cli("download", "--data-dir", str(tmp_path), "--from", str(empty), "--quiet")
    assert result.returncode == 2
    assert result.stderr == (f"error: could not get mnist file train-images-idx3-ubyte.gz: "
                             f"{empty}: neither train-images-idx3-ubyte.gz nor "
                             f"train-images-idx3-ubyte is there\n")
    info = run_cli("info", "--json", "--data-dir", str(tmp_path))
    assert info.returncode == 0
    test_split = json.loads(info.stdout)["splits"]["test"]
    assert test_split["files"]["labels"]["present"] is True
    assert test_split["files"]["labels"]["verified"] is False
    assert test_split["files"]["labels"]["error"].startswith(f"{gz}: ")
    assert test_split["label_counts"] is None and test_split["samples"] is None


def test_cli_load_of_corrupted_gz_is_one_line(tmp_path: Path) -> None:
    labels = tmp_path / "mnist" / "train-labels-idx1-ubyte.gz"
    labels.parent.mkdir()
    labels.write_bytes(gzip.compress(b"\x00\x00\x08\x01\x00\x00\x00\x02\x05\x00"))
    for name in ("train-images-idx3-ubyte.gz", "t10k-images-idx3-ubyte.gz",
                 "t10k-labels-idx1-ubyte.gz"):
        shutil.copy(REPO / "data" / "mnist" / name, labels.parent / name)
    result = run_cli("download", "--data-dir", str(tmp_path), "--from", str(tmp_path / "mnist"))
    assert result.returncode == 2
    assert "Traceback" not in result.stderr and result.stderr.count("\n") == 1
    assert result.stderr.startswith(
        f"error: could not get mnist file train-labels-idx1-ubyte.gz: {labels.parent}: payload "
        "sha256 ")

