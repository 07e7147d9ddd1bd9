"""Benchmarks: ``make bench`` (``python -m tests.bench``) runs every ``bench_*.py`` module here.

``make test`` runs each of them once more in smoke mode (:mod:`tests.bench.test_smoke`). A new
benchmark module is picked up by both, with no edit elsewhere, when it:

- is a file ``tests/bench/bench_<name>.py`` that imports without side effects (no processes,
  sockets or namespaces at import time);
- has ``run() -> list[dict]`` returning at least one figure, each made with
  :func:`tests.bench.figures.figure`: a measured value beside its baseline measured in the
  same run (the ``BENCH_JSON`` contract, checked by :mod:`tests.bench.contract`). It raises
  (e.g. :class:`tests.bench.tools.BenchError`) when it cannot measure; it never returns a
  made-up or partial figure;
- takes its durations, rounds and trial counts through
  :func:`tests.bench.smoke_mode.full_or_smoke`, so that under ``BENCH_SMOKE=1`` each figure is
  measured once, for a fraction of a second (:func:`tests.bench.tools.iperf3` and
  :func:`tests.bench.tools.connection_rate` take the durations they are given; iperf3 sends
  ``smoke_bytes`` instead). Its smoke run must stay within a few seconds on a quiet machine;
- optionally sets ``SMOKE_MARKS``, a tuple of pytest marker names for its smoke test:
  ``"root"`` (skipped unless root), ``"slow"`` and ``"vm"`` (boots a QEMU VM; a longer
  timeout).
"""
