"""The Linear Recurrent Unit (Orvieto et al. 2023): a complex diagonal recurrence

    h_t = lambda * h_{t-1} + gamma * (B x_t),     y_t = Re(C h_t) + D x_t
    lambda = exp(-exp(nu) + i exp(theta)),        gamma = sqrt(1 - |lambda|^2) at init

with the "ring" initialization: |lambda| uniform on the ring r_min <= |lambda| <= r_max (by
area) and arg(lambda) uniform in [0, max_phase]; gamma is learned from that start
(``gamma_log``). B = B_re + i B_im and D x_t come from the hoisted input projection (D is a
dense in_features x hidden_size map; the paper's diagonal D is the case in = out);
C = C_re + i C_im maps the N = hidden_size complex states to hidden_size outputs.

The state is complex. Its ``hidden`` view (what the gradient probe perturbs and measures) is
[Re h, Im h], so ||dL/dh|| is the Euclidean norm of dL/dRe h and dL/dIm h together.
"""

from __future__ import annotations

import math

import jax
import jax.numpy as jnp
from flax import nnx

from seqlab.cells.base import Array, Carry, recurrent_matmul
from seqlab.cells.linear import LinearCell
from seqlab.config import DEFAULTS
from seqlab.errors import ConfigError

D = DEFAULTS.model


class LRUCell(LinearCell):
    def projection_width(self) -> int:
        return 3 * self.hidden_size  # [B_re x, B_im x, D x]

    def init_recurrence(
        self,
        rngs: nnx.Rngs,
        *,
        r_min: float = D.r_min,
        r_max: float = D.r_max,
        max_phase: float = D.max_phase,
    ) -> None:
        if not (0.0 <= r_min <= r_max < 1.0 and r_max > 0) or not 0 < max_phase <= 2 * math.pi:
            raise ConfigError(  # r_max = 0: lambda = 0 and nu_log = inf; a phase is an angle
                f"LRU needs 0 <= r_min <= r_max < 1, r_max > 0 and 0 < max_phase <= 2 pi, got "
                f"{r_min}, {r_max}, {max_phase}"
            )
        n, dt = self.hidden_size, self.param_dtype
        k1, k2, k3, k4, k5 = jax.random.split(rngs.params(), 5)
        u1, u2 = jax.random.uniform(k1, (n,), dt), jax.random.uniform(k2, (n,), dt)
        nu_log = jnp.log(-0.5 * jnp.log(u1 * (r_max**2 - r_min**2) + r_min**2))
        theta_log = jnp.log(max_phase * u2)
        mod = jnp.exp(-jnp.exp(nu_log))
        self.nu_log, self.theta_log = nnx.Param(nu_log), nnx.Param(theta_log)
        self.gamma_log = nnx.Param(jnp.log(jnp.sqrt(1.0 - mod**2)))
        # B ~ N(0, 1/(2 in)) per part (the paper's complex normalization); C ~ N(0, 1/N)
        w_x = self.w_x[...]
        std_b = (2.0 * self.in_features) ** -0.5
        b_re = std_b * jax.random.normal(k3, (self.in_features, n), dt)
        b_im = std_b * jax.random.normal(k4, (self.in_features, n), dt)
        self.w_x = nnx.Param(jnp.concatenate([b_re, b_im, w_x[:, 2 * n :]], axis=1))
        c = jax.random.normal(k5, (2, n, n), dt) * n**-0.5
        self.c_re, self.c_im = nnx.Param(c[0]), nnx.Param(c[1])

    def recurrent_params(self) -> dict[str, Array]:
        names = ("nu_log", "theta_log", "gamma_log", "c_re", "c_im")
        return {k: getattr(self, k)[...] for k in names}

    @staticmethod
    def lam(params: dict[str, Array]) -> Array:
        return jnp.exp(-jnp.exp(params["nu_log"]) + 1j * jnp.exp(params["theta_log"]))

    def coefficients(self, params: dict[str, Array], xp: Array) -> tuple[Array, Array]:
        n = self.hidden_size
        bx = jax.lax.complex(xp[..., :n], xp[..., n : 2 * n])
        return self.lam(params), jnp.exp(params["gamma_log"]) * bx

    def output(self, params: dict[str, Array], carry: Carry, xp: Array) -> Array:
        n, dt = self.hidden_size, self.dtype  # the compute dtype (None: the parameters')
        c_re, c_im = (params[k] if dt is None else params[k].astype(dt) for k in ("c_re", "c_im"))
        y = recurrent_matmul(jnp.real(carry), c_re) - recurrent_matmul(jnp.imag(carry), c_im)
        return y + xp[..., 2 * n :]

    def initial_carry(self, batch_size: int) -> Carry:
        dtype = jnp.result_type(self.param_dtype, jnp.complex64)
        return jnp.zeros((batch_size, self.hidden_size), dtype)

    @staticmethod
    def hidden(carry: Carry) -> Array:
        return jnp.concatenate([jnp.real(carry), jnp.imag(carry)], axis=-1)

    @staticmethod
    def set_hidden(carry: Carry, h: Array) -> Carry:
        n = h.shape[-1] // 2
        return jax.lax.complex(h[..., :n], h[..., n:])
