"""Low-rank stage: SVD-factorize large kernels into two thinner layers, then fine-tune.

W (in x out) ~= U_r sqrt(S_r) . sqrt(S_r) V_r, with r the given rank or the smallest keeping
`energy` of the squared singular values. Functional / Sequential models (either world) are rebuilt
with `clone_model`, a Dense becoming Dense(r, no bias) -> Dense(out) and a 1x1 Conv becoming two
1x1 Convs. Inside subclassed Keras 3 layers (keras-hub transformer blocks) a Dense or EinsumDense
attribute is swapped for a `LowRank` layer computing einsum(eq, x @ U, V) + b.
"""

from __future__ import annotations

import functools
from typing import Any

import numpy as np

from tfopt import keras_worlds
from tfopt.optimization.context import Context, StageError, World, matches
from tfopt.recipes import LowRankStage


def choose_rank(s: np.ndarray, stage: LowRankStage) -> int:
    if stage.rank is not None:
        return min(stage.rank, len(s))
    if stage.rank_fraction is not None:
        return max(1, int(round(stage.rank_fraction * len(s))))
    energy = np.cumsum(s**2) / np.sum(s**2)
    assert stage.energy is not None
    return int(np.searchsorted(energy, stage.energy - 1e-9) + 1)


def factor(w2d: np.ndarray, stage: LowRankStage) -> tuple[np.ndarray, np.ndarray] | None:
    """(U, V) with U @ V ~= w2d, or None when the factorization would not save enough."""
    n_in, n_out = w2d.shape
    if min(n_in, n_out) < stage.min_dim:
        return None
    u, s, vt = np.linalg.svd(w2d.astype(np.float64), full_matrices=False)
    r = choose_rank(s, stage)
    if r * (n_in + n_out) > (1 - stage.min_saving) * n_in * n_out:
        return None
    root = np.sqrt(s[:r])
    return (u[:, :r] * root).astype(np.float32), (root[:, None] * vt[:r]).astype(np.float32)


def _is_1x1(layer: Any) -> bool:
    return (
        type(layer).__name__ == "Conv2D"
        and tuple(layer.kernel_size) == (1, 1)
        and tuple(layer.strides) == (1, 1)
        and tuple(getattr(layer, "dilation_rate", (1, 1))) == (1, 1)
        and getattr(layer, "groups", 1) == 1
    )


def _clone_factorized(ctx: Context, stage: LowRankStage) -> tuple[Any, list[dict[str, Any]]]:
    keras = keras_worlds.module(ctx.world)
    done: list[dict[str, Any]] = []
    pending: list[tuple[Any, Any, np.ndarray, np.ndarray, Any]] = []

    def clone(layer: Any) -> Any:
        kind = type(layer).__name__
        if (
            kind not in ("Dense", "Conv2D")
            or (kind == "Conv2D" and not _is_1x1(layer))
            or matches(stage.skip, layer.name)
        ):
            return layer
        w = np.asarray(layer.kernel.numpy())
        uv = factor(w.reshape(-1, w.shape[-1]), stage)
        if uv is None:
            return layer
        u, v = uv
        r = u.shape[1]
        bias = layer.bias.numpy() if layer.use_bias else None
        if kind == "Dense":
            a = keras.layers.Dense(r, use_bias=False, name=f"{layer.name}_lr_u")
            b = keras.layers.Dense(
                layer.units,
                activation=layer.activation,
                use_bias=layer.use_bias,
                name=f"{layer.name}_lr_v",
            )
        else:
            a = keras.layers.Conv2D(r, 1, use_bias=False, name=f"{layer.name}_lr_u")
            b = keras.layers.Conv2D(
                layer.filters,
                1,
                activation=layer.activation,
                use_bias=layer.use_bias,
                name=f"{layer.name}_lr_v",
            )
            u, v = u.reshape(1, 1, *u.shape), v.reshape(1, 1, *v.shape)
        pending.append((a, b, u, v, bias))
        done.append(
            {
                "layer": layer.name,
                "shape": list(w.shape),
                "rank": r,
                "params_before": int(w.size),
                "params_after": int(u.size + v.size),
            }
        )
        return keras.Sequential([a, b], name=f"{layer.name}_lowrank")

    model = keras.models.clone_model(ctx.model, clone_function=clone)
    for a, b, u, v, bias in pending:
        a.set_weights([u])
        b.set_weights([v] if bias is None else [v, bias])
    return model, done


@functools.cache
def _lowrank_layer_class() -> type:
    keras = keras_worlds.module(World.KERAS3)

    class LowRank(keras.layers.Layer):  # type: ignore[name-defined]
        """act(einsum(equation, x @ U, V) + bias): a factorized Dense / EinsumDense."""

        def __init__(
            self, u: Any, v: Any, equation: str, bias: Any, activation: Any, **kwargs: Any
        ) -> None:
            super().__init__(**kwargs)
            self.equation, self.activation = equation, keras.activations.get(activation)
            self.u = self.add_weight(
                shape=u.shape, initializer=keras.initializers.Constant(u), name="u"
            )
            self.v = self.add_weight(
                shape=v.shape, initializer=keras.initializers.Constant(v), name="v"
            )
            self.b = (
                None
                if bias is None
                else self.add_weight(
                    shape=bias.shape, initializer=keras.initializers.Constant(bias), name="bias"
                )
            )
            self.built = True

        def call(self, x: Any) -> Any:
            h = keras.ops.matmul(x, self.u)
            y = (
                keras.ops.einsum(self.equation, h, self.v)
                if self.equation
                else keras.ops.matmul(h, self.v)
            )
            return self.activation(y if self.b is None else y + self.b)

    return LowRank


def _einsum_ok(layer: Any) -> bool:
    lhs, _, out = layer.equation.partition("->")
    x_spec, k_spec = lhs.split(",")
    contracted = set(k_spec) - set(out)
    return contracted == {x_spec[-1]} and k_spec[0] == x_spec[-1]


def _swap_nested(ctx: Context, stage: LowRankStage) -> list[dict[str, Any]]:
    keras = keras_worlds.module(World.KERAS3)
    LowRank = _lowrank_layer_class()  # noqa: N806
    done = []
    for parent in ctx.model._flatten_layers(include_self=True):  # noqa: SLF001 - Keras 3 API
        if any(c.__name__ in ("Functional", "Sequential") for c in type(parent).__mro__):
            continue  # a graph model calls its nodes, not its attributes
        for attr, layer in list(vars(parent).items()):
            kind = type(layer).__name__
            if (
                kind not in ("Dense", "EinsumDense")
                or not layer.built
                or matches(stage.skip, layer.kernel.path)
            ):
                continue
            if kind == "EinsumDense" and not _einsum_ok(layer):
                continue
            w = np.asarray(layer.kernel.numpy())
            uv = factor(w.reshape(w.shape[0], -1), stage)
            if uv is None:
                continue
            u, v = uv
            bias = None if layer.bias is None else np.asarray(layer.bias.numpy())
            equation = layer.equation if kind == "EinsumDense" else ""
            new = LowRank(
                u,
                v.reshape(-1, *w.shape[1:]) if equation else v,
                equation,
                bias,
                keras.activations.serialize(layer.activation),
                name=f"{layer.name}_lowrank",
            )
            tracker = parent._tracker  # noqa: SLF001 - Keras 3 locks state once a layer is built
            locked, message = tracker.locked, tracker._lock_violation_msg  # noqa: SLF001
            tracker.unlock()
            tracker.untrack(layer)  # drop the old kernel from the model's weights
            setattr(parent, attr, new)
            if locked:
                tracker.lock(message)
            done.append(
                {
                    "layer": str(layer.kernel.path).removesuffix("/kernel"),
                    "shape": list(w.shape),
                    "rank": int(u.shape[1]),
                    "params_before": int(w.size),
                    "params_after": int(u.size + v.size),
                }
            )
    return done


def lowrank(ctx: Context, stage: LowRankStage) -> dict[str, Any]:
    functional = type(ctx.model).__name__ in ("Functional", "Sequential")
    if functional:
        model, done = _clone_factorized(ctx, stage)
    elif ctx.world is World.KERAS3:
        model, done = ctx.model, _swap_nested(ctx, stage)
    else:
        raise StageError(
            f"lowrank: cannot rebuild a subclassed tf_keras model ({type(ctx.model).__name__})"
        )
    if not done:
        raise StageError(
            "lowrank: no Dense, EinsumDense or 1x1 Conv kernel would shrink (lower rank/energy?)"
        )
    ctx.model = model
    ctx.fine_tune(model, stage, "lowrank")
    return {"factorized": done}
