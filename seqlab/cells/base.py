"""The recurrent-cell interface shared by every cell, and the initialization presets.

A cell owns three parameters laid out the way cuDNN and PyTorch fuse them:

    w_x: (in_features, G * H)   input kernel, all G gate blocks side by side
    w_h: (H, G * H)             recurrent kernel, same block order
    b:   (G * H,)               one bias per gate (input and recurrent biases folded)

The recurrence splits a step in two so the input half can be hoisted out of the time loop:
``project(x)`` computes ``x @ w_x + b`` for *all* timesteps in one matmul, and the pure,
static ``step(params, carry, xp_t)`` does only the recurrent matmul and the nonlinearities.
``step`` takes plain arrays (``recurrent_params()``), never the module, so it can live inside
``jax.lax.scan`` and be differentiated, vmapped and rematerialized freely.

A cell states its step math once. Built-in cells do it as fast ``Kernels`` (forward plus a
hand-written backward, ``kernels.py``) and ``step`` runs the forward kernel; a new cell may
instead just override ``step``, and then runs on the autodiff engine only (so does a subclass
that overrides ``step`` of a cell with kernels: ``has_fast_kernels``; they never disagree).
"""

from __future__ import annotations

import numbers
from collections.abc import Callable
from typing import Any

import jax
import jax.numpy as jnp
from flax import nnx

from seqlab.cells.kernels import Kernels, matmul_operands
from seqlab.errors import ConfigError

Array = jax.Array
Carry = Any  # an array, or a tuple of arrays (LSTM: (c, h))

INIT_PRESETS = ("default", "char_rnn", "irnn", "chrono", "torch")
#: presets whose input kernel is LeCun normal, i.e. scaled by 1/sqrt(fan-in)
FAN_IN_PRESETS = ("default", "chrono")
ACTIVATIONS = ("tanh", "relu", "identity")


def fan_in_rescale(in_features: int, fan_in: int) -> float:
    """The factor that turns a LeCun init over ``in_features`` inputs into one over
    ``fan_in`` active inputs (1 for a one-hot vector): sqrt(in_features / fan_in)."""
    if fan_in < 1:
        raise ConfigError(f"fan_in must be >= 1, got {fan_in}")
    return (in_features / fan_in) ** 0.5


def _orthogonal_blocks(key: Array, hidden: int, gates: int, dtype) -> Array:
    """Each gate's (H, H) recurrent block is its own orthogonal matrix (drawn in at least
    float32, which QR needs: bfloat16 parameters are rounded from it)."""
    keys = jax.random.split(key, gates)
    ortho = nnx.initializers.orthogonal()
    wide = jnp.promote_types(dtype, jnp.float32)
    blocks = [ortho(k, (hidden, hidden), wide) for k in keys]
    return jnp.concatenate(blocks, axis=1).astype(dtype)


def init_kernels(
    preset: str, key: Array, in_features: int, hidden: int, gates: int, dtype
) -> tuple[Array, Array, Array]:
    """Returns (w_x, w_h, b) for an init preset.

    - ``default``: LeCun-normal input kernel (Flax's default), orthogonal recurrent blocks,
      zero bias.
    - ``char_rnn``: everything uniform in [-0.08, 0.08] (karpathy/char-rnn).
    - ``irnn``: identity recurrent blocks, N(0, 0.001^2) input kernel, zero bias
      (Le, Jaitly, Hinton 2015), meant for the ReLU RNN.
    - ``torch``: PyTorch's nn.RNN/LSTM/GRU default: every weight uniform in +-1/sqrt(H), and
      the bias the sum of PyTorch's two (b_ih + b_hh), each uniform in +-1/sqrt(H); for
      comparisons with PyTorch scripts. The cells' gate-bias options still apply (the LSTM's
      forget block is set to ``forget_bias``, the GRU's ``carry_bias`` is added).
    """
    kx, kh, kb = jax.random.split(key, 3)
    shape_x, shape_h, shape_b = (
        (in_features, gates * hidden),
        (hidden, gates * hidden),
        (gates * hidden,),
    )
    if preset in ("default", "chrono"):  # chrono: default weights, gate biases by the cell
        w_x = nnx.initializers.lecun_normal()(kx, shape_x, dtype)
        w_h = _orthogonal_blocks(kh, hidden, gates, dtype)
        b = jnp.zeros(shape_b, dtype)
    elif preset == "char_rnn":
        u = lambda k, s: jax.random.uniform(k, s, dtype, -0.08, 0.08)
        w_x, w_h, b = u(kx, shape_x), u(kh, shape_h), u(kb, shape_b)
    elif preset == "torch":
        k = float(hidden) ** -0.5
        kb2 = jax.random.fold_in(kb, 1)
        u = lambda key, s: jax.random.uniform(key, s, dtype, -k, k)
        w_x, w_h, b = u(kx, shape_x), u(kh, shape_h), u(kb, shape_b) + u(kb2, shape_b)
    elif preset == "irnn":
        w_x = 0.001 * jax.random.normal(kx, shape_x, dtype)
        w_h = jnp.tile(jnp.eye(hidden, dtype=dtype), (1, gates))
        b = jnp.zeros(shape_b, dtype)
    else:
        raise ConfigError(f"unknown init preset {preset!r}; choose one of {INIT_PRESETS}")
    return w_x, w_h, b


class Cell(nnx.Module):
    """Base class: subclasses set ``num_gates`` and implement ``step``.

    ``carry_is_tuple`` cells (LSTM) override ``initial_carry``, ``hidden`` and ``set_hidden``.
    """

    num_gates: int = 1
    #: what the cell offers as a sequence mixer (vocabulary: the ``seqlab.cells`` doc)
    PROVIDES = frozenset({"sequence", "step", "state"})
    #: the block ``model.block=auto`` gives it: bare layers for the nonlinear cells
    DEFAULT_BLOCK = "none"
    #: what ``init="default"`` means for this cell (the IRNN's default is its identity init)
    default_init: str = "default"

    @classmethod
    def has_fast_kernels(cls) -> bool:
        """Whether ``kernels()`` states this class's step math: False when a subclass
        overrides ``step`` below the class that defined ``kernels`` (its parent's kernels
        would compute the parent's step), or when no class defines kernels."""
        for klass in cls.__mro__:
            if klass is Cell:
                return False
            if "kernels" in klass.__dict__:
                return True
            if "step" in klass.__dict__:
                return False
        return False

    def __init__(
        self,
        in_features: int,
        hidden_size: int,
        *,
        init: str = "default",
        dtype: Any = None,
        param_dtype: Any = jnp.float32,
        rngs: nnx.Rngs,
        **options: Any,
    ):
        sizes = (in_features, hidden_size)
        if not all(
            isinstance(n, numbers.Integral) and not isinstance(n, bool) and n >= 1 for n in sizes
        ):
            raise ConfigError(
                f"in_features and hidden_size must be integers >= 1, got {in_features!r}, "
                f"{hidden_size!r}"
            )
        for name, value in (("dtype", dtype), ("param_dtype", param_dtype)):
            try:
                value is None or jnp.dtype(value)
            except TypeError:
                raise ConfigError(f"{name}={value!r} is not a dtype (e.g. jnp.float32)") from None
        self.in_features = in_features
        self.hidden_size = hidden_size
        self.init = self.default_init if init == "default" else init
        self.dtype = dtype
        self.param_dtype = param_dtype
        self.init_params(rngs, **options)

    def init_params(self, rngs: nnx.Rngs, **gate_options: Any) -> None:
        """Creates the parameters: w_x, w_h and b by the init preset, then the gate biases
        the cell sets (``adjust_bias``)."""
        w_x, w_h, b = init_kernels(
            self.init,
            rngs.params(),
            self.in_features,
            self.hidden_size,
            self.num_gates,
            self.param_dtype,
        )
        b = self.adjust_bias(b, rngs, **gate_options)
        self.w_x = nnx.Param(w_x)
        self.w_h = nnx.Param(w_h)
        self.b = nnx.Param(b)

    # -- hooks for subclasses --------------------------------------------------------------
    def adjust_bias(self, b: Array, rngs: nnx.Rngs, **gate_options: Any) -> Array:
        """Cells with gates set their bias blocks here (forget, carry, chrono). A cell
        without such gates takes no gate options: naming one is an error, not ignored."""
        if gate_options:
            raise ConfigError(f"{type(self).__name__} has no {', '.join(sorted(gate_options))}")
        if self.init == "chrono":
            raise ConfigError(
                f"init='chrono' sets LSTM/GRU gate biases; {type(self).__name__} has none"
            )
        return b

    def recurrent_params(self) -> dict[str, Array]:
        """The arrays ``step`` needs (everything but the input projection)."""
        return {"w_h": self.w_h[...]}

    def kernels(self) -> Kernels | None:
        """The cell's fast forward/backward kernels, or None (autodiff engine only)."""
        return None

    def step(self, params: dict[str, Array], carry: Carry, xp: Array) -> tuple[Carry, Array]:
        """One timestep from a projected input ``xp = x_t @ w_x + b``: (new_carry, h_t).

        Reads only ``params`` and static options, never the module's variables, so it is a
        pure function usable inside ``lax.scan``. By default it runs the forward kernel."""
        k = self.kernels()
        if k is None:
            raise NotImplementedError(f"{type(self).__name__} defines neither step nor kernels")
        new_carry, h, _ = k.fwd(matmul_operands(k.prep(params), self.dtype), carry, xp)
        return new_carry, h

    # -- shared ----------------------------------------------------------------------------
    def rescale_input_fan_in(self, fan_in: int) -> None:
        """Rescales the input kernel ``w_x`` from LeCun's fan-in ``in_features`` to ``fan_in``.

        LeCun normal assumes all ``in_features`` inputs are active with unit variance. A
        one-hot input has ONE active input, so its true fan-in is 1: with ``fan_in=1`` each
        row of ``w_x`` has unit variance, like an embedding (PyTorch's nn.Embedding is
        N(0, 1)), instead of 1/sqrt(vocab). On the char LM (2x256 LSTM) that alone takes the
        val loss after 600 steps from 1.752 to 1.515 nats/char
        (experiments/charlm_shakespeare/time_to_quality.md). The same random draws, only
        scaled; presets with fixed scales (char_rnn, irnn, torch) are left as they are."""
        scale = fan_in_rescale(self.in_features, fan_in)
        if self.init in FAN_IN_PRESETS:
            self.w_x[...] = self.w_x[...] * scale

    def project(self, x: Array) -> Array:
        """``x @ w_x + b`` over any leading axes: the hoisted input half of every step.

        Integer ``x`` are token ids standing for one-hot vectors: ``onehot(x) @ w_x`` is then
        a row lookup of ``w_x`` (ids outside ``[0, in_features)`` give zero rows, as a one-hot
        of them would). Same values, but no (B, T, V) one-hot tensor and no V-wide matmul.
        """
        w_x, b = self.w_x[...], self.b[...]
        if jnp.issubdtype(x.dtype, jnp.integer):
            valid = (x >= 0) & (x < self.in_features)
            rows = jnp.take(w_x, jnp.clip(x, 0, self.in_features - 1), axis=0)
            y = jnp.where(valid[..., None], rows, jnp.zeros((), w_x.dtype))
            if self.dtype is not None:  # round like the matmul path would
                y = y.astype(self.dtype)
            return y.astype(self.param_dtype) + b
        if self.dtype is not None:
            x, w_x = x.astype(self.dtype), w_x.astype(self.dtype)
        y = jnp.matmul(x, w_x, preferred_element_type=self.param_dtype)
        return y + b

    def output(self, params: dict[str, Array], carry: Carry, xp: Array) -> Array:
        """The step's output from the carry it leaves (and its projected input): h for every
        nonlinear cell; linear cells may read their state out (the LRU's Re(C h) + D x)."""
        return self.hidden(carry)

    def initial_carry(self, batch_size: int) -> Carry:
        return jnp.zeros((batch_size, self.hidden_size), self.param_dtype)

    @staticmethod
    def hidden(carry: Carry) -> Array:
        """The hidden state h inside a carry."""
        return carry

    @staticmethod
    def set_hidden(carry: Carry, h: Array) -> Carry:
        """The carry with its hidden state replaced (the probe perturbs h through this)."""
        return h


def chrono_bias(rngs: nnx.Rngs, hidden: int, max_len: int, dtype: Any) -> Array:
    """log(U[1, T_max - 1]): gate biases whose characteristic memory spans 1..T_max - 1
    steps (Tallec and Ollivier 2018, "Can recurrent neural networks warp time?")."""
    if max_len < 2:
        raise ConfigError(
            f"init='chrono' needs chrono_max_len >= 2 (the longest dependency), got {max_len}"
        )
    u = jax.random.uniform(rngs.params(), (hidden,), dtype, 1.0, max_len - 1.0)
    return jnp.log(u)


def recurrent_matmul(h: Array, w: Array) -> Array:
    """h @ w in the precision of w (the recurrent matmul lives on the critical path),
    accumulated in the wider of the two dtypes and returned in h's: with bfloat16 weights
    (``Cell.dtype``) and a float32 carry, a bfloat16 matmul with float32 accumulation."""
    acc = jnp.promote_types(h.dtype, w.dtype)
    return jnp.matmul(h.astype(w.dtype), w, preferred_element_type=acc).astype(h.dtype)


def get_activation(name: str) -> Callable[[Array], Array]:
    table = {"tanh": jnp.tanh, "relu": jax.nn.relu, "identity": lambda x: x}
    if name not in table:
        raise ConfigError(f"unknown activation {name!r}; choose one of {ACTIVATIONS}")
    return table[name]
