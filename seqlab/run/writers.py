"""Where metrics go: metrics.jsonl (always), W&B, TensorBoard; console progress.

Writers share one small interface (``write_scalars``, ``write_texts``, ``close``) and run on
process 0 only. The loop logs at intervals, never per step, so writing never syncs the device
on every step.
"""

from __future__ import annotations

import contextlib
import json
import math
import os
import re
import secrets
import sys
import time
from collections.abc import Iterator
from typing import IO, Any

from ml_collections import ConfigDict

from seqlab.errors import ConfigError
from seqlab.run import records


def write_json(path: str, obj: Any, *, indent: int = 2) -> None:
    """Writes ``obj`` as JSON atomically (``atomic_open``): a reader, or a run killed
    mid-write, never sees half a file. Every JSON file seqlab writes goes through here."""
    with atomic_open(path) as f:
        json.dump(obj, f, indent=indent, sort_keys=True)
        f.write("\n")


@contextlib.contextmanager
def atomic_open(path: str, mode: str = "w", **kwargs: Any) -> Iterator[IO[Any]]:
    """A file written whole or not at all: a temporary beside ``path``, renamed over it when
    the block ends, removed when it raises (an error, Ctrl-C, SIGTERM)."""
    tmp = f"{path}.tmp.{os.getpid()}"
    try:
        with open(tmp, mode, **kwargs) as f:
            yield f
        os.replace(tmp, path)
    except BaseException:
        with contextlib.suppress(OSError):
            os.remove(tmp)
        raise


def save_figure(fig: Any, path: str, **kwargs: Any) -> None:
    """``fig.savefig(path)`` through ``atomic_open``: never half a PNG."""
    fmt = os.path.splitext(path)[1].lstrip(".") or "png"
    with atomic_open(path, "wb") as f:
        fig.savefig(f, format=fmt, **kwargs)


def _jsonable(v: Any) -> Any:
    v = float(v) if hasattr(v, "__float__") and not isinstance(v, (int, bool)) else v
    if isinstance(v, float) and not math.isfinite(v):
        return str(v)
    return v


class Writer:
    #: whether ``write_probe`` shows figures (the loop draws them only when a writer does)
    wants_figures: bool = False

    def write_scalars(self, step: int, scalars: dict[str, float]) -> None: ...

    def write_texts(self, step: int, texts: dict[str, str]) -> None: ...

    def write_probe(self, step: int, results: dict[str, Any], figure_paths: dict[str, str]) -> None:
        """After the gradient probe at ``step``: ``results`` is the run's probe.json (layer_k
        -> step_s -> summary with ``log10_grad_norms``), ``figure_paths`` {name: PNG}."""

    def close(self) -> None: ...


class JsonlWriter(Writer):
    """One JSON object per logged step: ``{"step": s, "train/loss": ..., ...}``.

    On resume from step ``resume_step`` the rows after it (logged after the last checkpoint,
    and about to be logged again) are dropped, so the file never holds duplicated steps.
    """

    def __init__(self, path: str, resume_step: int | None = None):
        self.path = path
        for p in (path, os.path.join(os.path.dirname(path), "samples.jsonl")):
            _truncate_jsonl(p, resume_step)
        self.f = open(path, "a")  # noqa: SIM115 (held for the whole run)

    def write_scalars(self, step: int, scalars: dict[str, float]) -> None:
        row = {"step": int(step), **{k: _jsonable(v) for k, v in scalars.items()}}
        self.f.write(json.dumps(row) + "\n")
        self.f.flush()

    def write_texts(self, step: int, texts: dict[str, str]) -> None:
        path = os.path.join(os.path.dirname(self.path), "samples.jsonl")
        with open(path, "a") as f:
            f.write(json.dumps({"step": int(step), **texts}) + "\n")

    def close(self) -> None:
        self.f.close()


def _truncate_jsonl(path: str, resume_step: int | None) -> None:
    """Keeps the rows up to ``resume_step`` (all of them gone for a fresh run). Lines that
    cannot be used (damaged, edited) are not dropped: they move to ``PATH.skipped``, and one
    warning line says so."""
    if not os.path.exists(path):
        return
    if resume_step is None:
        os.remove(path)
        return
    schema = records.SAMPLES if path.endswith("samples.jsonl") else records.METRICS
    lines = records.scan_jsonl(path, schema)
    keep = [r for r in lines.rows if r["step"] <= resume_step]
    if lines.skipped:
        with open(path + ".skipped", "ab") as f:
            f.writelines(lines.raw_skipped)
        records.log.warning("%s; they were moved to %s.skipped", lines.summary(path), path)
    tmp = path + ".tmp"
    with open(tmp, "w") as f:
        f.writelines(json.dumps(r) + "\n" for r in keep)
    os.replace(tmp, path)


def read_metrics(
    path: str, schema: records.Schema | None = records.METRICS
) -> list[dict[str, Any]]:
    """Rows of a metrics.jsonl (or samples.jsonl, with ``records.SAMPLES``): each line that
    cannot be used (a torn last line of a killed writer, damaged bytes, a row of the wrong
    shape) is skipped, and counted in one warning line."""
    return records.read_jsonl(path, schema)


WANDB_MODES = ("auto", "online", "offline", "disabled")


def wandb_mode(requested: str) -> str:
    """``auto``: online when an API key is configured, else offline."""
    if requested != "auto":
        return requested
    if os.environ.get("WANDB_API_KEY"):
        return "online"
    netrc = os.path.expanduser("~/.netrc")
    if os.path.exists(netrc):
        try:
            with open(netrc) as f:
                if "api.wandb.ai" in f.read():
                    return "online"
        except OSError:
            pass
    return "offline"


def auto_tags(config: ConfigDict) -> list[str]:
    """Tags every run gets, so sweeps filter by cell, task and length in the W&B UI."""
    return [f"cell:{config.model.cell}", f"task:{config.task.name}", f"T:{config.data.seq_len}"]


def saved_run_id(path: str) -> str | None:
    """The W&B run id a resumed run continues (WORKDIR/wandb_id.txt), or None: missing, or
    damaged (not a short [A-Za-z0-9_-] id), when one warning line says it is set aside."""
    try:
        with open(path, "rb") as f:
            raw = f.read(200)
    except FileNotFoundError:
        return None
    except OSError as e:
        records.log.warning("%s: cannot be read (%s); a new W&B run id is used", path, e)
        return None
    text = raw.decode("utf-8", errors="replace").strip()
    if re.fullmatch(r"[A-Za-z0-9_-]{1,64}", text):
        return text
    with contextlib.suppress(OSError):
        os.replace(path, path + ".unreadable")
    records.log.warning(
        "%s does not hold a W&B run id; moved to %s.unreadable, a new run id is used", path, path
    )
    return None


def init_or_offline(wandb: Any, mode: str, **kwargs: Any) -> tuple[Any, str]:
    """``wandb.init`` in ``mode``; if that fails (unreachable server, bad key), one line on
    stderr and an offline run instead, so the caller goes on. Returns (run, mode used)."""
    try:
        return wandb.init(mode=mode, **kwargs), mode
    except Exception as e:  # noqa: BLE001 (any init failure: log offline)
        print(
            f"W&B {mode} init failed ({type(e).__name__}: {e}); logging offline instead",
            file=sys.stderr,
        )
        wandb.teardown()  # the failed init still holds the run id in the wandb service
        return wandb.init(mode="offline", **kwargs), "offline"


class WandbWriter(Writer):
    """W&B run in the workdir; the run id is kept in the workdir so a resume continues it.
    If W&B cannot be reached the run falls back to offline mode and training goes on."""

    wants_figures = True
    #: points per probed curve in the W&B line plot (evenly spaced in distance)
    probe_points = 200

    def __init__(self, config: ConfigDict, workdir: str, mode: str):
        import wandb

        self.wandb = wandb
        id_path = os.path.join(workdir, "wandb_id.txt")
        run_id = saved_run_id(id_path)
        if run_id is None:
            run_id = secrets.token_hex(6)  # any [a-z0-9] id; kept so a resume continues it
            with atomic_open(id_path) as f:
                f.write(run_id)
        w = config.wandb
        kwargs = dict(
            project=w.project,
            entity=w.entity or None,
            group=w.group or None,
            name=w.name or os.path.basename(os.path.abspath(workdir)),
            tags=[t for t in str(w.tags).split(",") if t] + auto_tags(config),
            config=config.to_dict(),
            dir=workdir,
            id=run_id,
            resume="allow",
        )
        self.run, self.mode = init_or_offline(wandb, mode, **kwargs)

    def write_scalars(self, step: int, scalars: dict[str, float]) -> None:
        self.run.log({k: float(v) for k, v in scalars.items()}, step=int(step))

    def write_texts(self, step: int, texts: dict[str, str]) -> None:
        table = self.wandb.Table(
            columns=["step", "key", "text"], data=[[int(step), k, v] for k, v in texts.items()]
        )
        self.run.log({"samples": table}, step=int(step))

    def write_probe(self, step: int, results: dict[str, Any], figure_paths: dict[str, str]) -> None:
        """Per layer, log10 g against distance T - t as a line plot, one line per probed step
        (a Table with columns step, distance, log10_g), and the figures as images."""
        logs: dict[str, Any] = {}
        for layer, by_step in results.items():
            rows = []
            for key in sorted(by_step, key=lambda s: int(s.split("_")[1])):
                curve = by_step[key].get("log10_grad_norms") or []
                T, n = len(curve), min(len(curve), self.probe_points)
                for t in sorted({round(i * (T - 1) / max(n - 1, 1)) for i in range(n)}):
                    if curve[t] is not None:  # None: g is exactly 0 (padding)
                        rows.append([key.replace("_", " "), T - 1 - t, float(curve[t])])
            table = self.wandb.Table(columns=["step", "distance", "log10_g"], data=rows)
            title = f"{layer}: log10 ||dL/dh_t|| vs distance T - t"
            logs[f"probe/{layer}/grad_vs_distance"] = self.wandb.plot.line(
                table, "distance", "log10_g", stroke="step", title=title
            )
        for name, path in figure_paths.items():
            logs[f"probe/{name}"] = self.wandb.Image(path)
        self.run.log(logs, step=int(step))

    def close(self) -> None:
        directory = getattr(self.run, "dir", None)
        self.run.finish()
        if self.mode == "offline" and directory:
            print(f"W&B run saved offline; upload it with: wandb sync {os.path.dirname(directory)}")


class TensorBoardWriter(Writer):
    """TensorBoard event files (needs the optional ``tensorboardX`` package)."""

    def __init__(self, logdir: str):
        try:
            from tensorboardX import SummaryWriter
        except ImportError as e:
            raise ConfigError(
                "config.tensorboard=True needs tensorboardX: pip install 'seqlab[tensorboard]'"
            ) from e
        self.w = SummaryWriter(logdir)

    def write_scalars(self, step: int, scalars: dict[str, float]) -> None:
        for k, v in scalars.items():
            self.w.add_scalar(k, float(v), int(step))
        self.w.flush()

    def write_texts(self, step: int, texts: dict[str, str]) -> None:
        for k, v in texts.items():
            self.w.add_text(k, v, int(step))

    def close(self) -> None:
        self.w.close()


class MultiWriter(Writer):
    def __init__(self, writers: list[Writer]):
        self.writers = writers

    def write_scalars(self, step: int, scalars: dict[str, float]) -> None:
        for w in self.writers:
            w.write_scalars(step, scalars)

    def write_texts(self, step: int, texts: dict[str, str]) -> None:
        for w in self.writers:
            w.write_texts(step, texts)

    @property
    def wants_figures(self) -> bool:  # type: ignore[override]
        return any(w.wants_figures for w in self.writers)

    def write_probe(self, step: int, results: dict[str, Any], figure_paths: dict[str, str]) -> None:
        for w in self.writers:
            w.write_probe(step, results, figure_paths)

    def close(self) -> None:
        for w in self.writers:
            w.close()


def make_writer(
    config: ConfigDict, workdir: str, *, resume_step: int | None, process_index: int = 0
) -> Writer:
    if process_index != 0:
        return MultiWriter([])
    writers: list[Writer] = [JsonlWriter(os.path.join(workdir, "metrics.jsonl"), resume_step)]
    mode = wandb_mode(config.wandb.mode)
    if mode != "disabled":
        writers.append(WandbWriter(config, workdir, mode))
    if config.tensorboard:
        writers.append(TensorBoardWriter(os.path.join(workdir, "tensorboard")))
    return MultiWriter(writers)


class Progress:
    """A console progress bar (tqdm) showing loss, steps/s, tokens/s and the ETA."""

    def __init__(self, total: int, initial: int, tokens_per_step: int, enabled: bool = True):
        from tqdm import tqdm

        self.bar = tqdm(
            total=total,
            initial=initial,
            disable=not enabled,
            dynamic_ncols=True,
            unit="step",
            file=sys.stderr,
            mininterval=0.5,
        )
        self.tokens_per_step = tokens_per_step
        self.last_step, self.last_time = initial, time.perf_counter()

    def update(self, step: int, loss: float) -> dict[str, float]:
        now = time.perf_counter()
        dt, dn = now - self.last_time, step - self.last_step
        rate = dn / dt if dt > 0 else 0.0
        self.bar.update(dn)
        self.bar.set_postfix(loss=f"{loss:.4f}", tok_s=f"{rate * self.tokens_per_step:,.0f}")
        self.last_step, self.last_time = step, now
        return {"perf/steps_per_sec": rate, "perf/tokens_per_sec": rate * self.tokens_per_step}

    def write(self, msg: str) -> None:
        self.bar.write(msg, file=sys.stderr)

    def close(self) -> None:
        self.bar.close()
