"""seqlab_entry: a signal while seqlab and JAX are still importing gets one line and the
signal's status, not a traceback (the window is seconds long on a cold start)."""

from __future__ import annotations

import os
import signal
import subprocess
import sys
import time

import pytest

# SIGINT as in a terminal: a test runner started in the background (CI's, or a shell's `&`)
# passes SIGINT to its children as ignored, which the entry rightly leaves ignored.
DEFAULT_SIGINT = "import signal; signal.signal(signal.SIGINT, signal.default_int_handler); "
START = DEFAULT_SIGINT + "import seqlab_entry, sys; sys.exit(seqlab_entry.main())"


def _handles(pid: int, signum: int) -> bool:
    """Whether the process has a handler for ``signum`` (its /proc status SigCgt mask)."""
    with open(f"/proc/{pid}/status") as f:
        for line in f:
            if line.startswith("SigCgt:"):
                return bool(int(line.split()[1], 16) >> (signum - 1) & 1)
    return False


@pytest.mark.skipif(not os.path.exists("/proc/self/status"), reason="needs Linux's /proc")
@pytest.mark.parametrize(("signum", "status", "what"), [
    (signal.SIGINT, 130, "Ctrl-C (SIGINT)"),
    (signal.SIGTERM, 143, "SIGTERM"),
])  # fmt: skip
def test_a_signal_during_the_imports_is_one_line(tmp_path, signum, status, what) -> None:
    cmd = [sys.executable, "-c", START, "report", str(tmp_path)]
    proc = subprocess.Popen(cmd, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
    deadline = time.monotonic() + 30
    # SIGTERM is caught only once the start-up handlers are in: the imports then take seconds
    while not _handles(proc.pid, signal.SIGTERM) and time.monotonic() < deadline:
        time.sleep(0.002)
    proc.send_signal(signum)
    out, err = proc.communicate(timeout=60)
    assert proc.returncode == status, err
    lines = [line for line in err.splitlines() if line.startswith("seqlab")]
    assert lines == [f"seqlab: stopped by {what} while starting; nothing was written (re-run "
                     "the same command to start again)"], err  # fmt: skip
    assert "Traceback" not in err and out == ""
    assert list(tmp_path.iterdir()) == []


@pytest.mark.slow
def test_the_signals_are_handed_back_before_the_command(tmp_path) -> None:
    """After the imports the command's own handling (seqlab.tools.stop) is in place: the
    entry leaves Python's defaults as it found them."""
    code = DEFAULT_SIGINT + (
        "import signal, seqlab_entry, seqlab.tools.cli as c;"
        "c.main = lambda: print(signal.getsignal(signal.SIGINT) is signal.default_int_handler,"
        " signal.getsignal(signal.SIGTERM) is signal.SIG_DFL) or 0;"
        "seqlab_entry.main()"
    )
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, timeout=60)
    assert out.stdout.split() == ["True", "True"], out.stderr
