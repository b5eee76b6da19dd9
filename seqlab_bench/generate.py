"""``--mode generate``: jit-compiled text generation (``seqlab.models.generate.generate``)
from a seqlab ``LanguageModel``: the first call (compile + run) and the steady state."""

from __future__ import annotations

from typing import Any

import numpy as np

from seqlab_bench.peers import seqlab_model
from seqlab_bench.timing import round_robin, timed
from seqlab_bench.workload import Shape


def bench_generate(
    cell: str = "lstm",
    hidden: int = 512,
    layers: int = 2,
    length: int = 2000,
    *,
    vocab: int = 65,
    repeats: int = 5,
    prime_len: int = 16,
) -> dict[str, Any]:
    """Seconds to generate ``length`` characters after a random prime of ``prime_len``,
    temperature 0.8: the first call and the median of ``repeats`` later ones."""
    import jax

    from seqlab.models.generate import generate

    model = seqlab_model(cell, Shape(1, length, hidden, layers, vocab))
    prime = np.random.default_rng(0).integers(0, vocab, prime_len)
    key = jax.random.key(0)

    def run() -> Any:
        return jax.block_until_ready(generate(model, prime, length, key=key, temperature=0.8))

    _, first, _ = timed(run)
    t = round_robin({"generate": run}, max(repeats, 1))["generate"]
    return {
        "cell": cell,
        "hidden": hidden,
        "layers": layers,
        "chars": length,
        "prime_len": prime_len,
        "first_call_s": first,
        "median_s": t.median_wall,
        "median_cpu_s": t.median_cpu,
        "chars_per_s": length / t.median_wall,
        "times_s": t.wall,
    }
