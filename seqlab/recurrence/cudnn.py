"""The cuDNN engine: seqlab's LSTM layers through ``jax.experimental.rnn.lstm``.

Weights. seqlab's LSTM (``cells/lstm.py``) has, per cell, ``w_x`` (F, 4H), ``w_h`` (H, 4H)
and one bias ``b`` (4H,), gate blocks i, f, g, o. cuDNN (and PyTorch) have, per
pseudo-layer, W_ih (4H, F), W_hh (4H, H) and two biases b_ih, b_hh (4H,), in the same gate
order (MIOpen orders them i, f, o, g -- ``rnn.swap_lstm_gates`` -- so ROCm is not used). One
flat vector holds every pseudo-layer's W_ih and W_hh (row-major), then every pseudo-layer's
b_ih and b_hh; pseudo-layers run forward 0, reverse 0, forward 1, ... So ``pack`` writes
W_ih = w_x^T, W_hh = w_h^T, b_ih = b and b_hh = 0: cuDNN adds both biases to the same
pre-activation, so the values are seqlab's, and the gradient that reaches ``b`` is
d b_ih (d b_hh, equal, falls on the constant zeros). ``unpack`` goes back, folding
b_ih + b_hh into b (exact for weights trained by cuDNN or PyTorch).

What runs: on a CUDA GPU ``jax.experimental.rnn.lstm`` (cuDNN, TF32 as
``jax_default_matmul_precision`` says, like XLA's matmuls); elsewhere the same flat vector
through ``jax.experimental.rnn.lstm_ref`` (which unpacks it with ``unpack_lstm_weights``).
``lstm_fn`` is the only difference between the two paths; the CPU tests run the other one.

One cuDNN call per layer (a bidirectional layer is one bidirectional call), so dropout
between layers, each layer's hidden states and carry keep their meaning; ``run_lstm`` also
runs several layers in one call. Token ids are one-hot rows, as ``Cell.project`` reads
them. Lengths: padded steps emit zeros and the carry stops at each example's last step, as
in seqlab's engines; a zero length (cuDNN wants >= 1) runs one step that is masked away.

Where it cannot run, ``backend=cudnn`` says why once in the log and runs ``backend=fast``:
when the layer is built (``cudnn_unavailable``: no CUDA GPU, not the plain LSTM, parameters
or compute dtype not float32) or per call (``run_layer``: the probe's h perturbation,
non-float32 inputs or carry, or the op refusing the trace -- it has no ``vmap`` rule).
"""

from __future__ import annotations

import logging
from collections.abc import Callable, Sequence
from typing import Any

import jax
import jax.numpy as jnp
from jax.experimental import rnn
from jax.extend.backend import get_backend

from seqlab.cells import Carry, Cell, LSTMCell
from seqlab.recurrence.scan import flip_sequences

Array = jax.Array
Params = dict[str, Array]
FLOAT32 = jnp.dtype(jnp.float32)
log = logging.getLogger("seqlab")
_said: set[str] = set()


def say_fallback(reason: str) -> None:
    """Logs that backend=cudnn runs backend=fast instead, once per reason."""
    if reason not in _said:
        _said.add(reason)
        log.warning("backend=cudnn: %s; running backend=fast", reason)


def platform_unavailable() -> str | None:
    """Why this process cannot call cuDNN (None when it can)."""
    platform = jax.default_backend()
    if platform != "gpu":
        return f"cuDNN needs a CUDA GPU and JAX runs on {platform}"
    if "rocm" in get_backend().platform_version.lower():
        return "ROCm's MIOpen orders the LSTM gates differently (untested here)"
    return None


def cudnn_unavailable(cell: Cell) -> str | None:
    """Why ``cell`` cannot run on cuDNN here (None when it can)."""
    if type(cell) is not LSTMCell:
        return f"cuDNN runs the LSTM only, not {type(cell).__name__}"
    param = jnp.dtype(cell.param_dtype)
    compute = param if cell.dtype is None else jnp.dtype(cell.dtype)
    if param != FLOAT32 or compute != FLOAT32:
        return (
            "jax.experimental.rnn.lstm runs float32 only; got parameters "
            f"{param}, compute dtype {compute}"
        )
    return platform_unavailable()


# -- the weight layout ---------------------------------------------------------------------


def lstm_params(cell: LSTMCell) -> Params:
    """The arrays ``pack`` reads from one cell."""
    return {"w_x": cell.w_x[...], "w_h": cell.w_h[...], "b": cell.b[...]}


def pack(layers: Sequence[Sequence[Params]]) -> Array:
    """cuDNN's flat weight vector: ``layers[l]`` holds layer l's params, forward then (when
    bidirectional) reverse, each ``{"w_x", "w_h", "b"}`` in seqlab's layout."""
    pseudo = [p for layer in layers for p in layer]
    mats = [m.T.ravel() for p in pseudo for m in (p["w_x"], p["w_h"])]
    biases = [v for p in pseudo for v in (p["b"], jnp.zeros_like(p["b"]))]
    return jnp.concatenate(mats + biases)


def unpack(
    weights: Array, input_size: int, hidden_size: int, num_layers: int, bidirectional: bool
) -> list[list[Params]]:
    """``pack``'s inverse, for any cuDNN vector: b = b_ih + b_hh."""
    w_ih, w_hh, b_ih, b_hh = rnn.unpack_lstm_weights(
        weights, input_size, hidden_size, num_layers, bidirectional
    )
    dirs = 2 if bidirectional else 1
    return [
        [
            {"w_x": w_ih[i].T, "w_h": w_hh[i].T, "b": b_ih[i] + b_hh[i]}
            for i in range(layer * dirs, (layer + 1) * dirs)
        ]
        for layer in range(num_layers)
    ]


# -- running it ----------------------------------------------------------------------------


def lstm_reference(
    x: Array, h_0: Array, c_0: Array, weights: Array, seq_lengths: Array, *static: Any
) -> tuple[Array, Array, Array]:
    """``rnn.lstm`` (positional arguments) over ``rnn.lstm_ref``: the path without a GPU."""
    input_size, hidden_size, num_layers, _, bidirectional = static
    ws = rnn.unpack_lstm_weights(weights, input_size, hidden_size, num_layers, bidirectional)
    return rnn.lstm_ref(x, h_0, c_0, *ws, seq_lengths, *static)


def lstm_fn() -> Callable[..., tuple[Array, Array, Array]]:
    """cuDNN on a GPU; the reference with the same weights elsewhere (tests, fallbacks)."""
    return rnn.lstm if jax.default_backend() == "gpu" else lstm_reference


def run_lstm(
    layers: Sequence[Sequence[Params]],
    x: Array,
    carries: Sequence[Carry],
    lengths: Array | None = None,
    *,
    impl: Callable[..., Any] | None = None,
) -> tuple[Array, list[Carry]]:
    """A stack of LSTM layers in one call: x (B, T, F) float32, ``carries[l]`` layer l's
    (c, h), or a (forward, reverse) pair of them -> (y (B, T, dirs * H), final carries)."""
    bidir = len(layers[0]) == 2
    B, T, F = x.shape
    H = layers[0][0]["w_h"].shape[0]
    pseudo = [c for layer in carries for c in (layer if bidir else (layer,))]
    c0 = jnp.stack([c for c, _ in pseudo])
    h0 = jnp.stack([h for _, h in pseudo])
    n = jnp.full((B,), T) if lengths is None else jnp.maximum(lengths, 1)
    impl = impl or lstm_fn()
    w = pack(layers)
    y, h_n, c_n = impl(x, h0, c0, w, n.astype(jnp.int32), F, H, len(layers), 0.0, bidir)
    if lengths is not None:  # a zero length ran one step: back to zeros and the carry in
        ok = lengths > 0
        y = jnp.where(ok[:, None, None], y, jnp.zeros_like(y))
        h_n = jnp.where(ok[None, :, None], h_n, h0)
        c_n = jnp.where(ok[None, :, None], c_n, c0)
    out = [(c_n[i], h_n[i]) for i in range(len(pseudo))]
    if bidir:
        out = [(out[2 * i], out[2 * i + 1]) for i in range(len(layers))]
    return y, out


def _call_unavailable(x: Array, carry: Carry, h_perturb: Any) -> str | None:
    if h_perturb is not None:
        return "the gradient probe perturbs h inside the recurrence, which cuDNN cannot"
    dts = {a.dtype for a in jax.tree.leaves(carry)}
    if not jnp.issubdtype(x.dtype, jnp.integer):
        dts.add(x.dtype)
    if dts != {FLOAT32}:
        return f"jax.experimental.rnn.lstm runs float32 only; got {sorted(map(str, dts))}"
    return None


def _flip(x: Array, lengths: Array | None) -> Array:
    return x[:, ::-1] if lengths is None else flip_sequences(x, lengths)


def run_layer(
    cells: Sequence[LSTMCell],
    x: Array,
    carry: Carry,
    *,
    lengths: Array | None = None,
    reverse: bool = False,
    h_perturb: Any = None,
) -> tuple[Array, Carry] | None:
    """One seqlab layer on cuDNN: ``cells`` is (forward,) -- read backwards if ``reverse``
    -- or (forward, reverse), with that layer's carry. None when this call cannot run here
    (said once in the log): the caller runs ``backend=fast``."""
    why = _call_unavailable(x, carry, h_perturb)
    if why is not None:
        say_fallback(why)
        return None
    if jnp.issubdtype(x.dtype, jnp.integer):  # token ids are one-hot rows (Cell.project)
        x = jax.nn.one_hot(x, cells[0].in_features, dtype=FLOAT32)
    if reverse:
        x = _flip(x, lengths)
    try:
        y, (carry,) = run_lstm([[lstm_params(c) for c in cells]], x, [carry], lengths)
    except NotImplementedError as e:  # e.g. under vmap: rnn.lstm has no batching rule
        say_fallback(f"jax.experimental.rnn.lstm cannot run this call ({e})")
        return None
    return (_flip(y, lengths) if reverse else y), carry
