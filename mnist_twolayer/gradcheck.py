"""Gradient check: compute one batch's gradients by several independent paths and compare them.

Paths: ``backprop`` (the layers), ``autograd`` (the define-by-run engine), ``numerical_nditer``
(the book's loop: two forward passes per parameter), ``numerical_vectorized`` (the same central
differences at once) and, when PyTorch is installed, ``torch`` (torch.autograd in float64, an
outside reference). Shared by ``python -m mnist_twolayer gradcheck`` and
``scripts/compare_gradients.py``.

With ReLU, an entry whose finite-difference steps move some sample's hidden pre-activation across
0 has a difference quotient that is not the derivative (see :mod:`mnist_twolayer.gradient`):
comparisons of a numerical path with an analytic one leave exactly those entries out and report
how many they left out; the two numerical paths compute the same quotients and are compared on
every entry.
"""

from __future__ import annotations

import importlib.util
import logging
import os
import time
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass, field
from typing import Any

import numpy as np

from .error_bounds import (
    TORCH_ULP,
    five_point_step_error,
    gamma,
    relative_error_bound,
    two_layer_bounds,
)
from .errors import ConfigError
from .gradient import (
    ACTIVATIONS,
    ORDERS,
    stencil_rounding_gain,
    two_layer_numerical_gradient,
)
from .network import NUMERICAL_METHODS, PARAM_NAMES, TwoLayerNet

logger = logging.getLogger(__name__)

METHODS = ("backprop", "autograd", *(f"numerical_{m}" for m in NUMERICAL_METHODS), "torch")
"""The network's own paths (its numerical ones by name), then PyTorch's as an outside check."""
# The default finite-difference step per stencil order. Order 2: the book's 1e-4. Order 4: its
# truncation error C h^4 and the rounding of the stored step p + h (relative ~ulp(p) / h) balance
# near (ulp / 4C)^(1/5) ~ 3e-4 for the 784-50-10 net (measured in the README).
STEPS = {2: 1e-4, 4: 3e-4}

Gradients = dict[str, np.ndarray]


def torch_available() -> bool:
    """Whether PyTorch can be imported (checked without importing it: that takes a second)."""
    return importlib.util.find_spec("torch") is not None


def default_methods(order: int = 2) -> tuple[str, ...]:
    """Every fast path: torch only if installed; not the book's nditer loop (two forward passes
    per parameter, ~25 s on the full net), which is there on request."""
    return tuple(m for m in METHODS if (m != "torch" or torch_available())
                 and m != "numerical_nditer")


def parse_methods(text: str) -> tuple[str, ...]:
    """Method names from a comma-separated list, checked, in the order given, without repeats."""
    names = [name.strip() for name in text.split(",") if name.strip()]
    if not names:
        raise ConfigError(f"no gradient method given; choose from {', '.join(METHODS)}")
    check_methods(names)
    return tuple(dict.fromkeys(names))


def relative_error(a: np.ndarray, b: np.ndarray) -> float:
    """||a - b||_2 / (||a||_2 + ||b||_2), in float64; 0 when both are zero."""
    a = np.asarray(a, dtype=np.float64)
    b = np.asarray(b, dtype=np.float64)
    denominator = np.linalg.norm(a) + np.linalg.norm(b)
    return float(np.linalg.norm(a - b) / denominator) if denominator else 0.0


def torch_gradient(params: Mapping[str, np.ndarray], x: np.ndarray, t: np.ndarray,
                   activation: str = "sigmoid") -> Gradients:
    """The net's gradient by torch.autograd in float64, whatever the parameters' dtype."""
    import torch

    p = {k: torch.tensor(np.asarray(v, dtype=np.float64), requires_grad=True)
         for k, v in params.items()}
    xt = torch.from_numpy(np.asarray(x, dtype=np.float64))
    tt = torch.from_numpy(np.asarray(t, dtype=np.int64))
    act = torch.relu if activation == "relu" else torch.sigmoid
    logits = act(xt @ p["W1"] + p["b1"]) @ p["W2"] + p["b2"]
    torch.nn.functional.cross_entropy(logits, tt).backward()
    return {k: p[k].grad.numpy() for k in PARAM_NAMES}


def check_methods(methods: Sequence[str], order: int = 2) -> None:
    """Refuse unknown paths, torch without PyTorch and the nditer loop at order 4, before any
    work starts."""
    unknown = [name for name in methods if name not in METHODS]
    if unknown:
        raise ConfigError(f"unknown gradient method {', '.join(map(repr, unknown))}; "
                          f"choose from {', '.join(METHODS)}")
    if "torch" in methods and not torch_available():
        raise ConfigError("the torch path needs PyTorch: pip install 'mnist_twolayer[torch]' "
                          "or leave torch out of the methods")
    if order not in ORDERS:
        raise ConfigError(f"order must be one of {', '.join(map(str, ORDERS))}, not {order!r}")
    if order != 2 and "numerical_nditer" in methods:
        raise ConfigError(f"numerical_nditer is the book's central difference (order 2); "
                          f"order {order} is for numerical_vectorized only: leave "
                          f"numerical_nditer out of the methods")


def compute_gradients(net: TwoLayerNet, x: np.ndarray, t: np.ndarray, method: str, *,
                      order: int = 2, h: float | None = None) -> Gradients:
    """The gradient of ``net.loss(x, t)`` by one of :data:`METHODS`, in arrays the caller owns.

    The numerical paths use the stencil of ``order`` with step ``h`` (default: STEPS[order])."""
    check_methods([method], order)
    if method == "torch":
        return torch_gradient(net.params, x, net._labels(t, len(x)), net.activation)
    if method.startswith("numerical_"):
        return net.numerical_gradient(x, t, method.removeprefix("numerical_"),
                                      h=STEPS[order] if h is None else h, order=order)
    return net.gradient(x, t, method)


def _timed(fn: Callable[[], Gradients]) -> tuple[Gradients, float]:
    """Run ``fn``; a path faster than 0.1 s runs up to 5 times and reports its best time, so
    that one-off costs (first-call buffers, lazy imports) do not dominate the figure."""
    start = time.perf_counter()
    result = fn()
    best = time.perf_counter() - start
    spent = best
    for _ in range(4):
        if best >= 0.1 or spent >= 0.5:
            break
        start = time.perf_counter()
        result = fn()
        elapsed = time.perf_counter() - start
        best, spent = min(best, elapsed), spent + elapsed
    return result, best


def comparison_pairs(methods: Sequence[str]) -> list[tuple[str, str]]:
    """Backprop (or else the first method) against each other path, and nditer against
    vectorized: the pairs whose agreement the tests pin."""
    ref = "backprop" if "backprop" in methods else methods[0]
    pairs = [(ref, m) for m in methods if m != ref]
    nditer, vectorized = "numerical_nditer", "numerical_vectorized"
    if nditer in methods and vectorized in methods and ref not in (nditer, vectorized):
        pairs.append((nditer, vectorized))
    return pairs


def is_numerical(method: str) -> bool:
    return method.startswith("numerical_")


INCONCLUSIVE_AT = 1e-2
"""A tolerance of 1% of what it measures (of 1 for rel_error, of the largest gradient entry for
max_abs_diff) could not tell a right gradient from a slightly wrong one: such a pair has no
verdict, only 'inconclusive' (a step --h far too small or too large)."""


@dataclass(frozen=True)
class Verdict:
    """Whether a compared pair agrees, decided by its binding parameter ``param``: the one whose
    error is the largest share of its own tolerance. ``scale`` is what that tolerance is
    measured against: 1 for rel_error, the parameter's largest gradient entry for
    max_abs_diff."""

    a: str
    b: str
    param: str
    measure: str  # "rel_error" or "max_abs_diff"
    worst: float
    tolerance: float
    reason: str
    scale: float = 1.0

    @property
    def agree(self) -> bool:
        return self.worst <= self.tolerance and not self.inconclusive

    @property
    def inconclusive(self) -> bool:
        return self.worst <= self.tolerance and self.tolerance >= INCONCLUSIVE_AT * self.scale

    @property
    def state(self) -> str:
        return "agree" if self.agree else "inconclusive" if self.inconclusive else "DISAGREE"

    def line(self) -> str:
        compared = "<=" if self.worst <= self.tolerance else ">"
        text = (f"{self.a} vs {self.b}: {self.state}, {self.measure} {self.worst:.1e} "
                f"{compared} {self.tolerance:.1e} on {self.param} ({self.reason})")
        if self.inconclusive:
            text += "; a tolerance that loose says nothing: choose a step --h nearer the default"
        return text


ANALYTIC_TOLERANCE = {"float64": 1e-12, "float32": 1e-4}
"""Two analytic paths compute the same products and sums in other orders: each sum of n <= 784
terms is off by at most n eps (1.7e-13 in float64, 9.3e-5 in float32); rel_error is held to
this. PyTorch runs in float64 whatever the net's dtype, so float32 against it is float32's."""


def nditer_loss_rounding(cfg: Mapping[str, Any]) -> tuple[int, float]:
    """(N, gamma_N max(|L|, 1)): how far each loss the nditer loop computes may be off. N counts
    the rounded operations along the forward pass's longest chain (the input, hidden and output
    sums, the batch mean, a few for exp and log), the terms summed being at most max(|L|, 1) in
    size. That size is a model of the book's init (the net gradcheck always builds), not a
    bound for any weights: error_bounds.two_layer_bounds derives a tighter one from the
    weights themselves (about 7 times smaller here), which the tests hold this model against."""
    chain = cfg["input_size"] + cfg["hidden"] + cfg["output_size"] + cfg["batch"] + 4
    return chain, gamma(chain, cfg["dtype"]) * max(abs(cfg["loss"]), 1.0)


def pair_measure(a: str, b: str) -> str:
    """The two numerical paths are held on max_abs_diff, every other pair on rel_error."""
    return "max_abs_diff" if is_numerical(a) and is_numerical(b) else "rel_error"


def pair_tolerance(a: str, b: str, cfg: Mapping[str, Any]) -> float:
    """The tolerance of a pair held to one for all its parameters (two analytic paths, or the
    two numerical ones) on the check described by ``cfg`` (a GradcheckResult's config: dtype,
    h, the sizes and the loss). A numerical path against an analytic one is held per
    parameter: :func:`numerical_tolerances`."""
    eps = float(np.finfo(cfg["dtype"]).eps)
    if is_numerical(a) and is_numerical(b):
        # The same steps, so the same quotients but for rounding: nditer's two losses, each
        # within gamma_N max(|L|, 1), over 2h; the vectorized path computes each difference
        # directly (error ~eps of the difference), and both apply the same rounded steps, up to
        # eps / h relative. (The nditer loop takes order 2 only.)
        return nditer_loss_rounding(cfg)[1] / cfg["h"] + eps / cfg["h"]
    if is_numerical(a) or is_numerical(b):
        raise ValueError(f"{a} vs {b} is held per parameter: see numerical_tolerances")
    return ANALYTIC_TOLERANCE[cfg["dtype"]]


TRUNCATION_ORDER_4 = 1e-11
"""The five-point stencil's truncation as rel_error at h = STEPS[4], scaled as h^4 for another
step: an estimate, not a bound (a bound needs the loss's fifth derivatives along each
parameter). It stands ~10^4 above the 1.2e-15 the 784-50-10 net measures at the book's
N(0, 0.01^2) init, whose small weights keep every derivative of the loss along a parameter of
order 1 or less; a net of much larger weights could exceed it."""


def pair_reason(a: str, b: str, cfg: Mapping[str, Any]) -> str:
    """Why a pair is held to its tolerance, for the verdict line."""
    if is_numerical(a) and is_numerical(b):
        chain = nditer_loss_rounding(cfg)[0]
        return f"the same steps: nditer's losses round within gamma_{chain} |L|, over h"
    if not (is_numerical(a) or is_numerical(b)):
        return (f"the same math summed in other orders: n eps for n <= 784 terms in "
                f"{cfg['dtype']}")
    analytic, numerical = (b, a) if is_numerical(a) else (a, b)
    truncation = ("the h^2 truncation bound" if cfg["order"] == 2 else
                  f"the h^4 truncation estimate {TRUNCATION_ORDER_4:.0e} at h = {STEPS[4]:g}")
    rounding = (f"2 losses within gamma_{nditer_loss_rounding(cfg)[0]} |L| over 2h"
                if numerical == "numerical_nditer" else "the loss changes' rounding")
    return (f"{truncation}, the steps' rounding, {rounding}, {analytic}'s rounding; "
            f"over each parameter's norms")


def numerical_tolerances(net: TwoLayerNet, x: np.ndarray, t: np.ndarray, gradients: Gradients,
                         pairs: Sequence[tuple[str, str]], cfg: Mapping[str, Any],
                         kinks: Mapping[str, np.ndarray]) -> dict[tuple[str, str, str], float]:
    """The rel_error tolerance of each pair of an analytic and a numerical path, per parameter
    (``x`` and ``t`` the batch as the net sees it, ``t`` class indices).

    Entry by entry, two right paths may differ by the sum of (see
    :func:`~mnist_twolayer.error_bounds.two_layer_bounds`): the analytic path's rounding (its
    running error bound in the net's dtype; torch's in float64 with its own ulp); the stencil's
    truncation (order 2: h^2 |L'''| / 6, from bounds on the loss's third derivative along each
    parameter; order 4: TRUNCATION_ORDER_4, an estimate); the steps p +- h as rounded to the
    parameter's dtype (u (|p| + h) / h relative); and the numerical path's rounding: the
    nditer loop's two losses, each within gamma_N max(|L|, 1) (the model of the
    nditer-vectorized pair), over 2h, or the vectorized method's loss changes in float64 (and
    its result stored in the net's dtype). The norm of that bound over the parameter's entries
    (ReLU kink entries left out), over ||a|| + ||b||, is the largest rel_error two right paths
    can show.
    """
    dtype, order, h, activation = cfg["dtype"], cfg["order"], cfg["h"], cfg["activation"]
    in_dtype = two_layer_bounds(net.params, x, t, dtype=dtype, h=h, activation=activation)
    in64 = (in_dtype if dtype == "float64" else
            two_layer_bounds(net.params, x, t, h=h, activation=activation))
    analytic_error = {"backprop": in_dtype.gradient, "autograd": in_dtype.gradient}
    if any("torch" in pair for pair in pairs):  # float64 whatever the net's dtype
        analytic_error["torch"] = two_layer_bounds(net.params, x, t, h=h, ulp=TORCH_ULP,
                                                   activation=activation).gradient
    eps = float(np.finfo(dtype).eps)
    loss_rounding = nditer_loss_rounding(cfg)[1]
    step_gain = stencil_rounding_gain(order)  # 1 for order 2
    tolerances = {}
    for a, b in pairs:
        analytic, numerical = (b, a) if is_numerical(a) else (a, b)
        for name in PARAM_NAMES:
            g = np.abs(np.asarray(gradients[analytic][name], np.float64))
            if numerical == "numerical_nditer":  # and its last division
                rounding = loss_rounding / h + eps * g  # (order 2 only)
            else:  # (the gain also scales the forward values' part, which it need not)
                rounding = (step_gain * in64.vectorized[name]
                            + (eps / 2 * g if dtype != "float64" else 0))
            steps = (in_dtype.difference[name] if order == 2 else  # steps rounded in dtype
                     five_point_step_error(net.params[name], g, h))
            bound = np.broadcast_to(analytic_error[analytic][name] + steps + rounding, g.shape)
            keep = ~kinks[name] if name in kinks else np.ones(g.shape, dtype=bool)
            tolerance = relative_error_bound(bound[keep], *(
                np.asarray(gradients[m][name], np.float64)[keep] for m in (a, b)))
            if order == 4:
                tolerance += TRUNCATION_ORDER_4 * (h / STEPS[4]) ** 4
            tolerances[(a, b, name)] = tolerance
    return tolerances


def _share(verdict: Verdict) -> float:
    """How much of its tolerance an error uses (0 / 0 counts as none)."""
    if verdict.tolerance > 0:
        return verdict.worst / verdict.tolerance
    return 0.0 if verdict.worst == 0 else float("inf")


@dataclass
class Comparison:
    """``a`` against ``b`` for one parameter, over all its entries but ``excluded`` (ReLU kink
    entries, left out when exactly one of the two paths is numerical), and the ``tolerance``
    this parameter is held to on the pair's measure (:func:`pair_measure`)."""

    a: str
    b: str
    param: str
    rel_error: float
    max_abs_diff: float
    tolerance: float
    excluded: int = 0


@dataclass
class GradcheckResult:
    """What a gradient check found; :meth:`to_dict` is the CLI's ``--json`` object."""

    config: dict[str, Any]
    timings: dict[str, float]
    comparisons: list[Comparison]
    gradients: dict[str, Gradients] = field(repr=False)
    kinks: dict[str, np.ndarray] = field(default_factory=dict, repr=False)
    """Per parameter, the entries whose finite-difference steps cross a ReLU kink (empty for
    sigmoid, or without a numerical path)."""

    def verdicts(self) -> list[Verdict]:
        """One verdict per compared pair, each parameter against its own tolerance: the pair
        disagrees if some parameter is outside its tolerance (the binding parameter is then the
        one furthest outside); else it is inconclusive if some parameter's tolerance is too
        loose to tell (the loosest binds); else it agrees, bound by the parameter nearest its
        tolerance."""
        found = []
        for a, b in dict.fromkeys((c.a, c.b) for c in self.comparisons):
            measure = pair_measure(a, b)
            reason = pair_reason(a, b, self.config)
            pair = [c for c in self.comparisons if (c.a, c.b) == (a, b)]
            if excluded := sum(c.excluded for c in pair):
                reason += f"; {excluded} ReLU kink entries left out"
            candidates = [Verdict(a, b, c.param, measure, getattr(c, measure), c.tolerance,
                                  reason, self._scale(measure, a, b, c.param)) for c in pair]
            loose = [v for v in candidates if v.inconclusive]
            if loose and not any(v.state == "DISAGREE" for v in candidates):
                found.append(max(loose, key=lambda v: v.tolerance / v.scale))
            else:
                found.append(max(candidates, key=_share))
        return found

    def _scale(self, measure: str, a: str, b: str, param: str) -> float:
        """What a tolerance on ``measure`` is measured against: 1 for rel_error, the largest
        gradient entry of ``param`` for max_abs_diff."""
        return 1.0 if measure == "rel_error" else max(
            float(np.abs(self.gradients[m][param]).max()) for m in (a, b))

    def kink_counts(self) -> dict[str, int]:
        return {name: int(np.count_nonzero(mask)) for name, mask in self.kinks.items()}

    def to_dict(self) -> dict[str, Any]:
        return {"config": self.config, "timings": self.timings, "kinks": self.kink_counts(),
                "comparisons": [vars(c) for c in self.comparisons],
                "verdicts": [{**vars(v), "state": v.state, "agree": v.agree}
                             for v in self.verdicts()]}

    def find(self, a: str, b: str, param: str) -> Comparison:
        """The comparison of ``a`` and ``b`` (in either order) for one parameter."""
        for c in self.comparisons:
            if c.param == param and {c.a, c.b} == {a, b}:
                return c
        raise KeyError((a, b, param))

    def table(self) -> str:
        """A plain-text report: the configuration, seconds per path, every comparison, and a
        verdict per compared pair."""
        cfg = self.config
        source = "".join(f"{cfg[key]} " for key in ("dataset", "split") if key in cfg)
        lines = [f"gradcheck on {cfg['batch']} {source}images, "
                 f"net {cfg['input_size']}-{cfg['hidden']}-{cfg['output_size']} "
                 f"{cfg['activation']}, {cfg['dtype']}, seed {cfg['seed']}, "
                 f"differences of order {cfg['order']} with h = {cfg['h']:g}",
                 "", f"{'path':<22}{'seconds':>12}"]
        lines += [f"{name:<22}{seconds:>12.6f}" for name, seconds in self.timings.items()]
        if "numerical_nditer" in self.timings and "numerical_vectorized" in self.timings:
            speedup = self.timings["numerical_nditer"] / self.timings["numerical_vectorized"]
            lines.append(f"vectorized is {speedup:.0f}x faster than nditer")
        if self.comparisons:
            lines += ["", f"{'a':<22}{'b':<22}{'param':<7}{'rel_error':>12}{'max_abs_diff':>14}"
                          f"{'tolerance':>12}{'excluded':>10}"]
            lines += [f"{c.a:<22}{c.b:<22}{c.param:<7}{c.rel_error:>12.3e}{c.max_abs_diff:>14.3e}"
                      f"{c.tolerance:>12.1e}{c.excluded:>10}" for c in self.comparisons]
        if self.kinks:
            counts = ", ".join(f"{name} {n} of {self.kinks[name].size}"
                               for name, n in self.kink_counts().items())
            steps = "+-h" if cfg["order"] == 2 else "+-h or +-2h"
            lines += ["", f"ReLU kink entries (a step of {steps} moves some sample's hidden "
                          f"pre-activation across 0): {counts}; their difference quotients are "
                          f"not derivatives, so comparisons of a numerical path with an "
                          f"analytic one exclude them"]
        if self.comparisons:
            lines += ["", *(verdict.line() for verdict in self.verdicts())]
        return "\n".join(lines)


def _check_steps_move(net: TwoLayerNet, h: float) -> None:
    """Refuse a step that some parameter cannot take: where p + h rounds back to p in the net's
    dtype, the difference quotient is 0 whatever the gradient, and no comparison means much."""
    for name in PARAM_NAMES:
        param = net.params[name]
        step = param.dtype.type(h)
        if np.any(param + step == param) or np.any(param - step == param):
            largest = np.abs(param).max()
            raise ConfigError(f"--h {h:g} is too small for {name} in {net.dtype.name}: next to "
                              f"its entries (up to {largest:.2g}) a step of {h:g} rounds to "
                              f"nothing; choose a step above {np.spacing(largest):.1g}")


def compare(a: str, b: str, param: str, ga: np.ndarray, gb: np.ndarray, tolerance: float,
            exclude: np.ndarray | None = None) -> Comparison:
    """rel_error and max_abs_diff of ``ga`` and ``gb`` over the entries ``exclude`` leaves in,
    held to ``tolerance``."""
    keep = slice(None) if exclude is None else ~exclude
    ga = np.asarray(ga, dtype=np.float64)[keep]
    gb = np.asarray(gb, dtype=np.float64)[keep]
    max_abs_diff = float(np.max(np.abs(ga - gb))) if ga.size else 0.0
    excluded = 0 if exclude is None else int(np.count_nonzero(exclude))
    return Comparison(a, b, param, relative_error(ga, gb), max_abs_diff, tolerance, excluded)


def run_gradcheck(x: np.ndarray, t: np.ndarray, *, hidden: int = 50, output_size: int = 10,
                  dtype: str = "float64", seed: int | np.random.Generator | None = 0,
                  methods: Sequence[str] | None = None, activation: str = "sigmoid",
                  order: int = 2, h: float | None = None,
                  config: Mapping[str, Any] | None = None) -> GradcheckResult:
    """Build a fresh net (the book's init, from ``seed``, with ``activation``) for the batch
    ``x``, ``t`` (class indices) and compare its gradients by each of ``methods`` (default: every
    available path). The numerical paths use the stencil of ``order`` (2 or 4) with step ``h``
    (default: ``STEPS[order]``).

    ``config`` adds to (or overrides) the description of the run in the result."""
    methods = tuple(methods) if methods is not None else default_methods(order)
    check_methods(methods, order)
    if activation not in ACTIVATIONS:
        raise ConfigError(f"unknown activation {activation!r}; "
                          f"choose one of {', '.join(ACTIVATIONS)}")
    h = STEPS[order] if h is None else h
    if not (isinstance(h, (int, float)) and 0 < h < float("inf")):
        raise ConfigError(f"the step h must be a positive number, not {h!r}")
    if "numerical_nditer" in methods and np.dtype(dtype) == np.float32:
        raise ConfigError("numerical_nditer in float32 rounds each loss (~2.3) to ~1e-7, which "
                          "over 2h is as large as the gradient entries; use --dtype float64 "
                          "(numerical_vectorized computes its differences in float64 in either)")
    if "torch" in methods:
        importlib.import_module("torch")  # a second or two, not part of the torch path's time
    net = TwoLayerNet(x.shape[1], hidden, output_size, dtype=dtype, seed=seed,
                      activation=activation)
    x = np.asarray(x, dtype=net.dtype)
    if any(map(is_numerical, methods)):
        _check_steps_move(net, h)
    timings: dict[str, float] = {}
    gradients: dict[str, Gradients] = {}
    for method in methods:
        logger.info("computing gradients by %s", method)
        gradients[method], timings[method] = _timed(
            lambda m=method: compute_gradients(net, x, t, m, order=order, h=h))
    kinks: dict[str, np.ndarray] = {}
    if activation == "relu" and any(map(is_numerical, methods)):
        # the same steps as the numerical paths; not timed
        kinks = two_layer_numerical_gradient(net.params, x, net._labels(t, len(x)), h,
                                             activation=activation, order=order).kinks
    described = {
        "batch": x.shape[0], "hidden": hidden, "input_size": net.input_size,
        "output_size": net.output_size, "dtype": net.dtype.name,
        "seed": seed if isinstance(seed, int) else None, "activation": activation,
        "init": "normal", "weight_init_std": 0.01, "order": order, "h": h,
        "methods": list(methods), "loss": float(net.loss(x, t)),
    }
    # the caller's keys first and winning, then the rest
    full_config = {**(config or {}), **described, **(config or {})}
    pairs = comparison_pairs(methods)
    mixed = [(a, b) for a, b in pairs if is_numerical(a) != is_numerical(b)]
    tolerances = numerical_tolerances(net, x, net._labels(t, len(x)), gradients, mixed,
                                      full_config, kinks) if mixed else {}
    comparisons = [
        compare(a, b, name, gradients[a][name], gradients[b][name],
                tolerances[(a, b, name)] if (a, b) in mixed else pair_tolerance(a, b, full_config),
                kinks.get(name) if (a, b) in mixed else None)
        for a, b in pairs for name in PARAM_NAMES
    ]
    return GradcheckResult(full_config, timings, comparisons, gradients, kinks)


def gradcheck_mnist(*, batch: int = 100, hidden: int = 50, dtype: str = "float64", seed: int = 0,
                    methods: Sequence[str] | None = None, activation: str = "sigmoid",
                    order: int = 2, h: float | None = None, dataset: str = "mnist",
                    data_dir: str | os.PathLike[str] | None = None) -> GradcheckResult:
    """:func:`run_gradcheck` on ``batch`` training images drawn without replacement by ``seed``.

    The images are loaded as float32 in [0, 1] and converted to ``dtype`` (exactly, for
    float64); the same seed then initializes the net.
    """
    from .datasets import load_mnist

    if batch < 1:
        raise ConfigError(f"batch must be at least 1, not {batch}")
    (x_train, t_train), _ = load_mnist(dataset=dataset, data_dir=data_dir)
    if batch > len(x_train):
        raise ConfigError(f"batch {batch} is larger than the {len(x_train)} training images "
                          f"of {dataset}")
    rng = np.random.default_rng(seed)
    index = np.sort(rng.choice(len(x_train), size=batch, replace=False))
    return run_gradcheck(x_train[index], t_train[index], hidden=hidden,
                         output_size=int(t_train.max()) + 1, dtype=dtype, seed=rng,
                         methods=methods, activation=activation, order=order, h=h,
                         config={"dataset": dataset, "split": "train", "seed": seed})
