"""Fault injection for downloads: refused connections, unknown hosts, HTTP errors, stalls, cut
bodies, bad gzip, leftovers of killed downloads, unwritable folders, a full disk and two
processes at once. After each, the dataset folder holds only verified files (plus, after a
failed transfer, the hidden partial file a later run resumes from).

test_download.py already covers 404 then the next mirror, checksum failures, a body cut short
with Content-Length, a stall before the body, Range resume within one run and threads sharing
the lock; these tests do not repeat them.
"""

from __future__ import annotations

import errno
import hashlib
import os
import re
import shutil
import socket
import subprocess
import sys
import time
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path

import numpy as np
import pytest
from conftest import LocalServer, Tiny, register
from faults_support import kill_when

from mnist_twolayer import cli, datasets, idx
from mnist_twolayer import download as fetching
from mnist_twolayer.datasets import DatasetSpec, load_mnist
from mnist_twolayer.download import ENV_MIRROR, download
from mnist_twolayer.errors import DatasetError
from mnist_twolayer.fileio import folder_lock

REPO = Path(__file__).resolve().parent.parent
FAST = {"timeout": (2.0, 2.0), "retries": 0, "backoff": 0.0}
IMAGES = "train-images-idx3-ubyte.gz"
HINT = "; for a local copy use --from DIR or --mirror URL"
# glibc, musl and macOS word a failed lookup differently; any of them is the right answer
UNRESOLVED = (r"connection failed \((Name or service not known|Temporary failure in name "
              r"resolution|No address associated with hostname|nodename nor servname provided, "
              r"or not known)\)")


# --- what the folder may hold ---


def assert_only_verified(folder: Path, spec: DatasetSpec, *, resumable: bool = False) -> None:
    """Every file in ``folder`` is a gz whose payload has the registry's sha256, a ``.npy``
    cache equal to its verified gz's array (with its sidecar). With
    ``resumable``, hidden partial downloads (``.NAME.gz.part`` and its ``.json``), which are
    never read as data, may remain too. Nothing else: no temporary file, no partial file under a
    real name, no cache of a file that is not there."""
    by_name = {f.filename: f for f in spec.files}
    by_stem = {f.stem: f for f in spec.files}
    verified: dict[str, np.ndarray] = {}
    for path in sorted(folder.iterdir()):
        name = path.name
        if name in by_name:
            payload = idx.read_payload(path)
            assert hashlib.sha256(payload).hexdigest() == by_name[name].sha256, name
            verified[by_name[name].stem] = idx.parse_idx(payload)
            continue
        partial = re.fullmatch(r"\.(.+)\.part(\.json)?", name)
        if resumable and partial and partial.group(1) in by_name:
            assert not (folder / partial.group(1)).exists() or partial.group(2), name
            continue
        cache = re.fullmatch(r"(.+)\.npy(\.json)?", name)
        assert cache and cache.group(1) in by_stem, f"unexpected file {name} in {folder}"
    for path in folder.glob("*.npy"):
        stem = path.name.removesuffix(".npy")
        assert stem in verified, f"{path.name} caches a gz that is not there"
        np.testing.assert_array_equal(np.load(path, allow_pickle=False), verified[stem])
        assert path.with_name(path.name + ".json").is_file()


# --- a server that misbehaves in more ways ---


def serve(server: LocalServer, tiny: Tiny, prefix: str) -> str:
    for f in tiny.spec.files:
        server.files[prefix + f.filename] = tiny.gz(f.split, f.kind)
    return server.url + prefix


def fault_prefix(url: str) -> str:
    return url.rstrip("/").rsplit("/", 1)[1]


@pytest.fixture
def refusing_url() -> Iterator[str]:
    """A URL on 127.0.0.1 whose port is bound but not listening: connections are refused."""
    sock = socket.socket()
    sock.bind(("127.0.0.1", 0))
    yield f"http://127.0.0.1:{sock.getsockname()[1]}/"
    sock.close()


# --- a mirror that fails, then the next one ---


@pytest.mark.parametrize("fault", ["refused", "unknown host", "403", "500"])
def test_failing_mirror_alone_is_one_error_and_then_the_next_mirror_serves(
        fault: str, http_server, tiny: Tiny, refusing_url: str) -> None:
    server = http_server()
    good = serve(server, tiny, "/good/")
    bad, expected, tries = {
        "refused": (refusing_url, "connection failed (Connection refused) (after 2 attempts)", 2),
        "unknown host": ("http://nonexistent.invalid/", UNRESOLVED, 1),  # no retry: pointless
        "403": (serve(server, tiny, "/forbidden/"), "HTTP 403 Forbidden", 1),  # no retry
        "500": (serve(server, tiny, "/broken/"),
                "HTTP 500 Internal Server Error (after 2 attempts)", 2),
    }[fault]
    if fault in ("403", "500"):
        for f in tiny.spec.files:
            server.status[f"/{fault_prefix(bad)}/{f.filename}"] = [int(fault), -1]
    with pytest.raises(DatasetError) as info:
        download("tiny", tiny.data_dir, mirrors=[bad], quiet=True, timeout=(2.0, 2.0),
                 retries=1, backoff=0.2)
    message = str(info.value)
    assert message.startswith(f"could not get tiny file {IMAGES}: {bad}: ")
    assert message.endswith(HINT) and "\n" not in message
    reason = message[len(f"could not get tiny file {IMAGES}: {bad}: "):-len(HINT)]
    if fault == "unknown host":
        assert re.fullmatch(UNRESOLVED, reason), reason  # no "(after 2 attempts)": not retried
    else:
        assert reason == expected
        if fault != "refused":
            assert len(server.requests_for(f"/{fault_prefix(bad)}/{IMAGES}", tries)) == tries
    assert_only_verified(tiny.folder, tiny.spec)
    results = download("tiny", tiny.data_dir, mirrors=[bad, good], quiet=True, **FAST)
    assert [(r.action, r.source) for r in results] == [("downloaded", good)] * 4
    assert_only_verified(tiny.folder, tiny.spec)


# --- bodies that stop, are cut short, or do not decompress ---


@pytest.fixture
def roomy(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Tiny:
    """Like ``tiny`` but with a 150 KB images file: bigger than the 64 KB the client reads at a
    time, so a stalled transfer keeps some of what it received."""
    rng = np.random.default_rng(1)
    arrays = {("train", "images"): rng.integers(0, 256, (200, 28, 28), dtype=np.uint8),
              ("train", "labels"): rng.integers(0, 10, 200, dtype=np.uint8),
              ("test", "images"): rng.integers(0, 256, (5, 28, 28), dtype=np.uint8),
              ("test", "labels"): rng.integers(0, 10, 5, dtype=np.uint8)}
    monkeypatch.delenv(ENV_MIRROR, raising=False)
    spec = register(monkeypatch, "roomy", arrays, tmp_path / "source")
    return Tiny(spec, tmp_path / "source", arrays, tmp_path / "data")


def test_body_stalling_midway_times_out_then_resumes_from_the_partial(http_server,
                                                                      roomy: Tiny) -> None:
    """The pulled network cable: the first run gives up after its retries and keeps what it
    received; the next run asks only for the rest (Range) and verifies the whole."""
    server = http_server()
    mirror = serve(server, roomy, "/roomy/")
    path = f"/roomy/{IMAGES}"
    size = len(server.files[path])
    server.stall_midway[path] = 2
    folder = roomy.data_dir / "roomy"
    started = time.monotonic()
    with pytest.raises(DatasetError) as info:
        download("roomy", roomy.data_dir, mirrors=[mirror], quiet=True, timeout=(1.0, 0.5),
                 retries=1, backoff=0.0)
    # the server stalls for 30 s: only the client's read timeout ends it sooner
    assert time.monotonic() - started < 20
    assert str(info.value) == (f"could not get roomy file {IMAGES}: {mirror}: read timeout (the "
                               f"server stopped sending) (after 2 attempts){HINT}")
    (first, sent1), (second, _) = server.requests_for(path, 2)
    assert "Range" not in first and sent1 == size // 2
    assert second["Range"].startswith("bytes=")  # the retry already resumed
    part = folder / f".{IMAGES}.part"
    kept = part.stat().st_size
    assert 1 << 16 <= kept < size  # whole 64 KB reads survive a stall
    assert_only_verified(folder, roomy.spec, resumable=True)

    download("roomy", roomy.data_dir, mirrors=[mirror], quiet=True, **FAST)
    third, sent3 = server.requests_for(path, 3)[2]
    assert third["Range"] == f"bytes={kept}-" and sent3 == size - kept  # only the rest
    assert_only_verified(folder, roomy.spec)


def test_body_cut_short_without_content_length_is_caught_by_verification(http_server,
                                                                         tiny: Tiny) -> None:
    """With no Content-Length the cut cannot be seen in transfer; the gzip check sees it."""
    server = http_server()
    cut = serve(server, tiny, "/cut/")
    good = serve(server, tiny, "/good/")
    server.no_length.add(f"/cut/{IMAGES}")
    with pytest.raises(DatasetError) as info:
        download("tiny", tiny.data_dir, mirrors=[cut], quiet=True, **FAST)
    assert str(info.value) == (
        f"could not get tiny file {IMAGES}: {cut}: damaged gzip file (Compressed file ended "
        f"before the end-of-stream marker was reached){HINT}")
    assert_only_verified(tiny.folder, tiny.spec)  # the cut file was deleted, not kept
    results = download("tiny", tiny.data_dir, mirrors=[cut, good], quiet=True, **FAST)
    assert [r.source for r in results] == [good, cut, cut, cut]
    assert_only_verified(tiny.folder, tiny.spec)


@pytest.mark.parametrize("damage, reason", [
    ("flipped deflate bytes", r"damaged gzip file \((invalid .*|CRC check failed .*)\)"),
    ("gzip header only", r"damaged gzip file \(Compressed file ended before the end-of-stream "
                         r"marker was reached\)"),
    ("wrong length trailer", r"damaged gzip file \(Incorrect length of data produced\)"),
])
def test_gz_that_does_not_decompress_never_enters_the_cache(damage: str, reason: str,
                                                            http_server, tiny: Tiny) -> None:
    server = http_server()
    bad = serve(server, tiny, "/bad/")
    good = serve(server, tiny, "/good/")
    data = bytearray(tiny.gz("train", "images"))
    if damage == "flipped deflate bytes":
        for i in range(len(data) // 3, len(data) // 3 + 16):
            data[i] ^= 0x5A
    elif damage == "gzip header only":
        data = data[:10]
    else:
        data[-4:] = (int.from_bytes(data[-4:], "little") + 1).to_bytes(4, "little")
    server.files[f"/bad/{IMAGES}"] = bytes(data)
    with pytest.raises(DatasetError) as info:
        download("tiny", tiny.data_dir, mirrors=[bad], quiet=True, **FAST)
    prefix = f"could not get tiny file {IMAGES}: {bad}: "
    assert str(info.value).startswith(prefix) and str(info.value).endswith(HINT)
    assert re.fullmatch(reason, str(info.value)[len(prefix):-len(HINT)]), str(info.value)
    assert_only_verified(tiny.folder, tiny.spec)
    download("tiny", tiny.data_dir, mirrors=[bad, good], quiet=True, **FAST)
    assert_only_verified(tiny.folder, tiny.spec)


# --- leftovers of a killed download ---


@pytest.mark.parametrize("leftover", ["part without sidecar", "part with a sidecar not an object",
                                      "part of a changed file",
                                      "truncated gz under the real name"])
def test_leftover_of_a_killed_download_is_replaced(leftover: str, http_server,
                                                   tiny: Tiny) -> None:
    server = http_server()
    mirror = serve(server, tiny, "/tiny/")
    gz = tiny.gz("train", "images")
    tiny.folder.mkdir(parents=True)
    part = tiny.folder / f".{IMAGES}.part"
    if leftover == "part without sidecar":
        part.write_bytes(b"\x1f\x8b junk that must not be resumed")
    elif leftover == "part with a sidecar not an object":
        part.write_bytes(b"\x1f\x8b junk that must not be resumed")
        part.with_name(part.name + ".json").write_text("[]")
    elif leftover == "part of a changed file":  # same URL, but the server's file changed since
        part.write_bytes(b"\x1f\x8b bytes of an older version")
        part.with_name(part.name + ".json").write_text(
            f'{{"url": "{mirror}{IMAGES}", "etag": "\\"0123456789abcdef\\"", '
            '"last_modified": null}')
    else:  # e.g. `wget` killed while writing the real name
        (tiny.folder / IMAGES).write_bytes(gz[: len(gz) // 2])
    results = download("tiny", tiny.data_dir, mirrors=[mirror], quiet=True, **FAST)
    assert [r.action for r in results] == ["downloaded"] * 4
    (headers, sent), = server.requests_for(f"/tiny/{IMAGES}", 1)
    assert sent == len(gz)  # the whole file, fresh
    if leftover == "part of a changed file":
        assert headers["If-Range"] == '"0123456789abcdef"'  # the server saw the stale validator
    else:
        assert "Range" not in headers
    assert_only_verified(tiny.folder, tiny.spec)


def test_download_process_killed_midway_leaves_a_partial_the_next_run_resumes(
        http_server, tmp_path: Path) -> None:
    """A real process, SIGKILLed while receiving the real MNIST: its lock dies with it, the
    partial file stays hidden, and the next run resumes it."""
    server = http_server()
    for f in datasets.DATASETS["mnist"].files:
        server.files[f"/mnist/{f.filename}"] = (REPO / "data" / "mnist" / f.filename).read_bytes()
    mirror = f"{server.url}/mnist/"
    path = f"/mnist/{IMAGES}"
    size = len(server.files[path])
    server.stall_midway[path] = 1
    folder = tmp_path / "mnist"
    part = folder / f".{IMAGES}.part"
    process = subprocess.Popen(
        [sys.executable, "-m", "mnist_twolayer", "download", "--data-dir", str(tmp_path),
         "--mirror", mirror, "--quiet"], stdout=subprocess.PIPE, stderr=subprocess.PIPE)
    # killed once it has all it will get: half the file, in 64 KB reads
    kill_when(process, lambda: part.exists() and part.stat().st_size > size // 2 - (1 << 16),
              timeout=30)
    assert not (folder / IMAGES).exists()
    kept = part.stat().st_size
    assert_only_verified(folder, datasets.DATASETS["mnist"], resumable=True)
    with folder_lock(folder, wait=False):  # the kernel released the dead process's lock
        pass  # (FolderInUse if it were still held)
    results = download("mnist", tmp_path, mirrors=[mirror], quiet=True, **FAST)
    assert [r.action for r in results] == ["downloaded"] * 4
    headers, sent = server.requests_for(path, 2)[1]
    assert headers["Range"] == f"bytes={kept}-" and sent == size - kept
    assert_only_verified(folder, datasets.DATASETS["mnist"])


# --- the data folder itself fails ---


@contextmanager
def read_only(folder: Path) -> Iterator[None]:
    """Make ``folder`` refuse new entries, for root too (root ignores permission bits, so it
    gets the immutable attribute); skip when neither works here."""
    root = os.geteuid() == 0
    if not root:
        folder.chmod(0o555)
    elif not shutil.which("chattr"):
        pytest.skip("running as root, without chattr to make a folder read-only")
    else:
        done = subprocess.run(["chattr", "+i", str(folder)], capture_output=True, text=True)
        if done.returncode:
            pytest.skip(f"running as root, and chattr +i fails here: {done.stderr.strip()}")
    try:
        try:
            (folder / ".probe").touch()
        except OSError:
            pass
        else:
            (folder / ".probe").unlink()
            pytest.skip(f"{folder} stays writable here")
        yield
    finally:
        if root:
            subprocess.run(["chattr", "-i", str(folder)], check=True)
        else:
            folder.chmod(0o755)


def test_data_folder_under_a_regular_file(tiny: Tiny, capsys) -> None:
    blocker = tiny.data_dir
    blocker.write_text("a file where the data folder should be")
    with pytest.raises(DatasetError) as info:
        download("tiny", blocker, from_dir=tiny.source)
    assert str(info.value) == (f"cannot create {blocker / 'tiny'} (Not a directory); choose "
                               "another place with --data-dir or MNIST_TWOLAYER_DATA")
    assert cli.main(["download", "--dataset", "tiny", "--data-dir", str(blocker),
                     "--from", str(tiny.source)]) == 2
    assert capsys.readouterr().err == f"error: {info.value}\n"


def test_read_only_new_data_folder(tiny: Tiny, capsys) -> None:
    tiny.folder.mkdir(parents=True)
    with read_only(tiny.folder):
        with pytest.raises(DatasetError) as info:
            download("tiny", tiny.data_dir, from_dir=tiny.source)
        assert re.fullmatch(
            rf"cannot write to {re.escape(str(tiny.folder))} \((Permission denied|Operation not "
            r"permitted)\); choose another place with --data-dir or MNIST_TWOLAYER_DATA",
            str(info.value)), info.value
        assert cli.main(["download", "--dataset", "tiny", "--data-dir", str(tiny.data_dir),
                         "--from", str(tiny.source)]) == 2
        assert capsys.readouterr().err == f"error: {info.value}\n"
    assert list(tiny.folder.iterdir()) == []


def test_read_only_folder_keeps_serving_what_it_holds(http_server, tiny: Tiny) -> None:
    """A folder that became read-only after a download: loads and `present` checks still work
    (the cache just cannot be written); fetching a missing file is one clear error, and nothing
    in the folder changes."""
    server = http_server()
    mirror = serve(server, tiny, "/tiny/")
    download("tiny", tiny.data_dir, mirrors=[mirror], quiet=True, **FAST)
    datasets.clear_cache("tiny", tiny.data_dir)
    with read_only(tiny.folder):
        (_, t), _ = load_mnist(dataset="tiny", data_dir=tiny.data_dir, download=False)
        np.testing.assert_array_equal(t, tiny.arrays["train", "labels"])
        results = download("tiny", tiny.data_dir, mirrors=[mirror], quiet=True, **FAST)
        assert [r.action for r in results] == ["present"] * 4
    assert len(server.requests) == 4
    (tiny.folder / "t10k-labels-idx1-ubyte.gz").unlink()
    before = {p.name: p.read_bytes() for p in tiny.folder.iterdir()}
    with read_only(tiny.folder):
        with pytest.raises(DatasetError) as info:
            download("tiny", tiny.data_dir, mirrors=[mirror], quiet=True, **FAST)
        # refused before any mirror is asked: the folder, not a mirror, is what failed
        assert re.fullmatch(
            rf"cannot write to {re.escape(str(tiny.folder))} \((Permission denied|Operation not "
            r"permitted)\); choose another place with --data-dir or MNIST_TWOLAYER_DATA",
            str(info.value)), info.value
    assert len(server.requests) == 4
    assert {p.name: p.read_bytes() for p in tiny.folder.iterdir()} == before
    assert_only_verified(tiny.folder, tiny.spec)
    download("tiny", tiny.data_dir, mirrors=[mirror], quiet=True, **FAST)  # writable again
    assert_only_verified(tiny.folder, tiny.spec)
    assert len(list(tiny.folder.glob("*.gz"))) == 4


def test_full_disk_during_download(http_server, tiny: Tiny,
                                   monkeypatch: pytest.MonkeyPatch, capsys) -> None:
    """Writes of the partial file fail with ENOSPC after 10 bytes: one line, verified files
    untouched; once space is back, the same command finishes the job."""
    server = http_server()
    mirror = serve(server, tiny, "/tiny/")
    download("tiny", tiny.data_dir, mirrors=[mirror], quiet=True, **FAST)
    for victim in tiny.folder.glob("train-labels-idx1-ubyte.*"):  # the gz and its cache
        victim.unlink()
    before = {p.name: p.read_bytes() for p in tiny.folder.iterdir()}
    real_open = open

    class Full:
        def __init__(self, handle) -> None:
            self.handle, self.written = handle, 0

        def __enter__(self):
            return self

        def __exit__(self, *exc: object) -> None:
            self.handle.close()

        def write(self, data: bytes) -> int:
            if self.written + len(data) > 10:
                raise OSError(errno.ENOSPC, os.strerror(errno.ENOSPC))
            self.written += len(data)
            return self.handle.write(data)

    def full_open(file, mode="r", *args, **kwargs):
        handle = real_open(file, mode, *args, **kwargs)
        return Full(handle) if str(file).endswith(".part") and mode in ("wb", "ab") else handle

    monkeypatch.setattr(fetching, "open", full_open, raising=False)
    args = ["download", "--dataset", "tiny", "--data-dir", str(tiny.data_dir), "--mirror", mirror,
            "--quiet"]
    assert cli.main(args) == 2
    assert capsys.readouterr().err == (
        f"error: cannot write train-labels-idx1-ubyte.gz into {tiny.folder} (No space left on "
        "device); free space there or choose another place with --data-dir or "
        "MNIST_TWOLAYER_DATA\n")
    after = {p.name: p.read_bytes() for p in tiny.folder.iterdir() if ".part" not in p.name}
    assert after == before
    assert_only_verified(tiny.folder, tiny.spec, resumable=True)
    monkeypatch.delattr(fetching, "open")  # space is back
    assert cli.main(args) == 0
    assert_only_verified(tiny.folder, tiny.spec)


# --- two processes at once ---


def test_two_processes_downloading_at_once_share_one_download(http_server,
                                                              tmp_path: Path) -> None:
    """Real processes: the second waits on the first one's lock, then finds every file
    verified; the server sees each file once."""
    server = http_server()
    for f in datasets.DATASETS["mnist"].files:
        server.files[f"/mnist/{f.filename}"] = (REPO / "data" / "mnist" / f.filename).read_bytes()
    server.hold.add(f"/mnist/{IMAGES}")  # the first process waits there, holding the lock,
    # until the second has said it is waiting for that lock: no guess at how long that takes
    mirror = f"{server.url}/mnist/"
    command = [sys.executable, "-m", "mnist_twolayer", "-v", "download", "--data-dir",
               str(tmp_path), "--mirror", mirror]
    first = subprocess.Popen(command, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
    try:
        assert server.requests_for(f"/mnist/{IMAGES}", 1, complete=False), first.poll()
        second = subprocess.Popen(command, stdout=subprocess.PIPE, stderr=subprocess.PIPE,
                                  text=True)
        err2_lines = []
        for line in second.stderr:  # until it reports the wait (or ends, failing below)
            err2_lines.append(line)
            if "waiting for another process downloading into" in line:
                break
        server.release.set()
        out2, rest = second.communicate(timeout=120)
        err2 = "".join(err2_lines) + rest
        out1, err1 = first.communicate(timeout=120)
    finally:
        server.release.set()
        first.kill()
    assert first.returncode == 0 and second.returncode == 0, (err1, err2)
    assert "Traceback" not in err1 + err2
    assert "waiting for another process downloading into" in err2
    assert len(server.requests) == 4
    folder = tmp_path / "mnist"
    assert out1.splitlines() == [f"{f.filename}: downloaded from {mirror} and verified"
                                 for f in datasets.DATASETS["mnist"].files] + [
        f"mnist: 4 files verified in {folder}"]
    assert out2.splitlines() == [f"{f.filename}: already present and verified"
                                 for f in datasets.DATASETS["mnist"].files] + [
        f"mnist: 4 files verified in {folder}"]
    assert_only_verified(folder, datasets.DATASETS["mnist"])

