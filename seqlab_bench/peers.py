"""The models compared: seqlab's ``LanguageModel`` (one peer per recurrence backend), stock
Flax (``nnx.RNN`` over Flax's own cells) and PyTorch (``nn.LSTM``/``nn.GRU``/``nn.RNN``; on the
CPU, and as ``torch_cuda`` on a CUDA GPU, cuDNN), each the same char-LM on the same tokens.

PyTorch is a peer only: it is imported lazily, in this module alone, and a missing PyTorch
just drops its peer.
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

import numpy as np

from seqlab_bench.timing import timed
from seqlab_bench.workload import PASSES, Peer, Shape, jax_peer

PEERS = ("seqlab", "flax", "torch", "torch_cuda")
TORCH_CELLS = {"lstm": "LSTM", "gru": "GRU", "rnn": "RNN"}
FLAX_CELLS = {"lstm": "OptimizedLSTMCell", "gru": "GRUCell", "rnn": "SimpleCell"}


# -- seqlab --------------------------------------------------------------------------------


def seqlab_model(cell: str, shape: Shape, seed: int = 0, **kw: Any) -> Any:
    """seqlab's ``LanguageModel`` on one-hot input; ``kw`` (backend, unroll, remat) passes on."""
    from flax import nnx

    from seqlab.models import LanguageModel

    return LanguageModel(
        shape.vocab,
        cell=cell,
        hidden_size=shape.hidden,
        num_layers=shape.layers,
        input_kind="onehot",
        rngs=nnx.Rngs(seed),
        **kw,
    )


def set_backend(model: Any, impl: str) -> Any:
    """Runs every ``Recurrent`` layer of ``model`` on backend ``impl``; returns the model.

    Call it before ``nnx.split``: the backend is a static attribute, so a graphdef taken
    earlier keeps the old one. A cell without fast kernels runs ``scan`` (said once)."""
    from flax import nnx

    from seqlab.recurrence.layers import Recurrent, resolve_backend

    for _, m in nnx.iter_graph(model):
        if isinstance(m, Recurrent):
            m.engine = resolve_backend(m.cell, impl)  # unknown names fail here, in one line
            m.backend = impl
    return model


def seqlab_peer(
    cell: str,
    shape: Shape,
    tokens: np.ndarray,
    *,
    impl: str = "scan",
    lr: float = 1e-3,
    seed: int = 0,
    unroll: int = 1,
    remat: bool = False,
    model: Any = None,
    modes: Sequence[str] = PASSES,
) -> Peer:
    """seqlab's LanguageModel with the given recurrence implementation."""
    model = set_backend(model or seqlab_model(cell, shape, seed, unroll=unroll, remat=remat), impl)
    return jax_peer("seqlab", impl, model, lambda m, x: m(x)[0], tokens, lr, modes)


# -- stock Flax ----------------------------------------------------------------------------


def flax_model(cell: str, shape: Shape, seed: int = 0) -> Any:
    """Stock Flax: ``nnx.RNN`` layers over Flax's own cells, one-hot input, Linear head."""
    import jax
    import jax.numpy as jnp
    from flax import nnx

    if cell not in FLAX_CELLS:
        raise ValueError(f"stock Flax has no {cell!r} cell; choose one of {sorted(FLAX_CELLS)}")
    cls = getattr(nnx, FLAX_CELLS[cell])

    class FlaxLM(nnx.Module):
        def __init__(self, rngs: nnx.Rngs):
            sizes = [shape.vocab] + [shape.hidden] * shape.layers
            self.rnns = nnx.List(
                [nnx.RNN(cls(i, shape.hidden, rngs=rngs), rngs=False) for i in sizes[:-1]]
            )
            self.head = nnx.Linear(shape.hidden, shape.vocab, rngs=rngs)

        def __call__(self, tokens):
            x = jax.nn.one_hot(tokens, shape.vocab)
            zeros = jnp.zeros((tokens.shape[0], shape.hidden), x.dtype)
            carry = (zeros, zeros) if cell == "lstm" else zeros  # no rng use inside jit
            for rnn in self.rnns:
                x = rnn(x, initial_carry=carry)
            return self.head(x)

    return FlaxLM(nnx.Rngs(seed))


def flax_peer(
    cell: str,
    shape: Shape,
    tokens: np.ndarray,
    *,
    lr: float = 1e-3,
    seed: int = 0,
    modes: Sequence[str] = PASSES,
) -> Peer:
    """Stock Flax's LM (``flax_model``) on the same step as seqlab's."""
    model = flax_model(cell, shape, seed)
    return jax_peer("flax", "-", model, lambda m, x: m(x), tokens, lr, modes=modes)


# -- PyTorch -------------------------------------------------------------------------------


def torch_available() -> bool:
    """Whether PyTorch imports (it is optional: without it the torch peer is left out)."""
    try:
        import torch  # noqa: F401
    except ImportError:
        return False
    return True


def set_torch_threads(n: int) -> int | None:
    """Gives PyTorch n compute threads (n > 0); the count it reports, None without PyTorch."""
    if n <= 0 or not torch_available():
        return None
    import torch

    torch.set_num_threads(n)
    return torch.get_num_threads()


def torch_model(cell: str, shape: Shape, seed: int = 0) -> Any:
    """PyTorch: ``nn.LSTM``/``nn.GRU``/``nn.RNN`` (batch-first) on one-hot input + Linear."""
    import torch

    if cell not in TORCH_CELLS:
        raise ValueError(f"PyTorch has no {cell!r} cell; choose one of {sorted(TORCH_CELLS)}")
    torch.manual_seed(seed)

    class TorchLM(torch.nn.Module):
        def __init__(self):
            super().__init__()
            rnn_cls = getattr(torch.nn, TORCH_CELLS[cell])
            self.rnn = rnn_cls(shape.vocab, shape.hidden, shape.layers, batch_first=True)
            self.head = torch.nn.Linear(shape.hidden, shape.vocab)

        def forward(self, tokens):
            x = torch.nn.functional.one_hot(tokens.long(), shape.vocab).float()
            return self.head(self.rnn(x)[0])

    return TorchLM()


def torch_loss(model: Any, tokens: np.ndarray) -> Any:
    """Mean cross-entropy of the PyTorch LM's next-token predictions on ``tokens``."""
    import torch

    t = torch.as_tensor(tokens)
    logits = model(t[:, :-1])
    return torch.nn.functional.cross_entropy(
        logits.reshape(-1, logits.shape[-1]), t[:, 1:].reshape(-1).long()
    )


def torch_peer(
    cell: str,
    shape: Shape,
    tokens: np.ndarray,
    *,
    lr: float = 1e-3,
    seed: int = 0,
    model: Any = None,
    modes: Sequence[str] = PASSES,
) -> Peer:
    """PyTorch's LM (``torch_model``) with Adam; ``model`` to start from given weights."""
    import torch

    model = model or torch_model(cell, shape, seed)
    opt = torch.optim.Adam(model.parameters(), lr=lr)

    def train() -> float:
        opt.zero_grad(set_to_none=True)
        loss = torch_loss(model, tokens)
        loss.backward()
        opt.step()
        return float(loss.item())

    def forward() -> float:
        with torch.inference_mode():
            return float(torch_loss(model, tokens).item())

    run = {"train": train, "forward": forward}
    first = {m: timed(run[m])[1] for m in modes}
    return Peer("torch", "-", train, forward, first, {m: None for m in modes}, {})


# -- PyTorch on a CUDA GPU (cuDNN) --------------------------------------------------------


def torch_cuda_available() -> bool:
    """Whether PyTorch imports and sees a CUDA GPU."""
    if not torch_available():
        return False
    import torch

    return bool(torch.cuda.is_available())


def set_torch_tf32(allow: bool) -> None:
    """Lets (or forbids) PyTorch's cuBLAS matmuls and cuDNN RNNs use TF32 for float32."""
    import torch

    torch.backends.cuda.matmul.allow_tf32 = allow
    torch.backends.cudnn.allow_tf32 = allow


def torch_cuda_peer(
    cell: str,
    shape: Shape,
    tokens: np.ndarray,
    *,
    lr: float = 1e-3,
    seed: int = 0,
    bf16: bool = False,
    modes: Sequence[str] = PASSES,
) -> Peer:
    """PyTorch's LM (``torch_model``) on the GPU: ``nn.LSTM``/``GRU``/``RNN`` run cuDNN's
    kernels. ``bf16``: under ``torch.autocast(bfloat16)`` (float32 weights, bfloat16
    matmuls); TF32 as ``set_torch_tf32`` left it. Impl ``cuda`` or ``cuda-bf16``."""
    import torch

    model = torch_model(cell, shape, seed).cuda()
    opt = torch.optim.Adam(model.parameters(), lr=lr)
    t = torch.as_tensor(tokens).cuda().long()

    def loss() -> Any:
        with torch.autocast("cuda", dtype=torch.bfloat16, enabled=bf16):
            logits = model(t[:, :-1]).float()
        return torch.nn.functional.cross_entropy(
            logits.reshape(-1, logits.shape[-1]), t[:, 1:].reshape(-1)
        )

    def train() -> float:
        opt.zero_grad(set_to_none=True)
        value = loss()
        value.backward()
        opt.step()
        return float(value.item())  # .item() waits for the GPU

    def forward() -> float:
        with torch.inference_mode():
            return float(loss().item())

    run = {"train": train, "forward": forward}
    first = {m: timed(run[m])[1] for m in modes}
    impl = "cuda-bf16" if bf16 else "cuda"
    return Peer("torch", impl, train, forward, first, {m: None for m in modes}, {})


# -- all of them ---------------------------------------------------------------------------


def build_peers(
    cell: str,
    shape: Shape,
    tokens: np.ndarray,
    peers: Sequence[str],
    impls: Sequence[str],
    *,
    lr: float = 1e-3,
    seed: int = 0,
    unroll: int = 1,
    remat: bool = False,
    modes: Sequence[str] = PASSES,
) -> list[Peer]:
    """The peers that exist for ``cell``: stock Flax and PyTorch only have rnn, lstm, gru."""
    out = []
    kw = {"lr": lr, "seed": seed, "modes": modes}
    for p in peers:
        if p == "seqlab":
            for impl in impls:
                out.append(
                    seqlab_peer(cell, shape, tokens, impl=impl, unroll=unroll, remat=remat, **kw)
                )
        elif p == "flax" and cell in FLAX_CELLS:
            out.append(flax_peer(cell, shape, tokens, **kw))
        elif p == "torch" and cell in TORCH_CELLS and torch_available():
            out.append(torch_peer(cell, shape, tokens, **kw))
        elif p == "torch_cuda" and cell in TORCH_CELLS and torch_cuda_available():
            out.append(torch_cuda_peer(cell, shape, tokens, **kw))
    return out
