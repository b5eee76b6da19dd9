"""Every config file, every variant named in its docstring-free API, and every sweep entry
builds and validates; bad configs fail with one clear ConfigError."""

from __future__ import annotations

import glob
import importlib.util
import os
import re

import pytest
from ml_collections import ConfigDict

from seqlab.config import base_config, parse_arg
from seqlab.errors import ConfigError
from seqlab.run.validate import validate

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
CONFIG_FILES = sorted(glob.glob(os.path.join(ROOT, "configs", "*.py")))
SHARED_KEYS = [
    "seed",
    "task.name",
    "model.cell",
    "model.hidden_size",
    "model.num_layers",
    "data.batch_size",
    "data.seq_len",
    "train.num_steps",
    "train.eval_every",
    "train.checkpoint_every",
    "train.log_every",
]


def load(path):
    spec = importlib.util.spec_from_file_location(os.path.basename(path)[:-3], path)
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


def apply(config: ConfigDict, overrides: dict) -> ConfigDict:
    config = ConfigDict(config.to_dict())
    for key, value in overrides.items():
        node = config
        *parents, leaf = key.split(".")
        for p in parents:
            node = node[p]
        assert leaf in node, f"sweep override {key} names no config key"
        node[leaf] = value
    return config


def test_there_are_configs():
    names = {os.path.basename(p) for p in CONFIG_FILES}
    assert {"charlm.py", "long_range.py", "seq2seq.py", "copy_memory.py"} <= names


@pytest.mark.parametrize("path", CONFIG_FILES, ids=os.path.basename)
@pytest.mark.slow
def test_config_and_sweep_build(path):
    module = load(path)
    assert module.__doc__ and re.search(r"seqlab (train|probe)", module.__doc__), "no command"
    for arg in (None, "runlocal"):
        config = module.get_config(arg)
        validate(config)
        flat = config.to_dict()
        for key in SHARED_KEYS:
            node = flat
            for part in key.split("."):
                node = node[part]
    if hasattr(module, "get_sweep"):
        points = list(module.get_sweep(None))
        assert points, "get_sweep yields nothing"
        for point in points:
            validate(apply(module.get_config("runlocal"), point))


def test_bad_values_are_one_clear_error():
    c = base_config()
    c.task.name = "adding"
    validate(c)
    cases = [
        ("model", "hidden_size", 0, "hidden_size"),
        ("model", "dropout", 1.0, "[0, 1)"),
        ("model", "cell", "lstn", "did you mean 'lstm'"),
        ("model", "backend", "fats", "did you mean 'fast'"),
        ("model", "onehot_fan_in", -1, "integer >= 0"),
        ("data", "seq_len", 0, "seq_len"),
        ("optim", "learning_rate", -1.0, "> 0"),
        ("optim", "name", "adamm", "did you mean 'adam'"),
        ("train", "on_nonfinite", "ignore", "stop"),
        ("inspect", "every", c.train.eval_every + 1, "multiple of train.eval_every"),
    ]
    for section, key, value, needle in cases:
        bad = ConfigDict(c.to_dict())
        bad[section][key] = value
        with pytest.raises(ConfigError, match=None) as e:
            validate(bad)
        assert needle in str(e.value) and "\n" not in str(e.value)
    bad = ConfigDict(c.to_dict())
    bad.task.name = "addng"
    with pytest.raises(ConfigError, match="did you mean 'adding'"):
        validate(bad)


def test_parse_arg():
    a = parse_arg("gru,runlocal,T=200", cell="lstm", runlocal=False, T=100)
    assert (a.cell, a.runlocal, a.T) == ("gru", True, 200)
    with pytest.raises(ValueError, match="did you mean 'runlocal'"):
        parse_arg("runloca=1", cell="lstm", runlocal=False)
