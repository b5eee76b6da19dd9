"""experiments/accelerator_plan.py, the source of docs/ACCELERATORS.md: each experiment's mode
lists the runs its run.py trains, and a run's counts without compiling are seqlab plan's
(the equality itself: tests/test_plan.py). Needs libtpu (the aot extra) for the v5e devices."""

from __future__ import annotations

import importlib.util
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[1]
needs_tpu = pytest.mark.skipif(
    not importlib.util.find_spec("libtpu"),
    reason="the aot extra is not installed (pip install -e '.[aot]'): libtpu",
)


def _module():
    spec = importlib.util.spec_from_file_location(
        "accelerator_plan", ROOT / "experiments" / "accelerator_plan.py"
    )
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


def test_each_mode_lists_the_runs_its_run_py_trains():
    ap = _module()
    exps = {e["name"]: e for e in ap.experiments({"charlm_shakespeare", "selective_copy"})}
    assert set(exps) == {"charlm_shakespeare", "selective_copy"}
    ((config, flags),) = exps["charlm_shakespeare"]["points"]
    # experiments/charlm_shakespeare/run.py --full's overrides, as it passes them
    assert config == "configs/charlm.py" and "--config.train.num_steps=20000" in flags
    assert "--config.model.num_layers=3" in flags and "--config.model.hidden_size=512" in flags
    cells = [c.split("cell=")[1].split(",")[0] for c, _ in exps["selective_copy"]["points"]]
    spec = importlib.util.spec_from_file_location(
        "selective_copy_run", ROOT / "experiments" / "selective_copy" / "run.py"
    )
    selective_run = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(selective_run)
    assert cells == list(selective_run.PUBLISHED)  # run.py's default cells, in its order


def test_chrono_points_share_their_cells_count():
    """A chrono-initialized cell's run costs what its cell's run costs: one count for both."""
    ap = _module()
    flags = ["--config.model.cell=lstm", "--config.data.seq_len=400"]
    chrono = [*flags, "--config.model.init=chrono", "--config.model.chrono_max_len=400"]
    assert ap._key("c.py", flags, "t", False) == ap._key("c.py", chrono, "t", False)
    assert ap._key("c.py", flags, "t", False) != ap._key("c.py", flags[:1], "t", False)


@needs_tpu
def test_a_run_counted_for_a_v5e_slice(tmp_path, monkeypatch):
    ap = _module()
    monkeypatch.setattr(ap, "CACHE", str(tmp_path))
    from seqlab.tools import plan_targets

    target = plan_targets.make("v5e:2x4")
    config = "configs/long_range.py:runlocal"
    est = ap.estimate(config, [], target)
    assert est["steps"] > 0 and est["wall_s"] > 0
    assert est["train"]["flops"] > 0 and est["train"]["serial_iterations"] > 0
    # the same run on another chip with 8 devices: the same counts over that chip's peaks
    v6e = plan_targets.CHIPS["v6e"]
    assert 0 < ap._rescale(est, v6e) < ap._rescale(est, plan_targets.CHIPS["v5e"])
    assert ap._rescale(est, v6e, flops_only=True) <= ap._rescale(est, v6e)
    assert list(tmp_path.glob("*.json"))  # cached: a second call reads it
    assert ap.estimate(config, [], target) == est
