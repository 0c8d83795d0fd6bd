"""The command-line programs. `python -m s2s.train` (and translate, evaluate, average) runs a thin
launcher at the top of the package that calls `main()` here; nothing imports the launchers, so
`s2s.train` and `s2s.evaluate` stay the Python API's functions (s2s/api.py)."""
