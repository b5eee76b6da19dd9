"""FLOPs and bytes of one step, counted from its jaxpr with every loop's trip count: XLA's
``cost_analysis`` counts a ``lax.scan`` body once, not T times, which for a recurrence
undercounts by the sequence length (and GPU targets return no cost analysis at all)."""

from __future__ import annotations

import math
from dataclasses import dataclass
from typing import Any

from jax.extend import core as jcore

#: elementwise arithmetic: one FLOP per output element (transcendentals counted as one too)
ELEMENTWISE = {
    "add", "sub", "mul", "div", "max", "min", "neg", "exp", "exp2", "log", "log1p", "expm1",
    "tanh", "logistic", "sqrt", "rsqrt", "pow", "integer_pow", "abs", "sign", "select_n",
    "erf", "sin", "cos", "square", "rem", "add_any", "atan2", "cbrt", "clamp",
}  # fmt: skip
#: reductions and cumulative ops: one FLOP per input element
REDUCTIONS = {
    "reduce_sum", "reduce_max", "reduce_min", "reduce_prod", "argmax", "argmin", "cumsum",
    "cumprod", "cummax", "cummin", "cumlogsumexp",
}  # fmt: skip


@dataclass
class Cost:
    flops: float = 0.0
    matmul_bytes: float = 0.0  # operands + result of every matmul, every time it runs
    unknown_loops: int = 0  # while loops without a static trip count (counted once)
    serial: int = 0  # loop iterations that run one after another (each a dependent step)

    def add(self, other: Cost, times: float = 1.0) -> None:
        self.flops += times * other.flops
        self.matmul_bytes += times * other.matmul_bytes
        self.unknown_loops += other.unknown_loops
        self.serial += int(times) * other.serial


def _size(aval: Any) -> int:
    return math.prod(getattr(aval, "shape", ()))


def _bytes(aval: Any) -> int:
    dtype = getattr(aval, "dtype", None)
    return _size(aval) * (dtype.itemsize if hasattr(dtype, "itemsize") else 0)


def _sub(params: dict) -> list[Any]:
    """The jaxprs inside an equation's parameters (call, remat, custom_jvp/vjp, pjit)."""
    out = []
    for v in params.values():
        for x in v if isinstance(v, (tuple, list)) else (v,):
            if isinstance(x, jcore.ClosedJaxpr):
                out.append(x.jaxpr)
            elif isinstance(x, jcore.Jaxpr):
                out.append(x)
    return out


def jaxpr_cost(jaxpr: Any) -> Cost:
    """FLOPs and matmul bytes of ``jaxpr`` (a Jaxpr or ClosedJaxpr), loops multiplied out."""
    jaxpr = getattr(jaxpr, "jaxpr", jaxpr)
    cost = Cost()
    for eqn in jaxpr.eqns:
        name, params = eqn.primitive.name, eqn.params
        if name == "scan":
            body = jaxpr_cost(params["jaxpr"])
            body.serial += 1  # this loop's own iteration
            cost.add(body, params["length"])
        elif name == "while":
            body = jaxpr_cost(params["body_jaxpr"])
            body.serial += 1
            cost.add(body)
            cost.unknown_loops += 1
        elif name == "cond":
            branches = [jaxpr_cost(b) for b in params["branches"]]
            cost.add(max(branches, key=lambda c: c.flops))
        elif name == "dot_general":
            (lc, _), _ = params["dimension_numbers"]
            lhs = eqn.invars[0].aval
            k = math.prod(lhs.shape[i] for i in lc)
            cost.flops += 2.0 * _size(eqn.outvars[0].aval) * k
            cost.matmul_bytes += sum(_bytes(v.aval) for v in (*eqn.invars, *eqn.outvars))
        elif name in ELEMENTWISE:
            cost.flops += sum(_size(v.aval) for v in eqn.outvars)
        elif name in REDUCTIONS:
            cost.flops += _size(eqn.invars[0].aval)
        else:
            for sub in _sub(params):
                cost.add(jaxpr_cost(sub))
    return cost
