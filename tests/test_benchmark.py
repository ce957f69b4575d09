"""Smoke test of ``scripts/benchmark.py --quick --json``: it runs end to end on real MNIST and
reports every figure with sane values. Behaviour only: benchmarks report times, tests never
assert them (other processes share the machine)."""

from __future__ import annotations

import importlib.util
import json
import math
import subprocess
import sys
from datetime import datetime
from pathlib import Path
from types import ModuleType
from typing import Any

import numpy as np
import pytest
from conftest import mnist_batch
from tolerances import two_layer_bounds

from mnist_twolayer.network import TwoLayerNet

SCRIPT = Path(__file__).resolve().parent.parent / "scripts" / "benchmark.py"

pytestmark = pytest.mark.slow

TARGET_KEYS = {"floor_ratio", "book_accuracy_gap", "numerical_speedup", "numerical_iteration_ms",
               "time_to_98", "peak_rss_mb", "cached_load", "torch_ratio", "augment_overhead",
               "record_minutes", "record_accuracy"}


def _load_script() -> ModuleType:
    spec = importlib.util.spec_from_file_location("benchmark_script", SCRIPT)
    assert spec is not None and spec.loader is not None
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


@pytest.fixture(scope="module")
def report(tmp_path_factory: pytest.TempPathFactory) -> dict[str, Any]:
    """One quick run for the whole module (about half a minute on an idle 2-core machine).

    One BLAS thread: on a machine busy with other tests, two spinning BLAS threads per process
    make every small product many times slower, and this test only checks behaviour.
    """
    out = tmp_path_factory.mktemp("benchmark") / "nested" / "bench.json"
    proc = subprocess.run(
        [sys.executable, str(SCRIPT), "--quick", "--json", "--threads", "1", "--out", str(out)],
        capture_output=True, text=True, timeout=1200)
    assert proc.returncode == 0, proc.stderr[-3000:]
    printed = json.loads(proc.stdout)
    assert json.loads(out.read_text(encoding="utf-8")) == printed
    return printed


def _positive(value: Any) -> bool:
    return isinstance(value, (int, float)) and math.isfinite(value) and value > 0


def test_marks_quick_and_describes_the_machine(report: dict[str, Any]) -> None:
    assert report["quick"] is True
    machine = report["machine"]
    assert machine["cores"] >= 1
    assert machine["numpy"]
    datetime.fromisoformat(machine["date"])
    assert machine["threads_set_by_benchmark"]["threads"] == 1
    assert machine["threads"]["OPENBLAS_NUM_THREADS"] == "1"
    if machine["threads"]["openblas"] is not None:
        assert machine["threads"]["openblas"] == 1
    assert _positive(report["total_seconds"])


def test_book_job_runs_both_loops_on_the_same_work(report: dict[str, Any]) -> None:
    book = report["book_job"]
    ref, project = book["reference"], book["project"]
    assert book["iterations"] == ref["iterations"] == project["iterations"] == 1000
    # the same records: one loss per iteration, an evaluation every 600 iterations
    assert ref["losses_recorded"] == project["losses_recorded"] == 1000
    assert ref["evaluations"] == project["evaluations"] == 2
    assert project["dtype"] == "float32" and project["hidden"] == 50
    for accuracy in (ref["test_accuracy"], project["test_accuracy"]):
        assert 0.7 < accuracy < 1.0
    assert book["accuracy_gap_points"] == pytest.approx(
        100 * abs(ref["test_accuracy"] - project["test_accuracy"]))
    for seconds in (ref["seconds"], project["train_seconds"], project["wall_seconds"]):
        assert _positive(seconds)
    assert book["ratio"] == pytest.approx(project["train_seconds"] / ref["seconds"])
    assert project["wall_seconds"] >= project["train_seconds"]
    assert report["book_job_float64"]["dtype"] == "float64"
    floor = book["floor"]
    assert floor["iterations"] == 1000 and floor["evaluations"] == 2
    assert _positive(floor["seconds"])
    assert floor["ratio_to_reference"] == pytest.approx(floor["seconds"] / ref["seconds"])
    assert floor["ratio_to_project"] == pytest.approx(book["project"]["train_seconds"]
                                                      / floor["seconds"])
    # the floor is its iterations plus its evaluations, each reported on its own
    assert floor["seconds"] == pytest.approx(
        floor["iterations"] * floor["iteration_us"] / 1e6
        + floor["evaluations"] * floor["evaluation_ms"] / 1000)
    breakdown = book["breakdown"]
    assert breakdown["iterations"] == 1000
    for part in ("batch_us", "loss_and_gradient_us", "update_us", "evaluation_ms", "write_ms"):
        assert _positive(breakdown[part])
    # the rest is what the parts leave of the run's training time
    parts = (1000 * (breakdown["batch_us"] + breakdown["loss_and_gradient_us"]
                     + breakdown["update_us"]) / 1e6 + 2 * breakdown["evaluation_ms"] / 1000
             + breakdown["write_ms"] / 1000)
    assert breakdown["rest_seconds"] == pytest.approx(project["train_seconds"] - parts)


def test_numerical_gradients_agree(report: dict[str, Any], mnist) -> None:
    ng = report["numerical_gradient"]
    assert ng["net"] == [784, 10, 10] and ng["note"]  # quick says it used a smaller net
    assert ng["parameters"] == 784 * 10 + 10 + 10 * 10 + 10
    # within the bounds of the script's problem: 100 training images drawn by seed 0, the
    # net from seed 0 (nditer - vectorized: rounding only; vectorized - backprop: h^2 too)
    x, t = mnist_batch(mnist, 100, 0)
    bounds = two_layer_bounds(TwoLayerNet(784, 10, 10, seed=0).params, x, t)
    assert ng["max_abs_diff_nditer_vectorized"] <= max(
        np.max(bounds.nditer[k] + bounds.vectorized[k]) for k in bounds.gradient)
    assert ng["max_abs_diff_vectorized_backprop"] <= max(
        np.max(bounds.gradient[k] + bounds.difference[k] + bounds.vectorized[k])
        for k in bounds.gradient)
    for key in ("nditer_seconds", "vectorized_seconds", "backprop_seconds", "speedup"):
        assert _positive(ng[key])


def test_numerical_training_is_the_book_job_on_the_numerical_gradient(report) -> None:
    nt = report["numerical_training"]
    assert nt["iterations"] == 30 and nt["losses_recorded"] == 30 and nt["hidden"] == 50
    assert nt["ms_per_iteration"] == pytest.approx(1000 * nt["train_seconds"] / 30)
    assert 0.1 < nt["test_accuracy"] < 1.0  # 30 steps of the book's lr: it has begun to learn


def test_default_preset_child_run(report: dict[str, Any]) -> None:
    dp = report["default_preset"]
    assert dp["iterations"] == 600 and dp["dtype"] == "float32"
    assert dp["test_accuracy"] >= 0.90  # one epoch of the default preset
    assert 50 < dp["peak_rss_mb"] < 8000
    assert dp["wall_seconds"] >= dp["train_seconds"] > 0
    for key in ("time_to_97", "time_to_98"):
        assert dp[key] is None or dp[key] <= dp["train_seconds"]
    loading = report["loading"]
    assert _positive(loading["first_load_seconds"]) and _positive(loading["cached_load_seconds"])


def test_record_preset_epochs_with_and_without_distortions(report: dict[str, Any]) -> None:
    ag = report["augmentation"]
    assert ag["train_size"] == 3000 and ag["epochs"] == 1 and ag["hidden"] >= 800
    assert ag["augment"] != "none"
    assert _positive(ag["plain_epoch_seconds"]) and _positive(ag["augmented_epoch_seconds"])
    assert ag["overhead"] == pytest.approx(ag["augmented_epoch_seconds"]
                                           / ag["plain_epoch_seconds"] - 1)
    assert _positive(ag["distort_batch_ms"]) and _positive(ag["step_ms"])
    assert ag["projected_record_minutes"] == pytest.approx(
        ag["augmented_epoch_seconds"] * ag["record_epochs"] * 20 / 60)
    assert report["record"] == {"measured": False}  # --record not given
    targets = {t["key"]: t for t in report["targets"]}
    assert targets["record_minutes"]["met"] is None and targets["record_accuracy"]["met"] is None


def test_torch_reference_when_available(report: dict[str, Any]) -> None:
    torch_result = report["torch"]
    if not torch_result["available"]:
        pytest.skip(f"torch not importable: {torch_result['reason']}")
    assert torch_result["dtype"] == "float32"
    assert torch_result["iterations"] == 1000 and torch_result["losses_recorded"] == 1000
    assert 0.7 < torch_result["test_accuracy"] < 1.0
    assert _positive(torch_result["seconds"]) and _positive(torch_result["ratio"])


def test_targets_are_reported_consistently(report: dict[str, Any]) -> None:
    """A quick run judges only what its shortened jobs measure as the targets mean them; the
    rest (the full book job, the 784-50-10 numerical gradient, the time to 98% that a one-epoch
    job cannot reach) is "not measured", never NOT MET."""
    targets = {t["key"]: t for t in report["targets"]}
    assert set(targets) == TARGET_KEYS
    judged = {"peak_rss_mb", "cached_load"}
    for key, t in targets.items():
        if key not in judged:
            assert t["met"] is None, key
        else:
            expected = t["value"] <= t["target"] if t["op"] == "<=" else t["value"] >= t["target"]
            assert t["met"] is expected
    measured = [t["met"] for t in targets.values() if t["met"] is not None]
    assert report["all_targets_met"] is all(measured)


def test_plain_table_shows_figures_and_targets(report: dict[str, Any]) -> None:
    table = _load_script().render_table(report)
    assert "QUICK" in table and "targets:" in table
    assert "784-10-10" in table
    assert "s per epoch without / with" in table and "not run (--record runs it)" in table
    assert "per iteration us, project" in table and "batch + " in table
    assert len([line for line in table.splitlines() if line.startswith("  ") and
                line.rstrip().endswith(("met", "NOT MET", "not measured"))]) == len(TARGET_KEYS)
