"""``seqlab tune``: an Optuna study over a config file's ``get_search_space(arg)``.

Each trial is an ordinary ``seqlab train`` process in ``WORKDIR/trials/NNNN`` (metrics,
checkpoints, a W&B run grouped under the study's name): it can be inspected, evaluated or
resumed like any run. The tune process reads the trial's ``metrics.jsonl`` as it grows,
reports the task's own eval metric (``Task.best_metric``) to Optuna at every eval, and when
the pruner says so stops the trial with SIGTERM (it checkpoints and exits) and writes
``status.json`` with ``"state": "pruned"``. A trial's value is its best eval metric, the one
its best checkpoint was chosen by (validation, never test).

Storage and crashes: the study lives in ``WORKDIR/study.db`` (SQLite) unless ``--storage``
names a database that workers on many machines share. Workers record a heartbeat per
running trial; a trial whose worker died (``kill -9``) goes stale, is marked FAIL (never
counted), and Optuna's ``RetryHeartbeatStaleTrialCallback`` enqueues it again with the same
parameters and sub-workdir, so whichever worker picks it up resumes its checkpoint. On the
dead worker's own host a re-run need not wait for the heartbeat: a RUNNING trial whose
worker pid is gone is failed and retried at once. The trial process gets one SIGTERM when
its worker dies (``trial_shim``), so it checkpoints first. Workers stop when ``--trials``
trials are COMPLETE or PRUNED. A trial that diverged (non-finite or exploding loss) counts as
PRUNED: that is its parameters' result, so every arm spends the same budget. A trial asked
for beyond the budget (two workers racing for the last one) is marked FAIL with
``user_attrs["surplus"]`` before it runs.
"""

from __future__ import annotations

import contextlib
import os
import socket
import threading
import time
from dataclasses import dataclass, field
from typing import Any

from seqlab.errors import UsageError
from seqlab.tools.trial import DIVERGED, TRIALS_DIR, eval_values, follow, run_trial

__all__ = ["DIVERGED", "TRIALS_DIR", "Tune", "eval_values", "follow", "run_trial", "run_tune"]

HEARTBEAT_S = 5  # a dead worker's trial is retried after GRACE_S without a heartbeat
GRACE_S = 20
MAX_RETRY = 3


@dataclass
class Tune:
    """One worker's view of a study: what to train, where, and how many trials in all."""

    config: str
    workdir: str
    trials: int
    space: dict[str, Any]
    metric: str
    mode: str
    storage: str | None = None
    study_name: str = ""
    parallel: int = 1
    pruner: str = "median"
    startup_trials: int = 5
    sampler_seed: int | None = None
    #: the first trial's values (the config's own, "the fixed recipe"); {} for none
    baseline: dict[str, Any] = field(default_factory=dict)
    extra: list[str] = field(default_factory=list)
    log: Any = print

    @property
    def storage_url(self) -> str:
        return self.storage or f"sqlite:///{os.path.abspath(self.workdir)}/study.db"


# -- the study -----------------------------------------------------------------------------
def baseline_values(config: Any, space: dict[str, Any]) -> dict[str, Any]:
    """The config's own values of the searched keys that lie inside their distributions:
    enqueued as the first trial, so the tuned result is never worse on validation than the
    recipe it started from (with few trials, TPE's first ones are random)."""
    out = {}
    for key, dist in space.items():
        value = config
        for part in key.split("."):
            value = value[part]
        try:
            if dist._contains(dist.to_internal_repr(value)):
                out[key] = value
        except (TypeError, ValueError):
            continue
    return out


def make_pruner(name: str, startup: int) -> Any:
    import optuna

    if name == "median":
        return optuna.pruners.MedianPruner(n_startup_trials=startup, n_warmup_steps=0)
    if name == "halving":
        return optuna.pruners.SuccessiveHalvingPruner()
    if name == "none":
        return optuna.pruners.NopPruner()
    raise UsageError(f"--pruner={name!r}: choose median, halving or none")


def open_study(t: Tune) -> Any:
    """The study named ``t.study_name`` in ``t.storage_url`` (created, or loaded: resumed).
    Workers starting together on a fresh database race to create its tables: the loser
    tries again and finds them."""
    last: Exception | None = None
    for attempt in range(5):
        try:
            return _open_study(t)
        except ImportError as e:
            last = e
            break
        except Exception as e:  # noqa: BLE001 (a driver, a server, a URL: one line at the end)
            last = e
            time.sleep(0.5 + attempt)
    why = " ".join(str(last).split())[:300]
    if isinstance(last, ImportError):
        why += " (postgresql://: pip install 'psycopg[binary]'; mysql://: pip install pymysql)"
    where = t.storage_url.split("@")[-1]  # no password in the message
    raise UsageError(f"cannot open the study in {where}: {why}") from None


def _open_study(t: Tune) -> Any:
    import optuna

    retry = (  # renamed in optuna 4.9
        getattr(optuna.storages, "RetryHeartbeatStaleTrialCallback", None)
        or optuna.storages.RetryFailedTrialCallback
    )
    kwargs: dict[str, Any] = {}
    if t.storage_url.startswith("sqlite"):  # workers in threads and processes share one file
        kwargs = {"connect_args": {"timeout": 60}}
    storage = optuna.storages.RDBStorage(
        t.storage_url,
        engine_kwargs=kwargs,
        heartbeat_interval=HEARTBEAT_S,
        grace_period=GRACE_S,
        heartbeat_stale_trial_callback=retry(max_retry=MAX_RETRY, inherit_intermediate_values=True),
    )
    common = dict(
        storage=storage,
        study_name=t.study_name,
        pruner=make_pruner(t.pruner, t.startup_trials),
        sampler=optuna.samplers.TPESampler(seed=t.sampler_seed),
    )
    direction = "maximize" if t.mode == "max" else "minimize"
    try:  # the one worker that creates the study (the database decides) enqueues the baseline
        study = optuna.create_study(direction=direction, load_if_exists=False, **common)
    except optuna.exceptions.DuplicatedStudyError:
        return optuna.load_study(**common)
    if t.baseline:
        t.log(f"tune: the first trial is the config's own recipe: {t.baseline}")
        study.enqueue_trial(t.baseline)
    return study


def counts(study: Any) -> dict[str, int]:
    """Trials by state name (COMPLETE, PRUNED, RUNNING, WAITING, FAIL)."""
    out: dict[str, int] = {}
    for tr in study.get_trials(deepcopy=False):
        out[tr.state.name] = out.get(tr.state.name, 0) + 1
    return out


def finished(study: Any) -> int:
    c = counts(study)
    return c.get("COMPLETE", 0) + c.get("PRUNED", 0)


def reclaim_orphans(study: Any) -> None:
    """RUNNING trials of a dead worker on this host: failed now and retried (the heartbeat
    would do the same after ``GRACE_S``)."""
    import optuna
    from optuna.trial import TrialState

    host = socket.gethostname()
    for tr in study.get_trials(deepcopy=False, states=(TrialState.RUNNING,)):
        pid = tr.user_attrs.get("worker_pid")
        if tr.user_attrs.get("worker_host") != host or pid is None or _alive(int(pid)):
            continue
        try:
            if not study._storage.set_trial_state_values(tr._trial_id, state=TrialState.FAIL):
                continue
        except optuna.exceptions.UpdateFinishedTrialError:
            continue  # another worker got there first
        frozen = study._storage.get_trial(tr._trial_id)
        study._storage.get_heartbeat_stale_trial_callback()(study, frozen)


def _alive(pid: int) -> bool:
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except PermissionError:
        return True
    with contextlib.suppress(OSError), open(f"/proc/{pid}/stat") as f:  # a zombie is dead
        return f.read().rsplit(")", 1)[1].split()[0] != "Z"
    return True


# -- workers -------------------------------------------------------------------------------
def quiet_optuna() -> None:
    """Optuna's notes on its experimental heartbeat and on ask/tell with it are not news."""
    import warnings

    import optuna

    optuna.logging.set_verbosity(optuna.logging.WARNING)
    warnings.filterwarnings("ignore", category=optuna.exceptions.ExperimentalWarning)
    warnings.filterwarnings("ignore", message="Heartbeat of storage is supposed")


def run_tune(t: Tune) -> Any:
    """Runs ``t.parallel`` workers here until the study holds ``t.trials`` finished trials;
    returns the study."""
    quiet_optuna()
    study = open_study(t)
    reclaim_orphans(study)
    t.log(
        f"tune: study {t.study_name!r} in {t.storage_url.split('@')[-1]}: "
        f"{finished(study)}/{t.trials} trials finished, {t.parallel} at a time here"
    )
    errors: list[BaseException] = []

    def work() -> None:
        try:
            worker(study, t)
        except BaseException as e:  # noqa: BLE001 (re-raised in the main thread)
            errors.append(e)

    threads = [threading.Thread(target=work, daemon=True) for _ in range(max(1, t.parallel))]
    for th in threads:
        th.start()
        time.sleep(0.2)  # stagger the first asks
    for th in threads:
        while th.is_alive():
            th.join(0.5)  # the main thread stays responsive to signals
    if errors:
        raise errors[0]
    return study


def worker(study: Any, t: Tune) -> None:
    """One worker's loop: ask, train, tell, until the study has its trials."""
    import optuna
    from optuna.trial import TrialState

    failures = 0
    while True:
        optuna.storages.fail_stale_trials(study)  # dead workers elsewhere: after GRACE_S
        reclaim_orphans(study)  # dead workers here: at once
        c = counts(study)
        done = c.get("COMPLETE", 0) + c.get("PRUNED", 0)
        if done >= t.trials:
            return
        if done + c.get("RUNNING", 0) >= t.trials and not c.get("WAITING", 0):
            time.sleep(1.0)  # the last trials run elsewhere; wait in case one dies
            continue
        trial = study.ask()
        if surplus(study, trial.number, t.trials):
            trial.set_user_attr("surplus", True)
            study.tell(trial, state=TrialState.FAIL)
            continue
        state, value = run_trial(study, trial, t)
        if state == "refused":  # its input or workdir: no other trial would fare better
            study.tell(trial, state=TrialState.FAIL)
            raise UsageError(f"trial {trial.number} stopped on its input: {value}")
        if state == "fail":
            failures += 1
            if failures > max(3, t.trials):
                raise UsageError(f"{failures} trials failed; see their status.json")
            study.tell(trial, state=TrialState.FAIL)
        elif state == "pruned":
            study.tell(trial, state=TrialState.PRUNED)
        else:
            study.tell(trial, value)


def surplus(study: Any, number: int, n: int) -> bool:
    """Whether ``n`` trials that will count are already ahead of trial ``number``."""
    from optuna.trial import TrialState

    live = (TrialState.COMPLETE, TrialState.PRUNED, TrialState.RUNNING, TrialState.WAITING)
    ahead = [tr for tr in study.get_trials(deepcopy=False, states=live) if tr.number < number]
    return len(ahead) >= n


def summary(study: Any, t: Tune) -> dict[str, Any]:
    """The study in numbers: counts, the best trial (by validation) and its parameters."""
    from optuna.trial import TrialState

    done = study.get_trials(deepcopy=False, states=(TrialState.COMPLETE,))
    out: dict[str, Any] = {"study": t.study_name, "metric": t.metric, "mode": t.mode}
    out.update(trials=t.trials, counts=counts(study))
    if done:
        best = study.best_trial
        out["best"] = {
            "number": best.number,
            "value": best.value,
            "params": best.params,
            "workdir": os.path.join(t.workdir, TRIALS_DIR, best.user_attrs.get("trial_dir", "")),
        }
    return out
