"""Benchmarks: ``make bench`` (``python -m tests.bench``) runs every ``bench_*.py`` module here.

Each module has ``run() -> list[dict]``; every dict is one figure made with
:func:`tests.bench.figures.figure`, measured together with its baseline in the same run.
"""
