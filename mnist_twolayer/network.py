"""TwoLayerNet: the book's ch. 4-5 network (Affine - Sigmoid or Relu - Affine - Softmax) with
four ways to its gradient that must agree: backprop (the default), autograd, and two numerical
ones.

All arithmetic happens in the net's ``dtype``; inputs of another dtype are converted once at the
door, so float32 training never upcasts. Targets ``t`` are class indices (any integer dtype, e.g.
the uint8 labels of load_mnist) or one-hot rows.
"""

from __future__ import annotations

import json
import logging
import os
from collections import OrderedDict
from pathlib import Path
from typing import Any

import numpy as np

from . import autograd as ag
from .errors import CheckpointError, ConfigError, check_choice
from .fileio import read_npz, save_npz_atomic
from .functions import check_class_indices, log_softmax, relu, sigmoid, softmax
from .gradient import ACTIVATIONS, ORDERS, numerical_gradient, two_layer_numerical_gradient
from .layers import Affine, Relu, Sigmoid, SoftmaxWithLoss

logger = logging.getLogger(__name__)

PARAM_NAMES = ("W1", "b1", "W2", "b2")
INITS = ("normal", "xavier", "he")
GRADIENT_METHODS = ("backprop", "autograd", "numerical")
NUMERICAL_METHODS = ("nditer", "vectorized")
# Version 2 files record a ReLU net; a sigmoid net is still written as version 1 (its meaning
# has not changed), so that older readers refuse a ReLU model instead of running it as sigmoid.
FORMAT_VERSION = 2
_DTYPES = {"float32": np.float32, "float64": np.float64}
DTYPES = tuple(_DTYPES)


def _positive_int(name: str, value: Any) -> int:
    if isinstance(value, bool) or not isinstance(value, (int, np.integer)) or value <= 0:
        raise ConfigError(f"{name} must be a positive integer, not {value!r}")
    return int(value)


def net_dtype(dtype: Any) -> np.dtype:
    """``dtype`` as a NumPy dtype the net computes in (float32 or float64), else ConfigError."""
    try:
        resolved = np.dtype(dtype)
    except TypeError:
        resolved = None
    if resolved is None or resolved.name not in _DTYPES:
        name = resolved.name if resolved is not None else repr(dtype)
        raise ConfigError(f"dtype must be float32 or float64, not {name}")
    return resolved


def check_net_settings(hidden_size: Any, init: str, dtype: Any,
                       activation: str = "sigmoid") -> None:
    """Refuse what TwoLayerNet cannot be built with; TrainConfig checks a run's settings here
    before any data loads."""
    _positive_int("hidden_size", hidden_size)
    check_choice("init", init, INITS)
    net_dtype(dtype)
    check_choice("activation", activation, ACTIVATIONS)


class TwoLayerNet:
    """input -> Affine1 -> Sigmoid1 (or Relu1) -> Affine2 -> softmax, with cross-entropy loss.

    ``activation`` is "sigmoid" (the book's ch. 4 net, the default) or "relu" (its ch. 5 net).
    ``init`` chooses the weight scale: "normal" is the book's ``weight_init_std * randn``,
    "xavier" uses std 1/sqrt(fan_in) and "he" sqrt(2/fan_in) (``weight_init_std`` is then
    unused); biases start at zero. ``seed`` (None, an int or a ``np.random.Generator``) makes
    the initial weights reproducible; the same seed gives the same weights in either dtype.
    """

    def __init__(self, input_size: int, hidden_size: int, output_size: int,
                 weight_init_std: float = 0.01, *, init: str = "normal",
                 dtype: np.dtype | type | str = np.float64,
                 seed: int | np.random.Generator | None = None,
                 activation: str = "sigmoid") -> None:
        self.input_size = _positive_int("input_size", input_size)
        self.hidden_size = _positive_int("hidden_size", hidden_size)
        self.output_size = _positive_int("output_size", output_size)
        self.dtype = net_dtype(dtype)
        check_choice("init", init, INITS)
        check_choice("activation", activation, ACTIVATIONS)
        self.activation = activation
        rng = np.random.default_rng(seed)

        def weights(fan_in: int, fan_out: int) -> np.ndarray:
            std = {"normal": weight_init_std, "xavier": 1 / np.sqrt(fan_in),
                   "he": np.sqrt(2 / fan_in)}[init]
            return (std * rng.standard_normal((fan_in, fan_out))).astype(self.dtype)

        self.params: dict[str, np.ndarray] = {
            "W1": weights(self.input_size, self.hidden_size),
            "b1": np.zeros(self.hidden_size, dtype=self.dtype),
            "W2": weights(self.hidden_size, self.output_size),
            "b2": np.zeros(self.output_size, dtype=self.dtype),
        }
        self.metadata: dict[str, Any] = {}

        # the book's layer stack, used by the backprop path; the first Affine's input is the
        # data, whose gradient nobody needs
        self.layers: OrderedDict[str, Any] = OrderedDict()
        self.layers["Affine1"] = Affine(self.params["W1"], self.params["b1"], input_grad=False)
        if activation == "relu":
            self.layers["Relu1"] = Relu()
        else:
            self.layers["Sigmoid1"] = Sigmoid()
        self.layers["Affine2"] = Affine(self.params["W2"], self.params["b2"])
        self.last_layer = SoftmaxWithLoss()

    def __repr__(self) -> str:
        return (f"TwoLayerNet({self.input_size}, {self.hidden_size}, {self.output_size}, "
                f"activation={self.activation!r}, dtype={self.dtype.name})")

    # --- inputs ---

    def _input(self, x: np.ndarray) -> np.ndarray:
        """x as a (N, input_size) array of the net's dtype (a copy only if the dtype differs)."""
        x = np.asarray(x, dtype=self.dtype)
        if x.ndim != 2 or x.shape[1] != self.input_size:
            raise ValueError(f"expected inputs of shape (N, {self.input_size}), got {x.shape}")
        return x

    def _labels(self, t: np.ndarray, n: int) -> np.ndarray:
        """Class indices for n samples from indices or one-hot rows."""
        t = np.asarray(t)
        if t.ndim == 2 and t.shape[1] == self.output_size:
            t = t.argmax(axis=1)
        if t.shape != (n,):
            raise ValueError(f"expected {n} targets, got shape {t.shape}")
        check_class_indices(t, self.output_size)
        return t

    # --- forward ---

    def _scores(self, x: np.ndarray) -> np.ndarray:
        """Logits of a batch x (already checked), in fresh arrays."""
        p = self.params
        h = x @ p["W1"]
        h += p["b1"]
        (relu if self.activation == "relu" else sigmoid)(h, out=h)
        a = h @ p["W2"]
        a += p["b2"]
        return a

    def predict(self, x: np.ndarray) -> np.ndarray:
        """Class probabilities, one row per sample of x (N, input_size)."""
        return softmax(self._scores(self._input(x)))

    def loss(self, x: np.ndarray, t: np.ndarray) -> float:
        """Mean cross-entropy of the predictions against t, exact from the logits."""
        x = self._input(x)
        t = self._labels(t, x.shape[0])
        logp = log_softmax(self._scores(x))
        return float(-logp[np.arange(x.shape[0]), t].sum() / x.shape[0])

    def accuracy(self, x: np.ndarray, t: np.ndarray) -> float:
        """Fraction of samples whose most probable class is t."""
        x = self._input(x)
        t = self._labels(t, x.shape[0])
        return float(np.mean(self._scores(x).argmax(axis=1) == t))

    def evaluate(self, x: np.ndarray, t: np.ndarray, batch_size: int = 10000
                 ) -> tuple[float, float]:
        """Mean loss and accuracy over a whole data set, in chunks of ``batch_size`` samples.

        One forward pass gives both; chunks bound the memory of the hidden activations.
        """
        batch_size = _positive_int("batch_size", batch_size)
        x = np.asarray(x)
        t = np.asarray(t)
        n = x.shape[0]
        if n == 0:
            raise ValueError("cannot evaluate on an empty data set")
        total_loss = 0.0
        correct = 0
        for start in range(0, n, batch_size):
            xb = self._input(x[start:start + batch_size])
            tb = self._labels(t[start:start + batch_size], xb.shape[0])
            logp = log_softmax(self._scores(xb))
            total_loss -= float(logp[np.arange(xb.shape[0]), tb].sum())
            correct += int(np.count_nonzero(logp.argmax(axis=1) == tb))
        return total_loss / n, correct / n

    # --- gradients ---

    def _backprop(self, x: np.ndarray, t: np.ndarray) -> tuple[float, dict[str, np.ndarray]]:
        layers = self.layers
        # params may have been replaced (not updated in place) since the last call
        layers["Affine1"].W, layers["Affine1"].b = self.params["W1"], self.params["b1"]
        layers["Affine2"].W, layers["Affine2"].b = self.params["W2"], self.params["b2"]
        out = x
        for layer in layers.values():
            out = layer.forward(out)
        loss = self.last_layer.forward(out, t)
        dout = self.last_layer.backward()
        for layer in reversed(layers.values()):
            dout = layer.backward(dout)
        a1, a2 = layers["Affine1"], layers["Affine2"]
        return loss, {"W1": a1.dW, "b1": a1.db, "W2": a2.dW, "b2": a2.db}

    def _autograd(self, x: np.ndarray, t: np.ndarray) -> tuple[float, dict[str, np.ndarray]]:
        v = {name: ag.Variable(value, name) for name, value in self.params.items()}
        act = ag.relu if self.activation == "relu" else ag.sigmoid
        hidden = act(ag.matmul(x, v["W1"]) + v["b1"])
        loss = ag.softmax_cross_entropy(ag.matmul(hidden, v["W2"]) + v["b2"], t)
        loss.backward()
        return float(loss.data), {name: v[name].grad for name in PARAM_NAMES}

    def loss_and_gradient(self, x: np.ndarray, t: np.ndarray, method: str = "backprop"
                          ) -> tuple[float, dict[str, np.ndarray]]:
        """The loss of the batch and its gradient with respect to each parameter, from one
        forward pass: ``method`` is "backprop", "autograd" or "numerical" (vectorized central
        differences, :meth:`numerical_gradient`).

        For speed, the backprop arrays are the layers' own buffers (``layers["Affine1"].dW``
        and so on, as in the book): the next backprop call overwrites them. Use or copy them
        before calling again; :meth:`gradient` returns copies.
        """
        x = self._input(x)
        t = self._labels(t, x.shape[0])
        if method == "backprop":
            return self._backprop(x, t)
        if method == "autograd":
            return self._autograd(x, t)
        check_choice("gradient method", method, GRADIENT_METHODS)
        result = two_layer_numerical_gradient(self.params, x, t, activation=self.activation)
        return result.loss, result.grads

    def gradient(self, x: np.ndarray, t: np.ndarray, method: str = "backprop"
                 ) -> dict[str, np.ndarray]:
        """Gradient of :meth:`loss` by ``method`` (see :meth:`loss_and_gradient`), as arrays the
        caller owns."""
        _, grads = self.loss_and_gradient(x, t, method)
        if method == "backprop":
            grads = {name: g.copy() for name, g in grads.items()}
        return grads

    def numerical_gradient(self, x: np.ndarray, t: np.ndarray, method: str = "vectorized",
                           h: float = 1e-4, order: int = 2) -> dict[str, np.ndarray]:
        """Gradient of :meth:`loss` by central differences with step ``h``.

        "nditer" is the book's element-by-element loop (two full forward passes per parameter,
        ~20 s for 784-50-10 at batch 100); "vectorized" computes the same differences for all
        parameters at once from the net's structure (see :mod:`mnist_twolayer.gradient`).
        ``order`` 4 (vectorized only) uses the five-point stencil, truncation error O(h^4).
        With ReLU, entries whose steps cross the kink are not derivatives; see
        :func:`~mnist_twolayer.gradient.two_layer_numerical_gradient` for which they are.
        """
        check_choice("numerical method", method, NUMERICAL_METHODS)
        if order not in ORDERS:
            raise ConfigError(f"order must be one of {', '.join(map(str, ORDERS))}, "
                              f"not {order!r}")
        x = self._input(x)
        t = self._labels(t, x.shape[0])
        if method == "vectorized":
            return two_layer_numerical_gradient(self.params, x, t, h, activation=self.activation,
                                                order=order).grads
        if order != 2:
            raise ConfigError(f"the nditer loop is the book's central difference (order 2), "
                              f"not order {order}; use method='vectorized'")

        def loss_w(_: np.ndarray) -> float:
            return self.loss(x, t)

        return {name: numerical_gradient(loss_w, self.params[name], h) for name in PARAM_NAMES}

    # --- files ---

    def save(self, path: str | os.PathLike[str], metadata: dict[str, Any] | None = None) -> None:
        """Write the parameters, sizes, dtype, activation and JSON ``metadata`` to an ``.npz``
        atomically.

        ``metadata`` (default: :attr:`metadata`) must be JSON-serializable; no pickle is used.
        """
        meta = self.metadata if metadata is None else metadata
        arrays = {
            "format_version": np.array(FORMAT_VERSION if self.activation == "relu" else 1,
                                       dtype=np.int64),
            "sizes": np.array([self.input_size, self.hidden_size, self.output_size],
                              dtype=np.int64),
            "dtype": np.array(self.dtype.name),
            "activation": np.array(self.activation),
            "metadata": np.array(json.dumps(meta, allow_nan=False)),
            **self.params,
        }
        save_npz_atomic(path, arrays)
        logger.info("saved %r to %s", self, path)

    @classmethod
    def load(cls, path: str | os.PathLike[str]) -> TwoLayerNet:
        """Read a net written by :meth:`save`; any problem is a CheckpointError naming the file.

        The loaded metadata is in :attr:`metadata`. Files of format version 1 written before
        the activation was recorded hold a sigmoid net and load as one.
        """
        arrays = read_npz(path, "saved model")

        def fail(what: str) -> CheckpointError:
            return CheckpointError(f"{path}: {what}; not a model saved by TwoLayerNet.save "
                                   f"(or damaged)")

        required = ("format_version", "sizes", "dtype", "metadata", *PARAM_NAMES)
        missing = [key for key in required if key not in arrays]
        if missing:
            raise fail(f"missing {', '.join(missing)}")
        version = arrays["format_version"]
        if version.shape != () or not np.issubdtype(version.dtype, np.integer):
            raise fail(f"format_version is not an integer ({version.dtype}{version.shape})")
        if not 1 <= int(version) <= FORMAT_VERSION:
            raise CheckpointError(f"{path}: format version {int(version)} is not supported "
                                  f"(this version reads 1 to {FORMAT_VERSION})")
        sizes = arrays["sizes"]
        if (sizes.shape != (3,) or not np.issubdtype(sizes.dtype, np.integer)
                or (sizes <= 0).any()):
            raise fail(f"sizes must be 3 positive integers, got {sizes!r}")
        dtype_name = str(arrays["dtype"])
        if arrays["dtype"].shape != () or dtype_name not in _DTYPES:
            raise fail(f"dtype {dtype_name!r} is not float32 or float64")
        recorded = arrays.get("activation", np.array("sigmoid") if int(version) == 1 else None)
        if recorded is None:
            raise fail("missing activation")
        activation = str(recorded)
        if recorded.shape != () or activation not in ACTIVATIONS:
            raise fail(f"activation {activation!r} is not one of {', '.join(ACTIVATIONS)}")
        try:
            metadata = json.loads(str(arrays["metadata"]))
        except json.JSONDecodeError as exc:
            raise fail(f"metadata is not valid JSON ({exc})") from None
        if not isinstance(metadata, dict):
            raise fail("metadata is not a JSON object")

        d, h, o = (int(s) for s in sizes)
        expected = {"W1": (d, h), "b1": (h,), "W2": (h, o), "b2": (o,)}
        for name, shape in expected.items():
            value = arrays[name]
            if value.dtype != np.dtype(dtype_name):
                raise fail(f"{name} has dtype {value.dtype}, expected {dtype_name}")
            if value.shape != shape:
                raise fail(f"{name} has shape {value.shape}, expected {shape}")
            if not np.isfinite(value).all():
                raise CheckpointError(f"{path}: {name} contains NaN or infinite values; "
                                      f"the run that saved it had diverged")
        net = cls(d, h, o, dtype=dtype_name, seed=0, activation=activation)
        for name in PARAM_NAMES:
            net.params[name][...] = arrays[name]
        net.metadata = metadata
        return net


def find_model(model: Path | None, runs: Path = Path("runs")) -> Path:
    """The model file a user means: ``model`` itself, ``model/model.npz`` for a run folder, or
    with no ``model`` the newest ``runs/*/model.npz``."""
    if model is None:
        found = [path for path in runs.glob("*/model.npz") if path.is_file()]
        if not found:
            raise ConfigError(f"no model given and no {runs}/*/model.npz here; train first: "
                              f"python -m mnist_twolayer train")
        return max(found, key=lambda path: (path.stat().st_mtime, str(path)))
    if model.is_dir():
        if not (model / "model.npz").is_file():
            raise ConfigError(f"{model} holds no model.npz; give a model.npz or the folder of "
                              f"a finished run")
        return model / "model.npz"
    return model
