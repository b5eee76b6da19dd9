"""Porting PyTorch recurrent weights into seqlab (and cross-checking numerics).

``from_torch(stack, state_dict)`` copies an ``nn.RNN`` / ``nn.LSTM`` / ``nn.GRU`` state dict
(values as NumPy arrays or tensors; multi-layer; bidirectional) into a seqlab ``RNNStack``
built with the matching cell, sizes, layer count and direction::

    stack = RNNStack("lstm", in_features=I, hidden_size=H, num_layers=L,
                     bidirectional=True, rngs=nnx.Rngs(0))
    from_torch(stack, {k: v.numpy() for k, v in torch_lstm.state_dict().items()})

PyTorch stores ``weight_ih_l{k}[_reverse]`` as (G*H, in) in gate order i,f,g,o (LSTM) or
r,z,n (GRU) -- the same order seqlab uses -- so kernels are transposed and input and recurrent
biases are summed, except the GRU's recurrent n-gate bias, which sits inside r * (...) and
maps to ``b_hn``. GRUs need seqlab's ``reset_after=True`` convention (cell ``gru``); RNNs need
the matching ``activation`` ('tanh' or 'relu'). PyTorch is not imported here.
"""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any

import jax.numpy as jnp
import numpy as np

from seqlab.cells import Cell, GRUCell, LSTMCell, RNNCell
from seqlab.recurrence import Bidirectional, RNNStack


def _np(x: Any) -> np.ndarray:
    if hasattr(x, "detach"):  # a torch tensor, without importing torch
        x = x.detach().cpu().numpy()
    return np.asarray(x)


def _load_cell(cell: Cell, sd: Mapping[str, Any], suffix: str) -> None:
    w_ih, w_hh = _np(sd[f"weight_ih{suffix}"]), _np(sd[f"weight_hh{suffix}"])
    H, G = cell.hidden_size, cell.num_gates
    expect_ih, expect_hh = (G * H, cell.in_features), (G * H, H)
    if w_ih.shape != expect_ih or w_hh.shape != expect_hh:
        raise ValueError(
            f"weight_ih{suffix}/weight_hh{suffix} have shapes {w_ih.shape}/"
            f"{w_hh.shape}; the seqlab cell expects {expect_ih}/{expect_hh}"
        )
    has_bias = f"bias_ih{suffix}" in sd
    b_ih = _np(sd[f"bias_ih{suffix}"]) if has_bias else np.zeros(G * H, w_ih.dtype)
    b_hh = _np(sd[f"bias_hh{suffix}"]) if has_bias else np.zeros(G * H, w_ih.dtype)
    dt = cell.w_x[...].dtype
    cell.w_x[...] = jnp.asarray(w_ih.T, dt)
    cell.w_h[...] = jnp.asarray(w_hh.T, dt)
    if isinstance(cell, GRUCell):
        if not cell.reset_after:
            raise ValueError(
                "PyTorch's GRU applies the reset gate after the recurrent matmul;"
                " build the seqlab stack with cell 'gru' (reset_after=True)"
            )
        b = b_ih.copy()
        b[: 2 * H] += b_hh[: 2 * H]
        cell.b[...] = jnp.asarray(b, dt)
        cell.b_hn[...] = jnp.asarray(b_hh[2 * H :], dt)
    elif isinstance(cell, (LSTMCell, RNNCell)):
        cell.b[...] = jnp.asarray(b_ih + b_hh, dt)
    else:
        raise ValueError(f"no PyTorch equivalent for {type(cell).__name__}")


def from_torch(stack: RNNStack, state_dict: Mapping[str, Any]) -> RNNStack:
    """Copies PyTorch recurrent weights into ``stack`` in place and returns it."""
    n_torch = len(
        {k.split("_l")[1].split("_")[0] for k in state_dict if k.startswith("weight_ih_l")}
    )
    if n_torch != stack.num_layers:
        raise ValueError(f"state dict has {n_torch} layers; the stack has {stack.num_layers}")
    for k, layer in enumerate(stack.layers):
        if isinstance(layer, Bidirectional):
            if f"weight_ih_l{k}_reverse" not in state_dict:
                raise ValueError("the stack is bidirectional but the state dict is not")
            _load_cell(layer.forward.cell, state_dict, f"_l{k}")
            _load_cell(layer.backward.cell, state_dict, f"_l{k}_reverse")
        else:
            if f"weight_ih_l{k}_reverse" in state_dict:
                raise ValueError(
                    "the state dict is bidirectional; build the stack with bidirectional=True"
                )
            _load_cell(layer.cell, state_dict, f"_l{k}")
    return stack
