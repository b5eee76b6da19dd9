"""Mixed precision: ``model.dtype=bfloat16`` over ``model.param_dtype=float32`` runs the
matmuls in bfloat16 (accumulated in float32) and keeps parameters, carry, gradients and loss
in float32, on every engine (scan, fast -- no fallback -- and parallel for a linear cell).
Measured on these models (CPU): loss within 4e-4 and gradients within 5.4e-3 (relative norm
per parameter) of float32 compute; in bfloat16 the engines give the same loss and gradients
within 4.2e-3 (in float32, 2e-7)."""

from __future__ import annotations

import logging
from typing import Any

import jax
import jax.numpy as jnp
import numpy as np
import pytest
from flax import nnx

from seqlab.config import base_config
from seqlab.models.build import build_model
from seqlab.recurrence import Recurrent, fast
from seqlab.tasks.base import ModelSpec, cross_entropy

V, H, B, T = 11, 16, 4, 10
#: the engines each cell is checked on (the LRU's ``fast`` is ``scan`` on CPU, else parallel)
ENGINES = {cell: ("scan", "fast") for cell in ("lstm", "gru", "rnn")} | {
    "lru": ("scan", "parallel")
}
LOSS_RTOL = 2e-3  # bfloat16 compute vs float32 compute, relative
GRAD_RTOL = 2e-2  # per parameter: ||g_bf16 - g_f32|| / ||g_f32||
ENGINE_RTOL = 1e-2  # two engines, both in bfloat16


def model(cell: str, backend: str, dtype: str, like: Any = None) -> Any:
    """The char-LM ``config.model`` describes; ``like``: a model to copy parameters from
    (then built from shapes only: no initializer runs)."""
    m = base_config().model
    m.cell, m.hidden_size, m.backend, m.dtype, m.param_dtype = cell, H, backend, dtype, "float32"
    build = lambda: build_model(m, ModelSpec("lm", vocab_size=V), nnx.Rngs(0))
    if like is None:
        return build()
    lm = nnx.eval_shape(build)
    nnx.update(lm, nnx.state(like, nnx.Param))
    return lm


def loss_grads(lms: dict[Any, Any]) -> dict[Any, Any]:
    """Each model's (loss, grads, final carry) on one batch, in one compiled program."""
    tokens = jnp.asarray(np.random.default_rng(0).integers(0, V, (B, T + 1)), jnp.int32)
    splits = {k: nnx.split(lm, nnx.Param, ...) for k, lm in lms.items()}

    def one(graphdef: Any, rest: Any) -> Any:
        def loss(p: Any) -> Any:
            logits, aux = nnx.merge(graphdef, p, rest)(tokens[:, :-1])
            return cross_entropy(logits, tokens[:, 1:]).mean(), aux["final_carry"]

        return jax.value_and_grad(loss, has_aux=True)

    fns = {k: one(g, rest) for k, (g, _, rest) in splits.items()}
    out = jax.jit(lambda ps: {k: fns[k](p) for k, p in ps.items()})(
        {k: p for k, (_, p, _) in splits.items()}
    )
    return {k: (loss, grads, carry, splits[k][1]) for k, ((loss, carry), grads) in out.items()}


@pytest.fixture(scope="module")
def runs() -> dict[tuple[str, str, str], Any]:
    """(cell, engine, compute dtype) -> (loss, grads, final carry, params, model, and the
    warnings logged while building and tracing them all)."""
    fast._said.clear()
    handler = _Lines()
    logging.getLogger("seqlab").addHandler(handler)
    try:
        lms = {}
        for cell, engines in ENGINES.items():
            ref = lms[cell, "scan", "float32"] = model(cell, "scan", "float32")
            lms.update({(cell, e, "bfloat16"): model(cell, e, "bfloat16", ref) for e in engines})
        results = loss_grads(lms)
    finally:
        logging.getLogger("seqlab").removeHandler(handler)
    return {key: (*r, lms[key], handler.lines) for key, r in results.items()}


class _Lines(logging.Handler):
    def __init__(self) -> None:
        super().__init__(logging.WARNING)
        self.lines: list[str] = []

    def emit(self, record: logging.LogRecord) -> None:
        self.lines.append(record.getMessage())


def rel(a: Any, b: Any) -> float:
    a, b = np.asarray(a, np.float64), np.asarray(b, np.float64)
    return float(np.linalg.norm(a - b) / max(np.linalg.norm(b), 1e-30))


CASES = [(c, e) for c, engines in ENGINES.items() for e in engines]


@pytest.mark.slow
@pytest.mark.parametrize(("cell", "engine"), CASES)
def test_bfloat16_compute_is_float32_within_tolerance(runs: Any, cell: str, engine: str) -> None:
    loss, grads, carry, params, lm, lines = runs[cell, engine, "bfloat16"]
    ref_loss, ref_grads = runs[cell, "scan", "float32"][:2]
    assert not lines, lines  # no engine fell back
    assert [m.engine for _, m in nnx.iter_graph(lm) if isinstance(m, Recurrent)] == [engine]
    assert loss.dtype == jnp.float32
    assert float(loss) != float(ref_loss)  # bfloat16 did round something
    assert abs(float(loss) - float(ref_loss)) <= LOSS_RTOL * abs(float(ref_loss))
    for leaf in jax.tree.leaves((params, grads)):
        assert leaf.dtype == jnp.float32
    for leaf in jax.tree.leaves(carry):
        assert leaf.dtype in (jnp.float32, jnp.complex64)  # the LRU's state is complex
    pairs = zip(jax.tree.leaves(grads), jax.tree.leaves(ref_grads), strict=True)
    worst = max(rel(g, r) for g, r in pairs)
    assert worst <= GRAD_RTOL, worst


@pytest.mark.parametrize("cell", list(ENGINES))
def test_engines_agree_in_bfloat16(runs: Any, cell: str) -> None:
    a, b = (runs[cell, e, "bfloat16"] for e in ENGINES[cell])
    assert abs(float(a[0]) - float(b[0])) <= ENGINE_RTOL * abs(float(b[0]))
    for g, r in zip(jax.tree.leaves(a[1]), jax.tree.leaves(b[1]), strict=True):
        assert rel(g, r) <= ENGINE_RTOL


def loop_dots(jaxpr: Any, in_loop: bool = False) -> list[tuple[tuple[str, ...], str]]:
    """(input dtypes, output dtype) of every dot_general inside a scan, at any depth."""
    out = []
    for eqn in jaxpr.eqns:
        if eqn.primitive.name == "dot_general" and in_loop:
            ins = tuple(v.aval.dtype.name for v in eqn.invars)
            out.append((ins, eqn.outvars[0].aval.dtype.name))
        for p in eqn.params.values():
            for sub in p if isinstance(p, tuple | list) else (p,):
                sub = getattr(sub, "jaxpr", sub)
                if hasattr(sub, "eqns"):
                    out += loop_dots(sub, in_loop or eqn.primitive.name == "scan")
    return out


def test_fast_engine_multiplies_in_bfloat16_accumulates_in_float32() -> None:
    """Every matmul inside the fast engine's loops (the forward's recurrent matmul, the
    backward's by W^T) takes bfloat16 operands and returns float32."""
    lm = model("lstm", "fast", "bfloat16")
    graphdef, params, rest = nnx.split(lm, nnx.Param, ...)
    f = lambda p: jnp.sum(nnx.merge(graphdef, p, rest)(jnp.zeros((B, T), jnp.int32))[0])
    dots = loop_dots(jax.make_jaxpr(jax.grad(f))(params).jaxpr)
    assert len(dots) >= 2 and set(dots) == {(("bfloat16", "bfloat16"), "float32")}, dots
