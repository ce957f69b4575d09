#!/usr/bin/env python
"""Side-by-side performance figures for mnist_twolayer on real MNIST, against its targets.

    python scripts/benchmark.py [--quick] [--json] [--out FILE] [--repeats N] [--record]

Measures, in one process: (1) the book's ch. 4 job end to end, a textbook reference loop
against ``--preset book``; (2) the numerical gradient of 784-50-10 (nditer, vectorized) against
backprop; (3) the default preset's time to 98% test accuracy; (4) the peak RSS of a default
``train`` run in a child process and the first / cached MNIST load time; (5) the book job in
PyTorch eager (float32, CPU) when torch imports; (6) seconds per epoch of the record preset with
and without its distortions, and with ``--record`` the whole record run in a child process (its
test accuracy and training time). The targets are reported, never asserted.

The textbook and PyTorch loops below are deliberately independent of the package: they are the
yardsticks. Everything else only calls the project's API. Timings are wall-clock
(``time.perf_counter``); where a job is repeated (``--repeats``), the minimum is reported, since
noise from other processes only ever adds time. ``--quick`` shortens every job for CI and marks
the JSON ``"quick": true``; a target the shortened jobs do not measure (any figure of the full
book job, the numerical gradient of 784-50-10, the time to 98%) is then "not measured".
"""

from __future__ import annotations

import argparse
import ctypes
import datetime as dt
import glob
import json
import os
import platform
import shutil
import subprocess
import sys
import tempfile
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any

import numpy as np

from mnist_twolayer.config import config_from_preset
from mnist_twolayer.data import EVAL_CHUNK
from mnist_twolayer.datasets import clear_cache, dataset_dir, load_mnist
from mnist_twolayer.history import write_history
from mnist_twolayer.network import TwoLayerNet
from mnist_twolayer.trainer import Trainer

ROOT = Path(__file__).resolve().parent.parent

# (key, description, comparison, target); the value is looked up in the results by key
TARGETS: tuple[tuple[str, str, str, float], ...] = (
    # the project against the machine's own floor (the same work's large products alone), so
    # the target means the same on an AVX2 and on an AVX-512 CPU
    ("floor_ratio", "book job, project / floor (training loop)", "<=", 1.4),
    ("book_accuracy_gap", "book job, |test accuracy difference| (points)", "<=", 0.5),
    ("numerical_speedup", "vectorized / nditer numerical gradient speedup", ">=", 30.0),
    ("numerical_iteration_ms", "book job with --gradient numerical, ms per iteration", "<=",
     20.0),
    ("time_to_98", "default preset, time to 98.0% test (s)", "<=", 10.0),
    ("peak_rss_mb", "peak RSS, default train run (MB)", "<=", 600.0),
    ("cached_load", "cached MNIST load (s)", "<=", 0.3),
    ("torch_ratio", "project loop / PyTorch eager loop, book job", "<=", 0.6),
    ("augment_overhead", "record preset, time distortions add to an epoch", "<=", 0.15),
    ("record_minutes", "record preset, training time (min; --record)", "<=", 15.0),
    ("record_accuracy", "record preset, test accuracy (--record)", ">=", 0.993),
)
QUICK_MEASURES = {"peak_rss_mb", "cached_load"}
"""The targets whose figure a --quick run still measures as the target means it."""


def log(message: str) -> None:
    """Progress on stderr, so stdout stays one JSON object with --json."""
    print(f"[benchmark] {message}", file=sys.stderr, flush=True)


# --- machine ---


THREAD_VARIABLES = ("OMP_NUM_THREADS", "OPENBLAS_NUM_THREADS", "MKL_NUM_THREADS")


def _openblas_call(action: str, *args: int) -> int | None:
    """Call numpy's bundled OpenBLAS ``*_{action}_num_threads`` (None if it is not there)."""
    libs = Path(np.__file__).parent.parent / "numpy.libs"
    for path in glob.glob(str(libs / "*openblas*.so*")):
        try:
            lib = ctypes.CDLL(path)
        except OSError:
            continue
        for prefix in ("scipy_openblas", "openblas"):
            for suffix in ("64_", ""):
                name = f"{prefix}_{action}_num_threads{suffix}"
                if hasattr(lib, name):
                    result = getattr(lib, name)(*args)
                    return int(result) if action == "get" else 0
    return None


def set_threads(threads: int) -> dict[str, Any]:
    """Use ``threads`` BLAS (and torch) threads here and in child processes."""
    os.environ.update({var: str(threads) for var in THREAD_VARIABLES})
    applied = {"openblas": _openblas_call("set", threads) is not None}
    try:
        import torch

        torch.set_num_threads(threads)
        applied["torch"] = True
    except ImportError:
        applied["torch"] = False
    return applied


def _cpu_model() -> str | None:
    try:
        for line in Path("/proc/cpuinfo").read_text().splitlines():
            if line.startswith("model name"):
                return line.split(":", 1)[1].strip()
    except OSError:
        pass
    return platform.processor() or None


def _cpu_flags() -> list[str]:
    try:
        for line in Path("/proc/cpuinfo").read_text().splitlines():
            if line.startswith("flags"):
                flags = line.split(":", 1)[1].split()
                return sorted(f for f in flags if f in ("avx", "avx2", "fma", "avx512f"))
    except OSError:
        pass
    return []


def _git_commit() -> str | None:
    try:
        head = subprocess.run(["git", "rev-parse", "--short", "HEAD"], cwd=ROOT, text=True,
                              capture_output=True, check=True, timeout=10).stdout.strip()
        dirty = subprocess.run(["git", "status", "--porcelain", "--untracked-files=no"],
                               cwd=ROOT, text=True, capture_output=True, timeout=10).stdout
        return head + ("-dirty" if dirty.strip() else "")
    except (OSError, subprocess.SubprocessError):
        return None


def machine_info() -> dict[str, Any]:
    """Cores, BLAS, thread settings and versions: what the figures depend on."""
    blas: dict[str, Any] = {}
    try:
        config = np.show_config(mode="dicts")
        blas = dict(config.get("Build Dependencies", {}).get("blas", {}))
        blas = {k: blas.get(k) for k in ("name", "version", "openblas configuration")
                if blas.get(k)}
    except Exception:  # noqa: BLE001 - older numpy: the name is enough
        pass
    info: dict[str, Any] = {
        "date": dt.datetime.now(dt.UTC).isoformat(timespec="seconds"),
        "cores": os.cpu_count(),
        "cores_available": len(os.sched_getaffinity(0)) if hasattr(os, "sched_getaffinity")
        else os.cpu_count(),
        "cpu": _cpu_model(),
        "cpu_simd": _cpu_flags(),
        "load_average_at_start": [round(v, 2) for v in os.getloadavg()],
        "python": platform.python_version(),
        "platform": platform.platform(),
        "numpy": np.__version__,
        "blas": blas,
        "threads": {
            "openblas": _openblas_call("get"),
            **{var: os.environ.get(var) for var in THREAD_VARIABLES},
        },
        "git_commit": _git_commit(),
    }
    return info


# --- the textbook reference: the book's ch. 4 two_layer_net.py and train_neuralnet.py ---


def book_sigmoid(x):
    return 1 / (1 + np.exp(-x))


def book_sigmoid_grad(x):
    return (1.0 - book_sigmoid(x)) * book_sigmoid(x)


def book_softmax(x):
    x = x - np.max(x, axis=-1, keepdims=True)
    return np.exp(x) / np.sum(np.exp(x), axis=-1, keepdims=True)


def book_cross_entropy_error(y, t):
    if y.ndim == 1:
        t = t.reshape(1, t.size)
        y = y.reshape(1, y.size)
    if t.size == y.size:
        t = t.argmax(axis=1)
    batch_size = y.shape[0]
    return -np.sum(np.log(y[np.arange(batch_size), t] + 1e-7)) / batch_size


class BookTwoLayerNet:
    """The book's ch. 4 TwoLayerNet as printed, with the backprop ``gradient`` it ships."""

    def __init__(self, input_size, hidden_size, output_size, weight_init_std=0.01):
        self.params = {}
        self.params["W1"] = weight_init_std * np.random.randn(input_size, hidden_size)
        self.params["b1"] = np.zeros(hidden_size)
        self.params["W2"] = weight_init_std * np.random.randn(hidden_size, output_size)
        self.params["b2"] = np.zeros(output_size)

    def predict(self, x):
        W1, W2 = self.params["W1"], self.params["W2"]
        b1, b2 = self.params["b1"], self.params["b2"]
        a1 = np.dot(x, W1) + b1
        z1 = book_sigmoid(a1)
        a2 = np.dot(z1, W2) + b2
        y = book_softmax(a2)
        return y

    def loss(self, x, t):
        y = self.predict(x)
        return book_cross_entropy_error(y, t)

    def accuracy(self, x, t):
        y = self.predict(x)
        y = np.argmax(y, axis=1)
        t = np.argmax(t, axis=1)
        accuracy = np.sum(y == t) / float(x.shape[0])
        return accuracy

    def gradient(self, x, t):
        W1, W2 = self.params["W1"], self.params["W2"]
        b1, b2 = self.params["b1"], self.params["b2"]
        grads = {}
        batch_num = x.shape[0]
        # forward
        a1 = np.dot(x, W1) + b1
        z1 = book_sigmoid(a1)
        a2 = np.dot(z1, W2) + b2
        y = book_softmax(a2)
        # backward
        dy = (y - t) / batch_num
        grads["W2"] = np.dot(z1.T, dy)
        grads["b2"] = np.sum(dy, axis=0)
        da1 = np.dot(dy, W2.T)
        dz1 = book_sigmoid_grad(a1) * da1
        grads["W1"] = np.dot(x.T, dz1)
        grads["b1"] = np.sum(dz1, axis=0)
        return grads


def book_one_hot(labels: np.ndarray) -> np.ndarray:
    """The book's ``_change_one_hot_label``: float64 rows, as its loader returns them."""
    T = np.zeros((labels.size, 10))
    for idx, row in enumerate(T):
        row[labels[idx]] = 1
    return T


def book_train(x_train: np.ndarray, t_train: np.ndarray, x_test: np.ndarray,
               t_test: np.ndarray, iters_num: int, seed: int = 0) -> dict[str, Any]:
    """The book's train_neuralnet.py loop; returns its time and records.

    Inputs as the book's loader gives them: float32 images in [0, 1], one-hot float64 labels.
    """
    np.random.seed(seed)
    started = time.perf_counter()
    network = BookTwoLayerNet(input_size=784, hidden_size=50, output_size=10)
    train_size = x_train.shape[0]
    batch_size = 100
    learning_rate = 0.1
    train_loss_list = []
    train_acc_list = []
    test_acc_list = []
    iter_per_epoch = max(train_size / batch_size, 1)
    for i in range(iters_num):
        batch_mask = np.random.choice(train_size, batch_size)
        x_batch = x_train[batch_mask]
        t_batch = t_train[batch_mask]
        grad = network.gradient(x_batch, t_batch)
        for key in ("W1", "b1", "W2", "b2"):
            network.params[key] -= learning_rate * grad[key]
        loss = network.loss(x_batch, t_batch)
        train_loss_list.append(loss)
        if i % iter_per_epoch == 0:
            train_acc = network.accuracy(x_train, t_train)
            test_acc = network.accuracy(x_test, t_test)
            train_acc_list.append(train_acc)
            test_acc_list.append(test_acc)
    seconds = time.perf_counter() - started
    # the book's last record is taken at i = 9600; measure the final net too (outside the time)
    return {"seconds": seconds, "iterations": iters_num, "losses_recorded": len(train_loss_list),
            "evaluations": len(test_acc_list),
            "test_accuracy": float(network.accuracy(x_test, t_test)),
            "train_accuracy": float(network.accuracy(x_train, t_train)),
            "last_recorded_test_accuracy": float(test_acc_list[-1])}


# --- the PyTorch eager reference: the same job, idiomatic torch, float32 on the CPU ---


def torch_book_train(x_train: np.ndarray, t_train: np.ndarray, x_test: np.ndarray,
                     t_test: np.ndarray, iters_num: int, seed: int = 0) -> dict[str, Any]:
    """Book job in PyTorch eager: same sizes, init, lr, sampling, records and evaluations.

    Like the project, it records the loss of the gradient's forward pass and evaluates train
    and test loss and accuracy (in chunks of 10,000) after every 600 iterations and at the end.
    """
    import torch
    from torch import nn
    from torch.nn import functional as F

    torch.manual_seed(seed)
    xtr = torch.from_numpy(np.ascontiguousarray(x_train, dtype=np.float32))
    ttr = torch.from_numpy(t_train.astype(np.int64))
    xte = torch.from_numpy(np.ascontiguousarray(x_test, dtype=np.float32))
    tte = torch.from_numpy(t_test.astype(np.int64))
    started = time.perf_counter()
    model = nn.Sequential(nn.Linear(784, 50), nn.Sigmoid(), nn.Linear(50, 10))
    with torch.no_grad():
        for layer in (model[0], model[2]):
            layer.weight.normal_(0.0, 0.01)
            layer.bias.zero_()
    optimizer = torch.optim.SGD(model.parameters(), lr=0.1)
    n, batch = xtr.shape[0], 100
    iters_per_epoch = n // batch
    losses: list[float] = []
    records: list[dict[str, float]] = []

    def evaluate(x: torch.Tensor, t: torch.Tensor) -> tuple[float, float]:
        total, correct = 0.0, 0
        with torch.no_grad():
            for start in range(0, x.shape[0], 10000):
                logits = model(x[start:start + 10000])
                target = t[start:start + 10000]
                total += float(F.cross_entropy(logits, target, reduction="sum"))
                correct += int((logits.argmax(dim=1) == target).sum())
        return total / x.shape[0], correct / x.shape[0]

    for i in range(1, iters_num + 1):
        idx = torch.randint(0, n, (batch,))
        loss = F.cross_entropy(model(xtr[idx]), ttr[idx])
        optimizer.zero_grad(set_to_none=True)
        loss.backward()
        optimizer.step()
        losses.append(loss.item())
        if i % iters_per_epoch == 0 or i == iters_num:
            train_loss, train_acc = evaluate(xtr, ttr)
            test_loss, test_acc = evaluate(xte, tte)
            records.append({"iteration": i, "train_accuracy": train_acc,
                            "test_accuracy": test_acc})
    seconds = time.perf_counter() - started
    return {"seconds": seconds, "iterations": iters_num, "losses_recorded": len(losses),
            "evaluations": len(records), "test_accuracy": records[-1]["test_accuracy"],
            "train_accuracy": records[-1]["train_accuracy"]}


# --- the project's side ---


def project_train(preset: str, run_dir: Path, **overrides: Any) -> dict[str, Any]:
    """Trainer(...).run() for a preset: its own training time and the end-to-end wall time
    (data preparation, training, checkpoints, model, metrics and figures)."""
    started = time.perf_counter()
    trainer = Trainer(config_from_preset(preset, **overrides), run_dir, quiet=True)
    prepared = time.perf_counter()
    metrics = trainer.run()
    wall = time.perf_counter() - started
    history = trainer.state.history
    return {"train_seconds": float(metrics["seconds"]), "wall_seconds": wall,
            "setup_seconds": prepared - started,
            "iterations": int(metrics["iterations"]),
            "losses_recorded": len(history["iteration_loss"]),
            "evaluations": len(history["epochs"]),
            "test_accuracy": float(metrics["test_accuracy"]),
            "train_accuracy": float(metrics["train_accuracy"]),
            "time_to_accuracy": metrics["time_to_accuracy"],
            "dtype": trainer.config.dtype, "hidden": trainer.config.hidden}


def _best(runs: list[dict[str, Any]], key: str) -> dict[str, Any]:
    """The run with the smallest ``key``: the least disturbed repeat of identical work."""
    best = dict(min(runs, key=lambda r: r[key]))
    if len(runs) > 1:
        best["repeats"] = [round(r[key], 4) for r in runs]
    return best


def bench_book(iters: int, repeats: int, tmp: Path, data: tuple) -> dict[str, Any]:
    """(1) The book job: textbook reference vs ``--preset book``, interleaved repeats."""
    (x_train, t_train), (x_test, t_test) = data
    t_train_hot, t_test_hot = book_one_hot(t_train), book_one_hot(t_test)
    refs, projects = [], []
    for r in range(repeats):
        log(f"book job: textbook reference, {iters} iterations (repeat {r + 1}/{repeats})")
        refs.append(book_train(x_train, t_train_hot, x_test, t_test_hot, iters))
        log(f"book job: project --preset book (repeat {r + 1}/{repeats})")
        projects.append(project_train("book", tmp / f"book{r}", iters=iters))
    ref, project = _best(refs, "seconds"), _best(projects, "train_seconds")
    project["wall_seconds"] = min(p["wall_seconds"] for p in projects)
    return {
        "iterations": iters, "batch_size": 100, "hidden": 50,
        "reference": ref, "project": project,
        "ratio": project["train_seconds"] / ref["seconds"],
        "ratio_wall": project["wall_seconds"] / ref["seconds"],
        "accuracy_gap_points": 100 * abs(project["test_accuracy"] - ref["test_accuracy"]),
    }


def bench_book_floor(iters: int, data: tuple) -> dict[str, Any]:
    """The book job's unavoidable work alone, in float32, with preallocated outputs: per
    iteration the gather of a batch, x @ W1 (100x784 by 784x50) and x.T @ dout for dW1, plus
    x @ W1 over the 60,000 train and 10,000 test images at every evaluation. No loop, layer or
    optimizer can be faster than this on the machine, so floor / reference is the best ratio it
    allows."""
    (x_train, _), (x_test, _) = data
    rng = np.random.default_rng(0)
    w1 = (0.01 * rng.standard_normal((784, 50))).astype(np.float32)
    dout = rng.standard_normal((100, 50)).astype(np.float32)
    hidden, d_w1 = np.empty((100, 50), np.float32), np.empty((784, 50), np.float32)
    batches = [np.sort(rng.integers(0, len(x_train), 100)) for _ in range(100)]
    evaluations = iters // 600 + 1
    log(f"book job floor: {iters} gathers and pairs of large products, {evaluations} "
        f"evaluations")

    def iterations() -> None:
        for i in range(iters):
            x = x_train[batches[i % 100]]
            np.matmul(x, w1, out=hidden)
            np.matmul(x.T, dout, out=d_w1)

    def evaluation() -> None:
        for x in (x_train, x_test):
            for start in range(0, len(x), 10000):
                x[start:start + 10000] @ w1

    # each half timed whole, the best of two, as the project's runs are
    iterations_s, _ = _timed(iterations, 2)
    evaluations_s, _ = _timed(lambda: [evaluation() for _ in range(evaluations)], 2)
    return {"seconds": iterations_s + evaluations_s, "iterations": iters,
            "evaluations": evaluations, "dtype": "float32",
            "iteration_us": 1e6 * iterations_s / iters,
            "evaluation_ms": 1000 * evaluations_s / evaluations}


def bench_book_breakdown(iters: int, tmp: Path) -> dict[str, Any]:
    """Where an iteration of ``--preset book`` goes: the trainer's own sampler, net and
    optimizer, run as its loop runs them, each part timed (median microseconds per
    iteration, so an interruption of the machine does not count); one evaluation and one
    write of the checkpoint and history as the loop makes them after it (milliseconds, the
    minimum of three, the history holding every loss of the run: the last and longest
    write); set beside the floor's figures."""
    trainer = Trainer(config_from_preset("book", iters=iters), tmp / "breakdown", quiet=True)
    net, optimizer, data = trainer.net, trainer.optimizer, trainer.data
    losses = trainer.state.history["iteration_loss"]
    parts = np.empty((iters, 3))
    clock = time.perf_counter
    for i in range(iters):
        started = clock()
        indices = trainer._next_batch_indices()  # the loop's own sampler
        x, t = data.x_train[indices], data.t_train[indices]
        drawn = clock()
        loss, grads = net.loss_and_gradient(x, t)
        differentiated = clock()
        optimizer.update(net.params, grads, trainer.lr_at(i))
        losses.append(loss)
        parts[i] = drawn - started, differentiated - drawn, clock() - differentiated
    batch_us, gradient_us, update_us = 1e6 * np.median(parts, axis=0)
    evaluation_s, _ = _timed(lambda: [net.evaluate(x, t, batch_size=EVAL_CHUNK) for x, t in (
        (data.x_train, data.t_train), (data.x_test, data.t_test))], 3)
    trainer.run_dir.mkdir(parents=True, exist_ok=True)
    write_s, _ = _timed(lambda: (trainer.save_checkpoint(),
                                 write_history(trainer.run_dir, trainer.state.history)), 3)
    return {"iterations": iters, "batch_us": batch_us, "loss_and_gradient_us": gradient_us,
            "update_us": update_us, "evaluation_ms": 1000 * evaluation_s,
            "write_ms": 1000 * write_s}


def bench_book_float64(iters: int, repeats: int, tmp: Path) -> dict[str, Any]:
    """The book job in float64 (``--preset book --dtype float64``): the book's arithmetic."""
    runs = [project_train("book", tmp / f"book64_{r}", iters=iters, dtype="float64")
            for r in range(repeats)]
    return _best(runs, "train_seconds")


def bench_numerical_training(iters: int, repeats: int, tmp: Path) -> dict[str, Any]:
    """The book job trained on the vectorized numerical gradient (``--preset book --gradient
    numerical``) for ``iters`` iterations: milliseconds per iteration, its evaluation at the
    end included, as a user's run spends them."""
    log(f"book job with --gradient numerical, {iters} iterations")
    runs = [project_train("book", tmp / f"numerical{r}", iters=iters, gradient="numerical")
            for r in range(repeats)]
    best = _best(runs, "train_seconds")
    best["ms_per_iteration"] = 1000 * best["train_seconds"] / best["iterations"]
    return best


def _timed(fn: Callable[[], Any], repeats: int) -> tuple[float, Any]:
    """Minimum wall time of ``repeats`` calls, and the last result."""
    best, result = float("inf"), None
    for _ in range(repeats):
        started = time.perf_counter()
        result = fn()
        best = min(best, time.perf_counter() - started)
    return best, result


def bench_numerical(hidden: int, data: tuple, quick: bool) -> dict[str, Any]:
    """(2) Numerical gradient, nditer vs vectorized vs backprop, on a real batch of 100."""
    (x_train, t_train), _ = data
    rng = np.random.default_rng(0)
    idx = rng.choice(len(x_train), 100, replace=False)
    x = x_train[idx].astype(np.float64)
    t = t_train[idx]
    net = TwoLayerNet(784, hidden, 10, dtype=np.float64, seed=0)
    log(f"numerical gradient 784-{hidden}-10: backprop and vectorized")
    backprop_s, g_bp = _timed(lambda: net.gradient(x, t, method="backprop"), 20)
    vectorized_s, g_vec = _timed(lambda: net.numerical_gradient(x, t, method="vectorized"),
                                 3 if quick else 5)
    log(f"numerical gradient 784-{hidden}-10: nditer (the book's loop, slow)")
    nditer_s, g_it = _timed(lambda: net.numerical_gradient(x, t, method="nditer"), 1)
    diff = max(float(np.max(np.abs(g_it[k] - g_vec[k]))) for k in g_it)
    diff_bp = max(float(np.max(np.abs(g_vec[k] - g_bp[k]))) for k in g_it)
    return {
        "net": [784, hidden, 10], "batch_size": 100, "dtype": "float64",
        "parameters": int(sum(v.size for v in net.params.values())),
        "nditer_seconds": nditer_s, "vectorized_seconds": vectorized_s,
        "backprop_seconds": backprop_s, "speedup": nditer_s / vectorized_s,
        "vectorized_vs_backprop": vectorized_s / backprop_s,
        "max_abs_diff_nditer_vectorized": diff, "max_abs_diff_vectorized_backprop": diff_bp,
        "note": "quick: smaller net than the target's 784-50-10" if quick else None,
    }


# Runs a command and reports its peak RSS. The benchmark cannot measure its own children
# directly: a child started by fork or vfork inherits the parent's RSS high-water mark across
# exec, so ru_maxrss would report the (large) benchmark process. A small launcher process
# starts the real child instead, so the child's figure is its own.
_RSS_LAUNCHER = """
import json, os, subprocess, sys, time
log_path, cmd = sys.argv[1], sys.argv[2:]
started = time.perf_counter()
with open(log_path, "wb") as sink:
    proc = subprocess.Popen(cmd, stdout=sink, stderr=subprocess.STDOUT)
    _, status, usage = os.wait4(proc.pid, 0)
print(json.dumps({"exit_code": os.waitstatus_to_exitcode(status), "maxrss": usage.ru_maxrss,
                  "wall_seconds": time.perf_counter() - started}))
"""


def run_measured(cmd: list[str], log_path: Path, env: dict[str, str] | None = None
                 ) -> dict[str, Any]:
    """Run ``cmd`` (output to ``log_path``); return its exit code, wall time and peak RSS (MB)."""
    launched = subprocess.run([sys.executable, "-c", _RSS_LAUNCHER, str(log_path), *cmd],
                              capture_output=True, text=True, cwd=ROOT, env=env, check=True)
    report = json.loads(launched.stdout)
    # ru_maxrss is in kilobytes on Linux, bytes on macOS
    report["peak_rss_mb"] = report.pop("maxrss") / (1024 * 1024 if sys.platform == "darwin"
                                                    else 1024)
    return report


def bench_default(epochs: int | None, repeats: int, tmp: Path,
                  threads: int | None) -> dict[str, Any]:
    """(3) and (4a): the default preset as users run it, ``python -m mnist_twolayer train``.

    Each run is a child process: its metrics.json gives the time to 97% / 98% test accuracy and
    the final accuracy, and the launcher gives its peak RSS. With repeats, the fastest run is
    reported, with the largest peak RSS seen.
    """
    runs = []
    for r in range(repeats):
        out = tmp / f"default{r}"
        cmd = [sys.executable, "-m", "mnist_twolayer", "train", "--quiet", "--out", str(out)]
        if epochs is not None:
            cmd += ["--epochs", str(epochs)]
        log(f"default preset in a child process (repeat {r + 1}/{repeats}): "
            f"{' '.join(cmd[1:])}")
        env = dict(os.environ)
        if threads is not None:
            env.update({var: str(threads) for var in THREAD_VARIABLES})
        report = run_measured(cmd, tmp / "default.log", env)
        if report["exit_code"] != 0:
            tail = (tmp / "default.log").read_text(errors="replace")[-2000:]
            raise RuntimeError(f"{' '.join(cmd)} exited with {report['exit_code']}:\n{tail}")
        metrics = json.loads((out / "metrics.json").read_text())
        config = json.loads((out / "config.json").read_text())
        runs.append({
            "train_seconds": float(metrics["seconds"]), "wall_seconds": report["wall_seconds"],
            "time_to_97": metrics["time_to_accuracy"].get("0.97"),
            "time_to_98": metrics["time_to_accuracy"].get("0.98"),
            "test_accuracy": float(metrics["test_accuracy"]),
            "iterations": int(metrics["iterations"]), "epochs": metrics["epochs"],
            "hidden": config["hidden"], "dtype": config["dtype"],
            "peak_rss_mb": report["peak_rss_mb"],
        })
    best = _best(runs, "train_seconds")
    reached = [r["time_to_98"] for r in runs if r["time_to_98"] is not None]
    best["time_to_98"] = min(reached) if len(reached) == len(runs) else None
    best["peak_rss_mb"] = max(r["peak_rss_mb"] for r in runs)
    best["command"] = " ".join(["python", *cmd[1:4], "--quiet", "--out", "TMP", *cmd[6:]])
    return best


def bench_loading(tmp: Path, repeats: int) -> dict[str, Any]:
    """(4b) First load (verify and parse the gz, write the cache) and cached load of MNIST.

    Works on a copy of the gz files in a temporary data folder, so other processes reading the
    shipped cache are undisturbed; clear_cache() before each first load.
    """
    source = dataset_dir("mnist")
    data_dir = tmp / "data"
    (data_dir / "mnist").mkdir(parents=True)
    for gz in source.glob("*.gz"):
        shutil.copy2(gz, data_dir / "mnist" / gz.name)
    log("MNIST loading: first (from gz) and cached")
    first = []
    for _ in range(repeats):
        clear_cache("mnist", data_dir)
        started = time.perf_counter()
        load_mnist(data_dir=data_dir, download=False)
        first.append(time.perf_counter() - started)
    cached, _ = _timed(lambda: load_mnist(data_dir=data_dir, download=False), 5)
    shipped, _ = _timed(lambda: load_mnist(download=False), 3)
    return {"first_load_seconds": min(first), "cached_load_seconds": cached,
            "cached_load_seconds_shipped_dir": shipped, "dtype": "float32",
            "first_load_repeats": [round(v, 4) for v in first]}


def bench_torch(iters: int, repeats: int, data: tuple, project_seconds: float
                ) -> dict[str, Any]:
    """(5) The book job in PyTorch eager, float32 on the CPU, when torch imports."""
    try:
        import torch
    except ImportError as exc:
        return {"available": False, "reason": str(exc)}
    (x_train, t_train), (x_test, t_test) = data
    log(f"PyTorch eager book job, {iters} iterations")
    runs = [torch_book_train(x_train, t_train, x_test, t_test, iters) for _ in range(repeats)]
    best = _best(runs, "seconds")
    best.update(available=True, version=torch.__version__, threads=torch.get_num_threads(),
                dtype="float32", ratio=project_seconds / best["seconds"])
    return best


def bench_augmentation(epochs: int, tmp: Path, train_size: int | None) -> dict[str, Any]:
    """(6a) The record preset for ``epochs`` epochs without and with its distortions, in this
    process: seconds per epoch (the fastest epoch of each, evaluation included, as in the
    run), the share the distortions add, and what one batch's distortion costs next to one
    training step of the same net."""
    from mnist_twolayer.config import PRESETS

    record = PRESETS["record"]
    runs = {}
    for name, augment in (("plain", "none"), ("augmented", record["augment"])):
        log(f"record preset, {epochs} epochs, augment {augment}")
        trainer = Trainer(config_from_preset("record", epochs=epochs, augment=augment,
                                             train_size=train_size), tmp / f"aug-{name}",
                          quiet=True)
        trainer.run()
        seconds = [e["seconds"] for e in trainer.state.history["epochs"]]
        runs[name] = min(b - a for a, b in zip([0.0, *seconds], seconds, strict=False))
    trainer_config = trainer.config
    # one batch, timed in isolation (minimum over repeats)
    x = trainer.data.x_train[:trainer_config.batch_size]
    t = trainer.data.t_train[:trainer_config.batch_size]
    rng = np.random.default_rng(0)
    distortions, net = trainer_config.distortions(), trainer.net
    distort_s, _ = _timed(lambda: [distortions.apply(x, rng, -1.0) for _ in range(50)], 5)
    step_s, _ = _timed(lambda: [net.loss_and_gradient(x, t) for _ in range(50)], 5)
    return {"epochs": epochs, "train_size": len(trainer.data.x_train),
            "hidden": trainer_config.hidden, "augment": record["augment"],
            "plain_epoch_seconds": runs["plain"], "augmented_epoch_seconds": runs["augmented"],
            "overhead": runs["augmented"] / runs["plain"] - 1,
            "distort_batch_ms": distort_s / 50 * 1000, "step_ms": step_s / 50 * 1000,
            "record_epochs": record["epochs"],
            "projected_record_minutes": runs["augmented"] * record["epochs"] * (
                60000 / len(trainer.data.x_train)) / 60}


def bench_record(tmp: Path, threads: int | None) -> dict[str, Any]:
    """(6b) ``train --preset record`` as a user runs it, in a child process: test accuracy and
    training time (its metrics.json), wall time and peak RSS."""
    out = tmp / "record"
    cmd = [sys.executable, "-m", "mnist_twolayer", "train", "--preset", "record", "--quiet",
           "--out", str(out)]
    log(f"record preset in a child process: {' '.join(cmd[1:])} (about a quarter of an hour)")
    env = dict(os.environ)
    if threads is not None:
        env.update({var: str(threads) for var in THREAD_VARIABLES})
    report = run_measured(cmd, tmp / "record.log", env)
    if report["exit_code"] != 0:
        tail = (tmp / "record.log").read_text(errors="replace")[-2000:]
        raise RuntimeError(f"{' '.join(cmd)} exited with {report['exit_code']}:\n{tail}")
    metrics = json.loads((out / "metrics.json").read_text())
    return {"measured": True, "test_accuracy": float(metrics["test_accuracy"]),
            "train_minutes": float(metrics["seconds"]) / 60,
            "wall_seconds": report["wall_seconds"], "peak_rss_mb": report["peak_rss_mb"],
            "epochs": metrics["epochs"], "load_average_at_end": [
                round(v, 2) for v in os.getloadavg()]}


# --- targets and output ---


def target_values(results: dict[str, Any]) -> dict[str, float | None]:
    torch_result = results.get("torch", {})
    return {
        "floor_ratio": results["book_job"]["floor"]["ratio_to_project"],
        "book_accuracy_gap": results["book_job"]["accuracy_gap_points"],
        "numerical_speedup": results["numerical_gradient"]["speedup"],
        "numerical_iteration_ms": results["numerical_training"]["ms_per_iteration"],
        "time_to_98": results["default_preset"]["time_to_98"],
        "peak_rss_mb": results["default_preset"]["peak_rss_mb"],
        "cached_load": results["loading"]["cached_load_seconds"],
        "torch_ratio": torch_result.get("ratio") if torch_result.get("available") else None,
        "augment_overhead": results["augmentation"]["overhead"],
        "record_minutes": results["record"].get("train_minutes"),
        "record_accuracy": results["record"].get("test_accuracy"),
    }


def check_targets(results: dict[str, Any]) -> list[dict[str, Any]]:
    """One entry per target: value, target and met (None when the figure was not measured)."""
    values = target_values(results)
    checked = []
    for key, description, op, target in TARGETS:
        value = values[key]
        if results["quick"] and key not in QUICK_MEASURES:
            met = None  # a shortened job: its figure is not the target's
        elif value is None:
            # never reaching 98% is a miss; an absent torch is simply not measured
            met = False if key == "time_to_98" else None
        else:
            met = value <= target if op == "<=" else value >= target
        checked.append({"key": key, "figure": description, "value": value, "op": op,
                        "target": target, "met": met})
    return checked


def _fmt(value: Any, digits: int = 3) -> str:
    if value is None:
        return "-"
    if isinstance(value, float):
        return f"{value:.{digits}f}"
    return str(value)


def render_table(results: dict[str, Any]) -> str:
    """The plain-text report: machine, figures, then targets."""
    m, b = results["machine"], results["book_job"]
    ng, dp = results["numerical_gradient"], results["default_preset"]
    nt = results["numerical_training"]
    ld, tr, b64 = results["loading"], results["torch"], results["book_job_float64"]
    ag, rec = results["augmentation"], results["record"]
    ref, proj, breakdown = b["reference"], b["project"], b["breakdown"]
    rows: list[tuple[str, str]] = [
        ("book job", f"{b['iterations']} iterations, batch 100, hidden 50, eval every 600"),
        ("  reference (textbook) loop s", _fmt(ref["seconds"], 2)),
        ("  project --preset book training s", f"{_fmt(proj['train_seconds'], 2)} "
                                               f"({proj['dtype']})"),
        ("  project --preset book end to end s", f"{_fmt(proj['wall_seconds'], 2)} (data, run "
                                                 f"folder, figures)"),
        ("  ratio project / reference", f"{_fmt(b['ratio'])} (end to end: "
                                        f"{_fmt(b['ratio_wall'])})"),
        ("  test accuracy reference / project",
         f"{_fmt(ref['test_accuracy'], 4)} / {_fmt(proj['test_accuracy'], 4)}"),
        ("  floor: gathers + large products s", f"{_fmt(b['floor']['seconds'], 2)} (float32; "
                                                f"floor / reference "
                                                f"{_fmt(b['floor']['ratio_to_reference'])})"),
        ("  ratio project / floor", _fmt(b["floor"]["ratio_to_project"])),
        ("  per iteration us, floor", f"{_fmt(b['floor']['iteration_us'], 0)} (gather and "
                                      f"products)"),
        ("  per iteration us, project", f"{_fmt(breakdown['batch_us'], 0)} batch + "
                                        f"{_fmt(breakdown['loss_and_gradient_us'], 0)} loss "
                                        f"and gradient + {_fmt(breakdown['update_us'], 0)} "
                                        f"update (medians)"),
        ("  per evaluation ms, floor / project", f"{_fmt(b['floor']['evaluation_ms'], 1)} / "
                                                 f"{_fmt(breakdown['evaluation_ms'], 1)} (+ "
                                                 f"{_fmt(breakdown['write_ms'], 1)} checkpoint "
                                                 f"and history, counted in training time)"),
        ("  rest of the project's training s", f"{_fmt(breakdown['rest_seconds'], 2)} (loop "
                                               f"bookkeeping, noise)"),
        ("  project --dtype float64 training s", f"{_fmt(b64['train_seconds'], 2)} (test "
                                                 f"accuracy {_fmt(b64['test_accuracy'], 4)})"),
        ("numerical gradient", f"{'-'.join(map(str, ng['net']))}, batch 100, float64"
                               + (" (quick: smaller net than the target's)" if ng["note"]
                                  else "")),
        ("  nditer s", _fmt(ng["nditer_seconds"], 2)),
        ("  vectorized s", _fmt(ng["vectorized_seconds"], 4)),
        ("  backprop s", _fmt(ng["backprop_seconds"], 5)),
        ("  speedup vectorized / nditer", f"{ng['speedup']:.0f}x"),
        ("  max |nditer - vectorized|", f"{ng['max_abs_diff_nditer_vectorized']:.2e}"),
        ("  max |vectorized - backprop|", f"{ng['max_abs_diff_vectorized_backprop']:.2e}"),
        ("  training, book job ms / iteration", f"{_fmt(nt['ms_per_iteration'], 1)} "
                                               f"({nt['iterations']} iterations, test accuracy "
                                               f"{_fmt(nt['test_accuracy'], 4)})"),
        ("default preset (child process)", f"hidden {dp['hidden']}, {dp['dtype']}, "
                                           f"{dp['iterations']} iterations"),
        ("  time to 97% / 98% test s", f"{_fmt(dp['time_to_97'], 2)} / "
                                       f"{_fmt(dp['time_to_98'], 2)}"),
        ("  final test accuracy", _fmt(dp["test_accuracy"], 4)),
        ("  training s / command wall s", f"{_fmt(dp['train_seconds'], 2)} / "
                                          f"{_fmt(dp['wall_seconds'], 2)}"),
        ("  peak RSS MB", _fmt(dp["peak_rss_mb"], 0)),
        ("MNIST first load (from gz) s", _fmt(ld["first_load_seconds"], 3)),
        ("MNIST cached load s", _fmt(ld["cached_load_seconds"], 3)),
    ]
    if tr.get("available"):
        rows += [
            (f"PyTorch {tr['version']} eager float32 s", f"{_fmt(tr['seconds'], 2)} "
                                                         f"({tr['threads']} threads)"),
            ("  test accuracy", _fmt(tr["test_accuracy"], 4)),
            ("  ratio project / torch", f"{_fmt(tr['ratio'])} (project in {proj['dtype']})"),
        ]
    else:
        rows.append(("PyTorch", f"not measured ({tr.get('reason')})"))
    rows += [
        ("record preset, augmentation", f"hidden {ag['hidden']}, {ag['augment']}, "
                                        f"{ag['train_size']} training digits, {ag['epochs']} "
                                        f"epochs each (fastest epoch)"),
        ("  s per epoch without / with", f"{_fmt(ag['plain_epoch_seconds'], 2)} / "
                                         f"{_fmt(ag['augmented_epoch_seconds'], 2)} "
                                         f"(+{100 * ag['overhead']:.0f}%)"),
        ("  one batch: distortion / step ms", f"{_fmt(ag['distort_batch_ms'], 2)} / "
                                              f"{_fmt(ag['step_ms'], 2)}"),
        ("  projected record run min", f"{_fmt(ag['projected_record_minutes'], 1)} "
                                       f"({ag['record_epochs']} epochs)"),
    ]
    if rec.get("measured"):
        rows.append(("record preset (child process)",
                     f"test {_fmt(rec['test_accuracy'], 4)} after {_fmt(rec['train_minutes'], 1)}"
                     f" min of training ({rec['epochs']} epochs; load at end "
                     f"{rec['load_average_at_end']})"))
    else:
        rows.append(("record preset (child process)", "not run (--record runs it)"))
    threads = m["threads"]
    title = "mnist_twolayer benchmark"
    if results["quick"]:
        title += " (QUICK: shortened jobs, not the targets' workloads)"
    header = [
        title,
        f"date {m['date']}  commit {m['git_commit']}  repeats {results['repeats']} (minimum)",
        f"cpu {m['cpu']} ({m['cores']} cores; {', '.join(m['cpu_simd'])}), "
        f"python {m['python']}, numpy {m['numpy']} ({m['blas'].get('name')} "
        f"{m['blas'].get('version')}), torch {m.get('torch')}",
        "threads: " + ", ".join(f"{k} {v}" for k, v in threads.items() if v is not None),
        f"load average at start {m['load_average_at_start']}, at end "
        f"{results['load_average_at_end']}; benchmark took {results['total_seconds']:.0f} s",
        "",
    ]
    width = max(len(r[0]) for r in rows)
    lines = header + [f"{name:<{width}}  {value}" for name, value in rows] + ["", "targets:"]
    for t in results["targets"]:
        met = {True: "met", False: "NOT MET", None: "not measured"}[t["met"]]
        lines.append(f"  {t['figure']:<50} {_fmt(t['value'])} {t['op']} {t['target']:g}  "
                     f"{met}")
    return "\n".join(lines)


def run(quick: bool, repeats: int = 1, threads: int | None = None,
        record: bool = False) -> dict[str, Any]:
    """Every measurement, one after the other, in this process (and its children)."""
    total_started = time.perf_counter()
    applied = set_threads(threads) if threads is not None else None
    results: dict[str, Any] = {"benchmark": "mnist_twolayer scripts/benchmark.py",
                               "quick": quick, "repeats": repeats, "machine": machine_info()}
    results["machine"]["threads_set_by_benchmark"] = (
        {"threads": threads, **applied} if applied else None)
    try:
        import torch

        results["machine"]["torch"] = torch.__version__
        results["machine"]["threads"]["torch"] = torch.get_num_threads()
    except ImportError:
        results["machine"]["torch"] = None
    book_iters = 1000 if quick else 10000
    with tempfile.TemporaryDirectory(prefix="mnist_twolayer_bench_") as tmp_name:
        tmp = Path(tmp_name)
        results["loading"] = bench_loading(tmp, 1 if quick else repeats)
        data = load_mnist(download=False)  # float32 in [0, 1], uint8 labels: the book's inputs
        results["book_job"] = bench_book(book_iters, repeats, tmp, data)
        results["book_job_float64"] = bench_book_float64(book_iters, repeats, tmp)
        floor = results["book_job"]["floor"] = bench_book_floor(book_iters, data)
        floor["ratio_to_reference"] = (floor["seconds"]
                                       / results["book_job"]["reference"]["seconds"])
        floor["ratio_to_project"] = (results["book_job"]["project"]["train_seconds"]
                                     / floor["seconds"])
        breakdown = results["book_job"]["breakdown"] = bench_book_breakdown(book_iters, tmp)
        project = results["book_job"]["project"]
        # what the parts leave of the run's training time: the loop's bookkeeping, writes
        # shorter than the last, and the machine's noise (the parts are medians)
        breakdown["rest_seconds"] = project["train_seconds"] - (
            book_iters * (breakdown["batch_us"] + breakdown["loss_and_gradient_us"]
                          + breakdown["update_us"]) / 1e6
            + project["evaluations"] * breakdown["evaluation_ms"] / 1000
            + (project["evaluations"] - 1) * breakdown["write_ms"] / 1000)
        results["torch"] = bench_torch(book_iters, repeats, data,
                                       results["book_job"]["project"]["train_seconds"])
        results["numerical_gradient"] = bench_numerical(10 if quick else 50, data, quick)
        results["numerical_training"] = bench_numerical_training(30 if quick else 300,
                                                                 repeats, tmp)
        del data
        results["default_preset"] = bench_default(1 if quick else None, repeats, tmp, threads)
        results["augmentation"] = bench_augmentation(1 if quick else 2, tmp,
                                                     3000 if quick else None)
        results["record"] = bench_record(tmp, threads) if record else {"measured": False}
    results["targets"] = check_targets(results)
    measured = [t["met"] for t in results["targets"] if t["met"] is not None]
    results["all_targets_met"] = bool(measured) and all(measured)
    results["load_average_at_end"] = [round(v, 2) for v in os.getloadavg()]
    results["total_seconds"] = time.perf_counter() - total_started
    return results


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0],
                                     formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--quick", action="store_true",
                        help="shortened jobs for CI (book job 1000 iterations, default preset "
                             "1 epoch, numerical gradient on 784-10-10)")
    parser.add_argument("--json", action="store_true", help="print one JSON object")
    parser.add_argument("--out", type=Path, help="also write the JSON to this file")
    parser.add_argument("--repeats", type=int, default=1,
                        help="run each timed job N times and report the minimum (default 1)")
    parser.add_argument("--record", action="store_true",
                        help="also train the whole record preset in a child process (about "
                             "a quarter of an hour) and report its accuracy and time")
    parser.add_argument("--threads", type=int, default=None,
                        help="BLAS and torch threads for every job (default: the libraries' "
                             "own choice, reported in the output)")
    args = parser.parse_args(argv)
    if args.repeats < 1:
        parser.error("--repeats must be at least 1")
    if args.threads is not None and args.threads < 1:
        parser.error("--threads must be at least 1")
    results = run(args.quick, args.repeats, args.threads, args.record)
    text = json.dumps(results, indent=2)
    if args.out:
        args.out.parent.mkdir(parents=True, exist_ok=True)
        args.out.write_text(text + "\n", encoding="utf-8")
    print(text if args.json else render_table(results))
    return 0


if __name__ == "__main__":
    sys.exit(main())
