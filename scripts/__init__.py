"""Tools run from the repository root as `python -m scripts.NAME`: benchmarks, sweeps, the config reference."""
