"""`python -m s2s.evaluate`: launches s2s/commands/evaluate.py (see its docstring, or `--help`)."""

from s2s.commands.evaluate import main

if __name__ == "__main__":
    main()
