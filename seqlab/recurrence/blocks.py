"""The pre-norm residual block linear recurrences and attention are used in (LRU, Griffin,
minGRU papers; with attention as ``rec`` and the MLP, a pre-norm Transformer block):

    y = x + out(rec(norm(x)))            out: a linear map, or a GLU (a * sigmoid(g))
    y = y + mlp(norm2(y))                optional: Linear(H, 4H) -> GELU -> Linear(4H, H)

selectable for every cell (``block="residual"``), the default for the linear ones
(``block="auto"``). The block keeps the width: a stack of them starts with an
``InputProjection`` of the inputs (token ids are rows of its kernel) to hidden_size. Padded
steps emit zeros, as a bare layer's do.
"""

from __future__ import annotations

from typing import Any

import jax
import jax.numpy as jnp
from flax import nnx

from seqlab.cells.base import Array, Carry, Cell, fan_in_rescale
from seqlab.recurrence.scan import length_mask

BLOCKS = ("auto", "none", "residual", "mamba")  # mamba: recurrence.mamba_block
BLOCK_OUTS = ("linear", "glu")


class InputProjection(nnx.Module):
    """x (..., F) or token ids (...) -> (..., H): one linear map (ids select kernel rows)."""

    def __init__(self, in_features: int, hidden: int, *, param_dtype: Any, rngs: nnx.Rngs):
        self.in_features = in_features
        self.linear = nnx.Linear(in_features, hidden, param_dtype=param_dtype, rngs=rngs)

    def rescale_input_fan_in(self, fan_in: int) -> None:
        """LeCun's scale for ``fan_in`` active inputs (see ``Cell.rescale_input_fan_in``)."""
        scale = fan_in_rescale(self.in_features, fan_in)
        self.linear.kernel[...] = self.linear.kernel[...] * scale

    def __call__(self, x: Array) -> Array:
        if jnp.issubdtype(x.dtype, jnp.integer):
            w, b = self.linear.kernel[...], self.linear.bias[...]
            valid = ((x >= 0) & (x < self.in_features))[..., None]
            rows = jnp.take(w, jnp.clip(x, 0, self.in_features - 1), axis=0)
            return jnp.where(valid, rows, 0) + b
        return self.linear(x)


def layer_provides(layer: Any) -> frozenset[str]:
    """What a built layer's mixer offers (``seqlab.cells`` doc): a layer mixer's or a block's
    own ``PROVIDES``, a recurrent layer's cell's (a bidirectional pair: its forward one's)."""
    layer = getattr(layer, "forward", layer)
    own = getattr(layer, "PROVIDES", None)
    return frozenset(own if own is not None else layer.cell.PROVIDES)


class ResidualBlock(nnx.Module):
    """norm -> recurrent layer -> output map -> residual (+ optional MLP sub-block)."""

    def __init__(self, layer: Any, *, out: str, mlp: bool, param_dtype: Any, rngs: nnx.Rngs):
        if out not in BLOCK_OUTS:
            raise ValueError(f"unknown block output {out!r}; choose one of {BLOCK_OUTS}")
        h = layer.output_size
        kw = {"param_dtype": param_dtype, "rngs": rngs}
        mlp = mlp or getattr(layer, "BLOCK_MLP", False)  # a Transformer block has its MLP
        self.layer = layer
        self.norm = nnx.LayerNorm(h, **kw)
        self.out_kind = out
        self.out = nnx.Linear(h, 2 * h if out == "glu" else h, **kw)
        self.mlp = (
            nnx.Sequential(nnx.Linear(h, 4 * h, **kw), jax.nn.gelu, nnx.Linear(4 * h, h, **kw))
            if mlp
            else None
        )
        self.norm2 = nnx.LayerNorm(h, **kw) if mlp else None

    @property
    def cell(self) -> Cell:
        return self.layer.cell

    @property
    def PROVIDES(self) -> frozenset[str]:  # noqa: N802 (the registry's attribute name)
        return layer_provides(self.layer)

    @property
    def output_size(self) -> int:
        return self.layer.output_size

    def initial_carry(self, batch_size: int) -> Carry:
        return self.layer.initial_carry(batch_size)

    def _mix(self, x: Array, r: Array) -> Array:
        o = self.out(r)
        if self.out_kind == "glu":
            a, g = jnp.split(o, 2, axis=-1)
            o = a * jax.nn.sigmoid(g)
        y = x + o
        return y + self.mlp(self.norm2(y)) if self.mlp is not None else y

    def __call__(
        self,
        x: Array,
        *,
        lengths: Array | None = None,
        initial_carry: Carry | None = None,
        h_perturb: Array | None = None,
    ) -> tuple[Array, Carry]:
        r, carry = self.layer(
            self.norm(x), lengths=lengths, initial_carry=initial_carry, h_perturb=h_perturb
        )
        y = self._mix(x, r)
        if lengths is not None:
            y = jnp.where(length_mask(lengths, y.shape[1])[..., None], y, 0)
        return y, carry

    def step(self, carry: Carry, x: Array) -> tuple[Carry, Array]:
        carry, r = self.layer.step(carry, self.norm(x))
        return carry, self._mix(x, r)
