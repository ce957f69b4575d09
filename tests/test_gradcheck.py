"""The gradcheck engine, its CLI subcommand and scripts/compare_gradients.py."""

from __future__ import annotations

import importlib.util
import json
import re
from pathlib import Path

import numpy as np
import pytest
from tolerances import EPS64, gamma, relative_error_bound, two_layer_bounds

from mnist_twolayer import gradcheck
from mnist_twolayer.cli import main
from mnist_twolayer.error_bounds import five_point_step_error
from mnist_twolayer.errors import ConfigError
from mnist_twolayer.gradcheck import (
    INCONCLUSIVE_AT,
    METHODS,
    STEPS,
    comparison_pairs,
    default_methods,
    gradcheck_mnist,
    parse_methods,
    relative_error,
    run_gradcheck,
)
from mnist_twolayer.gradient import stencil_rounding_gain
from mnist_twolayer.network import TwoLayerNet
from mnist_twolayer.plots import plot_gradcheck

FAST = "backprop,autograd,numerical_vectorized,numerical_nditer"
SCRIPT = Path(__file__).resolve().parents[1] / "scripts" / "compare_gradients.py"


def test_relative_error():
    a = np.array([3.0, 4.0])
    assert relative_error(a, a) == 0.0
    assert relative_error(a, -a) == 1.0
    assert relative_error(np.zeros(3), np.zeros(3)) == 0.0
    # 4 + 1e-9 rounds by up to u 4 = 4.4e-16, 4.4e-7 of the 1e-9; the norms round a few times
    assert relative_error(a, a + [0.0, 1e-9]) == pytest.approx(
        1e-9 / 10, rel=EPS64 / 2 * 4 / 1e-9 + gamma(8), abs=0)


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
    assert set(report) == {"config", "timings", "kinks", "comparisons", "verdicts"}
    assert report["kinks"] == {}  # sigmoid has none
    assert {k: report["config"][k] for k in ("activation", "order", "h")} == {
        "activation": "sigmoid", "order": 2, "h": 1e-4}
    assert set(report["timings"]) == set(parse_methods(FAST))
    assert all(seconds > 0 for seconds in report["timings"].values())
    assert report["config"]["batch"] == 5 and report["config"]["hidden"] == 10
    assert len(report["comparisons"]) == 4 * 4
    for c in report["comparisons"]:
        assert set(c) == {"a", "b", "param", "rel_error", "max_abs_diff", "tolerance",
                          "excluded"}
        assert c["excluded"] == 0
    for v in report["verdicts"]:
        assert set(v) == {"a", "b", "param", "measure", "worst", "tolerance", "reason", "scale",
                          "state", "agree"}
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


@pytest.fixture(scope="module")
def relu_result(mnist):
    """A ReLU net whose +-h steps cross kinks: h = 1e-3 on 10 real images, hidden 10."""
    (x_train, t_train), _ = mnist
    return run_gradcheck(x_train[:10], t_train[:10], hidden=10, seed=0, activation="relu",
                         h=1e-3, methods=parse_methods(FAST))


def test_relu_kinks_are_excluded_from_numerical_vs_analytic_comparisons_only(relu_result):
    counts = relu_result.kink_counts()
    assert counts == {"W1": 64, "b1": 1, "W2": 0, "b2": 0}
    grads = relu_result.gradients
    for param in ("W1", "b1", "W2", "b2"):
        for numerical in ("numerical_nditer", "numerical_vectorized"):
            c = relu_result.find("backprop", numerical, param)
            assert c.excluded == counts[param]
            keep = ~relu_result.kinks[param]
            assert c.rel_error == relative_error(grads["backprop"][param][keep],
                                                 grads[numerical][param][keep])
            # h^2 truncation at h = 1e-3, ~1e-7 relative; 1e-6 as a pin ten times above, for
            # the per-parameter tolerance too (two_layer_bounds for a ReLU net, off its kinks)
            assert c.rel_error <= c.tolerance <= 1e-6
        assert relu_result.find("backprop", "autograd", param).excluded == 0
        # the two numerical paths compute the same quotients, kinks included
        both = relu_result.find("numerical_nditer", "numerical_vectorized", param)
        assert both.excluded == 0 and both.max_abs_diff <= 1e-10  # test_gradient's bound
    # the excluded entries are the ones that would fail: with them W1 is off by far more
    assert relative_error(grads["backprop"]["W1"], grads["numerical_vectorized"]["W1"]) >= 1e-4
    report = relu_result.to_dict()
    assert report["kinks"] == counts and report["config"]["activation"] == "relu"
    table = relu_result.table()
    assert "784-10-10 relu" in table and "excluded" in table
    assert "ReLU kink entries (a step of +-h moves" in table and "W1 64 of 7840" in table


def test_order_4_leaves_the_nditer_loop_out_and_refuses_it_by_name(mnist):
    (x_train, t_train), _ = mnist
    assert "numerical_nditer" not in default_methods(order=4)
    assert "numerical_nditer" not in default_methods(order=2)  # ~25 s: on request only
    with pytest.raises(ConfigError, match="numerical_nditer is the book's central difference "
                                          "\\(order 2\\); order 4 is for numerical_vectorized"):
        run_gradcheck(x_train[:2], t_train[:2], hidden=3, order=4,
                      methods=["backprop", "numerical_nditer"])
    with pytest.raises(ConfigError, match="order must be one of 2, 4, not 3"):
        run_gradcheck(x_train[:2], t_train[:2], hidden=3, order=3, methods=["backprop"])
    with pytest.raises(ConfigError, match="unknown activation 'tanh'"):
        run_gradcheck(x_train[:2], t_train[:2], hidden=3, activation="tanh",
                      methods=["backprop"])
    result = run_gradcheck(x_train[:5], t_train[:5], hidden=10, order=4,
                           methods=["backprop", "numerical_vectorized"])
    assert result.config["order"] == 4 and result.config["h"] == STEPS[4] == 3e-4
    for param in ("W1", "b1", "W2", "b2"):
        # h^4 truncation plus ~ulp(p) / h step rounding, ~1e-15 each (README); the pin
        assert result.find("backprop", "numerical_vectorized", param).rel_error <= 1e-11


def test_chart_is_a_png_written_atomically(small_result, tmp_path):
    out = tmp_path / "errors.png"
    plot_gradcheck(small_result, out)
    assert out.read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"
    assert [p.name for p in tmp_path.iterdir()] == ["errors.png"]


def test_torch_path_is_refused_cleanly_when_torch_is_missing(monkeypatch, mnist):
    monkeypatch.setattr(gradcheck, "torch_available", lambda: False)
    assert "torch" not in gradcheck.default_methods()
    (x_train, t_train), _ = mnist
    with pytest.raises(ConfigError, match="needs PyTorch"):
        run_gradcheck(x_train[:2], t_train[:2], hidden=3, methods=["backprop", "torch"])


def test_each_pair_gets_a_verdict_against_the_tolerance_it_is_held_to(small_result):
    verdicts = {(v.a, v.b): v for v in small_result.verdicts()}
    assert set(verdicts) == set(comparison_pairs(parse_methods(FAST)))
    # nditer's two losses each within gamma_N max(|L|, 1) for N = 784 + 10 + 10 + 5 + 4
    # operations in a chain (u = 2^-53), over h; plus the steps' rounding, eps / h
    loss = small_result.config["loss"]
    assert loss == pytest.approx(np.log(10), abs=0.05)  # the book's init: near-uniform outputs
    nditer_rounding = 813 * 2.0**-53 / (1 - 813 * 2.0**-53) * loss / 1e-4 + 2.0**-52 / 1e-4
    uniform = {("backprop", "autograd"): ("rel_error", 1e-12),
               ("numerical_nditer", "numerical_vectorized"): ("max_abs_diff", nditer_rounding)}
    for pair, verdict in verdicts.items():
        pair_comparisons = [c for c in small_result.comparisons if (c.a, c.b) == pair]
        if pair in uniform:
            assert verdict.measure == uniform[pair][0]
            assert [c.tolerance for c in pair_comparisons] == [
                pytest.approx(uniform[pair][1], rel=1e-12, abs=0)] * 4
        else:  # held per parameter (test_tolerances_per_parameter says to what)
            assert verdict.measure == "rel_error"
        # the binding parameter is the one nearest its own tolerance
        binding = max(pair_comparisons, key=lambda c: getattr(c, verdict.measure) / c.tolerance)
        assert (verdict.param, verdict.worst, verdict.tolerance) == (
            binding.param, getattr(binding, verdict.measure), binding.tolerance)
        assert verdict.agree
    lines = small_result.table().splitlines()
    assert lines[-4:] == [verdict.line() for verdict in small_result.verdicts()]
    assert re.fullmatch(r"backprop vs autograd: agree, rel_error \d\.\de-1[6-9] <= 1\.0e-12 on "
                        r"(W1|b1|W2|b2) \(the same math summed in other orders: n eps for "
                        r"n <= 784 terms in float64\)", lines[-4]), lines[-4]
    assert lines[-3].startswith(f"backprop vs numerical_vectorized: agree, rel_error "
                                f"{verdicts['backprop', 'numerical_vectorized'].worst:.1e} <= ")
    assert lines[-3].endswith(" (the h^2 truncation bound, the steps' rounding, the loss "
                              "changes' rounding, backprop's rounding; over each parameter's "
                              "norms)")
    assert "2 losses within gamma_813 |L| over 2h" in lines[-2]


def test_the_five_point_stencil_amplifies_rounding_by_its_weights(mnist, small_bounds):
    """(8 (f(h) - f(-h)) - (f(2h) - f(-2h))) / 12h: loss changes off by r |s| each give
    (8 h + 8 h + 2h + 2h) r / 12h = 5/3 r, against r for (f(h) - f(-h)) / 2h. At order 4 the
    vectorized path's rounding bound is scaled by that 5/3."""
    assert stencil_rounding_gain(2) == 1.0
    assert stencil_rounding_gain(4) == pytest.approx(5 / 3, rel=1e-15, abs=0)
    (x_train, t_train), _ = mnist
    # a step where the h^4 estimate vanishes; b2 (0, so its steps are exact) is then held by
    # the rounding terms alone, where the gain shows (at h = 3e-4 the estimate would hide it);
    # abs=0: pytest.approx's default abs of 1e-12 would pass any tolerance this small
    result = run_gradcheck(x_train[:5], t_train[:5], hidden=10, seed=0, order=4, h=1e-9,
                           methods=parse_methods("backprop,numerical_vectorized"))
    h, net = result.config["h"], TwoLayerNet(784, 10, 10, seed=0)
    bounds = two_layer_bounds(net.params, x_train[:5].astype(np.float64), t_train[:5], h=h)
    for param in ("W1", "b1", "W2", "b2"):
        bp, c = result.gradients["backprop"][param], result.find("backprop",
                                                                 "numerical_vectorized", param)
        bound = (bounds.gradient[param] + five_point_step_error(net.params[param], np.abs(bp), h)
                 + 5 / 3 * bounds.vectorized[param])
        expected = relative_error_bound(bound, bp, result.gradients["numerical_vectorized"][
            param]) + gradcheck.TRUNCATION_ORDER_4 * (h / STEPS[4]) ** 4
        assert c.tolerance == pytest.approx(expected, rel=1e-12, abs=0)
        assert c.rel_error <= c.tolerance


def test_tolerances_per_parameter(small_result, small_bounds):
    """A numerical path against backprop is held, parameter by parameter, to the norm of the
    sum of the bounds on what each may be off by entrywise (tolerances.two_layer_bounds), over
    ||a|| + ||b||: backprop's rounding, the central difference's truncation and rounded steps,
    and the numerical path's own rounding (nditer: two losses within gamma_N max(|L|, 1), over
    2h, and its last division)."""
    g, b = small_result.gradients, small_bounds
    loss_rounding = gamma(813) * max(small_result.config["loss"], 1.0)
    # the nditer loop's loss model covers the running error analysis of the loss
    assert b.loss <= loss_rounding
    for param in ("W1", "b1", "W2", "b2"):
        bp = g["backprop"][param]
        for numerical, rounding in (
                ("numerical_vectorized", b.vectorized[param]),
                ("numerical_nditer", loss_rounding / 1e-4 + EPS64 * np.abs(bp))):
            c = small_result.find("backprop", numerical, param)
            bound = b.gradient[param] + b.difference[param] + rounding
            assert c.tolerance == pytest.approx(
                relative_error_bound(bound, bp, g[numerical][param]), rel=1e-12, abs=0)
            assert c.rel_error <= c.tolerance
    # nditer's loss rounding over h dominates its W1 tolerance: sqrt(7840) entries at up to
    # gamma_813 max(|L|, 1) / h each, against W1's small gradient norm
    w1 = small_result.find("backprop", "numerical_nditer", "W1")
    spread = np.sqrt(7840) * loss_rounding / 1e-4 / (
        np.linalg.norm(g["backprop"]["W1"]) + np.linalg.norm(g["numerical_nditer"]["W1"]))
    assert spread <= w1.tolerance <= 1.01 * spread


def test_a_path_that_is_off_is_a_disagreement_and_gradcheck_exits_3(mnist, monkeypatch,
                                                                       capsys):
    real = gradcheck.compute_gradients

    def off_by_a_little(net, x, t, method, **kwargs):
        grads = real(net, x, t, method, **kwargs)
        if method == "autograd":  # a relative error of 1e-9: far above float64 rounding
            grads = {k: g * (1 + 2e-9) for k, g in grads.items()}
        return grads

    monkeypatch.setattr(gradcheck, "compute_gradients", off_by_a_little)
    argv = ["gradcheck", "--batch", "5", "--hidden", "10", "--methods", "backprop,autograd"]
    assert main(argv) == 3
    last = capsys.readouterr().out.splitlines()[-1]
    assert re.match(r"backprop vs autograd: DISAGREE, rel_error 1\.0e-09 > 1\.0e-12 on "
                    r"(W1|b1|W2|b2) \(", last), last
    assert main([*argv, "--json"]) == 3
    verdict, = json.loads(capsys.readouterr().out)["verdicts"]
    assert verdict["agree"] is False and verdict["tolerance"] == 1e-12
    assert verdict["state"] == "DISAGREE"


def _planted(monkeypatch, plant):
    """compute_gradients with backprop's gradient changed by ``plant`` (a dict -> dict)."""
    real = gradcheck.compute_gradients

    def planted(net, x, t, method, **kwargs):
        grads = real(net, x, t, method, **kwargs)
        return plant(grads) if method == "backprop" else grads

    monkeypatch.setattr(gradcheck, "compute_gradients", planted)


def test_a_w1_gradient_off_by_1e_6_relative_disagrees_at_the_default_step(mnist, monkeypatch):
    """At the default check (784-50-10, batch 100, h = 1e-4) W1 is held to ~4e-9 against the
    vectorized differences: a W1 gradient 1e-6 too large (rel_error 5e-7) is caught, and the
    verdict names W1."""
    _planted(monkeypatch, lambda g: {**g, "W1": g["W1"] * (1 + 1e-6)})
    result = gradcheck_mnist(methods=["backprop", "numerical_vectorized"])
    verdict, = result.verdicts()
    assert (verdict.state, verdict.param) == ("DISAGREE", "W1")
    # worst = ||eps a + (a - b)|| / ((1 + eps) ||a|| + ||b||): the unplanted pair's own part
    # stays within the tolerance, the planted part is eps / 2 to a relative eps + 2 tol
    eps, tol = 1e-6, verdict.tolerance
    assert abs(verdict.worst - eps / 2) <= tol + eps / 2 * (eps + 2 * tol)
    assert tol < 1e-8


def test_one_b2_entry_off_by_1e_7_relative_disagrees_at_the_default_step(mnist, monkeypatch):
    """b2's tolerance at the default check is ~2e-9 (its h^2 truncation bound): one entry of
    b2's gradient 1e-7 too large moves rel_error by 1e-7 |g_k| / (2 ||g||), 3.2e-8 here."""

    def plant(g):
        b2 = g["b2"].copy()
        k = int(np.argmax(np.abs(b2)))
        b2[k] *= 1 + 1e-7
        return {**g, "b2": b2}

    _planted(monkeypatch, plant)
    result = gradcheck_mnist(methods=["backprop", "numerical_vectorized"])
    verdict, = result.verdicts()
    assert (verdict.state, verdict.param) == ("DISAGREE", "b2")
    g = result.gradients["numerical_vectorized"]["b2"]
    planted = result.gradients["backprop"]["b2"]
    # the planted change, 1e-7 of the largest entry (which it made 1 + 1e-7 times as large),
    # over the norms, less what the unplanted pair may differ by
    change = 1e-7 / (1 + 1e-7) * np.abs(planted).max()
    assert verdict.worst >= (change / (np.linalg.norm(planted) + np.linalg.norm(g))
                             - verdict.tolerance)
    # ...and the same plant on a small net is caught by the nditer loop too (b2's few entries
    # keep its loss rounding small against b2's norm)
    small = run_gradcheck(mnist[0][0][:5], mnist[0][1][:5], hidden=10, seed=0,
                          methods=["backprop", "numerical_nditer"])
    verdict, = small.verdicts()
    assert (verdict.state, verdict.param) == ("DISAGREE", "b2")


@pytest.mark.parametrize("dtype", ["float64", "float32"])
def test_the_default_check_agrees_for_every_pair(mnist, dtype):
    """The default gradcheck (784-50-10, batch 100, seed 0, h = 1e-4, every fast path) in
    either dtype: every pair within every parameter's tolerance, none of them too loose."""
    result = gradcheck_mnist(dtype=dtype)
    assert result.config["dtype"] == dtype and result.config["h"] == 1e-4
    assert len(result.verdicts()) == len(default_methods()) - 1
    assert [v.state for v in result.verdicts()] == ["agree"] * len(result.verdicts())
    for c in result.comparisons:
        assert c.rel_error <= c.tolerance < INCONCLUSIVE_AT


def test_a_step_of_1e_10_leaves_the_nditer_loop_inconclusive_never_disagreeing(mnist, capsys):
    """At h = 1e-10 nditer's two losses, each within gamma_N max(|L|, 1) ~ 2e-13, make each
    entry uncertain by up to 2e-3 absolute: far more than W1's gradient entries, so the pair
    says nothing (inconclusive, exit 4) rather than DISAGREE, which a tolerance blind to that
    rounding (h^2 truncation + eps / h, relative: 2.2e-6 here) would wrongly say. The
    vectorized differences, which never subtract two losses, still get a verdict."""
    argv = ["gradcheck", "--batch", "5", "--hidden", "10", "--h", "1e-10", "--methods",
            "backprop,numerical_nditer,numerical_vectorized", "--json"]
    assert main(argv) == 4
    report = json.loads(capsys.readouterr().out)
    states = {(v["a"], v["b"]): (v["state"], v["param"]) for v in report["verdicts"]}
    assert states == {("backprop", "numerical_nditer"): ("inconclusive", "W1"),
                      ("backprop", "numerical_vectorized"): ("agree", states[
                          "backprop", "numerical_vectorized"][1]),
                      ("numerical_nditer", "numerical_vectorized"): ("inconclusive", "b1")}
    nditer = [c for c in report["comparisons"] if c["b"] == "numerical_nditer"]
    old_tolerance = 1e-7 * (1e-10 / 1e-4) ** 2 + 2.0**-52 / 1e-10
    assert max(c["rel_error"] for c in nditer) > old_tolerance  # what the old verdict missed
    assert all(c["rel_error"] <= c["tolerance"] for c in nditer)
    assert main(argv[:-1]) == 4
    lines = capsys.readouterr().out.splitlines()
    assert lines[-3].startswith("backprop vs numerical_nditer: inconclusive, rel_error ")
    assert lines[-3].endswith("; a tolerance that loose says nothing: choose a step --h nearer "
                              "the default")


def test_a_step_some_parameter_cannot_take_is_refused(mnist, capsys):
    assert main(["gradcheck", "--batch", "5", "--hidden", "10", "--h", "1e-19",
                 "--methods", "backprop,numerical_vectorized"]) == 2
    err = capsys.readouterr().err
    assert re.fullmatch(r"error: --h 1e-19 is too small for W1 in float64: next to its entries "
                        r"\(up to 0\.0\d+\) a step of 1e-19 rounds to nothing; choose a step "
                        r"above \de-18\n", err), err


def test_the_nditer_loop_in_float32_is_refused(mnist, capsys):
    assert main(["gradcheck", "--batch", "5", "--hidden", "10", "--dtype", "float32",
                 "--methods", "backprop,numerical_nditer"]) == 2
    assert capsys.readouterr().err == (
        "error: numerical_nditer in float32 rounds each loss (~2.3) to ~1e-7, which over 2h is "
        "as large as the gradient entries; use --dtype float64 (numerical_vectorized computes "
        "its differences in float64 in either)\n")


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


def test_cli_relu_json_on_the_full_net(capsys, mnist):
    """The issue's 'done when' for ReLU: batch 100, 784-50-10, float64, seed 0."""
    methods = "backprop,autograd,numerical_vectorized" + (
        ",torch" if importlib.util.find_spec("torch") else "")
    assert main(["gradcheck", "--activation", "relu", "--methods", methods, "--json"]) == 0
    report = json.loads(capsys.readouterr().out)
    assert {k: report["config"][k] for k in ("activation", "order", "h", "batch", "hidden")} == {
        "activation": "relu", "order": 2, "h": 1e-4, "batch": 100, "hidden": 50}
    assert report["kinks"] == {"W1": 124, "b1": 1, "W2": 0, "b2": 0}
    by_pair = {(c["b"], c["param"]): c for c in report["comparisons"]}
    for param in ("W1", "b1", "W2", "b2"):
        # float64 paths summing the same products in other orders: a few ulp; the pin
        assert by_pair["autograd", param]["rel_error"] <= 1e-13
        if ("torch", param) in by_pair:
            assert by_pair["torch", param]["rel_error"] <= 1e-13
        vectorized = by_pair["numerical_vectorized", param]
        assert vectorized["excluded"] == report["kinks"][param]
        assert vectorized["rel_error"] <= 1e-8  # h^2 truncation, ~1e-9 at h = 1e-4


def test_cli_order_4_json_on_the_full_net(capsys, mnist):
    """The issue's 'done when' for the five-point stencil: sigmoid, vectorized vs backprop."""
    assert main(["gradcheck", "--order", "4", "--methods", "backprop,numerical_vectorized",
                 "--json"]) == 0
    report = json.loads(capsys.readouterr().out)
    assert report["config"]["order"] == 4 and report["config"]["h"] == 3e-4
    for c in report["comparisons"]:
        # h^4 truncation and ~ulp(p) / h step rounding are ~1e-15 each here; the pin
        assert c["rel_error"] <= 1e-11 and c["excluded"] == 0
    assert main(["gradcheck", "--order", "4", "--h", "1e-2", "--batch", "5", "--hidden", "5",
                 "--methods", "backprop,numerical_vectorized"]) == 0
    assert "differences of order 4 with h = 0.01" in capsys.readouterr().out


def test_cli_float32_paths_agree_to_float32_rounding(capsys, mnist):
    argv = ["gradcheck", "--batch", "4", "--hidden", "6", "--dtype", "float32",
            "--methods", "backprop,autograd"]
    assert main([*argv, "--json"]) == 0
    result = json.loads(capsys.readouterr().out)
    assert result["config"]["dtype"] == "float32"
    errors = {c["param"]: c["rel_error"] for c in result["comparisons"]}
    assert sorted(errors) == ["W1", "W2", "b1", "b2"]
    # the two paths differ only in the order of float32 sums of at most 784 terms: the
    # worst case n * eps32 = 784 * 1.19e-7 = 9.3e-5
    assert all(error <= 9.3e-5 for error in errors.values()), errors
    assert main(argv) == 0
    rows = [line.split() for line in capsys.readouterr().out.splitlines()]
    shown = {row[2]: float(row[3]) for row in rows if row[:2] == ["backprop", "autograd"]}
    # the table prints 4 significant digits; abs=0, or approx's default 1e-12 would pass any
    # pair of errors this small
    assert shown == pytest.approx(errors, rel=5e-4, abs=0)


@pytest.mark.parametrize(("argv", "message"), [
    (["--batch", "0"], "--batch: '0' must be greater than 0"),
    (["--hidden", "-1"], "--hidden: '-1' must be greater than 0"),
    (["--dtype", "float16"], "--dtype: invalid choice"),
    (["--methods", "backprop,finite"], "unknown gradient method 'finite'"),
    (["--batch", "60001", "--methods", "backprop"], "larger than the 60000 training images"),
    (["--activation", "tanh"], "--activation: invalid choice: 'tanh'"),
    (["--order", "3"], "--order: invalid choice: 3"),
    (["--order", "four"], "--order: invalid int value: 'four'"),
    (["--h", "0"], "--h: '0' must be greater than 0"),
    (["--h", "0.5"], "--h: '0.5' must be at most 0.1"),
    (["--h", "nan"], "--h: 'nan' is not a finite number"),
    (["--order", "4", "--methods", "backprop,numerical_nditer"],
     "numerical_nditer is the book's central difference (order 2); order 4 is for "
     "numerical_vectorized only: leave numerical_nditer out of the methods"),
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
    assert script.main(["--batch", "4", "--hidden", "5", "--activation", "relu", "--order", "4",
                        "--h", "1e-3", "--methods", "backprop,numerical_vectorized",
                        "--out", str(out)]) == 0
    assert "784-5-10 relu, float64, seed 0, differences of order 4 with h = 0.001" in (
        capsys.readouterr().out)
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
