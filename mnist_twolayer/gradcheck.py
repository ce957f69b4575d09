"""Gradient check: compute one batch's gradients by several independent paths and compare them.

Paths: ``backprop`` (the layers), ``autograd`` (the define-by-run engine), ``numerical_nditer``
(the book's loop: two forward passes per parameter), ``numerical_vectorized`` (the same central
differences at once) and, when PyTorch is installed, ``torch`` (torch.autograd in float64, an
outside reference). Shared by ``python -m mnist_twolayer gradcheck`` and
``scripts/compare_gradients.py``.
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

from .errors import ConfigError
from .network import NUMERICAL_METHODS, PARAM_NAMES, TwoLayerNet

logger = logging.getLogger(__name__)

METHODS = ("backprop", "autograd", *(f"numerical_{m}" for m in NUMERICAL_METHODS), "torch")
"""The network's own paths (its numerical ones by name), then PyTorch's as an outside check."""
H = 1e-4  # the finite-difference step of both numerical paths

Gradients = dict[str, np.ndarray]


def torch_available() -> bool:
    """Whether PyTorch can be imported (checked without importing it: that takes a second)."""
    return importlib.util.find_spec("torch") is not None


def default_methods() -> tuple[str, ...]:
    return METHODS if torch_available() else METHODS[:-1]


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


def torch_gradient(params: Mapping[str, np.ndarray], x: np.ndarray, t: np.ndarray) -> Gradients:
    """The net's gradient by torch.autograd in float64, whatever the parameters' dtype."""
    import torch

    p = {k: torch.tensor(np.asarray(v, dtype=np.float64), requires_grad=True)
         for k, v in params.items()}
    xt = torch.from_numpy(np.asarray(x, dtype=np.float64))
    tt = torch.from_numpy(np.asarray(t, dtype=np.int64))
    logits = torch.sigmoid(xt @ p["W1"] + p["b1"]) @ p["W2"] + p["b2"]
    torch.nn.functional.cross_entropy(logits, tt).backward()
    return {k: p[k].grad.numpy() for k in PARAM_NAMES}


def check_methods(methods: Sequence[str]) -> None:
    """Refuse unknown paths, and torch without PyTorch, before any work starts."""
    unknown = [name for name in methods if name not in METHODS]
    if unknown:
        raise ConfigError(f"unknown gradient method {', '.join(map(repr, unknown))}; "
                          f"choose from {', '.join(METHODS)}")
    if "torch" in methods and not torch_available():
        raise ConfigError("the torch path needs PyTorch: pip install 'mnist_twolayer[torch]' "
                          "or leave torch out of the methods")


def compute_gradients(net: TwoLayerNet, x: np.ndarray, t: np.ndarray, method: str) -> Gradients:
    """The gradient of ``net.loss(x, t)`` by one of :data:`METHODS`, in arrays the caller owns."""
    check_methods([method])
    if method == "torch":
        return torch_gradient(net.params, x, net._labels(t, len(x)))
    if method.startswith("numerical_"):
        return net.numerical_gradient(x, t, method.removeprefix("numerical_"), h=H)
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


@dataclass
class Comparison:
    a: str
    b: str
    param: str
    rel_error: float
    max_abs_diff: float


@dataclass
class GradcheckResult:
    """What a gradient check found; :meth:`to_dict` is the CLI's ``--json`` object."""

    config: dict[str, Any]
    timings: dict[str, float]
    comparisons: list[Comparison]
    gradients: dict[str, Gradients] = field(repr=False)

    def to_dict(self) -> dict[str, Any]:
        return {"config": self.config, "timings": self.timings,
                "comparisons": [vars(c) for c in self.comparisons]}

    def find(self, a: str, b: str, param: str) -> Comparison:
        """The comparison of ``a`` and ``b`` (in either order) for one parameter."""
        for c in self.comparisons:
            if c.param == param and {c.a, c.b} == {a, b}:
                return c
        raise KeyError((a, b, param))

    def table(self) -> str:
        """A plain-text report: the configuration, seconds per path, and every comparison."""
        cfg = self.config
        source = "".join(f"{cfg[key]} " for key in ("dataset", "split") if key in cfg)
        lines = [f"gradcheck on {cfg['batch']} {source}images, "
                 f"net {cfg['input_size']}-{cfg['hidden']}-{cfg['output_size']}, "
                 f"{cfg['dtype']}, seed {cfg['seed']}", "", f"{'path':<22}{'seconds':>12}"]
        lines += [f"{name:<22}{seconds:>12.6f}" for name, seconds in self.timings.items()]
        if "numerical_nditer" in self.timings and "numerical_vectorized" in self.timings:
            speedup = self.timings["numerical_nditer"] / self.timings["numerical_vectorized"]
            lines.append(f"vectorized is {speedup:.0f}x faster than nditer")
        if self.comparisons:
            lines += ["", f"{'a':<22}{'b':<22}{'param':<7}{'rel_error':>12}{'max_abs_diff':>14}"]
            lines += [f"{c.a:<22}{c.b:<22}{c.param:<7}{c.rel_error:>12.3e}{c.max_abs_diff:>14.3e}"
                      for c in self.comparisons]
        return "\n".join(lines)


def run_gradcheck(x: np.ndarray, t: np.ndarray, *, hidden: int = 50, output_size: int = 10,
                  dtype: str = "float64", seed: int | np.random.Generator | None = 0,
                  methods: Sequence[str] | None = None,
                  config: Mapping[str, Any] | None = None) -> GradcheckResult:
    """Build a fresh net (the book's init, from ``seed``) for the batch ``x``, ``t`` (class
    indices) and compare its gradients by each of ``methods`` (default: every available path).

    ``config`` adds to (or overrides) the description of the run in the result."""
    methods = tuple(methods) if methods is not None else default_methods()
    check_methods(methods)
    if "torch" in methods:
        importlib.import_module("torch")  # a second or two, not part of the torch path's time
    net = TwoLayerNet(x.shape[1], hidden, output_size, dtype=dtype, seed=seed)
    x = np.asarray(x, dtype=net.dtype)
    timings: dict[str, float] = {}
    gradients: dict[str, Gradients] = {}
    for method in methods:
        logger.info("computing gradients by %s", method)
        gradients[method], timings[method] = _timed(
            lambda m=method: compute_gradients(net, x, t, m))
    comparisons = [
        Comparison(a, b, name, relative_error(gradients[a][name], gradients[b][name]),
                   float(np.max(np.abs(gradients[a][name].astype(np.float64)
                                       - gradients[b][name].astype(np.float64)))))
        for a, b in comparison_pairs(methods) for name in PARAM_NAMES
    ]
    described = {
        "batch": x.shape[0], "hidden": hidden, "input_size": net.input_size,
        "output_size": net.output_size, "dtype": net.dtype.name,
        "seed": seed if isinstance(seed, int) else None,
        "init": "normal", "weight_init_std": 0.01, "h": H, "methods": list(methods),
    }
    # the caller's keys first and winning, then the rest
    full_config = {**(config or {}), **described, **(config or {})}
    return GradcheckResult(full_config, timings, comparisons, gradients)


def gradcheck_mnist(*, batch: int = 100, hidden: int = 50, dtype: str = "float64", seed: int = 0,
                    methods: Sequence[str] | None = None, dataset: str = "mnist",
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
                         methods=methods, config={"dataset": dataset, "split": "train",
                                                  "seed": seed})
