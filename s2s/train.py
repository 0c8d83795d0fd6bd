"""`python -m s2s.train`: launches s2s/commands/train.py (see its docstring, or `--help`)."""

from s2s.commands.train import main

if __name__ == "__main__":
    main()
