"""`python -m s2s.translate`: launches s2s/commands/translate.py (see its docstring, or `--help`)."""

from s2s.commands.translate import main

if __name__ == "__main__":
    main()
