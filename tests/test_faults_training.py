"""Fault injection for training: signals at random points, SIGKILL (also in the middle of a
checkpoint write), a full disk (simulated and real), and divergence on the last update of an
epoch. Whatever happens, the checkpoint on disk loads, nothing saved is lost, and resuming ends
bit-identical to a run that was never disturbed.

test_trainer.py / test_cli_train.py already cover one SIGINT and one SIGTERM at fixed
iterations, a SIGINT to a CLI process, and lr 1e6 diverging mid-epoch; not repeated here.
"""

from __future__ import annotations

import errno
import json
import os
import re
import shutil
import signal
import subprocess
import sys
import time
import warnings
from pathlib import Path
from typing import Any

import numpy as np
import pytest
from faults_support import interrupt_at, kill_when, no_figures, one_error_line

from mnist_twolayer import cli, fileio, run_folder
from mnist_twolayer.checkpoint import read_checkpoint
from mnist_twolayer.config import config_from_preset
from mnist_twolayer.errors import CheckpointError, TrainingInterrupted
from mnist_twolayer.network import PARAM_NAMES
from mnist_twolayer.run_folder import FIGURES, RUN_FILES
from mnist_twolayer.trainer import Trainer

REPO = Path(__file__).resolve().parent.parent
ENOSPC = os.strerror(errno.ENOSPC)


def model_arrays(run_dir: Path) -> dict[str, np.ndarray]:
    with np.load(run_dir / "model.npz", allow_pickle=False) as archive:
        return {key: archive[key] for key in PARAM_NAMES}


def assert_same_run(run_dir: Path, whole: Path) -> None:
    """Bit-identical to the undisturbed run: every loss, every evaluation, the saved model."""
    for key, value in model_arrays(whole).items():
        assert np.array_equal(model_arrays(run_dir)[key], value), key
    mine, theirs = (json.loads((d / "history.json").read_text()) for d in (run_dir, whole))
    assert mine["iteration_loss"] == theirs["iteration_loss"]
    drop = ("seconds",)
    assert ([{k: v for k, v in r.items() if k not in drop} for r in mine["epochs"]]
            == [{k: v for k, v in r.items() if k not in drop} for r in theirs["epochs"]])


# --- SIGINT and SIGTERM at random points, in-process ---


def small_config():
    """500 training samples (100 held out), batches of 50: 10 iterations an epoch, 30 in all,
    with momentum, a validation split and a cosine schedule: every piece of state matters."""
    return config_from_preset("default", dataset="mini", hidden=8, batch_size=50, epochs=3,
                              val_size=100, seed=11)


@pytest.fixture(scope="module")
def whole_run(mini_env: Path, tmp_path_factory: pytest.TempPathFactory) -> Path:
    run_dir = tmp_path_factory.mktemp("runs") / "whole"
    Trainer(small_config(), run_dir, data_dir=mini_env).run()
    return run_dir


_RNG = np.random.default_rng(20240606)
SIGNALS = (signal.SIGINT, signal.SIGTERM)
CHAINS = [  # (iteration to stop at, signal) pairs from a fixed seed, then the edges
    [(int(stop), SIGNALS[int(_RNG.integers(2))])
     for stop in sorted(_RNG.choice(np.arange(1, 30), size=size, replace=False))]
    for size in (1, 2, 3, 4)
] + [[(1, signal.SIGTERM), (10, signal.SIGINT), (20, signal.SIGTERM), (29, signal.SIGINT)]]


@pytest.mark.parametrize("chain", CHAINS, ids=lambda chain: "-".join(
    f"{signal.Signals(sig).name}@{stop}" for stop, sig in chain))
def test_signals_at_random_points_then_resume_is_bit_identical(
        chain: list[tuple[int, int]], whole_run: Path, mini_env: Path, tmp_path: Path) -> None:
    run_dir = tmp_path / "run"
    trainer = Trainer(small_config(), run_dir, data_dir=mini_env)
    handlers = [signal.getsignal(s) for s in SIGNALS]
    done = 0
    for stop, signum in chain:
        interrupt_at(trainer, stop - done, signum)
        with pytest.raises(TrainingInterrupted) as info:
            trainer.run()
        assert (info.value.iteration, info.value.signum) == (stop, signum)
        name = {signal.SIGINT: "SIGINT", signal.SIGTERM: "SIGTERM"}[signum]
        assert str(info.value) == (f"interrupted by {name} at iteration {stop}; checkpoint saved "
                                   f"in {run_dir}")
        assert read_checkpoint(run_dir / "checkpoint.npz").state.iteration == stop
        history = json.loads((run_dir / "history.json").read_text())
        assert len(history["iteration_loss"]) == stop
        assert not list(run_dir.glob(".*.tmp"))
        assert [signal.getsignal(s) for s in SIGNALS] == handlers  # put back as they were
        trainer, done = Trainer.resume(run_dir, data_dir=mini_env), stop
    trainer.run()
    assert_same_run(run_dir, whole_run)


def test_a_signal_during_the_last_iteration_lets_the_run_finish(whole_run: Path, mini_env: Path,
                                                                tmp_path: Path) -> None:
    """Nothing is left to save for: the run completes and writes its model as usual."""
    trainer = Trainer(small_config(), tmp_path / "run", data_dir=mini_env)
    interrupt_at(trainer, 30, signal.SIGTERM)
    trainer.run()
    assert_same_run(tmp_path / "run", whole_run)


# --- divergence on the last update of an epoch ---


def test_divergence_seen_only_by_the_evaluation_keeps_the_last_good_checkpoint(
        mini_env: Path, tmp_path: Path, capsys) -> None:
    """One iteration an epoch: the update that blows up is the last before the evaluation, so
    only the evaluation sees it. It must not save NaN weights over the good checkpoint, write a
    model, print NumPy warnings, or exit 0."""
    run_dir = tmp_path / "run"
    for lr, shown in (("1e6", r"\d\.\d+e\+\d\d"), ("1e38", "inf"), ("1e300", "nan")):
        shutil.rmtree(run_dir, ignore_errors=True)
        args = ["train", "--dataset", "mini", "--data-dir", str(mini_env), "--lr", lr,
                "--momentum", "0", "--train-size", "100", "--batch-size", "100", "--epochs", "2",
                "--hidden", "8", "--out", str(run_dir), "--quiet"]
        with warnings.catch_warnings():
            warnings.simplefilter("error")  # an overflow warning would fail here
            assert cli.main(args) == 2
        message = one_error_line(capsys.readouterr().err)
        assert re.fullmatch(
            rf"the loss reached {shown} at iteration 1 \(lr {re.escape(f'{float(lr):g}')}\); "
            rf"training diverged: lower the learning rate \(--lr\)\. The last good checkpoint "
            rf"is in {re.escape(str(run_dir))}", message), message
        # finite, or reading it would raise
        assert read_checkpoint(run_dir / "checkpoint.npz").state.iteration == 0
        assert not (run_dir / "model.npz").exists()


# --- a real process, SIGKILLed ---

FLAGS = ["--train-size", "300", "--hidden", "8", "--batch-size", "30", "--epochs", "4",
         "--seed", "5", "--quiet"]  # real MNIST: 10 iterations an epoch, 40 in all

DRIVER = r"""
import io, os, sys, time
from mnist_twolayer import cli, fileio, network, plots

if os.environ.get("FAULT_NO_FIGURES"):
    for name in ("plot_loss", "plot_accuracy", "plot_confusion", "plot_misclassified",
                 "plot_weights"):
        setattr(plots, name, lambda *args, **kwargs: None)
slow = float(os.environ.get("FAULT_SLOW", "0"))
if slow:  # slower iterations, same numbers; FAULT_STARTED appears at the first one
    real_step = network.TwoLayerNet.loss_and_gradient
    def slow_step(self, *args, **kwargs):
        open(os.environ["FAULT_STARTED"], "a").close()
        time.sleep(slow)
        return real_step(self, *args, **kwargs)
    network.TwoLayerNet.loss_and_gradient = slow_step
hang_at = int(os.environ.get("FAULT_HANG_IN_CHECKPOINT", "0"))
if hang_at:  # write half of that checkpoint's temporary file, say so, and wait to be killed
    real_write, seen = fileio.write_npz, [0]
    def hanging_write(file, arrays):
        if "checkpoint.npz" in getattr(file, "name", ""):
            seen[0] += 1
            if seen[0] == hang_at:
                buffer = io.BytesIO()
                real_write(buffer, arrays)
                file.write(buffer.getvalue()[: len(buffer.getvalue()) // 2])
                file.flush()
                os.fsync(file.fileno())
                open(os.environ["FAULT_READY"], "w").close()
                time.sleep(120)
        return real_write(file, arrays)
    fileio.write_npz = hanging_write
if os.environ.get("FAULT_SLOW_FINISH"):  # the last figure takes a while; FAULT_READY says when
    real_weights = plots.plot_weights
    def slow_weights(*args, **kwargs):
        open(os.environ["FAULT_READY"], "w").close()
        time.sleep(float(os.environ["FAULT_SLOW_FINISH"]))
        return real_weights(*args, **kwargs)
    plots.plot_weights = slow_weights
sys.exit(cli.main(sys.argv[1:]))
"""


def driver(args: list[str], **env: str) -> subprocess.Popen:
    """``train`` with ``args`` in a process running DRIVER; ``--out`` runs get FLAGS."""
    if "--resume" in args:
        args = [*args, "--quiet"]
    else:
        args = [*args, *FLAGS]
    return subprocess.Popen([sys.executable, "-c", DRIVER, "train", *args],
                            stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True,
                            env={**os.environ, "FAULT_NO_FIGURES": "1", **env})


@pytest.fixture(scope="module")
def whole_cli(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """The undisturbed run of FLAGS on the real MNIST, through the CLI."""
    run_dir = tmp_path_factory.mktemp("runs") / "whole-cli"
    with pytest.MonkeyPatch.context() as mp:
        no_figures(mp)
        assert cli.main(["train", *FLAGS, "--out", str(run_dir)]) == 0
    return run_dir


def run_files(run_dir: Path) -> list[str]:
    """The run folder's entries, hidden temporary files shown as '.tmp'."""
    return sorted(".tmp" if p.name.startswith(".") and p.name.endswith(".tmp") else p.name
                  for p in run_dir.iterdir())


def test_sigkill_in_the_middle_of_a_checkpoint_write(whole_cli: Path, tmp_path: Path,
                                                     monkeypatch: pytest.MonkeyPatch,
                                                     capsys) -> None:
    """Killed while the third checkpoint (end of epoch 2) is half written: the second one is
    still in place and loads, the half-written bytes sit only in a hidden temporary file, and
    resuming from there ends exactly where the undisturbed run ends."""
    run_dir = tmp_path / "run"
    ready = tmp_path / "ready"
    process = driver(["--out", str(run_dir)], FAULT_HANG_IN_CHECKPOINT="3",
                     FAULT_READY=str(ready))
    kill_when(process, ready.exists, timeout=60)
    assert run_files(run_dir) == [".tmp", "checkpoint.npz", "config.json", "history.csv",
                                  "history.json"]
    assert read_checkpoint(run_dir / "checkpoint.npz").state.iteration == 10  # the end of epoch 1
    assert len(json.loads((run_dir / "history.json").read_text())["iteration_loss"]) == 10
    partial = next(run_dir.glob(".checkpoint.npz.*.tmp"))
    with pytest.raises(CheckpointError):  # the half-written file is not a checkpoint...
        read_checkpoint(partial)
    no_figures(monkeypatch)
    assert cli.main(["train", "--resume", str(run_dir)]) == 0  # ...and resume does not read it
    assert "test accuracy" in capsys.readouterr().out
    assert not partial.exists()  # its writer is dead: the next write removed it
    assert_same_run(run_dir, whole_cli)


def test_sigkill_at_random_times_never_loses_the_checkpoint(whole_cli: Path,
                                                            tmp_path: Path,
                                                            monkeypatch: pytest.MonkeyPatch
                                                            ) -> None:
    """Kill -9 a training process again and again at random moments (fixed seed): after each
    kill the checkpoint, if there is one yet, loads; only run files and hidden temporaries are
    in the folder; and the run resumed to the end equals the undisturbed one."""
    run_dir = tmp_path / "run"
    rng = np.random.default_rng(99)
    allowed = {".tmp", *RUN_FILES}  # a kill while the finished run writes its model is fair
    iterations = []
    started = tmp_path / "started"
    for _ in range(4):
        resume = (run_dir / "checkpoint.npz").exists()
        started.unlink(missing_ok=True)
        process = driver(["--resume", str(run_dir)] if resume else ["--out", str(run_dir)],
                         FAULT_SLOW="0.02", FAULT_STARTED=str(started))
        deadline = time.monotonic() + 60
        while not started.exists() and process.poll() is None:
            assert time.monotonic() < deadline
            time.sleep(0.01)
        time.sleep(float(rng.uniform(0.05, 0.6)))  # into the ~1 s of training
        process.send_signal(signal.SIGKILL)
        out, err = process.communicate(timeout=30)
        assert process.returncode in (0, -signal.SIGKILL), err
        if process.returncode == 0:  # it finished before the kill: nothing to check against
            break
        assert not run_dir.exists() or set(run_files(run_dir)) <= allowed, run_files(run_dir)
        if (run_dir / "checkpoint.npz").exists():
            iterations.append(read_checkpoint(run_dir / "checkpoint.npz").state.iteration)
    assert iterations and iterations == sorted(iterations)  # there, and never went backwards
    no_figures(monkeypatch)
    args = ["train", "--resume", str(run_dir)] if (run_dir / "checkpoint.npz").exists() else [
        "train", *FLAGS, "--out", str(run_dir)]
    if not (run_dir / "model.npz").exists():
        assert cli.main(args) == 0
    assert_same_run(run_dir, whole_cli)


AUGMENTED = ["--augment", "affine+elastic"]


def test_sigkill_of_an_augmented_run_then_resume_is_bit_identical(tmp_path: Path,
                                                                  monkeypatch: pytest.MonkeyPatch
                                                                  ) -> None:
    """The distortions draw from the batch generator, whose state the checkpoint keeps: a run
    with affine and elastic distortions killed -9 at a random moment (fixed seed) and resumed
    ends exactly where the undisturbed one ends."""
    whole = tmp_path / "whole"
    no_figures(monkeypatch)
    assert cli.main(["train", *FLAGS, *AUGMENTED, "--out", str(whole)]) == 0
    run_dir = tmp_path / "run"
    process = driver(["--out", str(run_dir), *AUGMENTED], FAULT_SLOW="0.02",
                     FAULT_STARTED=str(tmp_path / "started"))
    deadline = time.monotonic() + 60
    while not (run_dir / "history.json").exists() and process.poll() is None:  # epoch 1 done
        assert time.monotonic() < deadline
        time.sleep(0.01)
    time.sleep(float(np.random.default_rng(7).uniform(0.0, 0.3)))  # 30 iterations of 0.02 s left
    process.send_signal(signal.SIGKILL)
    process.communicate(timeout=30)
    assert process.returncode == -signal.SIGKILL
    assert 10 <= read_checkpoint(run_dir / "checkpoint.npz").state.iteration < 40
    assert cli.main(["train", "--resume", str(run_dir)]) == 0
    assert_same_run(run_dir, whole)


# --- a full disk ---


def fail_at(monkeypatch: pytest.MonkeyPatch, where: str, name: str, nth: int,
            saved: dict[str, bytes]) -> None:
    """Make the ``nth`` atomic write of file ``name`` fail with ENOSPC at ``where``: in the
    middle of writing it, at its fsync (a disk with delayed allocation) or at the rename.
    Before failing, remember what ``name`` held on disk, in ``saved``."""
    count = {"n": 0}

    def full(target: str) -> OSError:
        saved["before"] = Path(target).read_bytes() if Path(target).exists() else b""
        return OSError(errno.ENOSPC, ENOSPC)

    def ours(path: str) -> bool:
        if Path(path).name.startswith(f".{name}.") or Path(path).name == name:
            count["n"] += 1
            return count["n"] == nth
        return False

    if where == "write":
        real = fileio.write_npz

        def write_npz(file: Any, arrays: Any) -> None:
            if ours(file.name):
                file.write(b"PK\x03\x04 half a zip")
                raise full(str(Path(file.name).parent / name))
            real(file, arrays)

        monkeypatch.setattr(fileio, "write_npz", write_npz)
    elif where == "fsync":
        real_fsync = os.fsync

        def fsync(fd: int) -> None:
            path = os.readlink(f"/proc/self/fd/{fd}")
            if ours(path):
                raise full(str(Path(path).parent / name))
            real_fsync(fd)

        if not Path("/proc/self/fd").is_dir():
            pytest.skip("needs /proc/self/fd to tell which file an fsync is for")
        monkeypatch.setattr(os, "fsync", fsync)
    else:
        real_replace = os.replace

        def replace(src: Any, dst: Any) -> None:
            if ours(str(dst)):
                raise full(str(dst))
            real_replace(src, dst)

        monkeypatch.setattr(fileio.os, "replace", replace)


@pytest.mark.parametrize("where", ["write", "fsync", "rename"])
def test_full_disk_at_a_checkpoint_is_one_line_and_keeps_the_last_one(
        where: str, whole_run: Path, mini_env: Path, tmp_path: Path,
        monkeypatch: pytest.MonkeyPatch, capsys) -> None:
    run_dir = tmp_path / "run"
    saved: dict[str, bytes] = {}
    fail_at(monkeypatch, where, "checkpoint.npz", 3, saved)  # at the end of epoch 2
    args = ["train", "--dataset", "mini", "--data-dir", str(mini_env), "--hidden", "8",
            "--batch-size", "50", "--epochs", "3", "--val-size", "100", "--seed", "11",
            "--out", str(run_dir), "--quiet"]
    assert cli.main(args) == 1
    assert one_error_line(capsys.readouterr().err) == f"{ENOSPC}: {run_dir / 'checkpoint.npz'}"
    assert (run_dir / "checkpoint.npz").read_bytes() == saved["before"]  # byte-identical
    assert read_checkpoint(run_dir / "checkpoint.npz").state.iteration == 10
    assert run_files(run_dir) == ["checkpoint.npz", "config.json", "history.csv",
                                  "history.json"]  # no temporary file left behind
    monkeypatch.undo()  # space again (the module's dataset and stubs stay)
    assert cli.main(["train", "--resume", str(run_dir), "--data-dir", str(mini_env),
                     "--quiet"]) == 0
    assert_same_run(run_dir, whole_run)


def test_full_disk_while_resuming_a_finished_run_keeps_its_model(whole_run: Path, mini_env: Path,
                                                                 tmp_path: Path,
                                                                 monkeypatch: pytest.MonkeyPatch,
                                                                 capsys) -> None:
    """`train --resume` of a finished run writes its model again; on a full disk the model that
    was there stays, byte for byte."""
    run_dir = tmp_path / "run"
    shutil.copytree(whole_run, run_dir)
    before = {p.name: p.read_bytes() for p in run_dir.iterdir()}
    saved: dict[str, bytes] = {}
    fail_at(monkeypatch, "write", "model.npz", 1, saved)
    assert cli.main(["train", "--resume", str(run_dir), "--data-dir", str(mini_env),
                     "--quiet"]) == 1
    assert one_error_line(capsys.readouterr().err) == f"{ENOSPC}: {run_dir / 'model.npz'}"
    assert saved["before"] == before["model.npz"]
    assert {p.name: p.read_bytes() for p in run_dir.iterdir()} == before


def _can_mount_tmpfs() -> str:
    if not shutil.which("unshare"):
        return "no unshare(1)"
    probe = subprocess.run(["unshare", "-Urm", "sh", "-c", "mount -t tmpfs -o size=64k tmpfs "
                            "/tmp"], capture_output=True, text=True)
    return "" if probe.returncode == 0 else f"cannot mount a tmpfs here: {probe.stderr.strip()}"


def test_a_real_full_disk(whole_cli: Path, tmp_path: Path, monkeypatch: pytest.MonkeyPatch,
                          capsys) -> None:
    """Train into a 64 KB tmpfs (private to a user and mount namespace, gone with it): the
    second checkpoint does not fit. One line, exit 1, the first checkpoint intact; copied to a
    roomy disk, the run resumes and ends as the undisturbed one."""
    why = _can_mount_tmpfs()
    if why:
        pytest.skip(why)
    mount, out = tmp_path / "tiny-disk", tmp_path / "copied"
    mount.mkdir()
    script = (f'mount -t tmpfs -o size=64k tmpfs "{mount}" || exit 99\n'
              f'"$@"\necho "exit=$?"\ncp -a "{mount}/run" "{out}"\n')
    result = subprocess.run(
        ["unshare", "-Urm", "sh", "-c", script, "sh", sys.executable, "-m", "mnist_twolayer",
         "train", *FLAGS, "--out", str(mount / "run")],
        capture_output=True, text=True, timeout=120, env={**os.environ, "PYTHONWARNINGS": ""})
    assert result.stdout.splitlines()[-1] == "exit=1", result
    assert result.stderr == f"error: {ENOSPC}: {mount / 'run' / 'checkpoint.npz'}\n"
    assert run_files(out) == ["checkpoint.npz", "config.json"]
    assert read_checkpoint(out / "checkpoint.npz").state.iteration == 0
    no_figures(monkeypatch)
    assert cli.main(["train", "--resume", str(out)]) == 0
    assert "test accuracy" in capsys.readouterr().out
    assert_same_run(out, whole_cli)


# --- signals while a finished run writes its outputs, and two processes on one folder ---


def test_a_signal_while_the_outputs_are_written_waits_for_them(tmp_path: Path) -> None:
    """SIGTERM (or Ctrl-C) while a finished run writes its model, metrics and figures: the
    writes complete and the run ends as finished, never a run without its figures."""
    run_dir, ready = tmp_path / "run", tmp_path / "ready"
    process = subprocess.Popen([sys.executable, "-c", DRIVER, "train", *FLAGS, "--out",
                                str(run_dir)], stdout=subprocess.PIPE, stderr=subprocess.PIPE,
                               text=True, env={**os.environ, "FAULT_SLOW_FINISH": "2",
                                               "FAULT_READY": str(ready)})
    try:
        deadline = time.monotonic() + 120
        while not ready.exists():
            assert process.poll() is None and time.monotonic() < deadline, process.stderr
            time.sleep(0.02)
        process.send_signal(signal.SIGTERM)
        out, err = process.communicate(timeout=120)
    finally:
        process.kill()
    assert process.returncode == 0 and err == "", err
    assert out.startswith("test accuracy ")
    assert sorted(p.name for p in run_dir.iterdir()) == sorted(RUN_FILES + FIGURES)
    assert json.loads((run_dir / "metrics.json").read_text())["partial"] is False


def test_a_second_train_on_a_folder_in_use_is_refused_and_writes_nothing(tmp_path: Path
                                                                         ) -> None:
    run_dir, started = tmp_path / "run", tmp_path / "started"
    first = driver(["--out", str(run_dir)], FAULT_SLOW="0.05", FAULT_STARTED=str(started))
    try:
        deadline = time.monotonic() + 120
        while not started.exists():
            assert first.poll() is None and time.monotonic() < deadline
            time.sleep(0.02)
        before = {p.name: p.read_bytes() for p in run_dir.iterdir()}
        for args in (["train", "--out", str(run_dir), "--hidden", "64", "--seed", "5",
                      "--quiet"], ["train", "--resume", str(run_dir), "--quiet"]):
            result = subprocess.run([sys.executable, "-m", "mnist_twolayer", *args],
                                    capture_output=True, text=True, timeout=120)
            assert result.returncode == 2
            assert one_error_line(result.stderr) == (
                f"{run_dir} is in use by process {first.pid}, a train or --resume running "
                f"there; wait for it to end or choose another --out")
            now = {p.name: p.read_bytes() for p in run_dir.iterdir() if p.name in before}
            assert json.loads(now["config.json"])["hidden"] == 8  # still the first run's
        first.send_signal(signal.SIGINT)
        first.communicate(timeout=120)
    finally:
        first.kill()
    assert json.loads((run_dir / "config.json").read_text())["hidden"] == 8


HOLD_FOLDER = """
import fcntl, os, sys
fd = os.open(sys.argv[1], os.O_RDONLY)
fcntl.flock(fd, fcntl.LOCK_EX)
print("locked", flush=True)
sys.stdin.read()
"""


def test_a_new_run_that_loses_the_race_for_its_folder_leaves_it_to_the_winner(
        mini_env: Path, tmp_path: Path, monkeypatch: pytest.MonkeyPatch, capsys) -> None:
    """Two new runs on one missing folder: this one creates it, the other locks it first
    (as if scheduled between our mkdir and our lock). Ours is refused and must not remove the
    folder that now belongs to the winner, though ours made it and it is still empty."""
    run_dir, real_lock = tmp_path / "run", fileio.folder_lock
    winners: list[subprocess.Popen] = []

    def lock_after_the_winner(folder: Path, **kwargs: Any):
        winner = subprocess.Popen([sys.executable, "-c", HOLD_FOLDER, str(folder)],
                                  stdin=subprocess.PIPE, stdout=subprocess.PIPE, text=True)
        winners.append(winner)
        assert winner.stdout.readline() == "locked\n"
        return real_lock(folder, **kwargs)

    monkeypatch.setattr(run_folder, "folder_lock", lock_after_the_winner)
    try:
        code = cli.main(["train", "--dataset", "mini", "--out", str(run_dir), "--quiet"])
        assert code == 2
        assert capsys.readouterr().err.splitlines()[-1] == (
            f"error: {run_dir} is in use by process {winners[0].pid}, a train or --resume "
            f"running there; wait for it to end or choose another --out")
        assert run_dir.is_dir() and winners[0].poll() is None  # the winner's, still held
    finally:
        for winner in winners:
            winner.kill()
            winner.communicate()


def test_a_new_run_whose_data_fails_removes_the_folder_it_made(tmp_path: Path) -> None:
    run_dir, not_a_folder = tmp_path / "deep" / "run", tmp_path / "file"
    not_a_folder.touch()
    result = subprocess.run([sys.executable, "-m", "mnist_twolayer", "train", "--data-dir",
                             str(not_a_folder), "--out", str(run_dir), "--quiet"],
                            capture_output=True, text=True, timeout=120)
    assert result.returncode == 2 and "Not a directory" in one_error_line(result.stderr)
    assert not run_dir.exists()
    assert (tmp_path / "deep").is_dir()  # a parent made on the way is harmless, and stays
