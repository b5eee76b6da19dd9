"""Encoder-decoder: the encoder's final carry initializes the decoder; optional attention.

Training uses teacher forcing (``tgt_in`` = BOS + target[:-1]); ``greedy_decode`` is a
fixed-length scan that emits ``pad_id`` after each example's EOS. Without attention the
decoder is the ordinary hoisted-projection stack; with attention each step's input is
[embedding; context], so the decoder is scanned step by step (the context depends on the
previous state), and dropout then applies to the decoder's outputs only.

With ``cell=attention`` the same hand-over makes a Transformer encoder-decoder of one kind:
the encoder's final carry is each layer's key/value window, so decoder layer l attends, in
one causal softmax, over encoder layer l's keys/values of the source and its own prefix (the
source first, the target continuing its positions; ``model.window`` must cover both). There
is no separate cross-attention, and the additive attention (``attention=True``) reads a
recurrent state, so it is refused for mixers without one.
"""

from __future__ import annotations

from typing import Any

import jax
import jax.numpy as jnp
from flax import nnx

from seqlab.cells import Carry
from seqlab.config import DEFAULTS
from seqlab.errors import ConfigError
from seqlab.models.attention import AdditiveAttention
from seqlab.models.inputs import InputEncoder
from seqlab.recurrence import RNNStack, length_mask
from seqlab.recurrence.blocks import layer_provides

Array = jax.Array
D = DEFAULTS.model


class Seq2Seq(nnx.Module):
    def __init__(
        self,
        src_vocab_size: int,
        tgt_vocab_size: int,
        *,
        embed_dim: int = 64,
        embed_init: str = "default",
        bidirectional_encoder: bool = False,
        attention: bool = D.attention,
        attention_size: int = D.attention_size,
        param_dtype: Any = jnp.float32,
        rngs: nnx.Rngs,
        **stack: Any,
    ):
        """``stack``: both recurrent stacks' options (``RNNStack.build``: cell, hidden_size,
        num_layers, dropout, unroll, remat, backend, cell_kwargs)."""
        common = {"param_dtype": param_dtype, "rngs": rngs}
        embed = {"embed_dim": embed_dim, "embed_init": embed_init, **common}
        self.src_embed = InputEncoder("embed", vocab_size=src_vocab_size, **embed)
        self.tgt_embed = InputEncoder("embed", vocab_size=tgt_vocab_size, **embed)
        # Bidirectional encoders sum their directions so carries match the decoder's size.
        self.encoder = RNNStack.build(
            embed_dim, bidirectional=bidirectional_encoder, merge="sum", **common, **stack
        )
        hidden_size, dropout = self.encoder.hidden_size, self.encoder.dropout_rate
        if attention and "state" not in layer_provides(self.encoder.layers[-1]):
            raise ConfigError(
                f"model.attention (additive attention on the decoder's state) needs a recurrent "
                f"cell; {stack.get('cell')!r} has no state: set model.attention=False"
            )
        ctx = hidden_size if attention else 0
        self.decoder = RNNStack.build(embed_dim + ctx, **common, **stack)
        self.use_attention = attention
        if attention:
            self.attention = AdditiveAttention(
                hidden_size, hidden_size, attention_size or hidden_size, **common
            )
        self.dropout = nnx.Dropout(dropout)
        self.dropout_rate = dropout
        self.head = nnx.Linear(
            hidden_size + ctx, tgt_vocab_size, param_dtype=param_dtype, rngs=rngs
        )

    def encode(
        self,
        src: Array,
        src_lengths: Array | None,
        *,
        train: bool = False,
        rng: Array | None = None,
    ) -> tuple[Array, list[Carry], dict[str, Any]]:
        """Returns encoder states (B, S, H), the decoder's initial carry, and encoder aux."""
        states, aux = self.encoder(self.src_embed(src), lengths=src_lengths, train=train, rng=rng)
        carry = aux["final_carry"]
        if self.encoder.bidirectional:
            carry = [jax.tree.map(jnp.add, f, b) for f, b in carry]
        return states, carry, aux

    def _attend_step(
        self, carry: list[Carry], emb_t: Array, keys: Array, pkeys: Array, mask: Array
    ) -> tuple[list[Carry], Array, Array]:
        query = self.decoder.top_hidden(carry)
        ctx, weights = self.attention(query, keys, pkeys, mask)
        carry, h = self.decoder.step(carry, jnp.concatenate([emb_t, ctx], axis=-1))
        return carry, jnp.concatenate([h, ctx], axis=-1), weights

    def __call__(
        self,
        src: Array,
        tgt_in: Array,
        *,
        src_lengths: Array | None = None,
        tgt_lengths: Array | None = None,
        train: bool = False,
        rng: Array | None = None,
    ) -> tuple[Array, dict[str, Any]]:
        """Teacher-forced logits (B, T, V); aux: encoder_states, encoder_carry, attention."""
        k_enc, k_dec, k_out = (None, None, None) if rng is None else jax.random.split(rng, 3)
        keys, carry, _ = self.encode(src, src_lengths, train=train, rng=k_enc)
        emb = self.tgt_embed(tgt_in)
        aux: dict[str, Any] = {"encoder_states": keys, "encoder_carry": carry}
        if not self.use_attention:
            y, daux = self.decoder(
                emb, lengths=tgt_lengths, initial_carry=carry, train=train, rng=k_dec
            )
            aux.update(daux)
        else:
            mask = self._src_mask(src, src_lengths)
            pkeys = self.attention.project_keys(keys)

            T = tgt_in.shape[1]
            valid = (
                jnp.ones(tgt_in.shape, bool) if tgt_lengths is None else length_mask(tgt_lengths, T)
            )

            def body(c, xs):
                e, v = xs
                new_c, out, w = self._attend_step(c, e, keys, pkeys, mask)
                # padded target steps keep the carry and emit zeros, as in run_cell
                new_c = jax.tree.map(lambda n, o: jnp.where(v[:, None], n, o), new_c, c)
                return new_c, (jnp.where(v[:, None], out, 0.0), w)

            xs = (jnp.swapaxes(emb, 0, 1), valid.T)
            carry, (y, w) = jax.lax.scan(body, carry, xs)
            y = jnp.swapaxes(y, 0, 1)
            aux.update(final_carry=carry, attention=jnp.swapaxes(w, 0, 1))
        if train and self.dropout_rate > 0:
            y = self.dropout(y, deterministic=False, rngs=k_out)
        return self.head(y), aux

    @staticmethod
    def _src_mask(src: Array, src_lengths: Array | None) -> Array:
        if src_lengths is None:
            return jnp.ones(src.shape[:2], bool)
        return length_mask(src_lengths, src.shape[1])

    def greedy_decode(
        self,
        src: Array,
        *,
        src_lengths: Array | None = None,
        max_len: int,
        bos_id: int,
        eos_id: int,
        pad_id: int = 0,
    ) -> tuple[Array, Array]:
        """Argmax decoding; returns tokens (B, max_len) (pad after EOS) and lengths (B,)
        counting the EOS. Call under ``jax.jit`` (``max_len`` static)."""
        keys, carry, _ = self.encode(src, src_lengths)
        mask = self._src_mask(src, src_lengths)
        pkeys = self.attention.project_keys(keys) if self.use_attention else None
        B = src.shape[0]

        def body(state, _):
            c, tok, done = state
            emb = self.tgt_embed(tok)
            if self.use_attention:
                c, out, _ = self._attend_step(c, emb, keys, pkeys, mask)
            else:
                c, out = self.decoder.step(c, emb)
            nxt = jnp.argmax(self.head(out), axis=-1).astype(tok.dtype)
            nxt = jnp.where(done, pad_id, nxt)
            return (c, nxt, done | (nxt == eos_id)), nxt

        init = (carry, jnp.full((B,), bos_id, jnp.int32), jnp.zeros((B,), bool))
        _, toks = jax.lax.scan(body, init, None, length=max_len)
        toks = toks.T
        is_eos = toks == eos_id
        lengths = jnp.where(is_eos.any(1), jnp.argmax(is_eos, 1) + 1, max_len)
        return toks, lengths
