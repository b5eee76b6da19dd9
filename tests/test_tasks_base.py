"""The shared task helpers in seqlab.tasks.base."""

from __future__ import annotations

import jax
import numpy as np

from seqlab.tasks.base import cross_entropy


def test_cross_entropy_matches_float64_reference_and_its_gradient():
    rng = np.random.default_rng(0)
    logits = rng.normal(size=(3, 5, 7)) * 4
    labels = rng.integers(0, 7, (3, 5))
    z = logits - logits.max(-1, keepdims=True)
    logp = z - np.log(np.exp(z).sum(-1, keepdims=True))
    want = -np.take_along_axis(logp, labels[..., None], -1)[..., 0]
    with jax.enable_x64():
        got = cross_entropy(jax.numpy.asarray(logits), jax.numpy.asarray(labels))
        np.testing.assert_allclose(got, want, rtol=1e-12, atol=1e-12)
        # d/dlogits of the summed loss is softmax - one_hot
        grad = jax.grad(lambda lg: cross_entropy(lg, jax.numpy.asarray(labels)).sum())(
            jax.numpy.asarray(logits)
        )
    np.testing.assert_allclose(grad, np.exp(logp) - np.eye(7)[labels], rtol=1e-12, atol=1e-12)
