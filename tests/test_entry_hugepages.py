"""seqlab_entry's huge-page re-exec: which commands and systems get glibc.malloc.hugetlb=1,
and that the re-executed process (same PID) runs the same command with it set."""

from __future__ import annotations

import os
import subprocess
import sys

import pytest

from seqlab_entry import TUNABLE, hugepage_env, this_system

THP_MADVISE = "always [madvise] never\n"
GLIBC = "glibc 2.36"


def test_a_heavy_command_on_linux_glibc_gets_the_tunable() -> None:
    env = hugepage_env({"PATH": "/bin"}, ["seqlab", "train", "--config=x"], GLIBC, THP_MADVISE)
    assert env == {"PATH": "/bin", "GLIBC_TUNABLES": TUNABLE}


def test_existing_tunables_are_kept() -> None:
    env = {"GLIBC_TUNABLES": "glibc.malloc.arena_max=2"}
    out = hugepage_env(env, ["seqlab", "bench"], GLIBC, "[always] madvise never")
    assert out["GLIBC_TUNABLES"] == f"glibc.malloc.arena_max=2:{TUNABLE}"


@pytest.mark.parametrize(("env", "argv", "libc", "thp", "platform"), [
    ({}, ["seqlab", "report", "w"], GLIBC, THP_MADVISE, "linux"),  # light command
    ({}, ["seqlab"], GLIBC, THP_MADVISE, "linux"),  # usage
    ({}, ["seqlab", "train"], GLIBC, "always madvise [never]", "linux"),  # THP off
    ({}, ["seqlab", "train"], "glibc 2.31", THP_MADVISE, "linux"),  # no hugetlb tunable
    ({}, ["seqlab", "train"], "musl 1.2", THP_MADVISE, "linux"),
    ({}, ["seqlab", "train"], "", THP_MADVISE, "linux"),
    ({}, ["seqlab", "train"], GLIBC, THP_MADVISE, "darwin"),
    ({"SEQLAB_HUGEPAGES": "0"}, ["seqlab", "train"], GLIBC, THP_MADVISE, "linux"),  # opt-out
    ({"GLIBC_TUNABLES": "glibc.malloc.hugetlb=0"}, ["seqlab", "train"], GLIBC, THP_MADVISE,
     "linux"),  # the user's own choice wins (and no exec loop)
])  # fmt: skip
def test_no_reexec(env, argv, libc, thp, platform) -> None:
    assert hugepage_env(env, argv, libc, thp, platform) is None


@pytest.mark.skipif(
    not this_system()[1] or hugepage_env({}, ["x", "train"], *this_system()) is None,
    reason="needs Linux, glibc >= 2.35 and transparent huge pages",
)
def test_the_reexecuted_process_runs_the_same_command_with_the_tunable() -> None:
    code = (
        "import os, sys, seqlab_entry; pid = os.getpid(); sys.argv = ['seqlab', 'train'];"
        "seqlab_entry.reexec_with_hugepages(sys.argv);"
        "print(pid, os.environ.get('GLIBC_TUNABLES'), sys.orig_argv[-1])"
    )
    env = {k: v for k, v in os.environ.items() if k not in ("GLIBC_TUNABLES", "SEQLAB_HUGEPAGES")}
    out = subprocess.run(
        [sys.executable, "-c", code, "marker"], env=env, capture_output=True, text=True, check=True
    )
    pid, tunables, last = out.stdout.split()
    assert tunables == TUNABLE and last == "marker"
    assert out.stdout.count("\n") == 1  # printed once: the first image was replaced
