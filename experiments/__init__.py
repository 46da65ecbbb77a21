"""Orchestration: simulation runs, KPIs, benchmarks, plots and the ``collectrl`` command line."""
