"""The gradcheck engine, its CLI subcommand and scripts/compare_gradients.py."""

from __future__ import annotations

import importlib.util
import json
from pathlib import Path

import numpy as np
import pytest
from tolerances import EPS64, gamma, relative_error_bound, two_layer_bounds

from mnist_twolayer import gradcheck
from mnist_twolayer.cli import main
from mnist_twolayer.errors import ConfigError
from mnist_twolayer.gradcheck import (
    METHODS,
    comparison_pairs,
    gradcheck_mnist,
    parse_methods,
    plot_comparisons,
    relative_error,
    run_gradcheck,
)
from mnist_twolayer.network import TwoLayerNet

FAST = "backprop,autograd,numerical_vectorized,numerical_nditer"
SCRIPT = Path(__file__).resolve().parents[1] / "scripts" / "compare_gradients.py"


def test_relative_error():
    a = np.array([3.0, 4.0])
    assert relative_error(a, a) == 0.0
    assert relative_error(a, -a) == 1.0
    assert relative_error(np.zeros(3), np.zeros(3)) == 0.0
    # 4 + 1e-9 rounds by up to u 4 = 4.4e-16, 4.4e-7 of the 1e-9; the norms round a few times
    assert relative_error(a, a + [0.0, 1e-9]) == pytest.approx(
        1e-9 / 10, rel=EPS64 / 2 * 4 / 1e-9 + gamma(8))


def test_parse_methods():
    assert parse_methods("autograd, backprop,autograd") == ("autograd", "backprop")
    with pytest.raises(ConfigError, match="unknown gradient method 'finite'"):
        parse_methods("backprop,finite")
    with pytest.raises(ConfigError, match="no gradient method"):
        parse_methods(" , ")


def test_comparison_pairs():
    assert comparison_pairs(METHODS) == [
        ("backprop", "autograd"), ("backprop", "numerical_nditer"),
        ("backprop", "numerical_vectorized"), ("backprop", "torch"),
        ("numerical_nditer", "numerical_vectorized")]
    assert comparison_pairs(["numerical_nditer", "numerical_vectorized"]) == [
        ("numerical_nditer", "numerical_vectorized")]
    assert comparison_pairs(["autograd"]) == []


@pytest.fixture(scope="module")
def small_result(mnist):
    (x_train, t_train), _ = mnist
    return run_gradcheck(x_train[:5], t_train[:5], hidden=10, seed=0,
                         methods=parse_methods(FAST))


@pytest.fixture(scope="module")
def small_bounds(mnist, small_result):
    """tolerances.two_layer_bounds for small_result's net, rebuilt from the seed (the same
    backprop gradient bit for bit shows it is the same net)."""
    (x_train, t_train), _ = mnist
    net = TwoLayerNet(784, 10, 10, seed=0)
    x, t = x_train[:5].astype(np.float64), t_train[:5]
    for name, grad in net.gradient(x, t).items():
        np.testing.assert_array_equal(grad, small_result.gradients["backprop"][name])
    return two_layer_bounds(net.params, x, t)


def test_result_schema_and_agreement(small_result, small_bounds):
    report = json.loads(json.dumps(small_result.to_dict(), allow_nan=False))
    assert set(report) == {"config", "timings", "comparisons"}
    assert set(report["timings"]) == set(parse_methods(FAST))
    assert all(seconds > 0 for seconds in report["timings"].values())
    assert report["config"]["batch"] == 5 and report["config"]["hidden"] == 10
    assert len(report["comparisons"]) == 4 * 4
    for c in report["comparisons"]:
        assert set(c) == {"a", "b", "param", "rel_error", "max_abs_diff"}
    # each within its bound (tolerances.two_layer_bounds), and each bound within the pins the
    # README states: 1e-12 autograd, 1e-10 nditer - vectorized, 1e-7 vectorized - backprop
    g, b = small_result.gradients, small_bounds
    for param in ("W1", "b1", "W2", "b2"):
        bp = g["backprop"][param]
        assert small_result.find("autograd", "backprop", param).rel_error <= relative_error_bound(
            2 * b.gradient[param], g["autograd"][param], bp) <= 1e-12
        assert small_result.find("numerical_nditer", "numerical_vectorized",
                                 param).max_abs_diff <= np.max(
            b.nditer[param] + b.vectorized[param]) <= 1e-10
        assert small_result.find("backprop", "numerical_vectorized",
                                 param).rel_error <= relative_error_bound(
            b.gradient[param] + b.difference[param] + b.vectorized[param],
            g["numerical_vectorized"][param], bp) <= 1e-7
    table = small_result.table()
    assert "vectorized is" in table and "numerical_nditer" in table


def test_chart_is_a_png_written_atomically(small_result, tmp_path):
    out = tmp_path / "errors.png"
    plot_comparisons(small_result, out)
    assert out.read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"
    assert [p.name for p in tmp_path.iterdir()] == ["errors.png"]


def test_torch_path_is_refused_cleanly_when_torch_is_missing(monkeypatch, mnist):
    monkeypatch.setattr(gradcheck, "torch_available", lambda: False)
    assert "torch" not in gradcheck.default_methods()
    (x_train, t_train), _ = mnist
    with pytest.raises(ConfigError, match="needs PyTorch"):
        run_gradcheck(x_train[:2], t_train[:2], hidden=3, methods=["backprop", "torch"])


def test_cli_json(capsys, mnist):
    code = main(["gradcheck", "--batch", "5", "--hidden", "10", "--seed", "3",
                 "--methods", "backprop,autograd,numerical_vectorized", "--json"])
    assert code == 0
    report = json.loads(capsys.readouterr().out)
    assert report["config"]["seed"] == 3 and report["config"]["dataset"] == "mnist"
    assert report["config"]["methods"] == ["backprop", "autograd", "numerical_vectorized"]
    # the engine's numbers, bit for bit (the same computation in this process; how close they
    # must be is test_result_schema_and_agreement's business)
    engine = gradcheck_mnist(batch=5, hidden=10, seed=3,
                             methods=["backprop", "autograd", "numerical_vectorized"])
    assert report["comparisons"] == engine.to_dict()["comparisons"]
    assert {(c["b"], c["param"]) for c in report["comparisons"]} == {
        (b, p) for b in ("autograd", "numerical_vectorized") for p in ("W1", "b1", "W2", "b2")}


def test_cli_float32_table(capsys, mnist):
    assert main(["gradcheck", "--batch", "4", "--hidden", "6", "--dtype", "float32",
                 "--methods", "backprop,autograd"]) == 0
    out = capsys.readouterr().out
    assert "float32" in out and "backprop" in out and "rel_error" in out


@pytest.mark.parametrize(("argv", "message"), [
    (["--batch", "0"], "--batch: '0' must be greater than 0"),
    (["--hidden", "-1"], "--hidden: '-1' must be greater than 0"),
    (["--dtype", "float16"], "--dtype: invalid choice"),
    (["--methods", "backprop,finite"], "unknown gradient method 'finite'"),
    (["--batch", "60001", "--methods", "backprop"], "larger than the 60000 training images"),
])
def test_cli_bad_values_are_one_line_and_exit_2(capsys, mnist, argv, message):
    code = main(["gradcheck", *argv])
    err = capsys.readouterr().err
    assert code == 2
    assert err.startswith("error: ") and err.count("\n") == 1
    assert message in err


def _load_script():
    spec = importlib.util.spec_from_file_location("compare_gradients", SCRIPT)
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


def test_compare_gradients_script(tmp_path, capsys, mnist):
    script = _load_script()
    out = tmp_path / "chart.png"
    assert script.main(["--batch", "4", "--hidden", "5", "--methods",
                        "backprop,autograd,numerical_vectorized", "--out", str(out)]) == 0
    printed = capsys.readouterr().out
    assert "numerical_vectorized" in printed and f"wrote {out}" in printed
    assert out.read_bytes()[:4] == b"\x89PNG"
    assert script.main(["--methods", "backprop", "--out", str(tmp_path / "chart.jpg")]) == 2
    assert "use a .png name" in capsys.readouterr().err


def test_compare_gradients_script_errors_are_one_line(tmp_path, capsys, mnist):
    script = _load_script()
    blocker = tmp_path / "a-file"
    blocker.write_text("")
    assert script.main(["--batch", "2", "--hidden", "3", "--methods", "backprop,autograd",
                        "--out", str(blocker / "chart.png")]) == 1
    assert capsys.readouterr().err == f"error: Not a directory: {blocker}\n"
    with pytest.raises(SystemExit) as exit_info:
        script.main(["--batch", "0"])
    assert exit_info.value.code == 2
    assert capsys.readouterr().err == ("error: compare_gradients.py: argument --batch: '0' must "
                                       "be greater than 0 (see --help)\n")
