"""`python -m s2s.average`: launches s2s/commands/average.py (see its docstring, or `--help`)."""

from s2s.commands.average import main

if __name__ == "__main__":
    main()
