"""The commands a newcomer uses on a finished run: evaluate and predict given the run folder,
predict over a folder, class names, plot's axes and labels, the early-stop summary, --version
and the program's name in messages. On the 600-digit ``mini`` dataset, so each run is quick."""

from __future__ import annotations

import json
import shutil
import subprocess
import sys
from pathlib import Path

import pytest
from conftest import run_cli, user_picture
from faults_support import mini_arrays, register_mini

from mnist_twolayer import __version__, gradcheck, plots
from mnist_twolayer.cli import main
from mnist_twolayer.config import config_from_preset
from mnist_twolayer.trainer import Trainer

NAMES = ("zero", "one", "two", "three", "four", "five", "six", "seven", "eight", "nine")


@pytest.fixture(scope="module")
def runs(tmp_path_factory):
    """Two short runs on the mini digits: ``digits`` as they are, ``named`` with the classes
    given names (another dataset to the registry), and the data folder."""
    root = tmp_path_factory.mktemp("inspect")
    with pytest.MonkeyPatch.context() as mp:
        data_dir = register_mini(mp, root / "data")
        register_mini(mp, root / "data", name="mini-named", class_names=NAMES)
        for name, dataset in (("digits", "mini"), ("named", "mini-named")):
            config = config_from_preset("default", dataset=dataset, hidden=32, epochs=8,
                                        batch_size=50, seed=0)
            Trainer(config, root / name, data_dir=data_dir).run()
        yield {"digits": root / "digits", "named": root / "named", "data": data_dir}


@pytest.fixture
def registered(runs, monkeypatch):
    register_mini(monkeypatch, runs["data"])
    register_mini(monkeypatch, runs["data"], name="mini-named", class_names=NAMES)
    return runs


def test_evaluate_takes_the_run_folder_and_names_the_classes(registered, capsys):
    run = registered["named"]
    assert main(["evaluate", str(run), "--data-dir", str(registered["data"]), "--json"]) == 0
    report = json.loads(capsys.readouterr().out)
    assert report["dataset"] == "mini-named"
    assert [row["name"] for row in report["per_class"]] == list(NAMES)
    assert report["figures"] == [str(run / "confusion.png"), str(run / "misclassified.png")]
    assert main(["evaluate", str(run), "--data-dir", str(registered["data"])]) == 0
    table = capsys.readouterr().out.splitlines()
    assert table[1].split() == ["class", "precision", "recall", "support"]
    assert [line.split()[0] for line in table[2:12]] == list(NAMES)
    metrics = json.loads((run / "metrics.json").read_text())
    assert table[0] == (f"mini-named test: accuracy {metrics['test_accuracy']:.2%}, loss "
                        f"{metrics['test_loss']:.4f} on 200 images")


def test_evaluating_on_another_dataset_warns_in_one_line_and_keeps_the_runs_figures(
        registered, capsys):
    run = registered["digits"]
    own = {name: (run / name).read_bytes() for name in ("confusion.png", "misclassified.png")}
    assert main(["evaluate", str(run), "--dataset", "mini-named",
                 "--data-dir", str(registered["data"]), "--json"]) == 0
    captured = capsys.readouterr()
    assert captured.err == (f"warning: {run} was trained on mini, not "
                            f"mini-named: expect little better than chance\n")
    report = json.loads(captured.out)
    assert report["dataset"] == "mini-named"
    assert report["figures"] == [str(run / "confusion-mini-named.png"),
                                 str(run / "misclassified-mini-named.png")]
    assert all((run / name).read_bytes() == own[name] for name in own)
    assert all(Path(figure).stat().st_size > 0 for figure in report["figures"])


def test_a_folder_without_a_model_is_one_line(tmp_path, capsys):
    assert main(["evaluate", str(tmp_path)]) == 2
    assert capsys.readouterr().err == (f"error: {tmp_path} holds no model.npz; give a model.npz "
                                       f"or the folder of a finished run\n")


def test_predict_takes_the_run_folder_and_a_folder_of_images_in_name_order(registered,
                                                                            tmp_path, capsys):
    images, labels = mini_arrays()["test", "images"], mini_arrays()["test", "labels"]
    folder = tmp_path / "pictures"
    folder.mkdir()
    for i, name in ((3, "c.png"), (1, "a.PNG"), (2, "b.jpg")):
        user_picture(images[i]).save(folder / name)
    (folder / "notes.txt").write_text("not a picture")
    (folder / "sub").mkdir()
    assert main(["predict", str(registered["named"]), str(folder), "--json", "--top-k",
                 "2"]) == 0
    predictions = json.loads(capsys.readouterr().out)["predictions"]
    assert [Path(p["image"]).name for p in predictions] == ["a.PNG", "b.jpg", "c.png"]
    for p in predictions:
        assert p["name"] == NAMES[p["class"]] and "digit" not in p  # names, not digits
        assert [k["name"] for k in p["top_k"]] == [NAMES[k["class"]] for k in p["top_k"]]
    assert [p["class"] for p in predictions] == [int(labels[i]) for i in (1, 2, 3)]
    assert main(["predict", str(registered["named"]), str(folder / "a.PNG")]) == 0
    best = predictions[0]["top_k"][0]
    assert capsys.readouterr().out == (f"{folder / 'a.PNG'}: {best['name']} "
                                       f"({best['probability']:.3f})\n")


def test_predict_with_a_digit_model_says_digit_too(registered, tmp_path, capsys):
    user_picture(mini_arrays()["test", "images"][0]).save(tmp_path / "x.png")
    assert main(["predict", str(registered["digits"] / "model.npz"), str(tmp_path / "x.png"),
                 "--json"]) == 0
    (prediction,) = json.loads(capsys.readouterr().out)["predictions"]
    assert prediction["digit"] == prediction["class"] == int(prediction["name"])


def test_an_empty_folder_of_images_is_a_failure_not_a_silence(registered, tmp_path, capsys):
    (tmp_path / "empty").mkdir()
    assert main(["predict", str(registered["digits"]), str(tmp_path / "empty")]) == 2
    assert capsys.readouterr().err == (f"error: {tmp_path / 'empty'}: a folder with no image "
                                       f"files (.png, .jpg, .jpeg, .bmp, .gif, .webp)\n")


def test_plot_draws_against_iterations_with_labels_and_names_runs_lacking_the_metric(
        registered, tmp_path, monkeypatch, capsys):
    given = []
    real = plots.plot_runs
    monkeypatch.setattr(plots, "plot_runs", lambda runs, *a, **k: (
        given.append((runs, k)), real(runs, *a, **k))[1])
    out = tmp_path / "both.png"
    args = ["plot", str(registered["digits"]), str(registered["named"]), "--out", str(out)]
    assert main([*args, "--x", "iteration", "--label", "A", "--label", "B"]) == 0
    assert [label for label, _ in given[-1][0]] == ["A", "B"]
    assert given[-1][1] == {"metric": "test_accuracy", "x": "iteration"}
    assert main([*args, "--metric", "val_accuracy"]) == 2
    assert capsys.readouterr().err == ("error: no run has val_accuracy (none of digits, named); "
                                       "runs without a validation split have no val_* "
                                       "metrics\n")
    assert main([*args, "--label", "only one"]) == 2
    assert "1 --label for 2 runs; give one per run" in capsys.readouterr().err


def test_a_run_named_by_its_start_time_is_labelled_by_its_settings(registered, tmp_path,
                                                                    monkeypatch):
    stamped = tmp_path / "20261124-031500"
    shutil.copytree(registered["digits"], stamped)
    given = []
    monkeypatch.setattr(plots, "plot_runs", lambda runs, *a, **k: given.append(runs))
    assert main(["plot", str(stamped), "--out", str(tmp_path / "x.png")]) == 0
    assert given[0][0][0] == "default: dataset mini, hidden 32, batch_size 50 (20261124-031500)"


def test_the_summary_says_when_training_stopped_early_and_which_epoch_was_kept(
        registered, tmp_path, capsys):
    assert main(["train", "--dataset", "mini", "--data-dir", str(registered["data"]),
                 "--val-size", "100", "--epochs", "40", "--patience", "2", "--lr", "2",
                 "--hidden", "16", "--batch-size", "50", "--out", str(tmp_path / "run"),
                 "--quiet"]) == 0
    out = capsys.readouterr().out.splitlines()
    metrics = json.loads((tmp_path / "run" / "metrics.json").read_text())
    assert metrics["stopped_early"] is True
    assert out[1] == (f"stopped early: the model kept is epoch {metrics['model_from_epoch']}'s, "
                      f"the best validation accuracy ({metrics['val_accuracy']:.2%}) of "
                      f"{metrics['epochs']} epochs")


def test_version_and_the_program_named_as_invoked(tmp_path):
    result = run_cli("--version")
    assert (result.returncode, result.stdout) == (0, f"mnist_twolayer {__version__}\n")
    module = run_cli("train", "--lr", "-1")
    assert module.stderr == ("error: python -m mnist_twolayer train: argument --lr: '-1' must "
                             "be greater than 0 (see --help)\n")
    script = Path(sys.executable).with_name("mnist-twolayer")  # pip's console script
    assert script.is_file(), "the package is installed with its mnist-twolayer script"
    result = subprocess.run([str(script), "train", "--lr", "-1"], capture_output=True,
                            text=True, timeout=60)
    assert result.stderr == ("error: mnist-twolayer train: argument --lr: '-1' must be "
                             "greater than 0 (see --help)\n")


@pytest.mark.parametrize("command", ["train", "evaluate", "gradcheck"])
def test_threads_limits_the_blas_while_the_command_runs(command, registered, tmp_path,
                                                        monkeypatch):
    from threadpoolctl import threadpool_info

    def blas_threads() -> list[int]:
        return [pool["num_threads"] for pool in threadpool_info()
                if pool["user_api"] == "blas"]

    seen = []
    target = {"train": (Trainer, "run"), "evaluate": (plots, "plot_confusion"),
              "gradcheck": (gradcheck, "compute_gradients")}[command]
    real = getattr(*target)
    monkeypatch.setattr(*target, lambda *a, **k: (seen.append(blas_threads()),
                                                  real(*a, **k))[1])
    argv = {"train": ["train", "--dataset", "mini", "--iters", "3", "--out",
                      str(tmp_path / "run"), "--quiet"],
            "evaluate": ["evaluate", str(registered["digits"]), "--out", str(tmp_path)],
            "gradcheck": ["gradcheck", "--batch", "3", "--hidden", "4",
                          "--methods", "backprop,autograd"]}[command]
    if command != "gradcheck":  # gradcheck reads the real MNIST
        argv += ["--data-dir", str(registered["data"])]
    before = blas_threads()
    assert main([*argv, "--threads", "1"]) == 0
    assert seen and all(threads == [1] * len(before) for threads in seen)
    assert blas_threads() == before  # and put back afterwards
