"""Every flag of every subcommand with values that cannot work: zero, negative, non-numeric,
too large for the data or the machine, unknown names, missing or wrong paths. Each is one
``error: ...`` line on stderr and exit 2 (exit 1 when the operating system refuses a write), no
traceback. In-process for speed; a few through a real terminal (a pty) to see exactly what a
user sees.

Not repeated: the cases of test_cli_train.py::test_bad_train_flags_are_one_line and
::test_missing_paths_are_one_line, and test_download.py's unknown dataset.
"""

from __future__ import annotations

import json
import os
import pty
import select
import subprocess
import sys
from pathlib import Path

import pytest
from faults_support import one_error_line

from mnist_twolayer import cli, datasets
from mnist_twolayer.download import ENV_MIRROR
from mnist_twolayer.network import TwoLayerNet

P = "python -m mnist_twolayer"
HUGE = str(10**12)
OOM = ("out of memory (Unable to allocate 5.57 PiB for an array with shape (784, 1000000000000) "
       "and data type float64); use smaller sizes (--hidden, --batch-size, --train-size, --batch)")
TRAIN = ["train", "--out", "{tmp}/run", "--quiet"]


def bad(flag: str, value: str, why: str, command: str = "train") -> tuple[list[str], int, str]:
    """A value argparse refuses: `argument FLAG: 'VALUE' WHY`."""
    args = [*TRAIN, flag, value] if command == "train" else [command, flag, value]
    return args, 2, f"{P} {command}: argument {flag}: '{value}' {why} (see --help)"


NOT_INT, NOT_NUMBER = "is not an integer", "is not a number"
POSITIVE, NONNEGATIVE = "must be greater than 0", "must be at least 0"
CASES: dict[str, tuple[list[str], int, str]] = {
    # --- the program itself ---
    "no command": ([], 2, f"{P}: the following arguments are required: COMMAND (see --help)"),
    "unknown command": (["fly"], 2, f"{P}: argument COMMAND: invalid choice: 'fly' (choose from "
                        "'download', 'info', 'train', 'evaluate', 'predict', 'plot', "
                        "'gradcheck', 'serve') (see --help)"),
    "unknown flag": (["train", "--colour", "red"], 2,
                     f"{P}: unrecognized arguments: --colour red (see --help)"),
    # --- download / info ---
    "download --data-dir under a file": (
        ["download", "--data-dir", "{file}/data", "--from", "{tmp}"], 2,
        "cannot create {file}/data/mnist (Not a directory); choose another place with "
        "--data-dir or MNIST_TWOLAYER_DATA"),
    "download --mirror ftp": (["download", "--mirror", "ftp://example.invalid/", "--data-dir",
                               "{tmp}/d"], 2, "mirror 'ftp://example.invalid/' is not an "
                              "http:// or https:// URL (for a local folder use --from DIR)"),
    "download --mirror empty": (["download", "--mirror", "", "--data-dir", "{tmp}/d"], 2,
                                "mirror '' is not an http:// or https:// URL (for a local "
                                "folder use --from DIR)"),
    "download --mirror host only": (["download", "--mirror", "http://", "--data-dir", "{tmp}/d"],
                                    2, "mirror 'http://' is not an http:// or https:// URL (for "
                                    "a local folder use --from DIR)"),
    "download --from missing": (["download", "--from", "{tmp}/nowhere", "--data-dir", "{tmp}/d"],
                                2, "--from {tmp}/nowhere: no such folder"),
    "download --from a file": (["download", "--from", "{file}", "--data-dir", "{tmp}/d"], 2,
                               "--from {file}: no such folder"),
    "download --force=yes": (["download", "--force=yes"], 2,
                             f"{P} download: argument --force: ignored explicit argument 'yes' "
                             "(see --help)"),
    "info --dataset unknown": (["info", "--dataset", "emnist"], 2,
                               "unknown dataset 'emnist' (known: fashion-mnist, mnist)"),
    "info --json=1": (["info", "--json=1"], 2,
                      f"{P} info: argument --json: ignored explicit argument '1' (see --help)"),
    # --- train: numbers ---
    "train --epochs -1": bad("--epochs", "-1", POSITIVE),
    "train --epochs 1.5": bad("--epochs", "1.5", NOT_INT),
    "train --iters 0": bad("--iters", "0", POSITIVE),
    "train --iters x": bad("--iters", "x", NOT_INT),
    "train --hidden 0": bad("--hidden", "0", POSITIVE),
    "train --hidden abc": bad("--hidden", "abc", NOT_INT),
    "train --hidden 10**12": ([*TRAIN, "--hidden", HUGE, "--train-size", "100"], 2, OOM),
    "train --batch-size 0": bad("--batch-size", "0", POSITIVE),
    "train --batch-size -1": bad("--batch-size", "-1", POSITIVE),
    "train --batch-size > --train-size": (
        [*TRAIN, "--batch-size", "301", "--train-size", "300"], 2,
        "batch size 301 is larger than the 300 training samples"),
    "train --lr -1": bad("--lr", "-1", POSITIVE),
    "train --lr abc": bad("--lr", "abc", NOT_NUMBER),
    "train --lr inf": bad("--lr", "inf", "is not a finite number"),
    "train --lr 1e400": bad("--lr", "1e400", "is not a finite number"),
    "train --momentum -0.1": bad("--momentum", "-0.1", NONNEGATIVE),
    "train --momentum abc": bad("--momentum", "abc", NOT_NUMBER),
    "train --weight-decay -1": bad("--weight-decay", "-1", NONNEGATIVE),
    "train --weight-decay nan": bad("--weight-decay", "nan", "is not a finite number"),
    "train --seed -1": bad("--seed", "-1", NONNEGATIVE),
    "train --seed abc": bad("--seed", "abc", NOT_INT),
    "train --val-size -1": bad("--val-size", "-1", NONNEGATIVE),
    "train --val-size abc": bad("--val-size", "abc", NOT_INT),
    "train --train-size 0": bad("--train-size", "0", POSITIVE),
    "train --train-size abc": bad("--train-size", "abc", NOT_INT),
    "train --train-size 60001": ([*TRAIN, "--train-size", "60001"], 2,
                                 "train size must be 1..60000 (training samples left after the "
                                 "validation split), got 60001"),
    "train --train-size with --val-size": (
        [*TRAIN, "--train-size", "59500", "--val-size", "1000"], 2,
        "train size must be 1..59000 (training samples left after the validation split), got "
        "59500"),
    "train --patience 0": bad("--patience", "0", POSITIVE),
    "train --patience without --val-size": ([*TRAIN, "--patience", "3"], 2,
                                            "early stopping (--patience) needs a validation "
                                            "split (--val-size)"),
    "train --augment-shift 5": bad("--augment-shift", "5", "must be at most 4"),
    "train --augment-shift -1": bad("--augment-shift", "-1", NONNEGATIVE),
    "train --augment-shift with --augment": (
        [*TRAIN, "--augment-shift", "2", "--augment", "elastic"], 2,
        "--augment-shift N is the older spelling of --augment shift --max-shift N; give one or "
        "the other"),
    "train --max-shift -1": bad("--max-shift", "-1", NONNEGATIVE),
    "train --max-shift 5": ([*TRAIN, "--augment", "affine", "--max-shift", "5"], 2,
                            "max_shift (--max-shift) must be in [0, 4] pixels, got 5.0"),
    "train --max-shift 1.5 with shift": (
        [*TRAIN, "--augment", "shift", "--max-shift", "1.5"], 2,
        "--augment shift moves digits by whole pixels: max_shift (--max-shift) must be a whole "
        "number, got 1.5"),
    "train --max-rotation abc": bad("--max-rotation", "abc", NOT_NUMBER),
    "train --max-rotation 120": ([*TRAIN, "--augment", "affine", "--max-rotation", "120"], 2,
                                 "max_rotation (--max-rotation) must be in [0, 90] degrees, got "
                                 "120.0"),
    "train --max-scale 1": ([*TRAIN, "--augment", "affine+elastic", "--max-scale", "1"], 2,
                            "max_scale (--max-scale) must be in [0, 0.5] (a fraction of the "
                            "size), got 1.0"),
    "train --max-shear inf": bad("--max-shear", "inf", "is not a finite number"),
    "train --elastic-alpha -3": bad("--elastic-alpha", "-3", NONNEGATIVE),
    "train --elastic-alpha 500": ([*TRAIN, "--augment", "elastic", "--elastic-alpha", "500"], 2,
                                  "elastic_alpha (--elastic-alpha) must be in [0, 100] pixels, "
                                  "got 500.0"),
    "train --elastic-sigma 0": bad("--elastic-sigma", "0", POSITIVE),
    "train --elastic-sigma 20": ([*TRAIN, "--augment", "elastic", "--elastic-sigma", "20"], 2,
                                 "elastic_sigma (--elastic-sigma) must be in [0.5, 14] pixels, "
                                 "got 20.0"),
    "train --elastic-sigma without elastic": (
        [*TRAIN, "--preset", "best", "--elastic-sigma", "3"], 2,
        "--elastic-sigma changes nothing with --augment shift; choose a distortion that uses it "
        "(see --help)"),
    "train --nesterov with --momentum 0": ([*TRAIN, "--nesterov", "--momentum", "0"], 2,
                                           "Nesterov momentum needs --momentum greater than 0"),
    "train --beta1 1": ([*TRAIN, "--optimizer", "adam", "--beta1", "1"], 2,
                        "beta1 must be in [0, 1), got 1.0"),
    "train --beta2 -1": bad("--beta2", "-1", NONNEGATIVE),
    "train --decay-rate 1": ([*TRAIN, "--optimizer", "rmsprop", "--decay-rate", "1"], 2,
                             "decay rate must be in [0, 1), got 1.0"),
    "train --decay-rate abc": bad("--decay-rate", "abc", NOT_NUMBER),
    "train --eps 0": bad("--eps", "0", POSITIVE),
    "train --momentum with --optimizer adam": (
        [*TRAIN, "--optimizer", "adam", "--momentum", "0.5"], 2,
        "--momentum does not apply to adam (it is a setting of momentum, nesterov)"),
    "train --beta1 without adam": ([*TRAIN, "--beta1", "0.5"], 2,
                                   "--beta1 does not apply to momentum (it is a setting of adam)"),
    "train --nesterov with --optimizer adagrad": (
        [*TRAIN, "--nesterov", "--optimizer", "adagrad"], 2,
        "--nesterov means --optimizer nesterov; it does not go with --optimizer adagrad"),
    # --- train: names ---
    "train --schedule": ([*TRAIN, "--schedule", "linear"], 2, f"{P} train: argument --schedule: "
                         "invalid choice: 'linear' (choose from 'constant', 'step', 'cosine') "
                         "(see --help)"),
    "train --init": ([*TRAIN, "--init", "zeros"], 2, f"{P} train: argument --init: invalid "
                     "choice: 'zeros' (choose from 'normal', 'xavier', 'he') (see --help)"),
    "train --augment": ([*TRAIN, "--augment", "blur"], 2, f"{P} train: argument --augment: "
                        "invalid choice: 'blur' (choose from 'none', 'shift', 'affine', "
                        "'elastic', 'affine+elastic') (see --help)"),
    "train --dtype": ([*TRAIN, "--dtype", "float16"], 2, f"{P} train: argument --dtype: invalid "
                      "choice: 'float16' (choose from 'float32', 'float64') (see --help)"),
    "train --sampling": ([*TRAIN, "--sampling", "bootstrap"], 2, f"{P} train: argument "
                         "--sampling: invalid choice: 'bootstrap' (choose from 'permutation', "
                         "'replacement') (see --help)"),
    "train --gradient": ([*TRAIN, "--gradient", "magic"], 2, f"{P} train: argument --gradient: "
                         "invalid choice: 'magic' (choose from 'backprop', 'autograd', "
                         "'numerical') (see --help)"),
    "train --optimizer": ([*TRAIN, "--optimizer", "lion"], 2, f"{P} train: argument "
                          "--optimizer: invalid choice: 'lion' (choose from 'sgd', 'momentum', "
                          "'nesterov', 'adagrad', 'rmsprop', 'adam') (see --help)"),
    "train --activation": ([*TRAIN, "--activation", "tanh"], 2, f"{P} train: argument "
                           "--activation: invalid choice: 'tanh' (choose from 'sigmoid', 'relu') "
                           "(see --help)"),
    # --- train: paths ---
    "train --out under a file": (["train", "--out", "{file}/run", "--train-size", "100",
                                  "--hidden", "4", "--epochs", "1", "--quiet"], 1,
                                 "Not a directory: {file}/run"),
    "train --out a file": (["train", "--out", "{file}", "--quiet"], 2,
                           "--out {file} is a file; a run writes a folder"),
    "train --resume missing": (["train", "--resume", "{tmp}/nowhere"], 2,
                               "{tmp}/nowhere/checkpoint.npz: no checkpoint here; is this a run "
                               "folder?"),
    "train --resume a file": (["train", "--resume", "{file}"], 2,
                              "{file} is a file; resume takes the run folder that holds "
                              "checkpoint.npz"),
    "train --data-dir under a file": ([*TRAIN, "--data-dir", "{file}/data"], 2,
                                      "cannot create {file}/data/mnist (Not a directory); choose "
                                      "another place with --data-dir or MNIST_TWOLAYER_DATA"),
    "train --data-dir empty, no network": (
        [*TRAIN, "--data-dir", "{tmp}/empty"], 2,
        "could not get mnist file train-images-idx3-ubyte.gz: http://nonexistent.invalid/: "
        "connection failed ({unresolved}); for a local copy use --from DIR or --mirror URL"),
    # --- evaluate ---
    "evaluate without a model": (["evaluate"], 2, f"{P} evaluate: the following arguments are "
                                 "required: model (see --help)"),
    "evaluate a folder with no model": (["evaluate", "{run}"], 2, "{run} holds no model.npz; "
                                        "give a model.npz or the folder of a finished run"),
    "evaluate --dataset unknown": (["evaluate", "{model}", "--dataset", "emnist"], 2,
                                   "unknown dataset 'emnist' (known: fashion-mnist, mnist)"),
    "evaluate --data-dir under a file": (["evaluate", "{model}", "--data-dir", "{file}/d"], 2,
                                         "cannot create {file}/d/mnist (Not a directory); choose "
                                         "another place with --data-dir or MNIST_TWOLAYER_DATA"),
    "evaluate --out a file": (["evaluate", "{model}", "--out", "{file}"], 1,
                              "Not a directory: {file}"),
    "evaluate --json=yes": (["evaluate", "{model}", "--json=yes"], 2,
                            f"{P} evaluate: argument --json: ignored explicit argument 'yes' "
                            "(see --help)"),
    # --- predict ---
    "predict with a model of 100 inputs": (["predict", "{model100}", "x.png"], 2,
                                           "{model100} takes 100 inputs; predict prepares 28x28 "
                                           "digits (784 inputs)"),
    "predict without images": (["predict", "{model}"], 2, f"{P} predict: the following "
                               "arguments are required: IMAGE (see --help)"),
    "predict --top-k 0": (["predict", "{model}", "x.png", "--top-k", "0"], 2, f"{P} predict: "
                          "argument --top-k: '0' must be greater than 0 (see --help)"),
    "predict --top-k abc": (["predict", "{model}", "x.png", "--top-k", "abc"], 2, f"{P} predict: "
                            "argument --top-k: 'abc' is not an integer (see --help)"),
    "predict --top-k 11": (["predict", "{model}", "x.png", "--top-k", "11"], 2,
                           "--top-k 11 is more than the model's 10 classes"),
    "predict a missing image": (["predict", "{model}", "{tmp}/none.png"], 2,
                                "{tmp}/none.png: no such file"),
    "predict a folder": (["predict", "{model}", "{tmp}"], 2,
                         "{tmp}: a folder with no image files (.png, .jpg, .jpeg, .bmp, .gif, "
                         ".webp)"),
    "predict --save-prepared a file": (["predict", "{model}", "x.png", "--save-prepared",
                                        "{file}"], 2,
                                       "--save-prepared {file} is a file; it names a folder"),
    "predict --save-prepared under a file": (["predict", "{model}", "x.png", "--save-prepared",
                                              "{file}/out"], 2, "--save-prepared {file}/out: "
                                             "cannot create the folder (Not a directory)"),
    # --- plot ---
    "plot without runs": (["plot"], 2, f"{P} plot: the following arguments are required: "
                          "RUN_DIR (see --help)"),
    "plot --metric": (["plot", "{run}", "--metric", "f1"], 2, f"{P} plot: argument --metric: "
                      "invalid choice: 'f1' (choose from 'train_accuracy', 'train_loss', "
                      "'val_accuracy', 'val_loss', 'test_accuracy', 'test_loss') (see --help)"),
    "plot --out svg": (["plot", "{run}", "--out", "{tmp}/runs.svg"], 2,
                       "--out {tmp}/runs.svg: figures are PNG files; use a .png name"),
    "plot --out under a file": (["plot", "{run}", "--out", "{file}/runs.png"], 1,
                                "Not a directory: {file}"),
    "plot a file": (["plot", "{file}"], 2, "{file}/history.json: not a history file ([Errno 20] "
                    "Not a directory: '{file}/history.json')"),
    "plot a broken history": (["plot", "{broken}"], 2, "{broken}/history.json: not a history "
                              "file (Expecting value: line 1 column 1 (char 0))"),
    "plot a history of something else": (["plot", "{other}"], 2, "{other}/history.json: not a "
                                         "history file (no epochs / iteration_loss)"),
    "plot a history with a text accuracy": (["plot", "{damaged}"], 2, "{damaged}/history.json: "
                                            "damaged history (epoch record 0 is not a record "
                                            "of numbers)"),
    # --- gradcheck ---
    "gradcheck --batch 0": bad("--batch", "0", POSITIVE, "gradcheck"),
    "gradcheck --batch abc": bad("--batch", "abc", NOT_INT, "gradcheck"),
    "gradcheck --batch 60001": (["gradcheck", "--batch", "60001"], 2,
                                "batch 60001 is larger than the 60000 training images of mnist"),
    "gradcheck --hidden -1": bad("--hidden", "-1", POSITIVE, "gradcheck"),
    "gradcheck --hidden 10**12": (["gradcheck", "--hidden", HUGE, "--batch", "2"], 2, OOM),
    "gradcheck --dtype": (["gradcheck", "--dtype", "float16"], 2, f"{P} gradcheck: argument "
                          "--dtype: invalid choice: 'float16' (choose from 'float64', 'float32') "
                          "(see --help)"),
    "gradcheck --seed -1": bad("--seed", "-1", NONNEGATIVE, "gradcheck"),
    "gradcheck --methods unknown": (["gradcheck", "--methods", "backprop,guess"], 2,
                                    "unknown gradient method 'guess'; choose from backprop, "
                                    "autograd, numerical_nditer, numerical_vectorized, torch"),
    "gradcheck --methods empty": (["gradcheck", "--methods", ","], 2,
                                  "no gradient method given; choose from backprop, autograd, "
                                  "numerical_nditer, numerical_vectorized, torch"),
    "gradcheck --data-dir under a file": (["gradcheck", "--data-dir", "{file}/d"], 2,
                                          "cannot create {file}/d/mnist (Not a directory); "
                                          "choose another place with --data-dir or "
                                          "MNIST_TWOLAYER_DATA"),
}


@pytest.fixture
def places(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> dict[str, str]:
    """Paths the cases refer to; the registry's mirrors replaced by a host that cannot
    resolve, so a case that would download fails at once instead of reaching the internet."""
    monkeypatch.delenv(ENV_MIRROR, raising=False)
    monkeypatch.delenv(datasets.ENV_DATA_DIR, raising=False)
    monkeypatch.setitem(datasets.DATASETS, "mnist", datasets.mnist_layout(
        "mnist", {f.stem: f.sha256 for f in datasets.DATASETS["mnist"].files},
        mirrors=("http://nonexistent.invalid/",), local_dirs=()))
    (tmp_path / "a-file").write_text("just text")
    TwoLayerNet(784, 8, 10, seed=0).save(tmp_path / "model.npz")
    TwoLayerNet(100, 8, 10, seed=0).save(tmp_path / "model100.npz")
    record = {"epoch": 1, "iteration": 10, "seconds": 0.5, "lr": 0.1, "train_loss": 0.5,
              "train_accuracy": 0.8, "val_loss": None, "val_accuracy": None, "test_loss": 0.6,
              "test_accuracy": 0.79}
    for name, text in (("run", json.dumps({"epochs": [record], "iteration_loss": [1.0, 0.5]})),
                       ("broken", ""), ("other", json.dumps({"epochs": []})),
                       ("damaged", json.dumps({"epochs": [{**record, "test_accuracy": "a"}],
                                               "iteration_loss": [1.0]}))):
        (tmp_path / name).mkdir()
        (tmp_path / name / "history.json").write_text(text)
    (tmp_path / "empty").mkdir()
    monkeypatch.chdir(tmp_path)
    return {"tmp": str(tmp_path), "file": str(tmp_path / "a-file"),
            "model": str(tmp_path / "model.npz"), "run": str(tmp_path / "run"),
            "broken": str(tmp_path / "broken"), "other": str(tmp_path / "other"),
            "damaged": str(tmp_path / "damaged"), "model100": str(tmp_path / "model100.npz")}


@pytest.mark.parametrize("case", list(CASES))
def test_invalid_value_is_one_line(case: str, places: dict[str, str], capsys) -> None:
    argv, code, message = CASES[case]
    argv = [arg.format(**places) for arg in argv]
    before = written(places["tmp"])
    assert cli.main(argv) == code
    captured = capsys.readouterr()
    line = one_error_line(captured.err)
    if "{unresolved}" in message:
        head, tail = message.format(**places, unresolved="\0").split("\0")
        assert line.startswith(head) and line.endswith(tail), line
    else:
        assert line == message.format(**places)
    assert captured.out == ""
    assert written(places["tmp"]) == before  # nothing written


def written(tmp: str) -> list[str]:
    """Every path under ``tmp``, but the data folder (and its lock) a download attempt makes."""
    return sorted(str(p.relative_to(tmp)) for p in Path(tmp).rglob("*")
                  if "mnist" not in p.relative_to(tmp).parts)


def test_info_of_a_data_dir_that_is_a_file_reports_missing_files(places, capsys) -> None:
    """Not an error: info answers the question, and the answer is "nothing here"."""
    assert cli.main(["info", "--data-dir", places["file"], "--json"]) == 0
    info = json.loads(capsys.readouterr().out)
    assert not info["splits"]["train"]["present"] and not info["splits"]["test"]["present"]


# --- what a person at a terminal sees ---


def run_in_terminal(*args: str, cwd: Path) -> tuple[int, str]:
    """Run the CLI with stdin, stdout and stderr on a pseudo-terminal; return its exit status
    and everything the terminal received."""
    master, slave = pty.openpty()
    process = subprocess.Popen([sys.executable, "-m", "mnist_twolayer", *args], stdin=slave,
                               stdout=slave, stderr=slave, cwd=cwd, close_fds=True)
    os.close(slave)
    received = b""
    while select.select([master], [], [], 120)[0]:
        try:
            chunk = os.read(master, 1 << 16)
        except OSError:  # the child closed the terminal
            break
        if not chunk:
            break
        received += chunk
    process.wait(timeout=60)
    os.close(master)
    return process.returncode, received.decode()


@pytest.mark.parametrize("args, code, message", [
    (["train", "--epochs", "abc"], 2,
     f"{P} train: argument --epochs: 'abc' is not an integer (see --help)"),
    (["evaluate", "random.bin"], 2, "random.bin: not a readable .npz file (no zip header); the "
                                    "file is damaged or not a saved model"),
    (["gradcheck", "--hidden", HUGE, "--batch", "2"], 2, OOM),
    (["train", "--lr", "1e30", "--momentum", "0", "--train-size", "100", "--batch-size", "100",
      "--hidden", "8", "--epochs", "3", "--out", "run"], 2,
     "the loss reached 9.219e+28 at iteration 1 (lr 1e+30); training diverged: lower the "
     "learning rate (--lr). The last good checkpoint is in run"),
], ids=["argparse", "random model file", "out of memory", "divergence"])
def test_what_a_terminal_shows(args: list[str], code: int, message: str, tmp_path: Path) -> None:
    (tmp_path / "random.bin").write_bytes(os.urandom(4096))
    status, shown = run_in_terminal(*args, cwd=tmp_path)
    assert status == code
    assert shown == f"error: {message}\r\n"  # that line, and nothing else: no bar, no warning
