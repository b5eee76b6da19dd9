"""The chunked parallel engine for delta-rule cells (DeltaNet, Gated DeltaNet): within a chunk
of C steps every state update is solved at once, between chunks the (d_v x d_k) state is
carried by a ``lax.scan`` (Yang et al. 2024, section 3; the gated form as in Yang, Kautz &
Hatamizadeh 2025). Derivation, per head, with S_0 the state entering the chunk,
g_t = prod_{i<=t} alpha_i and G[t, i] = g_t / g_i:

    S_t = g_t S_0 + sum_{i<=t} G[t, i] d_i k_i^T        (d_i: the i-th update's write)
    (I + diag(c beta) (tril_{-1}(K K^T) * G)) D = diag(beta) V - diag(c beta g) K S_0^T
    O = diag(g) Q S_0^T + (tril(Q K^T) * G) D,          S_C = g_C S_0 + (D * G[C, :])^T K

one unit-lower-triangular solve per chunk (c = 2 with negative eigenvalues: the sign lives in
c, so nothing here takes the log of a transition). ``chunk_size=0`` is one chunk of all T
steps. Padded steps get beta = 0 and alpha = 1 (inert). A probe perturbation of the state at
every step has no chunked form: with one, the sequential scan runs instead.
"""

from __future__ import annotations

import jax
import jax.numpy as jnp

from seqlab.cells.base import Array, Carry
from seqlab.recurrence.scan import Loop, over_time, scan_core


def _chunk(S0: Array, q, k, v, beta, log_g, c: float):
    """One chunk, batched over (B, heads): q, k, v (B, n, C, d), beta, log_g (B, n, C)."""
    C = q.shape[2]
    strict = jnp.tril(jnp.ones((C, C), bool), -1)
    incl = jnp.tril(jnp.ones((C, C), bool))
    G = jnp.exp(jnp.where(incl, log_g[..., :, None] - log_g[..., None, :], -jnp.inf))
    g = jnp.exp(log_g)
    kk = jnp.einsum("bntd,bnsd->bnts", k, k)
    A = jnp.eye(C, dtype=q.dtype) + (c * beta)[..., None] * jnp.where(strict, kk * G, 0)
    ks0 = jnp.einsum("bntk,bnvk->bntv", k, S0)  # (K S_0^T)
    rhs = beta[..., None] * v - (c * beta * g)[..., None] * ks0
    D = jax.scipy.linalg.solve_triangular(A, rhs, lower=True, unit_diagonal=True)
    qk = jnp.einsum("bntd,bnsd->bnts", q, k) * G  # G is zero above the diagonal
    out = g[..., None] * jnp.einsum("bntk,bnvk->bntv", q, S0) + jnp.einsum("bnts,bnsv->bntv", qk, D)
    w = G[..., -1, :]  # g_C / g_i
    S = g[..., -1, None, None] * S0 + jnp.einsum("bnsv,bnsk->bnvk", D * w[..., None], k)
    return S, out


def chunked_core(cell, xp: Array, carry: Carry, loop: Loop) -> tuple[Array, Carry]:
    """See the module doc and ``scan.over_time``."""
    if loop.eps is not None:  # the probe's per-step perturbation: the sequential form
        return scan_core(cell, xp, carry, loop)
    params = cell.recurrent_params()
    q, k, v, beta, alpha = cell.inputs(params, xp)  # (B, T, n, d), (B, T, n)
    log_g = jnp.log(alpha)
    if loop.mask is not None:
        m = loop.mask.T[..., None]  # (B, T, 1)
        beta, log_g = jnp.where(m, beta, 0), jnp.where(m, log_g, 0)
    if loop.reverse:
        q, k, v, beta, log_g = (jnp.flip(a, 1) for a in (q, k, v, beta, log_g))
    B, T, n, d = q.shape
    C = loop.chunk if 0 < loop.chunk < T else T
    pad = -T % C
    if pad:  # inert steps at the end
        padt = lambda a: jnp.pad(a, [(0, 0), (0, pad)] + [(0, 0)] * (a.ndim - 2))
        q, k, v, beta, log_g = map(padt, (q, k, v, beta, log_g))
    nc = (T + pad) // C
    # (B, T, n, ...) -> (chunks, B, n, C, ...)
    to = lambda a: jnp.moveaxis(a.reshape(B, nc, C, n, *a.shape[3:]), (1, 2), (0, 3))
    q, k, v, beta, log_g = map(to, (q, k, v, beta, log_g))
    log_g = jnp.cumsum(log_g, axis=-1)
    c = 2.0 if cell.negative_eigenvalues else 1.0

    def body(S, ch):
        S, out = _chunk(S, *ch, c)
        return S, out

    if loop.remat:
        body = jax.checkpoint(body)
    S, out = jax.lax.scan(body, carry, (q, k, v, beta, log_g))  # out: (nc, B, n, C, d)
    out = jnp.moveaxis(out, (0, 3), (1, 2)).reshape(B, nc * C, n * d)[:, :T]
    if loop.reverse:
        out = jnp.flip(out, 1)
    return jnp.swapaxes(out, 0, 1), S


#: the chunked engine's public form (the keywords of ``seqlab.recurrence.run_cell``)
run_chunked = over_time(chunked_core)
