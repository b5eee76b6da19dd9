"""The config checks that ask the code itself what the model keys do: a key with no effect
in the chosen structure or in the task's model family, a dtype the platform cannot honour,
and the cell's own checks of its options (it is built in shapes only). One source for each
constraint; ``seqlab.run.validate`` runs them with its name and range checks."""

from __future__ import annotations

from typing import Any

from ml_collections import ConfigDict

from seqlab.cells import CELLS
from seqlab.config import DEFAULTS
from seqlab.errors import ConfigError
from seqlab.models.build import CELL_OPTIONS, PARAM_DTYPES
from seqlab.recurrence.layers import resolve_block
from seqlab.tasks import task_config


def check(ok: bool, key: str, value: Any, need: str) -> None:
    """One ConfigError naming the key, its value and what it needs, unless ``ok``."""
    if not ok:
        raise ConfigError(f"config.{key}={value!r} is invalid: {need}")


def _set(m: ConfigDict, key: str) -> bool:
    return m[key] != DEFAULTS.model[key]


def no_effect(m: ConfigDict) -> None:
    """A key the user set that the chosen structure ignores is refused, naming what would
    give it an effect (cell options for another cell: ``OPTION_CELLS`` above)."""
    block = resolve_block(m.block, m.cell)
    none = "model.block='none'" if m.block == "none" else f"model.block='auto' (cell {m.cell!r})"
    for key in ("block_out", "block_mlp"):
        check(
            block != "none" or not _set(m, key), f"model.{key}", m[key],
            f"has no effect without a block, and {none} has none; set model.block=residual",
        )  # fmt: skip
    parallel = m.cell in CELLS and "parallel" in CELLS[m.cell][0].PROVIDES  # + delta rule
    check(
        parallel or not _set(m, "chunk_size"), "model.chunk_size", m.chunk_size,
        f"chunks the linear recurrences' parallel scan; cell {m.cell!r} has none",
    )  # fmt: skip
    check(
        m.init == "chrono" or not _set(m, "chrono_max_len"), "model.chrono_max_len",
        m.chrono_max_len, "is used by model.init=chrono only",
    )  # fmt: skip
    for key in ("forget_bias", "carry_bias"):  # chrono sets that gate's bias itself
        check(
            m.init != "chrono" or not _set(m, key), f"model.{key}", m[key],
            "has no effect with model.init=chrono (it draws that gate's bias)",
        )  # fmt: skip
    check(
        m.attention or not _set(m, "attention_size"), "model.attention_size",
        m.attention_size, "has no effect without model.attention=True",
    )  # fmt: skip


#: model keys each family reads (the others have no effect there)
FAMILY_KEYS = {
    "lm": ("input_kind", "embed_dim", "embed_init", "onehot_fan_in"),
    "classifier": ("input_kind", "embed_dim", "embed_init", "onehot_fan_in", "readout",
                   "bidirectional"),
    "seq2seq": ("embed_dim", "embed_init", "bidirectional", "attention", "attention_size"),
}  # fmt: skip


def validate_for(config: ConfigDict, spec: Any) -> None:
    """What ``validate`` cannot see before the task is made: a model key set (away from
    the task's default) that the task's model family, or its input, never reads."""
    m, defaults = config.model, task_config(config.task.name).model
    keys = FAMILY_KEYS.get(spec.family, ())
    tokens = spec.input_kind == "tokens"
    for key in ("input_kind", "embed_dim", "embed_init", "onehot_fan_in", "readout",
                "bidirectional", "attention", "attention_size"):  # fmt: skip
        if m[key] == defaults[key]:
            continue
        if spec.family == "seq2seq" and key == "input_kind":
            why = None if m.input_kind == "embed" else "the seq2seq model embeds its tokens"
        elif key not in keys:
            why = f"the {spec.family} model has no such option"
        elif key != "input_kind" and not tokens and key in FAMILY_KEYS["lm"]:
            why = f"task {config.task.name!r} feeds features, not tokens"
        elif spec.family != "seq2seq" and key in ("embed_dim", "embed_init"):
            why = None if m.input_kind == "embed" else "set model.input_kind=embed to use it"
        elif key == "onehot_fan_in" and m.input_kind != "onehot":
            why = f"model.input_kind={m.input_kind!r} has no one-hot inputs"
        else:
            why = None
        check(why is None, f"model.{key}", m[key], f"has no effect here: {why}")
    v = int(spec.vocab_size or 0)
    check(
        m.onehot_fan_in <= v or not tokens or m.input_kind != "onehot", "model.onehot_fan_in",
        m.onehot_fan_in, f"counts active inputs of a one-hot vector of {v}: must be <= {v}",
    )  # fmt: skip


def x64_needed(m: ConfigDict) -> str | None:
    """The key asking for float64 when JAX's 64-bit mode is off (it would silently be
    float32), else None. One source: the validator refuses it, ``memory`` sizes by it."""
    import jax

    if jax.config.jax_enable_x64:
        return None
    return next((k for k in ("param_dtype", "dtype") if m[k] == "float64"), None)


def platform(m: ConfigDict) -> None:
    key = x64_needed(m)
    check(
        key is None, f"model.{key}", "float64",
        "JAX's 64-bit mode is off, so it would train in float32; run with JAX_ENABLE_X64=1 "
        "in the environment, or choose float32",
    )  # fmt: skip


def cell_builds(m: ConfigDict) -> None:
    """The cell itself checks its options (one source for each range): it is built in
    shapes only (and with a non-default dtype, a small one traced over two steps), so what
    it refuses is one ConfigError naming the keys the user set."""
    import jax
    import jax.numpy as jnp
    from flax import nnx

    from seqlab.cells import make_cell
    from seqlab.models.build import cell_kwargs
    from seqlab.recurrence import Recurrent

    if m.cell not in CELLS:  # a layer mixer (attention): ``_mixer`` checks its keys
        return
    kw = cell_kwargs(m) | {"param_dtype": PARAM_DTYPES[m.param_dtype]}
    keys = [
        k for k in ("init", "dtype", "param_dtype", *CELL_OPTIONS.get(m.cell, ())) if _set(m, k)
    ]
    try:
        h = int(m.hidden_size)  # in_features = hidden_size: what a block's mixer sees
        nnx.eval_shape(lambda: make_cell(m.cell, h, h, rngs=nnx.Rngs(0), **kw))
        if _set(m, "dtype") or _set(m, "param_dtype"):  # a step in that dtype traces
            small = max(2, int(m.num_heads) * 2)

            def step(x: jax.Array) -> Any:
                cell = make_cell(m.cell, small, small, rngs=nnx.Rngs(0), **kw)
                return Recurrent(cell, backend="scan")(x)

            nnx.eval_shape(step, jax.ShapeDtypeStruct((1, 2, small), jnp.float32))
    except OverflowError as e:  # a size past int32 (memory.py words it the same way)
        raise ConfigError(
            f"config.model.hidden_size={m.hidden_size} is invalid: a model too large to build "
            f"({' '.join(str(e).split())[:200]}); shrink model.hidden_size"
        ) from None
    except (ValueError, TypeError, NotImplementedError) as e:
        what = ", model.".join(f"{k}={m[k]!r}" for k in keys) or f"hidden_size={m.hidden_size}"
        why = " ".join(str(e).split())[:300]
        raise ConfigError(
            f"config.model.{what} is invalid for model.cell={m.cell!r}: the cell refuses it ({why})"
        ) from None
