"""`python -m s2s.export`: launches s2s/commands/export.py (see its docstring, or `--help`)."""

from s2s.commands.export import main

if __name__ == "__main__":
    main()
