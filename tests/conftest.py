"""Test-session set-up shared by every test module."""

from seqlab.run.mesh import pin_cpu_if_no_accelerator
from tests import compile_flags

# On a machine with no accelerator, JAX is pinned to the CPU before any test starts it (and,
# through JAX_PLATFORMS, in every subprocess a test starts), as `seqlab` itself does: with
# the `aot` extra installed, libtpu and the CUDA plugin would otherwise be probed at every
# JAX start, each CUDA probe logging a traceback. A machine with a GPU or TPU is unchanged.
pin_cpu_if_no_accelerator()
# Then XLA compiles the tests' tiny programs without LLVM's optimization passes (see
# tests/compile_flags.py): the same math, about half the suite's time.
compile_flags.apply()
