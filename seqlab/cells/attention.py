"""Causal multi-head self-attention as a sequence mixer (a peer of the recurrent cells).

    q, k, v = split(x W_qkv + b),  per head of width d = hidden_size / num_heads
    q, k    = rotary(q, p), rotary(k, p)            p: each token's absolute position
    y       = softmax(q k^T / sqrt(d) + mask) v     (``jax.nn.dot_product_attention``)

The output projection W_O is the residual block's ``out`` map (``seqlab.recurrence.blocks``),
so the block ``x + out(attn(norm(x))) (+ MLP)`` is a pre-norm Transformer block.

Positions (``positions``): ``rotary`` (default) rotates q and k (Su et al. 2021, RoFormer;
the GPT-NeoX half-split layout, frequencies base^(-2i/d), base 10,000), so scores depend on
the distance between tokens only and a window can slide past the trained context.
``learned`` instead adds a learned table P (window, F), drawn N(0, 0.02) as GPT-2/nanoGPT's
position embedding, to the mixer's input: q, k, v = split((x + P[p]) W_qkv + b), no
rotation. It exists to compare against nanoGPT's absolute positions; unlike nanoGPT's one
table added to the embeddings, each attention layer has its own. P has rows for positions
< window only: a position past it (decoding beyond the trained context) reuses the last
row, so samples longer than the window are out of what it was trained on. The mask lets a
query at position p see the keys at positions p - window < j <= p (``window``: the trained
context, or longer).

The carry is a key/value window: ``{"k", "v"}`` (B, window, heads, d) holding the last
``window`` positions' keys (rotated, under rotary positions) and values (right-aligned;
slots before position 0 are masked) and ``"pos"`` (B,), the number of tokens read. A
sequence call that is handed a carry continues from it (decoding, a prime then tokens,
stateful chunks); ``step`` is the same computation on one token: O(window) per new token,
no re-run of the prefix. Beyond ``window`` tokens the window slides: the oldest key drops
out, exactly as the full sequence form masks it.
"""

from __future__ import annotations

from typing import Any

import jax
import jax.numpy as jnp
from flax import nnx

Array = jax.Array
Cache = dict[str, Array]
ROPE_BASE = 10_000.0
POSITIONS = ("rotary", "learned")  # how attention sees positions (module doc)


def rotary(x: Array, pos: Array, base: float = ROPE_BASE) -> Array:
    """Rotates the channel pairs (i, i + d/2) of ``x`` (B, T, N, d) by angle pos * base^(-2i/d),
    ``pos`` (B, T) the absolute positions."""
    half = x.shape[-1] // 2
    ftype = jnp.promote_types(x.dtype, jnp.float32)
    freq = base ** (-jnp.arange(half, dtype=ftype) / half)
    ang = pos.astype(ftype)[..., None, None] * freq  # (B, T, 1, d/2)
    cos, sin = jnp.cos(ang).astype(x.dtype), jnp.sin(ang).astype(x.dtype)
    x1, x2 = x[..., :half], x[..., half:]
    return jnp.concatenate([x1 * cos - x2 * sin, x1 * sin + x2 * cos], axis=-1)


def window_mask(kpos: Array, qpos: Array, window: int) -> Array:
    """(B, 1, T, S) mask: query at qpos (B, T) sees key at kpos (B, S) iff the key exists
    (kpos >= 0), is not in the future and lies within the window."""
    k, q = kpos[:, None, :], qpos[:, :, None]
    return ((k >= 0) & (k <= q) & (k > q - window))[:, None]


class CausalSelfAttention(nnx.Module):
    """x (B, T, F) -> (B, T, hidden_size), carrying a key/value window (module doc)."""

    #: what this mixer offers (the vocabulary: ``seqlab.cells`` module doc)
    PROVIDES = frozenset({"sequence", "step", "parallel", "window"})
    #: ``model.block=auto`` puts attention in pre-norm residual blocks
    DEFAULT_BLOCK = "residual"
    #: its block always has the MLP sub-block (attention + MLP: a Transformer block)
    BLOCK_MLP = True

    def __init__(
        self,
        in_features: int,
        hidden_size: int,
        *,
        num_heads: int,
        window: int,
        positions: str = "rotary",
        init: str = "default",
        dtype: Any = None,
        param_dtype: Any = jnp.float32,
        rngs: nnx.Rngs,
    ):
        if num_heads < 1 or hidden_size % num_heads or (hidden_size // num_heads) % 2:
            raise ValueError(
                f"attention needs hidden_size ({hidden_size}) divisible by num_heads "
                f"({num_heads}) into an even head width (rotary pairs channels)"
            )
        if window < 1:
            raise ValueError(f"attention needs window >= 1, got {window}")
        if positions not in POSITIONS:
            raise ValueError(f"attention positions must be one of {POSITIONS}, got {positions!r}")
        if init != "default":
            raise ValueError(f"attention has its own initialization; got init={init!r}")
        self.in_features = in_features
        self.hidden_size = hidden_size
        self.num_heads = num_heads
        self.head_dim = hidden_size // num_heads
        self.window = window
        self.param_dtype = param_dtype
        self.qkv = nnx.Linear(
            in_features, 3 * hidden_size, dtype=dtype, param_dtype=param_dtype, rngs=rngs
        )
        self.positions = positions
        if positions == "learned":  # after qkv: the rotary default's init is unchanged
            init_p = nnx.initializers.normal(0.02)
            self.pos_table = nnx.Param(init_p(rngs.params(), (window, in_features), param_dtype))

    @property
    def output_size(self) -> int:
        return self.hidden_size

    def initial_carry(self, batch_size: int) -> Cache:
        """An empty window: no tokens read."""
        shape = (batch_size, self.window, self.num_heads, self.head_dim)
        z = jnp.zeros(shape, self.param_dtype)
        return {"k": z, "v": z, "pos": jnp.zeros((batch_size,), jnp.int32)}

    def _heads(self, x: Array, pos: Array) -> tuple[Array, Array, Array]:
        B, T = x.shape[:2]
        if self.positions == "learned":
            table = self.pos_table[...]
            x = x + table[jnp.minimum(pos, self.window - 1)].astype(x.dtype)
        q, k, v = jnp.split(self.qkv(x), 3, axis=-1)
        q, k, v = (a.reshape(B, T, self.num_heads, self.head_dim) for a in (q, k, v))
        if self.positions == "learned":
            return q, k, v.astype(self.param_dtype)
        return rotary(q, pos), rotary(k, pos), v.astype(self.param_dtype)

    def __call__(
        self,
        x: Array,
        *,
        lengths: Array | None = None,
        initial_carry: Cache | None = None,
        h_perturb: Array | None = None,
    ) -> tuple[Array, Cache]:
        """Outputs (B, T, hidden) and the window after each example's ``lengths`` tokens."""
        if h_perturb is not None:
            raise ValueError(
                "attention has no recurrent state to perturb; probe the residual stream"
            )
        B, T = x.shape[:2]
        W = self.window
        cache = self.initial_carry(B) if initial_carry is None else initial_carry
        pos0 = cache["pos"].astype(jnp.int32)
        qpos = pos0[:, None] + jnp.arange(T)
        q, k, v = self._heads(x, qpos)
        keys = jnp.concatenate([cache["k"].astype(k.dtype), k], axis=1)
        vals = jnp.concatenate([cache["v"].astype(v.dtype), v], axis=1)
        kpos = pos0[:, None] + jnp.arange(-W, T)
        if initial_carry is None:  # nothing before position 0: attend over the T new keys
            y = self._attend(q, k, v, qpos, qpos)
        else:
            y = self._attend(q, keys, vals, kpos, qpos)
        n = jnp.full((B,), T, jnp.int32) if lengths is None else lengths.astype(jnp.int32)
        take = jax.vmap(lambda a, s: jax.lax.dynamic_slice_in_dim(a, s, W, axis=0))
        keep = lambda a: take(a, n).astype(self.param_dtype)  # noqa: E731 (the carry's type)
        new = {"k": keep(keys), "v": keep(vals), "pos": pos0 + n}
        return y.reshape(B, T, self.hidden_size), new

    def _attend(self, q: Array, k: Array, v: Array, kpos: Array, qpos: Array) -> Array:
        mask = window_mask(kpos, qpos, self.window)
        return jax.nn.dot_product_attention(q, k.astype(q.dtype), v.astype(q.dtype), mask=mask)

    def step(self, carry: Cache, x: Array) -> tuple[Cache, Array]:
        """One token x (B, F) -> (window, y (B, hidden)): the sequence form at T = 1."""
        y, carry = self(x[:, None], initial_carry=carry)
        return carry, y[:, 0]

    def attention_weights(self, x: Array) -> Array:
        """(B, heads, T, T) softmax weights of a sequence read from position 0 (inspect)."""
        T = x.shape[1]
        pos = jnp.broadcast_to(jnp.arange(T), x.shape[:2])
        q, k, _ = self._heads(x, pos)
        s = jnp.einsum("btnd,bsnd->bnts", q, k) / jnp.sqrt(self.head_dim).astype(q.dtype)
        s = jnp.where(window_mask(pos, pos, self.window), s, -jnp.inf)
        return jax.nn.softmax(s, axis=-1)
