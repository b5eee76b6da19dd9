"""GRU in both conventions (gate order r, z, n; h' = (1 - z) * n + z * h as in PyTorch/Flax).

``reset_after=True`` (cuDNN, PyTorch, Flax): the reset gate multiplies the recurrent matmul,
    n = tanh(x W_xn + b_n + r * (h W_hn + b_hn))        -- one fused recurrent matmul
``reset_after=False`` (Cho et al. 2014, char-rnn): it multiplies h before the matmul,
    n = tanh(x W_xn + b_n + (r * h) W_hn)               -- a second, dependent matmul

char-rnn writes the update as z * n + (1 - z) * h; that is the same family with z relabeled
1 - z, so ported char-rnn GRU weights need their update-gate block negated.
"""

from __future__ import annotations

from typing import Any

import jax
import jax.numpy as jnp
from flax import nnx

from seqlab.cells.base import Array, Cell, chrono_bias, recurrent_matmul
from seqlab.cells.kernels import (
    Kernels,
    Params,
    cat,
    gated_wgrad,
    split,
    sum_outer,
    two_blocks,
    whole,
)
from seqlab.cells.kernels import sigmoid_via_tanh as sig
from seqlab.config import DEFAULTS

# -- reset after the recurrent matmul ------------------------------------------------------


def _prep(p: Params) -> Params:
    return {**whole(p), "b_hn": p["b_hn"]}


def _fwd(q: Params, h: Array, xp: Array):
    cut = [2 * h.shape[-1]]
    x_rz, x_n = jnp.split(xp, cut, axis=-1)
    h_rz, h_n = jnp.split(recurrent_matmul(h, q["w"]), cut, axis=-1)
    rz = sig(jnp.tanh(0.5 * (x_rz + h_rz)))
    r, z = split(rz, 2)
    hn = h_n + q["b_hn"]
    n = jnp.tanh(x_n + r * hn)
    h_new = (1.0 - z) * n + z * h
    return h_new, h_new, (rz, n, hn)


def _bwd(q: Params, res, h: Array, cur: Array, dh: Array):
    rz, n, hn = res
    r, z = split(rz, 2)
    dn = dh * (1.0 - z) * (1.0 - n * n)
    dr = dn * hn * r * (1.0 - r)
    dz = dh * (h - n) * z * (1.0 - z)
    return dh * z + recurrent_matmul(cat(dr, dz, dn * r), q["t"]), cat(dr, dz, dn)


def _r_of(res: tuple[Array, ...]) -> tuple[Array, ...]:
    """r from the stacked [r; z] residual, per step or over time."""
    return (split(res[0], 2)[0],)


def _wgrad(p: Params, h_prev: Array, wres, dxp: Array) -> Params:
    (r,) = wres
    d_rz, d_n = jnp.split(dxp, [2 * r.shape[-1]], axis=-1)
    dn_r = d_n * r
    return {"w_h": sum_outer(h_prev, cat(d_rz, dn_r)), "b_hn": jnp.sum(dn_r, axis=(0, 1))}


RESET_AFTER = Kernels(_prep, _fwd, _bwd, _r_of, _wgrad)

# -- reset before the recurrent matmul -----------------------------------------------------


def _rb_fwd(q: Params, h: Array, xp: Array):
    x_rz, x_n = jnp.split(xp, [2 * h.shape[-1]], axis=-1)
    rz = sig(jnp.tanh(0.5 * (x_rz + recurrent_matmul(h, q["w1"]))))
    r, z = split(rz, 2)
    n = jnp.tanh(x_n + recurrent_matmul(r * h, q["w2"]))
    h_new = (1.0 - z) * n + z * h
    return h_new, h_new, (rz, n)


def _rb_bwd(q: Params, res, h: Array, cur: Array, dh: Array):
    rz, n = res
    r, z = split(rz, 2)
    dn = dh * (1.0 - z) * (1.0 - n * n)
    s = recurrent_matmul(dn, q["t2"])  # gradient w.r.t. r * h
    drz = cat(s * h * r * (1.0 - r), dh * (h - n) * z * (1.0 - z))
    return dh * z + s * r + recurrent_matmul(drz, q["t1"]), cat(drz, dn)


RESET_BEFORE = Kernels(two_blocks(2), _rb_fwd, _rb_bwd, _r_of, gated_wgrad(2))
D = DEFAULTS.model


class GRUCell(Cell):
    num_gates = 3

    def __init__(
        self,
        in_features: int,
        hidden_size: int,
        *,
        reset_after: bool = True,
        rngs: nnx.Rngs,
        **kwargs: Any,
    ):
        self.reset_after = reset_after
        super().__init__(in_features, hidden_size, rngs=rngs, **kwargs)
        if reset_after:
            b_hn = jnp.zeros((hidden_size,), self.param_dtype)
            if self.init == "char_rnn":
                b_hn = jax.random.uniform(rngs.params(), b_hn.shape, b_hn.dtype, -0.08, 0.08)
            self.b_hn = nnx.Param(b_hn)

    def adjust_bias(
        self,
        b: Array,
        rngs: nnx.Rngs,
        *,
        carry_bias: float = D.carry_bias,
        chrono_max_len: int = D.chrono_max_len,
    ) -> Array:
        """The update gate z keeps the old state (h' = (1 - z) n + z h): its bias is the
        carry bias, the LSTM forget bias's counterpart (``carry_bias``); with
        ``init="chrono"`` it is log(U[1, T_max - 1]) (Tallec and Ollivier 2018)."""
        h = self.hidden_size
        if self.init == "chrono":
            return b.at[h : 2 * h].set(chrono_bias(rngs, h, chrono_max_len, b.dtype))
        return b.at[h : 2 * h].add(carry_bias)

    def recurrent_params(self) -> dict[str, Array]:
        p = {"w_h": self.w_h[...]}
        if self.reset_after:
            p["b_hn"] = self.b_hn[...]
        return p

    def kernels(self) -> Kernels:
        return RESET_AFTER if self.reset_after else RESET_BEFORE
