"""A recurrent stack's internals per step: each layer's hidden state, the LSTM's cell state
and every gate, for ``seqlab inspect``.

The models return each layer's outputs (``aux["hidden_states"]``) but not the cell state or
the gates. Rather than widen the library's interface for one tool, this runs each layer's
cell over time again with ``jax.lax.scan`` on the loaded parameters, through the cell's own
forward kernel (the one statement of its step math, ``seqlab.cells.kernels``), and reads the
gates out of the values that kernel saves for its backward pass. Each layer's input is the
previous layer's real output, so the states are the model's own (tests compare them with
``aux["hidden_states"]``).
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

import jax
import jax.numpy as jnp
import numpy as np

from seqlab.cells import Carry, Cell, LSTMCell
from seqlab.cells.gru import RESET_AFTER, RESET_BEFORE
from seqlab.cells.kernels import Kernels, matmul_operands, sigmoid_via_tanh, split
from seqlab.cells.lstm import KERNELS as LSTM_KERNELS
from seqlab.cells.mgu import KERNELS as MGU_KERNELS
from seqlab.recurrence import Bidirectional, RNNStack, flip_sequences
from seqlab.recurrence.blocks import ResidualBlock

Array = jax.Array


def _lstm_gates(res: tuple[Array, ...]) -> dict[str, Array]:
    i, f, _, o = split(res[0], 4)  # tanh of the scaled pre-activations (seqlab.cells.lstm)
    sig = sigmoid_via_tanh
    return {"input": sig(i), "forget": sig(f), "output": sig(o)}


def _gru_gates(res: tuple[Array, ...]) -> dict[str, Array]:
    r, z = split(res[0], 2)  # the sigmoids [r; z] (seqlab.cells.gru)
    return {"reset": r, "update": z}


def _mgu_gates(res: tuple[Array, ...]) -> dict[str, Array]:
    return {"forget": res[0]}


#: a cell's forward kernels -> how to read its sigmoid gates from the values they save
GATE_READERS: list[tuple[Kernels, Callable[[tuple[Array, ...]], dict[str, Array]]]] = [
    (LSTM_KERNELS, _lstm_gates),
    (RESET_AFTER, _gru_gates),
    (RESET_BEFORE, _gru_gates),
    (MGU_KERNELS, _mgu_gates),
]
GATE_NAMES = {
    _lstm_gates: ("input", "forget", "output"),
    _gru_gates: ("reset", "update"),
    _mgu_gates: ("forget",),
}


def _kernels(cell: Cell) -> Kernels | None:
    return cell.kernels() if type(cell).has_fast_kernels() else None


def gate_names(cell: Cell) -> tuple[str, ...]:
    """The gates ``trace_cell`` reads for this cell (none for cells without sigmoid gates
    in their kernels: the vanilla RNN, the linear recurrences)."""
    read = _reader(cell)
    return GATE_NAMES[read] if read is not None else ()


def _reader(cell: Cell) -> Callable[[tuple[Array, ...]], dict[str, Array]] | None:
    k = _kernels(cell)
    return next((read for kernels, read in GATE_READERS if k is kernels), None)


@dataclass
class LayerTrace:
    """One layer (one direction) over a batch: arrays (B, T, H). A pytree (the arrays are
    its leaves), so a jitted function can return it; ``to_host`` brings it to NumPy."""

    name: str
    h: Any  # the cell's output at each step
    c: Any = None  # the LSTM's cell state
    gate_names: tuple[str, ...] = ()
    gate_values: tuple[Any, ...] = ()

    @property
    def gates(self) -> dict[str, Any]:
        """{gate: (B, T, H)} in the cell's order (LSTM: input, forget, output)."""
        return dict(zip(self.gate_names, self.gate_values, strict=True))


jax.tree_util.register_dataclass(
    LayerTrace, data_fields=["h", "c", "gate_values"], meta_fields=["name", "gate_names"]
)


def to_host(traces: list[LayerTrace]) -> list[LayerTrace]:
    """The traces with their arrays as float64 NumPy."""
    return jax.tree.map(lambda a: np.asarray(a, np.float64), traces)


def trace_cell(
    cell: Cell,
    x: Array,
    carry: Carry | None = None,
    *,
    reverse: bool = False,
    lengths: Array | None = None,
) -> tuple[Array, Array | None, dict[str, Array]]:
    """Runs ``cell`` over ``x`` (B, T, F) step by step: (h, c or None, gates), each (B, T, H),
    batch-major, in the input's time order (a reverse cell reads each valid prefix backwards,
    as ``seqlab.recurrence.scan`` does)."""
    xp = cell.project(x)
    carry = cell.initial_carry(xp.shape[0]) if carry is None else carry
    flip = reverse and lengths is not None
    if flip:
        xp = flip_sequences(xp, lengths)
    k = _kernels(cell)
    read = _reader(cell)
    params = cell.recurrent_params()
    q = matmul_operands(k.prep(params), cell.dtype) if k is not None else None  # as step
    is_lstm = isinstance(cell, LSTMCell)

    def body(c: Carry, xt: Array) -> tuple[Carry, Any]:
        if k is not None:
            new, h, res = k.fwd(q, c, xt)
            gates = read(res) if read is not None else {}
        else:
            new, h = cell.step(params, c, xt)
            gates = {}
        return new, (h, new[0] if is_lstm else None, gates)

    _, outs = jax.lax.scan(body, carry, jnp.swapaxes(xp, 0, 1), reverse=reverse and not flip)
    h, c, gates = jax.tree.map(lambda a: jnp.swapaxes(a, 0, 1), outs)
    if flip:
        h, c, gates = jax.tree.map(lambda a: flip_sequences(a, lengths), (h, c, gates))
    return h, c, gates


def trace_stack(
    stack: RNNStack,
    x: Array,
    *,
    lengths: Array | None = None,
    initial_carry: list[Carry] | None = None,
) -> list[LayerTrace]:
    """Every layer of ``stack`` (both directions of a bidirectional one) over ``x``
    (B, T, F): what ``stack(x)`` computes, with the cell states and gates kept (device
    arrays; jit it, and ``to_host`` the result)."""
    if stack.input_proj is not None:
        x = stack.input_proj(x)
    out = []
    for i, layer in enumerate(stack.layers):
        c0 = None if initial_carry is None else initial_carry[i]
        if isinstance(layer, Bidirectional):
            cf, cb = (None, None) if c0 is None else c0
            parts = [(" forward", layer.forward, cf), (" backward", layer.backward, cb)]
        else:
            parts = [("", layer, c0)]
        for direction, rec, carry in parts:
            block = rec if isinstance(rec, ResidualBlock) else None
            inner = block.layer if block is not None else rec
            h, c, gates = trace_cell(
                inner.cell,
                block.norm(x) if block is not None else x,
                carry,
                reverse=inner.reverse,
                lengths=lengths,
            )
            names = gate_names(inner.cell)
            values = tuple(gates[g] for g in names)
            out.append(LayerTrace(f"layer {i}{direction}", h, c, names, values))
        x, _ = layer(x, lengths=lengths, initial_carry=c0)  # the real output feeds the next
    return out
