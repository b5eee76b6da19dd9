"""Mamba's block (Gu & Dao 2023, Figure 3) around a recurrent layer, pre-norm and residual:

    (x', z) = norm(x) W_in                   two H-wide branches (expansion 1: E = H)
    u = silu(causal_conv(x'))                depthwise, ``CONV_SIZE`` taps, with bias
    y = x + W_out (layer(u) * silu(z))

The layer is any width-preserving recurrence (``model.block=mamba``; the default for
``cell=mamba``, whose S6 it was made for). The carry is (the layer's carry, the last
CONV_SIZE - 1 inputs of the convolution), so chunks of a sequence chain exactly and decoding
steps one token at a time. Padded steps (``lengths``) emit zeros and do not enter the window.
"""

from __future__ import annotations

from typing import Any

import jax
import jax.numpy as jnp
from flax import nnx

from seqlab.cells.base import Array, Carry, Cell
from seqlab.recurrence.scan import length_mask

CONV_SIZE = 4  # the reference implementation's d_conv


class MambaBlock(nnx.Module):
    def __init__(self, layer: Any, *, param_dtype: Any, rngs: nnx.Rngs):
        h = layer.output_size
        kw = {"param_dtype": param_dtype, "rngs": rngs}
        self.layer = layer
        self.norm = nnx.LayerNorm(h, **kw)
        self.in_proj = nnx.Linear(h, 2 * h, **kw)
        bound = CONV_SIZE**-0.5  # PyTorch's Conv1d default (fan-in = taps, depthwise)
        k1, k2 = jax.random.split(rngs.params())
        self.conv_w = nnx.Param(jax.random.uniform(k1, (CONV_SIZE, h), param_dtype, -bound, bound))
        self.conv_b = nnx.Param(jax.random.uniform(k2, (h,), param_dtype, -bound, bound))
        self.out = nnx.Linear(h, h, **kw)

    @property
    def cell(self) -> Cell:
        return self.layer.cell

    @property
    def output_size(self) -> int:
        return self.layer.output_size

    def initial_carry(self, batch_size: int) -> Carry:
        window = jnp.zeros((batch_size, CONV_SIZE - 1, self.output_size), self.conv_w[...].dtype)
        return (self.layer.initial_carry(batch_size), window)

    def _conv(self, window: Array, x: Array) -> tuple[Array, Array]:
        """Causal depthwise conv of x (B, T, H) after ``window`` (B, K - 1, H): (u, full)."""
        full = jnp.concatenate([window.astype(x.dtype), x], axis=1)
        T, w = x.shape[1], self.conv_w[...]
        y = sum(full[:, k : k + T] * w[k] for k in range(CONV_SIZE)) + self.conv_b[...]
        return jax.nn.silu(y), full

    def __call__(
        self,
        x: Array,
        *,
        lengths: Array | None = None,
        initial_carry: Carry | None = None,
        h_perturb: Array | None = None,
    ) -> tuple[Array, Carry]:
        carry, window = self.initial_carry(x.shape[0]) if initial_carry is None else initial_carry
        xb, z = jnp.split(self.in_proj(self.norm(x)), 2, axis=-1)
        u, full = self._conv(window, xb)
        r, carry = self.layer(u, lengths=lengths, initial_carry=carry, h_perturb=h_perturb)
        y = x + self.out(r * jax.nn.silu(z))
        T = x.shape[1]
        end = jnp.full((x.shape[0],), T) if lengths is None else lengths
        idx = end[:, None] + jnp.arange(CONV_SIZE - 1)[None, :]  # the last K-1 valid inputs
        window = jnp.take_along_axis(full, idx[..., None], axis=1)
        if lengths is not None:
            y = jnp.where(length_mask(lengths, T)[..., None], y, 0)
        return y, (carry, window)

    def step(self, carry: Carry, x: Array) -> tuple[Carry, Array]:
        c, window = carry
        xb, z = jnp.split(self.in_proj(self.norm(x)), 2, axis=-1)
        u, full = self._conv(window, xb[:, None])
        c, r = self.layer.step(c, u[:, 0])
        return (c, full[:, 1:]), x + self.out(r * jax.nn.silu(z))
