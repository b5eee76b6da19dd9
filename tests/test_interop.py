"""PyTorch parity: ``seqlab.models.interop.from_torch`` loads nn.RNN / nn.LSTM / nn.GRU weights
and the seqlab stack then reproduces torch's outputs, final states and parameter gradients in
float64."""

from __future__ import annotations

import itertools
from typing import Any

import jax
import jax.numpy as jnp
import numpy as np
import pytest
from flax import nnx

torch = pytest.importorskip("torch")

from seqlab.models.interop import from_torch  # noqa: E402
from seqlab.recurrence import RNNStack  # noqa: E402

B, T, IN, H = 3, 6, 4, 5
TOL = {"rtol": 1e-10, "atol": 1e-12}

# name -> (torch constructor, seqlab cell name); rnn_* also set the cell's ``activation``
KINDS: dict[str, tuple[Any, str]] = {
    "rnn_tanh": (lambda **kw: torch.nn.RNN(nonlinearity="tanh", **kw), "rnn"),
    "rnn_relu": (lambda **kw: torch.nn.RNN(nonlinearity="relu", **kw), "rnn"),
    "lstm": (lambda **kw: torch.nn.LSTM(**kw), "lstm"),
    "gru": (lambda **kw: torch.nn.GRU(**kw), "gru"),
}


@pytest.fixture(autouse=True)
def x64():
    with jax.enable_x64(True):
        yield


def make_pair(
    kind: str, num_layers: int, bidirectional: bool, bias: bool = True, seed: int = 0
) -> tuple[Any, RNNStack]:
    """A float64 torch module with random weights and a seqlab stack loaded from it."""
    ctor, cell = KINDS[kind]
    torch.manual_seed(seed)
    tm = ctor(
        input_size=IN,
        hidden_size=H,
        num_layers=num_layers,
        bias=bias,
        batch_first=True,
        bidirectional=bidirectional,
    ).double()
    with torch.no_grad():  # non-default biases so bias folding is exercised
        for p in tm.parameters():
            p.uniform_(-0.6, 0.6)
    kw: dict[str, Any] = {"param_dtype": jnp.float64}
    if cell == "rnn":
        kw["activation"] = kind.split("_")[1]
    stack = RNNStack(
        cell,
        IN,
        H,
        num_layers,
        bidirectional=bidirectional,
        cell_kwargs=kw,
        rngs=nnx.Rngs(seed + 1),
    )
    from_torch(stack, {k: v.numpy() for k, v in tm.state_dict().items()})
    return tm, stack


def torch_layout(kind: str, stack: RNNStack, carry: list[Any]) -> list[np.ndarray]:
    """seqlab's final carry as torch's (L*D, B, H) tensors: [h_n] or [h_n, c_n] for LSTM."""
    per_dir = []
    for c in carry:
        per_dir.extend(c if stack.bidirectional else [c])
    if kind == "lstm":
        return [np.stack([np.asarray(c[1]) for c in per_dir]), np.stack([c[0] for c in per_dir])]
    return [np.stack([np.asarray(c) for c in per_dir])]


def torch_finals(kind: str, state: Any) -> list[np.ndarray]:
    states = list(state) if kind == "lstm" else [state]
    return [s.detach().numpy() for s in states]


def inputs(seed: int = 0) -> np.ndarray:
    return np.random.default_rng(seed).normal(size=(B, T, IN))


# Every pair of (layers, direction, bias) settings occurs for every kind (an orthogonal array:
# 4 runs per kind instead of the 8 of the full product, which adds no new interaction here).
PAIRWISE = [(1, False, True), (1, True, False), (2, False, False), (2, True, True)]
CASES = [(k, *c) for k, c in itertools.product(KINDS, PAIRWISE)]


@pytest.mark.parametrize(
    "kind,num_layers,bidirectional,bias",
    CASES,
    ids=[f"{k}-L{n}-{'bi' if d else 'uni'}-{'bias' if b else 'nobias'}" for k, n, d, b in CASES],
)
@pytest.mark.slow
def test_full_length_parity(kind, num_layers, bidirectional, bias):
    tm, stack = make_pair(kind, num_layers, bidirectional, bias)
    x = inputs()
    ty, tstate = tm(torch.from_numpy(x))
    y, aux = stack(jnp.asarray(x))
    assert y.dtype == jnp.float64
    assert y.shape == (B, T, H * (2 if bidirectional else 1))
    np.testing.assert_allclose(np.asarray(y), ty.detach().numpy(), **TOL)
    for ours, theirs in zip(
        torch_layout(kind, stack, aux["final_carry"]), torch_finals(kind, tstate), strict=True
    ):
        np.testing.assert_allclose(ours, theirs, **TOL)


@pytest.mark.parametrize("kind", list(KINDS))
@pytest.mark.slow
def test_variable_length_parity_with_packed_sequences(kind):
    """2-layer bidirectional (the forward direction is the unidirectional code path; the
    reverse one must read each example's valid prefix backwards, as packing does)."""
    pack = torch.nn.utils.rnn.pack_padded_sequence
    unpack = torch.nn.utils.rnn.pad_packed_sequence
    tm, stack = make_pair(kind, 2, True, seed=3)
    lengths = np.array([T, 2, 4])
    x = inputs(1)
    x_garbage = x.copy()
    for b, n in enumerate(lengths):  # padded steps hold garbage; nothing may read them
        x_garbage[b, n:] = 1e3
    packed = pack(
        torch.from_numpy(x_garbage), torch.tensor(lengths), batch_first=True, enforce_sorted=False
    )
    ty_packed, tstate = tm(packed)
    ty, tlens = unpack(ty_packed, batch_first=True, total_length=T)
    assert tlens.tolist() == lengths.tolist()
    y, aux = stack(jnp.asarray(x_garbage), lengths=jnp.asarray(lengths))
    y = np.asarray(y)
    valid = np.arange(T)[None, :] < lengths[:, None]
    np.testing.assert_allclose(y[valid], ty.detach().numpy()[valid], **TOL)
    assert np.all(y[~valid] == 0.0)  # seqlab emits zeros on padded steps (as torch pads)
    for ours, theirs in zip(
        torch_layout(kind, stack, aux["final_carry"]), torch_finals(kind, tstate), strict=True
    ):
        np.testing.assert_allclose(ours, theirs, **TOL)


@pytest.mark.slow
def test_lstm_parameter_gradients_match_torch():
    """d(sum outputs + sum final h)/d(weights): torch's per-tensor grads equal seqlab's,
    mapped back (kernels transposed; both torch biases receive the folded bias's gradient)."""
    tm, stack = make_pair("lstm", 2, True, seed=5)
    x = inputs(2)
    lengths = np.array([T, 3, 5])
    packed = torch.nn.utils.rnn.pack_padded_sequence(
        torch.from_numpy(x), torch.tensor(lengths), batch_first=True, enforce_sorted=False
    )
    ty_packed, (h_n, _) = tm(packed)
    ty, _ = torch.nn.utils.rnn.pad_packed_sequence(ty_packed, batch_first=True, total_length=T)
    (ty.sum() + h_n.sum()).backward()
    tgrads = {k: p.grad.numpy() for k, p in tm.named_parameters()}

    def loss(model: RNNStack) -> jax.Array:
        y, aux = model(jnp.asarray(x), lengths=jnp.asarray(lengths))
        h_sum = sum(jnp.sum(c[1]) for layer in aux["final_carry"] for c in layer)
        return jnp.sum(y) + h_sum

    grads = nnx.grad(loss)(stack)  # an nnx.State mirroring the stack
    for k in range(stack.num_layers):
        for suffix, direction in (("", "forward"), ("_reverse", "backward")):
            cell = grads["layers"][k][direction]["cell"]
            s = f"_l{k}{suffix}"
            np.testing.assert_allclose(cell["w_x"][...].T, tgrads[f"weight_ih{s}"], **TOL)
            np.testing.assert_allclose(cell["w_h"][...].T, tgrads[f"weight_hh{s}"], **TOL)
            np.testing.assert_allclose(cell["b"][...], tgrads[f"bias_ih{s}"], **TOL)
            np.testing.assert_allclose(cell["b"][...], tgrads[f"bias_hh{s}"], **TOL)
    assert np.abs(tgrads["weight_hh_l1_reverse"]).max() > 1e-3  # the check is not vacuous


def test_gru_b_hn_gradient_matches_torch_recurrent_n_bias():
    tm, stack = make_pair("gru", 1, False, seed=7)
    x = inputs(4)
    ty, _ = tm(torch.from_numpy(x))
    ty.pow(2).sum().backward()
    grads = nnx.grad(lambda m: jnp.sum(m(jnp.asarray(x))[0] ** 2))(stack)
    cell = grads["layers"][0]["cell"]
    tb_ih, tb_hh = tm.bias_ih_l0.grad.numpy(), tm.bias_hh_l0.grad.numpy()
    np.testing.assert_allclose(cell["b_hn"][...], tb_hh[2 * H :], **TOL)
    np.testing.assert_allclose(cell["b"][...], tb_ih, **TOL)  # folded r,z biases + input n bias
    np.testing.assert_allclose(cell["b"][...][: 2 * H], tb_hh[: 2 * H], **TOL)


def test_returns_the_stack_and_accepts_torch_tensors():
    tm, _ = make_pair("lstm", 1, False)
    stack = RNNStack("lstm", IN, H, cell_kwargs={"param_dtype": jnp.float64}, rngs=nnx.Rngs(0))
    assert from_torch(stack, tm.state_dict()) is stack  # tensors, not only numpy arrays
    x = inputs()
    ty, _ = tm(torch.from_numpy(x))
    np.testing.assert_allclose(np.asarray(stack(jnp.asarray(x))[0]), ty.detach().numpy(), **TOL)


def sd(kind: str, num_layers: int, bidirectional: bool) -> dict[str, np.ndarray]:
    tm = KINDS[kind][0](
        input_size=IN, hidden_size=H, num_layers=num_layers, bidirectional=bidirectional
    )
    return {k: v.numpy() for k, v in tm.state_dict().items()}


def stack_of(cell: str, num_layers: int = 1, bidirectional: bool = False) -> RNNStack:
    return RNNStack(cell, IN, H, num_layers, bidirectional=bidirectional, rngs=nnx.Rngs(0))


@pytest.mark.parametrize("torch_layers,our_layers", [(2, 1), (1, 2)])
def test_layer_count_mismatch_raises(torch_layers, our_layers):
    with pytest.raises(ValueError, match=f"state dict has {torch_layers} layers.*{our_layers}"):
        from_torch(stack_of("lstm", our_layers), sd("lstm", torch_layers, False))


def test_bidirectional_stack_with_unidirectional_state_dict_raises():
    with pytest.raises(ValueError, match="stack is bidirectional but the state dict is not"):
        from_torch(stack_of("gru", 1, True), sd("gru", 1, False))


def test_bidirectional_state_dict_with_unidirectional_stack_raises():
    with pytest.raises(ValueError, match="bidirectional=True"):
        from_torch(stack_of("gru", 1, False), sd("gru", 1, True))


def test_gru_reset_before_raises():
    with pytest.raises(ValueError, match="reset_after=True"):
        from_torch(stack_of("gru_reset_before"), sd("gru", 1, False))


def test_cell_kind_mismatch_raises_on_shapes():
    with pytest.raises(ValueError, match="shapes"):
        from_torch(stack_of("gru"), sd("lstm", 1, False))
