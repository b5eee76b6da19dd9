"""Minimal gated unit (Zhou et al. 2016): a GRU with one gate doing both jobs.

    f = sigmoid(x W_xf + h W_hf + b_f)
    n = tanh(x W_xn + b_n + (f * h) W_hn)
    h' = (1 - f) * h + f * n

Here as the worked example of adding a cell with fast kernels: the forward (which is also
``step``), its hand-written backward, and one registry line in ``cells/__init__.py``. A cell
can also just override ``step`` and leave ``kernels`` out: it then trains on the autodiff
engine, and ``backend=fast`` says so once in the log.
"""

from __future__ import annotations

import jax.numpy as jnp

from seqlab.cells.base import Array, Cell, recurrent_matmul
from seqlab.cells.kernels import Kernels, Params, cat, first_res, gated_wgrad, split, two_blocks
from seqlab.cells.kernels import sigmoid_via_tanh as sig


def _fwd(q: Params, h: Array, xp: Array):
    x_f, x_n = split(xp, 2)
    f = sig(jnp.tanh(0.5 * (x_f + recurrent_matmul(h, q["w1"]))))
    n = jnp.tanh(x_n + recurrent_matmul(f * h, q["w2"]))
    h_new = (1.0 - f) * h + f * n
    return h_new, h_new, (f, n)


def _bwd(q: Params, res, h: Array, cur: Array, dh: Array):
    f, n = res
    dn = dh * f * (1.0 - n * n)
    u = recurrent_matmul(dn, q["t2"])  # gradient w.r.t. f * h
    df = (dh * (n - h) + u * h) * f * (1.0 - f)
    return dh * (1.0 - f) + u * f + recurrent_matmul(df, q["t1"]), cat(df, dn)


KERNELS = Kernels(two_blocks(1), _fwd, _bwd, first_res, gated_wgrad(1))


class MGUCell(Cell):
    num_gates = 2

    def kernels(self) -> Kernels:
        return KERNELS
