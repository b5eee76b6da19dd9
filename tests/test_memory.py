"""seqlab.run.memory: the estimate of a training step's memory against what XLA's compiled
step says it needs, the refusal of what cannot fit, and allocation failures as one line."""

from __future__ import annotations

import jax
import pytest

from seqlab.errors import ConfigError, RunError, UsageError
from seqlab.run import memory
from seqlab.run.state import init_train_state, make_train_step
from seqlab.tasks import complete_config, make_task, task_config

#: how far the estimate may be from XLA's count (arguments + temporaries of the compiled,
#: donated step on CPU). Measured on jax 0.10: 1.00-1.45x over LSTM/GRU/RNN/MGU, both
#: backends, remat, 1-3 layers, bidirectional, linear cells, char LM, seq2seq, and a step
#: dominated by its parameters.
FACTOR = 2.0


def config(task="adding", cell="lstm", hidden=32, layers=1, batch=16, seq_len=60, **model):
    c = task_config(task)
    c.model.cell, c.model.hidden_size, c.model.num_layers = cell, hidden, layers
    c.data.batch_size, c.data.seq_len = batch, seq_len
    for k, v in model.items():
        c.model[k] = v
    return complete_config(c)


def measured(c) -> int:
    """Bytes XLA says the compiled training step needs (what the loop runs)."""
    task = make_task(c)
    mdef, state, tx = init_train_state(c, task)
    step = jax.jit(make_train_step(mdef, task, tx), donate_argnums=0)
    m = step.lower(state, task.train_batch(0), jax.random.key(0)).compile().memory_analysis()
    if m is None:
        pytest.skip("this backend has no memory_analysis")
    return m.argument_size_in_bytes + m.temp_size_in_bytes


@pytest.mark.parametrize(
    "c",
    [
        config(),  # activations dominate
        config(cell="gru", layers=2, backend="scan", remat=True),
        config(cell="lstm", hidden=384, batch=2, seq_len=4),  # parameters dominate
        config(task="copy_memory", hidden=48, seq_len=40),  # per-step token logits
    ],
    ids=["lstm", "gru-scan-remat", "params", "copy-memory"],
)
@pytest.mark.slow
def test_estimate_is_within_a_factor_of_the_compiled_step(c):
    task = make_task(c)
    need = memory.train_need(c, task.spec, task.tokens_per_batch())
    got = measured(c)
    assert got / FACTOR <= need.total <= got * FACTOR, (need, got)


def test_estimate_grows_with_the_keys_the_message_names():
    base = memory.train_need(config(), make_task(config()).spec, 16 * 60).total
    spec = make_task(config()).spec
    assert memory.train_need(config(hidden=64), spec, 16 * 60).total > 2 * base
    assert memory.train_need(config(), spec, 4 * 16 * 60).total > 3 * base
    c = config()
    c.num_seeds = 3
    assert memory.train_need(c, spec, 16 * 60).total == 3 * base
    assert memory.train_need(config(remat=True), spec, 16 * 60).total < base


def test_refusal_names_the_keys_biggest_share_first():
    c = config(hidden=60000)
    spec = make_task(c).spec
    with pytest.raises(ConfigError) as e:
        memory.check_train(c, spec, 16 * 60, free=(2**34, "host memory"))
    msg = str(e.value)
    assert "\n" not in msg and "but host memory has 16 GiB free" in msg
    assert msg.index("model.hidden_size=60000") < msg.index("data.batch_size=16")
    assert "model.remat=True" in msg and memory.SKIP_ENV in msg
    c = config(seq_len=10**8)  # now the activations dominate: batch and length first
    with pytest.raises(ConfigError) as e:
        memory.check_train(c, spec, 16 * 10**8, free=(2**34, "host memory"))
    assert str(e.value).index("data.seq_len") < str(e.value).index("model.hidden_size")
    # what fits passes; shared by --parallel runs, each gets its share
    memory.check_train(config(), spec, 16 * 60, free=(2**30, "host memory"))
    with pytest.raises(ConfigError, match="shared by 4 runs"):
        need = memory.train_need(config(), spec, 16 * 60).total
        memory.check_train(config(), spec, 16 * 60, free=(3 * need, "host memory"), share=4)


def test_skip_env_and_unknown_free_memory(monkeypatch):
    c = config(hidden=60000)
    spec = make_task(c).spec
    memory.check_train(c, spec, 960, free=(None, "unknown"))  # nothing to compare with
    monkeypatch.setenv(memory.SKIP_ENV, "1")
    memory.check_train(c, spec, 960, free=(2**30, "host memory"))


def test_models_too_large_to_build_are_one_error():
    spec = make_task(config()).spec
    need = memory.train_need(config(hidden=10**9), spec, 960)  # shapes only: nothing allocated
    assert need.params > 4 * 10**18
    with pytest.raises(ConfigError, match="too large to build"):
        memory.train_need(config(hidden=10**12), spec, 960)


def test_sample_need_scales_with_samples_and_refuses(monkeypatch):
    c = config(task="copy_memory")
    spec = make_task(c).spec
    one = memory.sample_need(c, spec, 1, 100, 3)
    assert memory.sample_need(c, spec, 1000, 100, 3) > 100 * (one - 4 * 10_000)
    chunked = memory.sample_need(c, spec, 1000, 10**6, 3, chunk=4096)
    assert chunked < memory.sample_need(c, spec, 1000, 10**6, 3)
    monkeypatch.setattr(memory, "available", lambda: (2**30, "host memory"))
    with pytest.raises(UsageError, match="--num_samples=100000000 with --length=500"):
        memory.check_sample(c, spec, 10**8, 500, 1)
    memory.check_sample(c, spec, 4, 500, 1)


def test_free_memory_is_read_here():
    free, where = memory.available()
    assert where == "host memory" and free is not None and free > 2**20
    assert memory.available_here()[0] is not None  # a CPU-only JAX: safe to ask
    assert 0 < memory.host_available() < 2**60


def test_allocation_failures_become_one_line():
    c = config()
    oom = jax.errors.JaxRuntimeError("RESOURCE_EXHAUSTED: Out of memory allocating 57.6GiB\nmore")
    with pytest.raises(RunError) as e, memory.out_of_memory(c):
        raise oom
    msg = str(e.value)
    assert "\n" not in msg and msg.startswith("out of memory while training (RESOURCE_EXHAUSTED")
    assert "model.hidden_size=32" in msg and "data.batch_size=16" in msg
    with (
        pytest.raises(RunError, match="while initializing"),
        memory.out_of_memory(c, "initializing"),
    ):
        raise MemoryError()
    with pytest.raises(ValueError, match="unrelated"), memory.out_of_memory(c):
        raise ValueError("unrelated")


def test_gib():
    assert memory.gib(3 * 2**30) == "3 GiB"
    assert memory.gib(812 * 2**20) == "812 MiB"
    assert memory.gib(2**60) == "1.02e+03 PiB"
