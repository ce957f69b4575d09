"""Fault injection for files: IDX headers and bodies (property-based), checkpoints and models
(damaged, foreign, pickled, non-finite), and images given to ``predict``, through the API and
the CLI. Every one is a single clear error (or a correct prediction); none runs code from the
file, allocates what a header claims, or prints a traceback.

Not repeated here: test_idx.py (fixed malformed headers, one huge header, arbitrary bytes),
test_network.py (TwoLayerNet.load of single damaged members) and test_images.py (bad images
through the library).
"""

from __future__ import annotations

import gzip
import json
import shutil
import signal
import struct
import tracemalloc
import zipfile
from collections.abc import Callable
from pathlib import Path
from typing import Any

import numpy as np
import pytest
from conftest import run_cli, user_picture
from faults_support import interrupt_at, one_error_line
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st
from hypothesis.extra import numpy as hnp
from PIL import Image

from mnist_twolayer import cli, idx
from mnist_twolayer.checkpoint import read_checkpoint
from mnist_twolayer.config import config_from_preset
from mnist_twolayer.errors import CheckpointError, DatasetError, TrainingInterrupted
from mnist_twolayer.network import TwoLayerNet
from mnist_twolayer.trainer import Trainer

PROPERTY = settings(max_examples=150, deadline=None, derandomize=True,
                    suppress_health_check=[HealthCheck.too_slow])


# --- IDX: only DatasetError, and nothing large allocated ---

IDX_NATIVE = [np.dtype(d) for d in ("u1", "i1", ">i2", ">i4", ">f4", ">f8")]


@st.composite
def mutated_idx(draw: st.DrawFn) -> bytes:
    """A valid IDX payload with one mutation of its header or body."""
    array = draw(hnp.arrays(dtype=st.sampled_from(IDX_NATIVE).map(lambda d: d.newbyteorder("=")),
                            shape=hnp.array_shapes(min_dims=1, max_dims=3, min_side=0,
                                                   max_side=4)))
    data = bytearray(idx.encode_idx(array))
    rank = array.ndim
    mutation = draw(st.sampled_from(["dimension", "code", "rank", "magic", "truncate", "extend",
                                     "flip", "all dims huge"]))
    if mutation == "dimension":
        i = draw(st.integers(0, rank - 1))
        data[4 + 4 * i:8 + 4 * i] = struct.pack(">I", draw(st.integers(0, 2**32 - 1)))
    elif mutation == "code":
        data[2] = draw(st.integers(0, 255))
    elif mutation == "rank":
        data[3] = draw(st.integers(0, 255))
    elif mutation == "magic":
        data[draw(st.integers(0, 1))] = draw(st.integers(1, 255))
    elif mutation == "truncate":
        data = data[:draw(st.integers(0, len(data) - 1))]
    elif mutation == "extend":
        data += draw(st.binary(min_size=1, max_size=16))
    elif mutation == "flip":
        i = draw(st.integers(0, len(data) - 1))
        data[i] ^= draw(st.integers(1, 255))
    else:
        for i in range(rank):
            data[4 + 4 * i:8 + 4 * i] = struct.pack(">I", draw(st.integers(2**20, 2**32 - 1)))
    return bytes(data)


def _parse_or_dataset_error(data: bytes, source: str) -> np.ndarray | None:
    try:
        array = idx.parse_idx(data, source)
    except DatasetError as exc:  # any other exception fails the test
        assert str(exc).startswith(f"{source}: ") and "\n" not in str(exc)
        return None
    assert array.nbytes == len(data) - 4 - 4 * array.ndim  # a parse accounts for every byte
    return array


@PROPERTY
@given(mutated_idx())
def test_mutated_idx_header_or_body_is_a_dataset_error_and_allocates_nothing_large(
        data: bytes) -> None:
    tracemalloc.start()
    try:
        _parse_or_dataset_error(data, "mutant")
        peak = tracemalloc.get_traced_memory()[1]
    finally:
        tracemalloc.stop()
    assert peak < 64 * 1024 + 4 * len(data)  # whatever the header claims


@PROPERTY
@given(code=st.sampled_from(sorted(idx.IDX_DTYPES)), rank=st.integers(1, 6),
       dims=st.lists(st.integers(1 << 16, 2**32 - 1), min_size=6, max_size=6),
       body=st.binary(max_size=256))
def test_header_claiming_huge_sizes_allocates_nothing(code: int, rank: int, dims: list[int],
                                                     body: bytes) -> None:
    data = bytes([0, 0, code, rank]) + struct.pack(f">{rank}I", *dims[:rank]) + body
    tracemalloc.start()
    try:
        with pytest.raises(DatasetError, match=r"^huge: truncated IDX data: header says "):
            idx.parse_idx(data, "huge")
        peak = tracemalloc.get_traced_memory()[1]
    finally:
        tracemalloc.stop()
    assert peak < 64 * 1024


@pytest.fixture(scope="module")
def gz_dir(tmp_path_factory: pytest.TempPathFactory) -> Path:
    return tmp_path_factory.mktemp("idx")  # one file, rewritten for each example


@PROPERTY
@given(payload=mutated_idx(), cut=st.integers(0, 10**6), flips=st.lists(
    st.tuples(st.integers(0, 10**6), st.integers(1, 255)), max_size=3),
    tail=st.binary(max_size=8))
def test_mutated_gz_files_are_a_dataset_error_and_allocate_little(
        gz_dir: Path, payload: bytes, cut: int, flips: list[tuple[int, int]],
        tail: bytes) -> None:
    """Damaged gzip around a damaged IDX: the reader, start to finish, raises only DatasetError
    naming the file, and its peak memory stays near the 1 MB read size."""
    data = bytearray(gzip.compress(payload, mtime=0))
    for where, mask in flips:
        data[where % len(data)] ^= mask
    data = data[:cut % (len(data) + 1)] + tail
    path = gz_dir / "mutant.gz"
    path.write_bytes(bytes(data))
    tracemalloc.start()
    try:
        try:
            array = idx.read_idx(path)
        except DatasetError as exc:
            assert str(exc).startswith(f"{path}: ") and "\n" not in str(exc)
        else:
            assert array.nbytes <= len(payload)
        peak = tracemalloc.get_traced_memory()[1]
    finally:
        tracemalloc.stop()
    assert peak < 4 * (1 << 20)


# --- a run, its checkpoint and its model, to damage ---


@pytest.fixture(scope="module")
def good_run(mini_env: Path, tmp_path_factory: pytest.TempPathFactory) -> Path:
    """A run interrupted (SIGINT) at iteration 15 of 20: its checkpoint holds parameters,
    velocity, best parameters (there is a validation split) and a batch order; then the run's
    model.npz as it stood."""
    run_dir = tmp_path_factory.mktemp("runs") / "good"
    config = config_from_preset("default", dataset="mini", hidden=8, batch_size=50, epochs=2,
                                val_size=100, seed=3)
    trainer = Trainer(config, run_dir, data_dir=mini_env)
    interrupt_at(trainer, 15, signal.SIGINT)
    with pytest.raises(TrainingInterrupted):
        trainer.run()
    trainer.finish()
    return run_dir


def load_arrays(path: Path) -> dict[str, np.ndarray]:
    with np.load(path, allow_pickle=False) as archive:
        return {key: archive[key] for key in archive.files}


class Plant:
    """Unpickling this runs ``open(marker, "w")``: proof that a file's code ran."""

    def __init__(self, marker: Path) -> None:
        self.marker = marker

    def __reduce__(self) -> tuple[Any, ...]:
        return (open, (str(self.marker), "w"))


def savez(path: Path, arrays: dict[str, Any]) -> None:
    """np.savez as anyone could call it: pickle allowed (its default)."""
    path.parent.mkdir(parents=True, exist_ok=True)
    with open(path, "wb") as handle:
        np.savez(handle, **arrays)


def checkpoint_with(good: Path, out: Path, change: Callable[[dict, dict], None]) -> None:
    """The good checkpoint with ``change(arrays, meta)`` applied, saved to ``out``."""
    arrays = load_arrays(good)
    saved_meta = arrays["meta"]
    meta = json.loads(str(saved_meta[()]))
    change(arrays, meta)
    if arrays.get("meta") is saved_meta:  # not replaced by the change: encode the edited meta
        arrays["meta"] = np.array(json.dumps(meta))
    savez(out, arrays)


def raw_bytes(data: bytes) -> Callable[[Path, Path], None]:
    return lambda good, out: out.write_bytes(data)


def truncated(fraction: float) -> Callable[[Path, Path], None]:
    def make(good: Path, out: Path) -> None:
        data = good.read_bytes()
        out.write_bytes(data[: int(len(data) * fraction)])
    return make


def changed(change: Callable[[dict, dict], None]) -> Callable[[Path, Path], None]:
    return lambda good, out: checkpoint_with(good, out, change)


def npy_file(good: Path, out: Path) -> None:
    with open(out, "wb") as handle:
        np.save(handle, np.zeros((3, 3)))


def zip_of_junk(good: Path, out: Path) -> None:
    with zipfile.ZipFile(out, "w") as archive:
        archive.writestr("notes.txt", "hello")


def set_item(key: str, value: Any) -> Callable[[dict, dict], None]:
    return lambda arrays, meta: arrays.__setitem__(key, value)


def poke(key: str, index: tuple[int, ...], value: float) -> Callable[[dict, dict], None]:
    def change(arrays: dict, meta: dict) -> None:
        arrays[key] = arrays[key].copy()
        arrays[key][index] = value
    return change


DAMAGED = "damaged or not a checkpoint"
CHECKPOINT_FAULTS: dict[str, tuple[Callable[[Path, Path], None], str]] = {
    # name: (how to make the damaged checkpoint.npz, the message after "{path}: ")
    "empty file": (raw_bytes(b""), "not a readable .npz file (no zip header); the file is "
                                   "damaged or not a checkpoint"),
    "truncated to 40%": (truncated(0.4), "not a readable .npz file, perhaps truncated or "
                                         "damaged (File is not a zip file)"),
    "truncated to 99%": (truncated(0.99), "not a readable .npz file, perhaps truncated or "
                                          "damaged (File is not a zip file)"),
    "random bytes": (raw_bytes(np.random.default_rng(5).bytes(3000)),
                     "not a readable .npz file (no zip header); the file is damaged or not a "
                     "checkpoint"),
    "a zip of something else": (zip_of_junk, "member 'notes.txt' is not a NumPy array; the "
                                             "file is damaged or not a checkpoint"),
    "a zip of arrays, no meta": (lambda good, out: np.savez(out, x=np.zeros(3)),
                                 f"{DAMAGED} (no 'meta' member)"),
    "a .npy array": (npy_file, "holds a single .npy array, not a checkpoint (.npz)"),
    "missing permutation": (changed(lambda a, m: a.pop("permutation")),
                            f"{DAMAGED} (no 'permutation')"),
    "missing velocity/W1": (changed(lambda a, m: a.pop("velocity/W1")),
                            "velocity/ arrays are missing or do not fit the parameters (W2, b1, "
                            "b2 found)"),
    "missing best/b1": (changed(lambda a, m: a.pop("best/b1")),
                        "best/ arrays are missing or do not fit the parameters (W1, W2, b2 found)"),
    "W1 of the wrong shape": (changed(set_item("param/W1", np.zeros((784, 9), np.float32))),
                              "parameter W1 is missing or does not fit the config (expected "
                              "(784, 8) float32)"),
    "b2 as float64": (changed(lambda a, m: a.__setitem__("param/b2", a["param/b2"].astype(
        np.float64))), "parameter b2 is missing or does not fit the config (expected (10,) "
                       "float32)"),
    "velocity/W2 as int32": (changed(lambda a, m: a.__setitem__("velocity/W2", a[
        "velocity/W2"].astype(np.int32))), "velocity/ arrays are missing or do not fit the "
                                           "parameters (W1, W2, b1, b2 found)"),
    "permutation of floats": (changed(lambda a, m: a.__setitem__("permutation", a[
        "permutation"].astype(np.float64))), "the batch order (permutation, position) does not "
                                             "fit the 500 training samples"),
    "permutation out of range": (changed(poke("permutation", (0,), 10**6)),
                                 "the batch order (permutation, position) does not fit the 500 "
                                 "training samples"),
    "NaN in W1": (changed(poke("param/W1", (3, 4), np.nan)), "array param/W1 holds NaN or inf"),
    "inf in velocity/b1": (changed(poke("velocity/b1", (0,), np.inf)),
                           "array velocity/b1 holds NaN or inf"),
    "meta not JSON": (changed(lambda a, m: a.__setitem__("meta", np.array("{oops"))),
                      f"{DAMAGED} (meta is not JSON: Expecting property name enclosed in double "
                      f"quotes: line 1 column 2 (char 1))"),
    "meta a list": (changed(lambda a, m: a.__setitem__("meta", np.array("[1, 2]"))),
                    f"{DAMAGED} (meta is not an object)"),
    "format 3": (changed(lambda a, m: m.update(format=3)),
                 "checkpoint format 3 is not 2; it was written by another version"),
    "config with a text hidden size": (changed(lambda a, m: m["config"].update(hidden="lots")),
                                       f"{DAMAGED} (hidden_size must be a positive integer, not "
                                       f"'lots')"),
    "state without position": (changed(lambda a, m: m["state"].pop("position")),
                               f"{DAMAGED} (no 'position')"),
    "history not lists": (changed(lambda a, m: m.update(history={"epochs": 3,
                                                                 "iteration_loss": []})),
                          "damaged history (epoch record 0 is not a record of numbers)"),
    "state with a text iteration": (changed(lambda a, m: m["state"].update(iteration="7")),
                                    f"{DAMAGED} (TypeError: state iteration is not a number of "
                                    f"type int)"),
    "rng state of another generator": (changed(lambda a, m: m["rng_state"].update(
        bit_generator="MT19937")), "damaged random generator state (state must be for a PCG64 "
                                   "RNG)"),
    "a model.npz in its place": (lambda good, out: shutil.copy(good.with_name("model.npz"), out),
                                 "a saved model (model.npz), not a training checkpoint; evaluate "
                                 "and predict take it, not --resume"),
}


@pytest.mark.parametrize("fault", sorted(CHECKPOINT_FAULTS))
def test_damaged_checkpoint_is_one_checkpoint_error_via_api_and_cli(
        fault: str, good_run: Path, mini_env: Path, tmp_path: Path, capsys) -> None:
    make, message = CHECKPOINT_FAULTS[fault]
    run_dir = tmp_path / "run"
    run_dir.mkdir()
    path = run_dir / "checkpoint.npz"
    make(good_run / "checkpoint.npz", path)
    expected = f"{path}: {message.format(path=path)}"
    before = path.read_bytes()
    with pytest.raises(CheckpointError) as info:
        Trainer.resume(run_dir, data_dir=mini_env)
    assert str(info.value) == expected
    assert cli.main(["train", "--resume", str(run_dir), "--data-dir", str(mini_env),
                     "--quiet"]) == 2
    assert one_error_line(capsys.readouterr().err) == expected
    assert path.read_bytes() == before  # a failed resume writes nothing
    assert sorted(p.name for p in run_dir.iterdir()) == ["checkpoint.npz"]


def test_the_good_checkpoint_resumes(good_run: Path, mini_env: Path, tmp_path: Path) -> None:
    """Control for the faults above: the undamaged checkpoint, re-saved the same way, resumes."""
    run_dir = tmp_path / "run"
    checkpoint_with(good_run / "checkpoint.npz", run_dir / "checkpoint.npz", lambda a, m: None)
    trainer = Trainer.resume(run_dir, data_dir=mini_env)
    assert trainer.state.iteration == 15 and trainer.best_params is not None


def test_a_format_1_checkpoint_still_resumes(good_run: Path, mini_env: Path,
                                             tmp_path: Path) -> None:
    """Format 1 (until 2026-11-23) also stored what the history tells; those fields are read
    from the history now and ignored in the file."""
    def as_format_1(arrays: dict, meta: dict) -> None:
        meta["format"] = 1
        meta["state"].update(epoch=1, best_val_accuracy=0.5, best_epoch=1, evals_since_best=0,
                             stopped_early=False, time_to_accuracy={"0.97": None})

    run_dir = tmp_path / "run"
    checkpoint_with(good_run / "checkpoint.npz", run_dir / "checkpoint.npz", as_format_1)
    trainer = Trainer.resume(run_dir, data_dir=mini_env)
    assert trainer.state.iteration == 15 and trainer.best_params is not None


@pytest.mark.parametrize("member", ["meta", "param/W1", "permutation"])
def test_pickled_object_in_a_checkpoint_never_runs(member: str, good_run: Path, mini_env: Path,
                                                   tmp_path: Path, capsys) -> None:
    marker = tmp_path / "code-ran"
    run_dir = tmp_path / "run"
    checkpoint_with(good_run / "checkpoint.npz", run_dir / "checkpoint.npz",
                    set_item(member, np.array([Plant(marker)], dtype=object)))
    path = run_dir / "checkpoint.npz"
    expected = (f"{path}: array {member!r} cannot be read without pickle (Object arrays cannot "
                f"be loaded when allow_pickle=False); not a file this package wrote")
    with pytest.raises(CheckpointError) as info:
        read_checkpoint(path)
    assert str(info.value) == expected
    with pytest.raises(CheckpointError):
        Trainer.resume(run_dir, data_dir=mini_env)
    assert cli.main(["train", "--resume", str(run_dir), "--data-dir", str(mini_env)]) == 2
    assert one_error_line(capsys.readouterr().err) == expected
    assert not marker.exists()
    # the payload is live: a loader that allowed pickle would have run it
    with np.load(path, allow_pickle=True) as archive:
        archive[member]
    assert marker.exists()


def test_resume_given_the_model_file_instead_of_the_run_folder(good_run: Path, mini_env: Path,
                                                                capsys) -> None:
    model = good_run / "model.npz"
    expected = f"{model} is a file; resume takes the run folder that holds checkpoint.npz"
    with pytest.raises(CheckpointError) as info:
        Trainer.resume(model, data_dir=mini_env)
    assert str(info.value) == expected
    assert cli.main(["train", "--resume", str(model), "--quiet"]) == 2
    assert one_error_line(capsys.readouterr().err) == expected


# --- models for evaluate and predict ---


def model_with(change: Callable[[dict], None]) -> Callable[[Path, Path], None]:
    def make(good: Path, out: Path) -> None:
        arrays = load_arrays(good)
        change(arrays)
        savez(out, arrays)
    return make


NOT_A_MODEL = "not a model saved by TwoLayerNet.save (or damaged)"
UNREADABLE = "not a readable .npz file, perhaps truncated or damaged"
NO_ZIP = "not a readable .npz file (no zip header); the file is damaged or not a saved model"
MODEL_FAULTS: dict[str, tuple[Callable[[Path, Path], None], str]] = {
    "empty file": (raw_bytes(b""), NO_ZIP),
    "truncated to 70%": (truncated(0.7), f"{UNREADABLE} (File is not a zip file)"),
    "random bytes": (raw_bytes(np.random.default_rng(6).bytes(2000)), NO_ZIP),
    "a .npy array": (npy_file, "holds a single .npy array, not a saved model (.npz)"),
    "a zip of something else": (zip_of_junk, "member 'notes.txt' is not a NumPy array; the "
                                             "file is damaged or not a saved model"),
    "a checkpoint": (lambda good, out: shutil.copy(good.with_name("checkpoint.npz"), out),
                     f"missing format_version, sizes, dtype, metadata, W1, b1, W2, b2; "
                     f"{NOT_A_MODEL}"),
    "W2 of the wrong shape": (model_with(lambda a: a.update(W2=np.zeros((8, 9), np.float32))),
                              f"W2 has shape (8, 9), expected (8, 10); {NOT_A_MODEL}"),
    "W1 as float16": (model_with(lambda a: a.update(W1=a["W1"].astype(np.float16))),
                      f"W1 has dtype float16, expected float32; {NOT_A_MODEL}"),
    "sizes that lie": (model_with(lambda a: a.update(sizes=np.array([784, 10**9, 10]))),
                       f"W1 has shape (784, 8), expected (784, 1000000000); {NOT_A_MODEL}"),
    "inf in b1": (model_with(lambda a: a.update(b1=np.full(8, np.inf, np.float32))),
                  "b1 contains NaN or infinite values; the run that saved it had diverged"),
}


@pytest.mark.parametrize("fault", sorted(MODEL_FAULTS))
def test_damaged_model_is_one_checkpoint_error_via_api_evaluate_and_predict(
        fault: str, good_run: Path, tmp_path: Path, capsys) -> None:
    make, message = MODEL_FAULTS[fault]
    path = tmp_path / "model.npz"
    make(good_run / "model.npz", path)
    expected = f"{path}: {message.format(path=path)}"
    with pytest.raises(CheckpointError) as info:
        TwoLayerNet.load(path)
    assert str(info.value) == expected
    for command in (["evaluate", str(path)], ["predict", str(path), str(tmp_path / "x.png")]):
        assert cli.main(command) == 2
        captured = capsys.readouterr()
        assert one_error_line(captured.err) == expected and captured.out == ""
    assert sorted(p.name for p in tmp_path.iterdir()) == ["model.npz"]  # no figures written


def test_pickled_object_in_a_model_never_runs(good_run: Path, tmp_path: Path, capsys) -> None:
    marker = tmp_path / "code-ran"
    path = tmp_path / "model.npz"
    model_with(lambda a: a.update(W1=np.array([Plant(marker)], dtype=object)))(
        good_run / "model.npz", path)
    expected = (f"{path}: array 'W1' cannot be read without pickle (Object arrays cannot be "
                f"loaded when allow_pickle=False); not a file this package wrote")
    with pytest.raises(CheckpointError) as info:
        TwoLayerNet.load(path)
    assert str(info.value) == expected
    assert cli.main(["predict", str(path), str(tmp_path / "x.png")]) == 2
    assert one_error_line(capsys.readouterr().err) == expected
    assert not marker.exists()
    with np.load(path, allow_pickle=True) as archive:
        archive["W1"]
    assert marker.exists()


# --- images for predict, through the CLI ---


@pytest.fixture(scope="module")
def predictor(mini_env: Path, tmp_path_factory: pytest.TempPathFactory) -> Path:
    """A model trained on ``mini`` well enough to name clear digits."""
    run_dir = tmp_path_factory.mktemp("runs") / "predictor"
    config = config_from_preset("default", dataset="mini", hidden=32, epochs=15, batch_size=50,
                                seed=0)
    Trainer(config, run_dir, data_dir=mini_env).run()
    return run_dir / "model.npz"


def drawn(digit: np.ndarray, size: int = 140) -> Image.Image:
    return user_picture(digit, size).convert("L")


def test_predict_images_of_every_odd_kind(predictor: Path, tmp_path: Path) -> None:
    """One predict over good images in unusual encodings and broken ones: each good image is
    named as its plain PNG is, each broken one is one error line, and the run exits 2. Run as a
    real process, so no traceback or Pillow warning can hide in pytest's capture."""
    from mnist_twolayer.images import image_to_mnist

    net = TwoLayerNet.load(predictor)
    x_test, t_test = (idx.read_idx(f"{Path(__file__).parent.parent}/data/mnist/{name}.gz")
                      for name in ("t10k-images-idx3-ubyte", "t10k-labels-idx1-ubyte"))
    # a digit this model names correctly from a plain PNG: the reference for the others
    for i in range(len(x_test)):
        drawn(x_test[i]).save(tmp_path / "plain.png")
        if net.predict(image_to_mnist(tmp_path / "plain.png")[None])[0].argmax() == t_test[i]:
            break
    digit, label = x_test[i], int(t_test[i])
    picture = drawn(digit)
    good = {
        "plain.png": lambda p: picture.save(p),
        "sixteen-bit.png": lambda p: Image.fromarray(
            (np.asarray(picture, np.uint16) * 257).astype(np.uint16)).save(p),
        "palette.png": lambda p: picture.convert("RGB").quantize(16).save(p),
        "cmyk.jpg": lambda p: picture.convert("CMYK").save(p, quality=95),
        "animated.gif": lambda p: picture.save(p, save_all=True,
                                               append_images=[Image.new("L", picture.size, 255)]),
        "png-named.jpg": lambda p: picture.save(p, format="PNG"),
        "tiny-10px.png": lambda p: drawn(digit, 10).save(p),
    }
    jpeg = tmp_path / "whole.jpg"
    picture.save(jpeg)
    png = bytearray((tmp_path / "plain.png").read_bytes())
    idat = png.index(b"IDAT")
    broken = {
        "truncated.jpg": (jpeg.read_bytes()[: jpeg.stat().st_size // 2],
                          "the image data is truncated or damaged"),
        "bad-idat.png": (bytes(png[:idat + 20]) + bytes(b ^ 0xFF for b in png[idat + 20:idat + 60])
                         + bytes(png[idat + 60:]), "the image data is truncated or damaged"),
        "one-pixel.png": (_png_bytes(Image.new("L", (1, 1), 0)),
                          "no digit found: the image is blank (no ink on the background)"),
        "blank-rgb.webp": (_png_bytes(Image.new("RGB", (30, 30), (200, 200, 200)), "WEBP"),
                           "no digit found: the image is blank (no ink on the background)"),
        "notes.png": (b"shopping list: milk\n", "not an image (expected PNG or JPEG)"),
    }
    paths = []
    for name, make in good.items():
        make(tmp_path / name)
        paths.append(tmp_path / name)
    for name, (data, _) in broken.items():
        (tmp_path / name).write_bytes(data)
        paths.append(tmp_path / name)
    paths.append(tmp_path / "missing.png")
    result = run_cli("predict", str(predictor), *map(str, paths), "--json",
                     env={"PYTHONWARNINGS": "default"})  # deprecations shown too
    assert result.returncode == 2
    predictions = {Path(p["image"]).name: p for p in json.loads(result.stdout)["predictions"]}
    for name in good:
        assert predictions[name].get("digit") == label, (name, predictions[name])
    expected_errors = [f"error: {tmp_path / name}: {message}" for name, (_, message) in
                       broken.items()] + [f"error: {tmp_path / 'missing.png'}: no such file"]
    assert result.stderr.splitlines() == expected_errors
    assert "Traceback" not in result.stderr and "Warning" not in result.stderr
    for name, (_, message) in broken.items():
        assert predictions[name] == {"image": str(tmp_path / name),
                                     "error": f"{tmp_path / name}: {message}"}


def _png_bytes(image: Image.Image, format: str = "PNG") -> bytes:
    import io

    buffer = io.BytesIO()
    image.save(buffer, format=format)
    return buffer.getvalue()
