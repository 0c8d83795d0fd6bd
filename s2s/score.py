"""`python -m s2s.score`: launches s2s/commands/score.py (see its docstring, or `--help`)."""

from s2s.commands.score import main

if __name__ == "__main__":
    main()
