"""``seqlab tune`` workers sharing one study through a real PostgreSQL server: the way N
machines run one study. ``.ci/run`` starts a throwaway server on 127.0.0.1 and sets
SEQLAB_TEST_POSTGRES (its URL) and SEQLAB_REQUIRE_POSTGRES=1; without a server these tests
skip with one line (with SEQLAB_REQUIRE_POSTGRES=1 they fail instead)."""

from __future__ import annotations

import os
import re
import uuid

import pytest

try:
    from tests import tune_util as tu
except ImportError:  # pytest run from inside tests/
    import tune_util as tu

URL = os.environ.get("SEQLAB_TEST_POSTGRES", "postgresql://seqlab@127.0.0.1:55432/seqlab_test")


@pytest.fixture(scope="module")
def postgres() -> str:
    """The server's URL, once it answered."""
    why = None
    try:
        import sqlalchemy

        engine = sqlalchemy.create_engine(URL, connect_args={"connect_timeout": 3})
        with engine.connect():
            pass
        engine.dispose()
    except Exception as e:  # noqa: BLE001 (no driver, no server: the reason, in one line)
        why = " ".join(str(e).split())[:200] or type(e).__name__
    if why is not None:
        if os.environ.get("SEQLAB_REQUIRE_POSTGRES") == "1":
            pytest.fail(f"SEQLAB_REQUIRE_POSTGRES=1 but no PostgreSQL at {URL}: {why}")
        pytest.skip(f"no PostgreSQL at {URL} (set SEQLAB_TEST_POSTGRES; .ci/run starts one)")
    return URL


def _study() -> str:
    return f"t-{uuid.uuid4().hex[:10]}"  # the database outlives a test: one study each


@pytest.mark.slow
def test_two_workers_share_one_study_and_each_trial_runs_once(postgres, tmp_path):
    name, n = _study(), 3
    extra = ["--storage", postgres, "--study", name, "--pruner", "none"]
    workers = []
    for w, k in (("a", "2"), ("b", "1")):  # two machines, one database; a runs 2 at a time
        log = str(tmp_path / f"{w}.log")
        workers.append((tu.start(str(tmp_path / w), n, *extra, "--parallel", k, log=log), log))
    for proc, log in workers:
        tu.wait(proc, log)
    study = tu.load(postgres, name)
    said = [ln for _, log in workers for ln in tu.tail(log, 10**6).splitlines() if "tune:" in ln]
    assert tu.states(study) == {"COMPLETE": n}, said
    ran = {}
    for w in ("a", "b"):
        for d in tu.trial_dirs(str(tmp_path / w)):
            st = tu.status(d)
            assert st["state"] == "done" and st["trial"] not in ran
            ran[st["trial"]] = w
    assert sorted(ran) == [t.number for t in study.trials]  # every trial once, somewhere
    assert set(ran.values()) == {"a", "b"}  # both workers took trials
    for t in study.trials:
        assert t.value == pytest.approx(
            tu.status(str(tmp_path / ran[t.number] / "trials" / t.user_attrs["trial_dir"]))["value"]
        )


@pytest.mark.slow
def test_a_worker_killed_mid_trial_loses_nothing(postgres, tmp_path):
    """Two workers on one shared workdir (a shared file system); one is killed with -9
    mid-trial; the other fails that trial (never counted), retries it from its checkpoint
    and completes the study."""
    name, n, wd = _study(), 2, str(tmp_path / "shared")
    extra = [*tu.LONG, "--storage", postgres, "--study", name, "--pruner", "none"]
    a = tu.start(wd, n, *extra, log=str(tmp_path / "a.log"))
    tu.wait_for_dir(os.path.join(wd, "trials", "0000"))  # a holds trial 0
    b = tu.start(wd, n, *extra, log=str(tmp_path / "b.log"))  # b takes trial 1, meanwhile
    killed = tu.kill_mid_trial(a, wd, only="0000")
    tu.wait(b, str(tmp_path / "b.log"))
    study = tu.load(postgres, name)
    assert tu.states(study) == {"COMPLETE": n, "FAIL": 1}, tu.tail(str(tmp_path / "b.log"))
    failed = [t for t in study.trials if t.state.name == "FAIL"][0]
    retry = [t for t in study.trials if t.system_attrs.get("failed_trial") == failed.number]
    assert len(retry) == 1 and retry[0].state.name == "COMPLETE"
    assert retry[0].user_attrs["trial_dir"] == os.path.basename(killed)
    with open(os.path.join(killed, "train.log")) as f:
        resumed = [int(s) for s in re.findall(r"resumed from \S+ at step (\d+)", f.read())]
    assert len(resumed) == 1 and resumed[0] >= 200  # from the checkpoint the kill left
    assert tu.logged_steps(killed)[-1] == tu.STEPS
    assert len(tu.trial_dirs(wd)) == n
