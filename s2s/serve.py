"""`python -m s2s.serve`: launches s2s/commands/serve.py (see its docstring, or `--help`)."""

from s2s.commands.serve import main

if __name__ == "__main__":
    main()
