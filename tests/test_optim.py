"""``seqlab.run.optim``: the lr schedules against their closed forms, the schedule's length
(``optim.schedule_steps``) when a run is extended, and the clip -> optimizer chain against a
NumPy Adam written from the paper."""

from __future__ import annotations

import math
import os

import jax
import jax.numpy as jnp
import numpy as np
import pytest

from seqlab.config import base_config
from seqlab.run.checkpoint import Checkpointer
from seqlab.run.loop import train_and_evaluate
from seqlab.run.optim import make_optimizer, make_schedule
from seqlab.run.state import init_train_state
from seqlab.run.validate import validate
from seqlab.run.writers import read_metrics
from seqlab.tasks import make_task, task_config


def cosine_optim(**kw):
    o = base_config().optim
    o.schedule, o.learning_rate, o.warmup_steps, o.end_lr_factor = "warmup_cosine", 0.1, 3, 0.1
    for k, v in kw.items():
        o[k] = v
    return o


def warmup_cosine(step: int, peak: float, warmup: int, total: int, end: float) -> float:
    """The schedule written out: linear warmup from 0, then half a cosine down to ``end``
    over the remaining ``total - warmup`` steps, then ``end``."""
    if step < warmup:
        return peak * step / warmup
    t = min(step - warmup, total - warmup) / (total - warmup)
    return end + (peak - end) * 0.5 * (1 + math.cos(math.pi * t))


@pytest.mark.parametrize("schedule_steps", [0, 12])
def test_warmup_cosine_is_the_closed_form(schedule_steps):
    o = cosine_optim(schedule_steps=schedule_steps)
    sched = make_schedule(o, num_steps=20)
    total = schedule_steps or 20
    for step in range(30):
        expected = warmup_cosine(step, 0.1, 3, total, 0.01)
        assert float(sched(step)) == pytest.approx(expected, rel=1e-5, abs=1e-8), step


def test_schedule_steps_fixes_the_schedule_when_num_steps_grows():
    stretched = [make_schedule(cosine_optim(), n) for n in (20, 40)]
    fixed = [make_schedule(cosine_optim(schedule_steps=20), n) for n in (20, 40)]
    steps = np.arange(40)
    # the issue: raising num_steps alone changes the lr at steps the run already took
    assert not np.allclose(stretched[0](steps[:20]), stretched[1](steps[:20]))
    np.testing.assert_array_equal(fixed[0](steps), fixed[1](steps))
    assert float(fixed[1](39)) == pytest.approx(0.01)  # held at its end value past its length
    # constant and exponential schedules never depended on num_steps
    for name in ("constant", "exponential"):
        o = cosine_optim(schedule=name, decay_every=5)
        np.testing.assert_array_equal(make_schedule(o, 20)(steps), make_schedule(o, 40)(steps))


def test_schedule_steps_is_validated():
    c = task_config("adding")
    c.optim.schedule_steps = -1
    with pytest.raises(ValueError, match=r"optim\.schedule_steps.*integer >= 0"):
        validate(c)


def small(num_steps: int, schedule_steps: int):
    c = task_config("adding")
    c.model.hidden_size, c.data.seq_len, c.data.batch_size = 8, 6, 4
    c.task.eval_batches, c.wandb.mode, c.train.progress = 1, "disabled", False
    c.optim.schedule, c.optim.warmup_steps, c.optim.learning_rate = "warmup_cosine", 2, 0.05
    c.optim.schedule_steps = schedule_steps
    c.train.num_steps = num_steps
    c.train.log_every = c.train.eval_every = c.train.checkpoint_every = 3
    return c


def params_at(config, workdir: str, step: int):
    _, state, _ = init_train_state(config, make_task(config))
    ck = Checkpointer(os.path.join(workdir, "checkpoints"), keep=10, async_save=False)
    state = ck.restore(step, state)
    ck.close()
    return jax.tree.leaves(jax.device_get(state["params"]))


@pytest.mark.slow
def test_extending_a_run_with_schedule_steps_changes_nothing_it_did(tmp_path):
    """6 steps with schedule_steps=6, then extended to 12 == 12 straight steps with the same
    schedule: every lr the first 6 steps used is unchanged, so the resumed run ends where an
    uninterrupted one does, and its first rows are those of the short run."""
    short, straight = str(tmp_path / "short"), str(tmp_path / "straight")
    train_and_evaluate(small(6, 6), short)
    short_rows = read_metrics(os.path.join(short, "metrics.jsonl"))
    train_and_evaluate(small(12, 6), short)  # extended: num_steps raised, schedule kept
    train_and_evaluate(small(12, 6), straight)
    resumed, uninterrupted = (params_at(small(12, 6), d, 12) for d in (short, straight))
    for a, b in zip(resumed, uninterrupted, strict=True):
        np.testing.assert_array_equal(a, b)
    strip = lambda rows: [{k: v for k, v in r.items() if not k.startswith("perf/")} for r in rows]
    extended = strip(read_metrics(os.path.join(short, "metrics.jsonl")))
    assert extended[: len(short_rows)] == strip(short_rows)
    assert extended == strip(read_metrics(os.path.join(straight, "metrics.jsonl")))


# -- the chain against NumPy -----------------------------------------------------------------
def numpy_adam(grads, lrs, b1, b2, eps, clip, mode):
    """Adam (Kingma & Ba 2015, Algorithm 1) on clipped gradients, in float64."""
    m = [np.zeros_like(g, np.float64) for g in grads[0]]
    v = [np.zeros_like(g, np.float64) for g in grads[0]]
    updates = []
    for t, (g, lr) in enumerate(zip(grads, lrs, strict=True), start=1):
        g = [np.asarray(x, np.float64) for x in g]
        if mode == "global_norm":
            norm = math.sqrt(sum(float((x**2).sum()) for x in g))
            g = [x * min(1.0, clip / norm) for x in g]
        elif mode == "elementwise":
            g = [np.clip(x, -clip, clip) for x in g]
        m = [b1 * a + (1 - b1) * x for a, x in zip(m, g, strict=True)]
        v = [b2 * a + (1 - b2) * x * x for a, x in zip(v, g, strict=True)]
        mhat = [a / (1 - b1**t) for a in m]
        vhat = [a / (1 - b2**t) for a in v]
        updates.append([-lr * a / (np.sqrt(b) + eps) for a, b in zip(mhat, vhat, strict=True)])
    return updates


@pytest.mark.parametrize("clip", ["global_norm", "elementwise", "none"])
@pytest.mark.slow
def test_clip_then_adam_matches_numpy(clip):
    o = cosine_optim(name="adam", clip=clip, clip_value=0.5, warmup_steps=1)
    tx = make_optimizer(o, num_steps=5)
    rng = np.random.default_rng(0)
    params = [jnp.zeros((3, 4)), jnp.zeros((5,))]
    grads = [[rng.normal(0, 2.0, p.shape).astype(np.float32) for p in params] for _ in range(4)]
    state = tx.init(params)
    got = []
    for g in grads:
        u, state = tx.update([jnp.asarray(x) for x in g], state, params)
        got.append([np.asarray(x) for x in u])
    sched = make_schedule(o, 5)
    lrs = [float(sched(s)) for s in range(4)]
    assert lrs[0] == 0.0 and lrs[1] == pytest.approx(0.1)  # warmup 1: step 0 has lr 0
    ref = numpy_adam(grads, lrs, o.b1, o.b2, 1e-8, 0.5, clip)
    for g_step, r_step in zip(got, ref, strict=True):
        for a, b in zip(g_step, r_step, strict=True):
            np.testing.assert_allclose(a, b, rtol=2e-5, atol=1e-8)
