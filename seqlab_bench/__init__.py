"""The benchmarks behind ``seqlab bench`` (``cli.main``), kept beside the library: nothing in
``seqlab`` imports them, and PyTorch is needed only here.

Measuring: ``timing`` (clocks, round-robin), ``footprint`` (RSS, XLA's buffer plan),
``hardware`` (machine, versions, threads). What is measured: ``workload`` (the char-LM step),
``peers`` (seqlab, stock Flax, PyTorch). One module per ``--mode``: ``train_step`` (speed),
``compile_time``, ``memory``, ``generate``, ``probe_cost``. Output: ``tables``, ``report``.
"""
